"""docker volume create/ls/inspect/rm/prune against a real pouchd, with the docker CLI
and docker-py; the references containers hold (made here through the broker, as the
container actor makes them) and the local driver's mounts, checked in mountinfo."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker as docker_py
import pytest

from pouch.broker.client import Client
from pouch.proto.envelope import PouchError
from pouch.tests.support.containerd import mounts_under
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.volumes import fails, fake_container, mount_of, unique
from pouch.tests.support.wait import wait_for

HEX64 = re.compile(r"[0-9a-f]{64}")


class Volumes:
    """Volume names and container references of one test, undone after it."""

    def __init__(self, daemon: PouchDaemon, calls: Client) -> None:
        self.daemon = daemon
        self.calls = calls
        self.names: list[str] = []
        self.users: list[str] = []
        self.mounted: list[tuple[str, str]] = []

    def name(self, prefix: str = "v") -> str:
        self.names.append(unique(prefix))
        return self.names[-1]

    def call(self, method: str, **args: Any) -> Any:
        return self.calls.call("volume", method, args)

    def acquire(self, name: str = "", container: str = "", **args: Any) -> tuple[str, dict]:
        container = container or fake_container()
        self.users.append(container)
        use = self.call("acquire", container=container, name=name, **args)
        self.names.append(use["Name"])
        return container, use

    def mount(self, name: str, container: str) -> Path:
        self.mounted.append((name, container))
        return Path(self.call("mount", name=name, container=container))

    def cleanup(self) -> None:
        for name, container in self.mounted:
            self.call("unmount", name=name, container=container)
        for container in self.users:
            self.call("release", container=container)
        for name in self.names:
            self.daemon.docker_result("volume", "rm", "-f", name)


@pytest.fixture
def volumes(daemon: PouchDaemon, calls: Client) -> Iterator[Volumes]:
    made = Volumes(daemon, calls)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def host_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pv-host-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- create, inspect, ls, rm --------------------------------------------------------


def test_create_inspect_list_and_remove(daemon: PouchDaemon, docker: Callable[..., str],
                                        volumes: Volumes):
    name = volumes.name()
    assert docker("volume", "create", "--label", "tier=db", "--label", "empty=",
                  name) == name
    info = json.loads(docker("volume", "inspect", name))[0]
    assert info["Name"] == name
    assert info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"tier": "db", "empty": ""}
    assert info["Options"] is None  # the CLI sends none: as dockerd, none are shown
    assert info["Mountpoint"] == str(daemon.home / "volumes" / name / "_data")
    assert Path(info["Mountpoint"]).is_dir()
    created = info["CreatedAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", created), created
    assert "Status" not in info and "UsageData" not in info

    # As dockerd: the name taken answers the volume there, unchanged.
    assert docker("volume", "create", "--label", "other=1", name) == name
    assert json.loads(docker("volume", "inspect", name))[0]["Labels"] == info["Labels"]
    assert name in docker("volume", "ls", "-q").splitlines()

    assert docker("volume", "rm", name) == name
    assert f"get {name}: no such volume" in fails(daemon, "volume", "inspect", name)
    assert not (daemon.home / "volumes" / name).exists()
    assert f"get {name}: no such volume" in fails(daemon, "volume", "rm", name)
    assert docker("volume", "rm", "-f", name) == name


def test_a_volume_without_a_name_gets_a_random_one(docker: Callable[..., str],
                                                   volumes: Volumes):
    name = docker("volume", "create")
    volumes.names.append(name)
    assert HEX64.fullmatch(name), name
    assert json.loads(docker("volume", "inspect", name))[0]["Name"] == name


def test_the_longest_name_is_made_and_removed(daemon: PouchDaemon,
                                              docker: Callable[..., str], volumes: Volumes):
    name = uuid.uuid4().hex + "x" * (255 - 32)
    volumes.names.append(name)
    assert docker("volume", "create", name) == name
    assert docker("volume", "rm", name) == name
    assert "too long" in fails(daemon, "volume", "create", name + "y")
    assert list((daemon.home / "volumes").glob(name[:32] + "*")) == []


@pytest.mark.parametrize(("args", "message"), [
    (["x"], "volume name is too short, names should be at least two alphanumeric characters"),
    (["a/b"], '"a/b" includes invalid characters for a local volume name, only '
              '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
              "directory, use absolute path"),
    ([".."], '".." includes invalid characters'),
    ([".hidden"], '".hidden" includes invalid characters'),
    (["-o", "size=1m", "bad-opt"], 'invalid option key: "size"'),
    (["-o", "type=tmpfs", "bad-opt"], 'missing required option: "device"'),
    (["-o", "device=tmpfs", "bad-opt"], 'missing required option: "type"'),
    (["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=lots", "bad-opt"],
     'invalid tmpfs option: "size=lots"'),
    (["-o", "type=none", "-o", "device=relative/path", "-o", "o=bind", "bad-opt"],
     'bind source "relative/path" is not an absolute path'),
])
def test_bad_names_and_options_are_refused_with_400(daemon: PouchDaemon, args: list[str],
                                                   message: str):
    api = docker_py.APIClient(base_url=daemon.host, version="1.41", timeout=60)
    try:
        opts = dict(a.split("=", 1) for a in args[1:-1:2]) if len(args) > 1 else None
        with pytest.raises(docker_py.errors.APIError) as raised:
            api.create_volume(name=args[-1], driver_opts=opts)
        assert raised.value.status_code == 400
        assert message in str(raised.value.explanation)
    finally:
        api.close()
    assert message in fails(daemon, "volume", "create", *args)
    assert not list((daemon.home / "volumes").glob("bad-opt*"))


def test_only_the_local_driver_exists(daemon: PouchDaemon):
    stderr = fails(daemon, "volume", "create", "-d", "nfs-plugin", unique("drv"))
    assert 'error looking up volume plugin nfs-plugin: plugin "nfs-plugin" not found' in stderr


# -- filters ----------------------------------------------------------------------


def test_list_filters_name_label_dangling_and_driver(daemon: PouchDaemon,
                                                     docker: Callable[..., str],
                                                     volumes: Volumes):
    run = uuid.uuid4().hex[:8]
    first, second, third = (volumes.name(f"f{i}-{run}") for i in range(3))
    docker("volume", "create", "--label", f"run={run}", "--label", "tier=db", first)
    docker("volume", "create", "--label", f"run={run}", "--label", "tier=web", second)
    docker("volume", "create", "--label", f"run={run}", third)
    volumes.acquire(first)

    def ls(*filters: str) -> list[str]:
        args = [a for f in ("label=run=" + run, *filters) for a in ("--filter", f)]
        return sorted(docker("volume", "ls", "-q", *args).splitlines())

    assert ls() == sorted([first, second, third])
    assert ls(f"name=f1-{run}") == [second]
    assert ls("name=^f[02]-") == sorted([first, third])
    assert ls("label=tier") == sorted([first, second])
    assert ls("label=tier=web") == [second]
    assert ls("dangling=true") == sorted([second, third])
    assert ls("dangling=0") == [first]
    assert ls("driver=local") == sorted([first, second, third])
    assert ls("driver=other") == []
    assert "invalid filter 'colour'" in fails(daemon, "volume", "ls", "-f", "colour=red")
    assert "invalid filter 'dangling=maybe'" in fails(daemon, "volume", "ls", "-f",
                                                      "dangling=maybe")


# -- references -------------------------------------------------------------------


def test_a_volume_in_use_is_not_removed_and_says_by_whom(daemon: PouchDaemon,
                                                         docker: Callable[..., str],
                                                         volumes: Volumes):
    name = volumes.name()
    docker("volume", "create", name)
    first, _ = volumes.acquire(name)
    second, use = volumes.acquire(name)
    assert use == {"Name": name, "Mountpoint": str(daemon.home / "volumes" / name / "_data"),
                   "Created": False}
    users = ", ".join(sorted([first, second]))
    stderr = fails(daemon, "volume", "rm", name)
    assert f"remove {name}: volume is in use - [{users}]" in stderr
    # force does not take a volume from its users either, as dockerd.
    assert "volume is in use" in fails(daemon, "volume", "rm", "-f", name)
    api = docker_py.APIClient(base_url=daemon.host, version="1.41", timeout=60)
    try:
        with pytest.raises(docker_py.errors.APIError) as raised:
            api.remove_volume(name)
        assert raised.value.status_code == 409
    finally:
        api.close()

    assert volumes.call("release", container=first) == []
    assert volumes.call("release", container=first) == []  # idempotent
    assert f"[{second}]" in fails(daemon, "volume", "rm", name)
    volumes.call("release", container=second)
    assert docker("volume", "rm", name) == name


def test_acquire_makes_a_missing_volume_and_anonymous_ones_go_with_rm_v(
        volumes: Volumes, docker: Callable[..., str], daemon: PouchDaemon):
    named = volumes.name("named")
    container, use = volumes.acquire(named, labels={"made": "by-run"})
    assert use["Created"] is True and use["Name"] == named
    assert json.loads(docker("volume", "inspect", named))[0]["Labels"] == {"made": "by-run"}

    _, anonymous = volumes.acquire(container=container, destination="/data")
    assert anonymous["Created"] is True and HEX64.fullmatch(anonymous["Name"])
    # A retry of the same call (same container and destination) is the same volume.
    _, again = volumes.acquire(container=container, destination="/data")
    assert again == {**anonymous, "Created": False}
    _, other = volumes.acquire(container=container, destination="/cache")
    assert other["Name"] != anonymous["Name"]
    # Another container (--volumes-from) shares the first anonymous one.
    sharer, _ = volumes.acquire(anonymous["Name"])

    removed = volumes.call("release", container=container, remove_anonymous=True)
    assert removed == [other["Name"]]  # the shared one stays, and so does the named one
    assert not (daemon.home / "volumes" / other["Name"]).exists()
    docker("volume", "inspect", named, anonymous["Name"])
    volumes.call("release", container=sharer)
    # Among others: tests running alongside leave dangling volumes of their own.
    assert {named, anonymous["Name"]} <= \
        set(docker("volume", "ls", "-q", "-f", "dangling=true").splitlines())


# -- the local driver's options -------------------------------------------------------


def test_a_tmpfs_volume_is_mounted_only_while_used(daemon: PouchDaemon,
                                                   docker: Callable[..., str],
                                                   volumes: Volumes):
    name = volumes.name("tmp")
    docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs",
           "-o", "o=size=1m,mode=0700", name)
    info = json.loads(docker("volume", "inspect", name))[0]
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=0700"}
    data = Path(info["Mountpoint"])
    assert mount_of(data) is None

    first, second = fake_container(), fake_container()
    assert volumes.mount(name, first) == data
    fstype, options = mount_of(data) or ("", "")
    assert fstype == "tmpfs" and "size=1024k" in options and "mode=700" in options
    (data / "scratch").write_text("in memory")
    assert volumes.mount(name, first) == data  # idempotent: still one mount
    assert volumes.mount(name, second) == data
    assert len([p for p in mounts_under(data) if p == data]) == 1
    assert "volume is in use" in fails(daemon, "volume", "rm", name)

    volumes.call("unmount", name=name, container=first)
    assert mount_of(data) is not None  # the second still uses it
    volumes.call("unmount", name=name, container=second)
    volumes.call("unmount", name=name, container=second)  # idempotent
    assert mount_of(data) is None
    assert not (data / "scratch").exists()  # it lived in the tmpfs
    volumes.mounted.clear()
    assert docker("volume", "rm", name) == name


def test_a_bind_volume_shows_a_host_folder_and_its_removal_leaves_the_folder(
        daemon: PouchDaemon, docker: Callable[..., str], volumes: Volumes, host_dir: Path):
    (host_dir / "kept.txt").write_text("host data")
    name = volumes.name("bind")
    docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={host_dir}",
           name)
    container = fake_container()
    data = volumes.mount(name, container)
    assert (data / "kept.txt").read_text() == "host data"
    (data / "new.txt").write_text("from the volume")
    assert (host_dir / "new.txt").read_text() == "from the volume"

    volumes.call("unmount", name=name, container=container)
    volumes.mounted.clear()
    assert mount_of(data) is None and list(data.iterdir()) == []
    docker("volume", "rm", name)
    assert sorted(p.name for p in host_dir.iterdir()) == ["kept.txt", "new.txt"]


def test_a_read_only_bind_volume_refuses_writes(docker: Callable[..., str],
                                                volumes: Volumes, host_dir: Path):
    name = volumes.name("robind")
    docker("volume", "create", "-o", "type=none", "-o", "o=bind,ro", "-o",
           f"device={host_dir}", name)
    data = volumes.mount(name, fake_container())
    with pytest.raises(OSError, match="Read-only file system"):
        (data / "nope").write_text("x")


def test_a_bind_volume_of_a_missing_folder_fails_to_mount_and_stays_unused(
        daemon: PouchDaemon, docker: Callable[..., str], volumes: Volumes, calls: Client):
    name = volumes.name("gone")
    missing = f"/tmp/pv-missing-{uuid.uuid4().hex}"
    docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={missing}",
           name)
    with pytest.raises(PouchError) as raised:
        calls.call("volume", "mount", {"name": name, "container": fake_container()})
    assert "error while mounting volume" in raised.value.message
    assert "No such file or directory" in raised.value.message
    assert docker("volume", "rm", name) == name  # the failed mount left no user


# -- prune --------------------------------------------------------------------------


def test_prune_removes_unused_volumes_and_counts_their_bytes(daemon: PouchDaemon,
                                                             docker: Callable[..., str],
                                                             volumes: Volumes):
    run = uuid.uuid4().hex[:8]
    unused, kept, used = (volumes.name(f"p{i}") for i in range(3))
    docker("volume", "create", "--label", f"run={run}", unused)
    docker("volume", "create", "--label", f"run={run}", "--label", "keep=yes", kept)
    docker("volume", "create", "--label", f"run={run}", used)
    volumes.acquire(used)
    (daemon.home / "volumes" / unused / "_data" / "blob").write_bytes(b"x" * 12345)

    out = docker("volume", "prune", "-f", "--filter", f"label=run={run}",
                 "--filter", "label!=keep")
    assert unused in out and kept not in out and used not in out
    assert "Total reclaimed space: 12.35kB" in out
    assert sorted(docker("volume", "ls", "-q", "-f", f"label=run={run}").splitlines()) == \
        sorted([kept, used])
    assert not (daemon.home / "volumes" / unused).exists()
    assert "invalid filter 'until'" in fails(daemon, "volume", "prune", "-f", "--filter",
                                             "until=1h")


# -- docker-py ----------------------------------------------------------------------


def test_docker_py_volumes(client: docker_py.DockerClient, volumes: Volumes):
    name = volumes.name("py")
    volume = client.volumes.create(name=name, driver="local", labels={"via": "docker-py"},
                                   driver_opts={"type": "tmpfs", "device": "tmpfs",
                                                "o": "size=2m"})
    assert volume.name == name and volume.attrs["Labels"] == {"via": "docker-py"}
    assert client.volumes.get(name).attrs["Options"]["o"] == "size=2m"
    assert [v.name for v in client.volumes.list(filters={"label": "via=docker-py"})] == [name]
    with pytest.raises(docker_py.errors.NotFound):
        client.volumes.get(unique("absent"))
    pruned = client.volumes.prune(filters={"label": "via=docker-py"})
    assert pruned["VolumesDeleted"] == [name]
    assert pruned["SpaceReclaimed"] == 0
    other = client.volumes.create(name=volumes.name("py"))
    other.remove()
    with pytest.raises(docker_py.errors.NotFound):
        other.reload()


# -- events -------------------------------------------------------------------------


def test_volume_events_as_dockerd(daemon: PouchDaemon, docker: Callable[..., str],
                                  volumes: Volumes):
    since = time.time()
    name = volumes.name("ev")
    docker("volume", "create", name)
    container = fake_container()
    volumes.mount(name, container)
    volumes.call("unmount", name=name, container=container)
    volumes.mounted.clear()
    docker("volume", "rm", name)

    def seen() -> list[dict[str, Any]] | None:
        out = docker("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                     "--filter", "type=volume", "--filter", f"volume={name}",
                     "--format", "{{json .}}")
        events = [json.loads(line) for line in out.splitlines()]
        return events if len(events) >= 4 else None

    events = wait_for(seen, 20, "four volume events")
    assert [e["Action"] for e in events] == ["create", "mount", "unmount", "destroy"]
    assert all(e["Actor"]["ID"] == name and e["Actor"]["Attributes"]["driver"] == "local"
               for e in events)
    assert events[1]["Actor"]["Attributes"]["container"] == container
