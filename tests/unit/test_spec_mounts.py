"""A container's binds, volumes and tmpfs as dockerd 20.10 plans them: -v, --mount,
VOLUME, --volumes-from; the errors in dockerd's words; the OCI mounts they become;
and the image's files copied into a new volume."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from pouch.actors.container.copyup import copy_up
from pouch.actors.container.pause import KIND_LABEL, SANDBOX_KIND
from pouch.actors.container.spec.merge import DEFAULT_PATH, Process
from pouch.actors.container.spec.mounts import (
    Planned,
    from_records,
    inspect_mounts,
    parse_bind,
    parse_mount,
    parse_volumes_from,
    plan,
    records,
    tmpfs_data,
)
from pouch.actors.container.spec.oci import SpecInput, build_spec
from pouch.actors.container.spec.user import User
from pouch.proto.envelope import PouchError
from pouch.tests.support.fakehost import FakeHost

CID = "7a1c0a9b2d4e" + "0" * 52


def error(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(PouchError) as excinfo:
        call(*args, **kwargs)
    assert excinfo.value.code == "invalid", excinfo.value.message
    return excinfo.value.message


def everywhere(path: str) -> bool:
    return True


def nowhere(path: str) -> bool:
    return False


# -- -v ---------------------------------------------------------------------


def test_an_absolute_source_is_a_bind_made_if_missing() -> None:
    m = parse_bind("/srv/data:/data")
    assert (m.type, m.source, m.destination, m.rw, m.mode, m.propagation, m.make_source) == (
        "bind", "/srv/data", "/data", True, "", "rprivate", True)


def test_a_bind_mode_sets_read_only_and_propagation() -> None:
    m = parse_bind("/srv//data/:/data/:ro,rshared")
    assert (m.source, m.destination, m.rw, m.mode, m.propagation) == (
        "/srv/data", "/data", False, "ro,rshared", "rshared")


def test_a_name_is_a_volume_shown_with_mode_z() -> None:
    m = parse_bind("cache:/var/cache")
    assert (m.type, m.name, m.destination, m.driver, m.rw, m.mode, m.nocopy) == (
        "volume", "cache", "/var/cache", "local", True, "z", False)
    ro = parse_bind("cache:/var/cache:ro,nocopy")
    assert (ro.rw, ro.mode, ro.nocopy) == (False, "ro,nocopy", True)


def test_a_lone_destination_is_an_anonymous_volume() -> None:
    m = parse_bind("/scratch")
    assert (m.type, m.name, m.destination) == ("volume", "", "/scratch")


@pytest.mark.parametrize(("raw", "message"), [
    ("/a:/b:ro:x", "invalid volume specification: '/a:/b:ro:x'"),
    (":/b", "invalid volume specification: ':/b'"),
    ("/b:ro", "invalid volume specification: '/b:ro'"),
    ("/a:/b:rw,ro", "invalid mode: rw,ro"),
    ("/a:/b:bogus", "invalid mode: bogus"),
    ("/a:relative", "invalid volume specification: '/a:relative': invalid mount config for "
                    "type \"bind\": invalid mount path: 'relative' mount path must be absolute"),
    ("/a:/", "invalid volume specification: '/a:/': invalid mount config for type \"bind\": "
             "invalid specification: destination can't be '/'"),
    ("v1:/b:rshared", "invalid volume specification: 'v1:/b:rshared': invalid mount config "
                      'for type "volume": field BindOptions must not be specified'),
])  # fmt: skip
def test_bad_binds_are_refused_as_dockerd_words_it(raw: str, message: str) -> None:
    assert error(parse_bind, raw) == message


def test_a_relative_source_is_not_a_volume_name() -> None:
    message = error(parse_bind, "data/x:/data")
    assert message.startswith('create data/x: "data/x" includes invalid characters for a '
                              "local volume name")
    assert "use absolute path" in message


def test_another_volume_driver_is_not_found() -> None:
    with pytest.raises(PouchError) as excinfo:
        parse_bind("v1:/data", volume_driver="flocker")
    assert excinfo.value.code == "not_found"
    assert 'plugin "flocker" not found' in excinfo.value.message


# -- --mount ----------------------------------------------------------------


def test_a_mount_bind_needs_an_existing_absolute_source() -> None:
    spec = {"Type": "bind", "Source": "/nowhere", "Target": "/data"}
    assert error(parse_mount, spec, nowhere) == (
        'invalid mount config for type "bind": bind source path does not exist: /nowhere')
    assert error(parse_mount, {**spec, "Source": "rel"}, everywhere) == (
        "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must "
        "be absolute")
    assert error(parse_mount, {**spec, "Source": ""}, everywhere) == (
        'invalid mount config for type "bind": field Source must not be empty')


def test_a_mount_bind_takes_read_only_propagation_and_non_recursive() -> None:
    m = parse_mount({"Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": True,
                     "BindOptions": {"Propagation": "rslave", "NonRecursive": True}},
                    everywhere)
    assert (m.rw, m.mode, m.propagation, m.recursive, m.make_source) == (
        False, "", "rslave", False, False)


@pytest.mark.parametrize(("spec", "message"), [
    ({"Type": "bind", "Source": "/s", "Target": "/d", "BindOptions": {"Propagation": "up"}},
     'invalid mount config for type "bind": invalid propagation mode: up'),
    ({"Type": "bind", "Source": "/s", "Target": "/d", "VolumeOptions": {}},
     'invalid mount config for type "bind": field VolumeOptions must not be specified'),
    ({"Type": "volume", "Target": "/d", "ReadOnly": True},
     'invalid mount config for type "volume": must not set ReadOnly mode when using '
     "anonymous volumes"),
    ({"Type": "volume", "Source": "v", "Target": "/d", "BindOptions": {}},
     'invalid mount config for type "volume": field BindOptions must not be specified'),
    ({"Type": "tmpfs", "Source": "x", "Target": "/d"},
     'invalid mount config for type "tmpfs": field Source must not be specified'),
    ({"Type": "npipe", "Target": "/d"}, 'invalid mount config for type "npipe": mount type '
                                        "unknown"),
    ({"Type": "volume", "Target": ""},
     'invalid mount config for type "volume": field Target must not be empty'),
    ({"Type": "volume", "Target": "d"},
     "invalid mount config for type \"volume\": invalid mount path: 'd' mount path must be "
     "absolute"),
    ({"Type": "tmpfs", "Target": "/"},
     'invalid mount config for type "tmpfs": invalid specification: destination can\'t be '
     "'/'"),
])  # fmt: skip
def test_bad_mounts_are_refused_as_dockerd_words_it(spec: dict[str, Any], message: str) -> None:
    assert error(parse_mount, spec, everywhere) == message


def test_a_mount_volume_carries_its_options() -> None:
    m = parse_mount({"Type": "volume", "Source": "v1", "Target": "/d", "VolumeOptions": {
        "NoCopy": True, "Labels": {"a": "b"},
        "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}})
    assert (m.type, m.name, m.driver, m.nocopy, m.labels, m.driver_opts, m.mode) == (
        "volume", "v1", "local", True, {"a": "b"}, {"type": "tmpfs", "device": "tmpfs"}, "z")


def test_tmpfs_options_become_mount_data_as_dockerd_writes_them() -> None:
    assert tmpfs_data({"SizeBytes": 64 << 20, "Mode": 0o1770}, False) == "mode=1770,size=64m"
    assert tmpfs_data({"SizeBytes": 3 << 30}, True) == "ro,size=3g"
    assert tmpfs_data({"SizeBytes": 1000}, False) == "size=1000"
    assert tmpfs_data(None, False) == ""


# -- --volumes-from -------------------------------------------------------------


def test_volumes_from_takes_a_container_and_a_mode() -> None:
    assert parse_volumes_from("data") == ("data", "rw")
    assert parse_volumes_from("data:ro") == ("data", "ro")
    for bad in ("data:rshared", "data:nocopy", "data:xx"):
        assert error(parse_volumes_from, bad).startswith("invalid mode: ")
    assert error(parse_volumes_from, "") == "volumes-from specification cannot be an empty string"


# -- a whole request ----------------------------------------------------------------


def test_binds_and_mounts_may_not_share_a_destination() -> None:
    host = {"Binds": ["/a:/data"], "Mounts": [{"Type": "tmpfs", "Target": "/data"}]}
    assert error(plan, {}, host) == "Duplicate mount point: /data"
    assert error(plan, {}, {"Binds": ["/a:/data", "v1:/data/"]}) == "Duplicate mount point: /data"
    assert error(plan, {}, {"Binds": ["/a:/t"], "Tmpfs": {"/t": ""}}) == (
        "Duplicate mount point: /t")


def test_image_volumes_become_anonymous_unless_covered() -> None:
    planned = plan({"Volumes": {"/extra": {}}},
                   {"Binds": ["named:/data"], "Tmpfs": {"/run": ""}},
                   image_volumes={"/data": {}, "/logs": {}, "/run": {}})
    by_place = {m.destination: m for m in planned}
    assert set(by_place) == {"/data", "/logs", "/extra"}
    assert by_place["/data"].name == "named"
    assert (by_place["/logs"].type, by_place["/logs"].name, by_place["/logs"].mode) == (
        "volume", "", "")


def test_volumes_from_gives_the_other_mounts_overridden_by_own_ones() -> None:
    theirs = [Planned(type="volume", destination="/data", name="v1", source="/v/v1/_data",
                      driver="local", mode="z"),
              Planned(type="bind", destination="/etc/app", source="/srv/app",
                      propagation="rprivate")]
    planned = plan({}, {"Binds": ["/other:/etc/app"]}, volumes_from=[("ro", theirs)])
    by_place = {m.destination: m for m in planned}
    data = by_place["/data"]
    assert (data.name, data.rw, data.mode, data.nocopy) == ("v1", False, "", True)
    assert by_place["/etc/app"].source == "/other"


def test_records_round_trip() -> None:
    planned = plan({}, {"Binds": ["/a:/b:ro", "v1:/c"]})
    assert from_records(records(planned)) == planned


def test_inspect_shows_mounts_as_dockerd() -> None:
    planned = plan({}, {"Binds": ["/srv:/b:ro"],
                        "Mounts": [{"Type": "tmpfs", "Target": "/t"}]})
    volume = Planned(type="volume", destination="/v", name="v1", source="/h/v1/_data",
                     driver="local", mode="z")
    assert inspect_mounts([*planned, volume]) == [
        {"Type": "bind", "Source": "/srv", "Destination": "/b", "Mode": "ro", "RW": False,
         "Propagation": "rprivate"},
        {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": True,
         "Propagation": ""},
        {"Type": "volume", "Name": "v1", "Source": "/h/v1/_data", "Destination": "/v",
         "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""},
    ]


# -- the OCI mounts -------------------------------------------------------------------


def spec_with(mounts: list[Planned], labels: dict[str, str] | None = None,
              **host_config: Any) -> dict[str, Any]:
    return build_spec(SpecInput(
        container_id=CID, process=Process(["sh"], [f"PATH={DEFAULT_PATH}"], "/", "", False,
                                          False),
        user=User(0, 0, [], "/root"), hostname=CID[:12], network_mode="none", netns_path=None,
        hosts_path="/c/hosts", resolv_conf_path="/c/resolv.conf", hostname_path="/c/hostname",
        cgroup_parent="/pouch", host_config=host_config, labels=labels or {},
        host=FakeHost(), mounts=tuple(mounts)))


def test_binds_and_volumes_are_rbinds_parents_first() -> None:
    planned = plan({}, {"Binds": ["/srv/deep:/data/deep:ro", "/srv/data:/data:rshared"]})
    volume = Planned(type="volume", destination="/data/deep/er", name="v", source="/h/v/_data",
                     driver="local", mode="z")
    spec = spec_with([*planned, volume])
    own = [m for m in spec["mounts"] if m["destination"].startswith("/data")]
    assert own == [
        {"destination": "/data", "type": "bind", "source": "/srv/data",
         "options": ["rbind", "rshared"]},
        {"destination": "/data/deep", "type": "bind", "source": "/srv/deep",
         "options": ["rbind", "ro", "rprivate"]},
        {"destination": "/data/deep/er", "type": "bind", "source": "/h/v/_data",
         "options": ["rbind"]},
    ]
    assert spec["linux"]["rootfsPropagation"] == "shared"


def test_a_mount_tmpfs_sits_beside_host_config_tmpfs() -> None:
    planned = plan({}, {"Mounts": [{"Type": "tmpfs", "Target": "/cache", "TmpfsOptions": {
        "SizeBytes": 1 << 20, "Mode": 0o700}}]})
    spec = spec_with(planned, Tmpfs={"/tmp": "size=2m"})
    by_place = {m["destination"]: m for m in spec["mounts"]}
    assert by_place["/cache"]["type"] == "tmpfs"
    assert by_place["/cache"]["options"] == ["noexec", "nosuid", "nodev", "rprivate",
                                             "mode=700", "size=1m"]
    assert "size=2m" in by_place["/tmp"]["options"]


def test_a_bind_over_etc_hosts_replaces_the_containers_own() -> None:
    spec = spec_with(plan({}, {"Binds": ["/srv/hosts:/etc/hosts:ro"]}), ReadonlyRootfs=True)
    hosts = [m for m in spec["mounts"] if m["destination"] == "/etc/hosts"]
    assert hosts == [{"destination": "/etc/hosts", "type": "bind", "source": "/srv/hosts",
                      "options": ["rbind", "ro", "rprivate"]}]
    assert spec["root"]["readonly"] is True


def test_a_pods_pause_has_no_cgroup_hierarchies_nor_hosts_files() -> None:
    pause = spec_with([], labels={KIND_LABEL: SANDBOX_KIND})
    other = spec_with([], labels={KIND_LABEL: "container"})
    gone = {m["destination"] for m in other["mounts"]} - {m["destination"] for m in
                                                          pause["mounts"]}
    assert gone == {"/sys/fs/cgroup", "/etc/hosts", "/etc/hostname"}


# -- copy-up ---------------------------------------------------------------------------


def test_copy_up_keeps_owner_mode_links_and_fills_only_empty_volumes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = root / "srv" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "file").write_text("hello")
    os.chmod(data / "file", 0o640)
    os.chown(data / "file", 1, 2)
    os.link(data / "file", data / "sub" / "hard")
    os.symlink("../file", data / "sub" / "link")
    os.symlink("/etc", root / "escape")
    os.chmod(data, 0o750)
    os.chown(data, 5, 6)
    volume = tmp_path / "vol"
    volume.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert copy_up(fd, "/srv/data", str(volume))
        assert not copy_up(fd, "/srv/data", str(volume))  # no longer empty
        assert not copy_up(fd, "/missing", str(tmp_path))
        empty = tmp_path / "empty"
        empty.mkdir()
        assert not copy_up(fd, "/escape", str(empty))  # a symlink out resolves inside: none
        assert not list(empty.iterdir())
    finally:
        os.close(fd)
    st = (volume / "file").stat()
    assert (volume / "file").read_text() == "hello"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1, 2)
    assert (volume / "sub" / "hard").stat().st_ino == st.st_ino
    assert os.readlink(volume / "sub" / "link") == "../file"
    top = volume.stat()
    assert (stat.S_IMODE(top.st_mode), top.st_uid, top.st_gid) == (0o750, 5, 6)
