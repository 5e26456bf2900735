"""Containers with volumes, binds and tmpfs, as a user of the docker CLI and docker-py
would try them: -v, --mount, VOLUME, --volumes-from, --read-only with --tmpfs, rm -v."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker as docker_py
import pytest

from pouch.tests.support.daemon import DockerError, PouchDaemon

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "cat", "echo", "ls", "stat", "readlink", "touch", "grep", "sleep", "true",
           "mkdir", "id")


class Made:
    """What a test makes: containers (removed with their anonymous volumes), volumes and
    host folders; all gone after the test, whatever happened."""

    def __init__(self, daemon: PouchDaemon) -> None:
        self.daemon = daemon
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.folders: list[Path] = []

    def container(self, prefix: str = "m") -> str:
        self.containers.append(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return self.containers[-1]

    def volume(self, prefix: str = "v") -> str:
        self.volumes.append(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return self.volumes[-1]

    def folder(self) -> Path:
        self.folders.append(Path(tempfile.mkdtemp(prefix="pouch-bind-", dir="/tmp")))
        return self.folders[-1]

    def clean(self) -> None:
        for name in reversed(self.containers):
            self.daemon.docker_result("rm", "-f", "-v", name)
        for name in self.volumes:
            self.daemon.docker_result("volume", "rm", "-f", name)
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def made(daemon: PouchDaemon) -> Iterator[Made]:
    things = Made(daemon)
    try:
        yield things
    finally:
        things.clean()


def _rootfs_with_data() -> bytes:
    """busybox, and /data as an image would ship it: files of other owners and modes,
    a symlink, a subfolder."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0,
                data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.linkname = kind, mode, uid, gid, link
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for folder, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("proc", 0o555),
                             ("sys", 0o555), ("dev", 0o755)):
            add(folder, tarfile.DIRTYPE, mode)
        add("bin/busybox", tarfile.REGTYPE, 0o755, data=BUSYBOX.read_bytes())
        for applet in APPLETS:
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, data=b"root:x:0:0:root:/:/bin/sh\n")
        add("etc/group", tarfile.REGTYPE, 0o644, data=b"root:x:0:\n")
        add("data", tarfile.DIRTYPE, 0o750, uid=1000, gid=1000)
        add("data/hello", tarfile.REGTYPE, 0o640, uid=1000, gid=100, data=b"from the image\n")
        add("data/sub", tarfile.DIRTYPE, 0o700, uid=7, gid=7)
        add("data/sub/deep", tarfile.REGTYPE, 0o600, data=b"deep\n")
        add("data/link", tarfile.SYMTYPE, 0o777, link="hello")
    return buf.getvalue()


@pytest.fixture(scope="module")
def volume_image(daemon: PouchDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An image with `VOLUME /data` and files there."""
    tarball = tmp_path_factory.mktemp("rootfs") / "rootfs.tar"
    tarball.write_bytes(_rootfs_with_data())
    tag = f"pouch-test/with-volume:{uuid.uuid4().hex[:8]}"
    daemon.docker("import", "--change", "VOLUME /data", "--change", 'CMD ["sh"]',
                  str(tarball), tag)
    yield tag
    daemon.docker_result("rmi", "-f", tag)


def _volumes(docker: Callable[..., str]) -> set[str]:
    return set(docker("volume", "ls", "-q").split())


def _refused(daemon: PouchDaemon, *args: str) -> str:
    """The daemon's words for a docker command it refused."""
    with pytest.raises(DockerError) as excinfo:
        daemon.docker(*args)
    assert "Error response from daemon" in excinfo.value.stderr, excinfo.value.stderr
    return excinfo.value.stderr


# -- named volumes --------------------------------------------------------------


def test_named_volume_outlives_its_container(docker: Callable[..., str], made: Made) -> None:
    volume = made.volume()
    assert volume not in _volumes(docker)
    docker("run", "--rm", "-v", f"{volume}:/data", "busybox", "sh", "-c",
           "echo kept > /data/f")
    assert volume in _volumes(docker)  # -v made it
    assert docker("run", "--rm", "-v", f"{volume}:/data", "busybox", "cat", "/data/f") == "kept"


def test_anonymous_volume_gets_the_images_files(daemon: PouchDaemon, docker: Callable[..., str],
                                                volume_image: str, made: Made) -> None:
    name = made.container()
    docker("create", "--name", name, volume_image, "sh", "-c",
           "stat -c '%n %u:%g %a' /data /data/hello /data/sub /data/sub/deep; "
           "readlink /data/link; cat /data/link")
    info = daemon.inspect(name)
    assert info["Config"]["Volumes"] == {"/data": {}}
    [mount] = info["Mounts"]
    assert re.fullmatch(r"[0-9a-f]{64}", mount["Name"])
    assert mount == {"Type": "volume", "Name": mount["Name"],
                     "Source": str(daemon.home / "volumes" / mount["Name"] / "_data"),
                     "Destination": "/data", "Driver": "local", "Mode": "", "RW": True,
                     "Propagation": ""}
    docker("start", "-a", name)
    assert docker("logs", name).splitlines() == [
        "/data 1000:1000 750", "/data/hello 1000:100 640", "/data/sub 7:7 700",
        "/data/sub/deep 0:0 600", "hello", "from the image"]


def test_nocopy_leaves_a_new_volume_empty(docker: Callable[..., str], volume_image: str,
                                          made: Made) -> None:
    first, second = made.volume(), made.volume()
    assert docker("run", "--rm", "-v", f"{first}:/data:nocopy", volume_image,
                  "ls", "-A", "/data") == ""
    assert docker("run", "--rm", "--mount",
                  f"type=volume,source={second},target=/data,volume-nocopy", volume_image,
                  "ls", "-A", "/data") == ""
    # Without nocopy a new named volume gets the image's files, as an anonymous one does.
    third = made.volume()
    assert docker("run", "--rm", "-v", f"{third}:/data", volume_image,
                  "cat", "/data/hello") == "from the image"


def test_rm_v_removes_anonymous_volumes_not_named_ones(daemon: PouchDaemon,
                                                       docker: Callable[..., str],
                                                       volume_image: str, made: Made) -> None:
    named = made.volume()
    name = made.container()
    docker("create", "--name", name, "-v", f"{named}:/named", volume_image)
    anonymous = next(m["Name"] for m in daemon.inspect(name)["Mounts"]
                     if m["Destination"] == "/data")
    assert {named, anonymous} <= _volumes(docker)
    docker("rm", "-v", name)
    left = _volumes(docker)
    assert named in left
    assert anonymous not in left
    assert not (daemon.home / "volumes" / anonymous).exists()


def test_rm_without_v_keeps_anonymous_volumes_and_run_rm_drops_them(
        docker: Callable[..., str], volume_image: str, made: Made) -> None:
    before = _volumes(docker)
    name = made.container()
    docker("create", "--name", name, volume_image)
    docker("rm", name)
    kept = _volumes(docker) - before
    assert len(kept) == 1
    made.volumes.extend(kept)
    docker("run", "--rm", volume_image, "true")
    assert _volumes(docker) - before == kept  # --rm took its anonymous volume along


def test_a_volume_in_use_cannot_be_removed(daemon: PouchDaemon, docker: Callable[..., str],
                                           api: docker_py.APIClient, made: Made) -> None:
    volume, name = made.volume(), made.container()
    cid = docker("create", "--name", name, "-v", f"{volume}:/data", "busybox")
    with pytest.raises(docker_py.errors.APIError) as excinfo:
        api.remove_volume(volume)
    assert excinfo.value.status_code == 409
    assert cid in str(excinfo.value.explanation)
    docker("rm", name)
    docker("volume", "rm", volume)
    assert volume not in _volumes(docker)


# -- binds ----------------------------------------------------------------------------


def test_a_bind_mount_works_both_ways_and_ro_refuses_writes(docker: Callable[..., str],
                                                            made: Made) -> None:
    host = made.folder()
    (host / "from-host").write_text("hi from the host\n")
    out = docker("run", "--rm", "-v", f"{host}:/mnt", "busybox", "sh", "-c",
                 "cat /mnt/from-host && echo hi from inside > /mnt/from-container")
    assert out == "hi from the host"
    assert (host / "from-container").read_text() == "hi from inside\n"
    with pytest.raises(DockerError) as excinfo:
        docker("run", "--rm", "-v", f"{host}:/mnt:ro", "busybox", "touch", "/mnt/nope")
    assert "Read-only file system" in excinfo.value.stderr
    assert not (host / "nope").exists()


def test_v_makes_a_missing_host_folder_mount_refuses_it(daemon: PouchDaemon,
                                                        docker: Callable[..., str],
                                                        made: Made) -> None:
    missing = made.folder() / "not" / "yet"
    docker("run", "--rm", "-v", f"{missing}:/mnt", "busybox", "touch", "/mnt/made")
    assert (missing / "made").exists()
    assert stat.S_IMODE(os.stat(missing).st_mode) == 0o755
    gone = made.folder() / "gone"
    message = _refused(daemon, "run", "--rm", "--mount", f"type=bind,source={gone},target=/mnt",
                       "busybox", "true")
    assert f"bind source path does not exist: {gone}" in message


def test_bad_sources_and_targets_are_400(api: docker_py.APIClient) -> None:
    cases = [
        ({"binds": ["relative/dir:/data"]}, "includes invalid characters for a local volume "
                                            "name"),
        ({"mounts": [docker_py.types.Mount("/data", "relative", type="bind")]},
         "invalid mount path: 'relative' mount path must be absolute"),
        ({"binds": ["/tmp:relative"]}, "invalid mount path: 'relative' mount path must be "
                                       "absolute"),
        ({"binds": ["/tmp:/"]}, "destination can't be '/'"),
        ({"binds": ["/tmp:/data:bogus"]}, "invalid mode: bogus"),
        ({"binds": ["/tmp:/data", "/var:/data"]}, "Duplicate mount point: /data"),
    ]
    for host_config, words in cases:
        with pytest.raises(docker_py.errors.APIError) as excinfo:
            api.create_container("busybox", "true",
                                 host_config=api.create_host_config(**host_config))
        assert excinfo.value.status_code == 400, host_config
        assert words in str(excinfo.value.explanation), host_config


# -- tmpfs ------------------------------------------------------------------------------


def test_mount_tmpfs_with_size_and_mode(docker: Callable[..., str]) -> None:
    line = docker("run", "--rm", "--mount",
                  "type=tmpfs,target=/cache,tmpfs-size=1m,tmpfs-mode=1770", "busybox",
                  "grep", " /cache ", "/proc/mounts")
    assert line.startswith("tmpfs /cache tmpfs ")
    options = line.split()[3].split(",")
    assert "size=1024k" in options
    assert "mode=1770" in options
    assert {"nosuid", "nodev", "noexec"} <= set(options)


def test_read_only_root_with_a_tmpfs_for_tmp(docker: Callable[..., str]) -> None:
    out = docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c",
                 "echo ok > /tmp/f && cat /tmp/f && (touch /f 2>&1 || true)")
    assert out.splitlines()[0] == "ok"
    assert "Read-only file system" in out


# -- volumes-from ------------------------------------------------------------------


def test_volumes_from_shares_the_other_containers_mounts(daemon: PouchDaemon,
                                                         docker: Callable[..., str],
                                                         api: docker_py.APIClient,
                                                         made: Made) -> None:
    volume, source, reader = made.volume(), made.container("src"), made.container("rd")
    host = made.folder()
    (host / "conf").write_text("setting=1\n")
    docker("run", "--name", source, "-v", f"{volume}:/data", "-v", f"{host}:/etc/app",
           "busybox", "sh", "-c", "echo shared > /data/f")
    out = docker("run", "--name", reader, "--volumes-from", f"{source}:ro", "busybox", "sh",
                 "-c", "cat /data/f /etc/app/conf; touch /data/g 2>&1 || true")
    assert out.splitlines()[:2] == ["shared", "setting=1"]
    assert "Read-only file system" in out
    mounts = {m["Destination"]: m for m in daemon.inspect(reader)["Mounts"]}
    assert mounts["/data"]["Name"] == volume
    assert mounts["/data"]["RW"] is False
    assert mounts["/etc/app"]["Source"] == str(host)
    # The volume is used by both now: removing the first container leaves it to the second.
    docker("rm", source)
    in_use = _refused(daemon, "volume", "rm", volume)
    assert f"volume is in use - [{daemon.inspect(reader)['Id']}]" in in_use
    # A 400, as dockerd's: the CLI takes a 404 of create for a missing image, and pulls.
    with pytest.raises(docker_py.errors.APIError) as excinfo:
        api.create_container("busybox", "true", host_config=api.create_host_config(
            volumes_from=["no-such-container"]))
    assert excinfo.value.status_code == 400
    assert "No such container: no-such-container" in str(excinfo.value.explanation)
    refused = _refused(daemon, "run", "--volumes-from", "no-such-container", "busybox", "true")
    assert "No such container: no-such-container" in refused
    assert "Unable to find image" not in refused


# -- inspect ---------------------------------------------------------------------------


def test_inspect_shows_every_kind_of_mount_as_dockerd(daemon: PouchDaemon,
                                                      docker: Callable[..., str],
                                                      made: Made) -> None:
    host, volume, name = made.folder(), made.volume(), made.container()
    docker("create", "--name", name, "-v", f"{host}:/bind:ro",
           "-v", f"{volume}:/vol", "--mount", "type=tmpfs,target=/tmpfs",
           "--mount", f"type=bind,source={host},target=/shared,bind-propagation=rslave",
           "busybox")
    info = daemon.inspect(name)
    # The CLI sends its -v binds in a Go map's order: any.
    assert sorted(info["HostConfig"]["Binds"]) == sorted([f"{host}:/bind:ro", f"{volume}:/vol"])
    by_place = {m["Destination"]: m for m in info["Mounts"]}
    assert by_place["/bind"] == {"Type": "bind", "Source": str(host), "Destination": "/bind",
                                 "Mode": "ro", "RW": False, "Propagation": "rprivate"}
    assert by_place["/vol"] == {"Type": "volume", "Name": volume,
                                "Source": str(daemon.home / "volumes" / volume / "_data"),
                                "Destination": "/vol", "Driver": "local", "Mode": "z",
                                "RW": True, "Propagation": ""}
    assert by_place["/tmpfs"] == {"Type": "tmpfs", "Source": "", "Destination": "/tmpfs",
                                  "Mode": "", "RW": True, "Propagation": ""}
    assert by_place["/shared"]["Propagation"] == "rslave"
    listed = json.loads(docker("ps", "-a", "--filter", f"name={name}", "--format",
                               "{{json .Mounts}}"))
    assert volume in listed


def test_docker_py_runs_with_volumes_and_mounts(client: docker_py.DockerClient,
                                                made: Made) -> None:
    volume, host = made.volume(), made.folder()
    (host / "in").write_text("bound\n")
    name = made.container()
    out = client.containers.run(
        "busybox", ["sh", "-c", "cat /in/in; echo v > /vol/f; cat /vol/f"], name=name,
        volumes={str(host): {"bind": "/in", "mode": "ro"}, volume: {"bind": "/vol"}})
    assert out.decode().split() == ["bound", "v"]
    assert client.volumes.get(volume).name == volume


def test_a_failed_create_leaves_no_volume_behind(daemon: PouchDaemon,
                                                 docker: Callable[..., str],
                                                 volume_image: str, made: Made) -> None:
    before = _volumes(docker)
    named = made.volume()
    message = _refused(daemon, "create", "-v", f"{named}:/named", "--cap-add", "BOGUS",
                       volume_image)
    assert "unknown capability" in message
    assert _volumes(docker) == before
    assert not any((daemon.home / "volumes").glob(f"{named}*"))


def test_a_host_file_can_be_bound_over_one_of_the_image(docker: Callable[..., str],
                                                        made: Made) -> None:
    hosts = made.folder() / "hosts"
    hosts.write_text("10.1.2.3 db\n")
    assert docker("run", "--rm", "-v", f"{hosts}:/etc/hosts:ro", "busybox",
                  "cat", "/etc/hosts") == "10.1.2.3 db"


def test_mount_volume_options_and_labels_make_the_volume(docker: Callable[..., str],
                                                         made: Made) -> None:
    volume = made.volume()
    line = docker("run", "--rm", "--mount",
                  f"type=volume,source={volume},target=/t,volume-label=team=db,"
                  "volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=2m",
                  "busybox", "grep", " /t ", "/proc/mounts")
    assert line.startswith("tmpfs /t tmpfs ")
    assert "size=2048k" in line.split()[3].split(",")
    info = json.loads(docker("volume", "inspect", volume))[0]
    assert info["Labels"] == {"team": "db"}
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}
