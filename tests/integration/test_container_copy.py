"""docker cp both ways and docker export end to end: the docker CLI and docker-py
against a real pouchd, with containers running and stopped, and containers that try
to lead a copy out of their root with symlinks."""

from __future__ import annotations

import io
import os
import signal
import socket
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import APIError, NotFound

from pouch.tests.support.containerd import mounts_under
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.tars import tar_of
from pouch.tests.support.wait import wait_for

DEADLINE = 30.0
# A container that plants symlinks leading out of its root, then waits.
PLANT = ("mkdir -p /box && echo inside > /box/f && ln -s /../../../box /etc/evil && "
         "ln -s ../../../../box /etc/rel && echo ready > /ready && sleep 300")


@pytest.fixture
def run(daemon: PouchDaemon) -> Iterator[Callable[..., str]]:
    """Start (or create) busybox containers; all removed after the test."""
    made: list[str] = []

    def start(*command: str, detach: bool = True, create: bool = False) -> str:
        name = f"cp-{uuid.uuid4().hex[:10]}"
        made.append(name)
        how = ["create"] if create else ["run", *(["-d"] if detach else [])]
        daemon.docker(*how, "--name", name, "busybox", *(command or ("sleep", "300")))
        return name

    yield start
    for name in made:
        daemon.docker_result("rm", "-f", name)


@pytest.fixture
def planted(daemon: PouchDaemon, run: Callable[..., str]) -> str:
    name = run("sh", "-c", PLANT)
    wait_for(lambda: daemon.docker_result("exec", name, "cat", "/ready").stdout == "ready\n",
             DEADLINE, "the symlinks planted")
    return name


def _untar(chunks: Iterator[bytes]) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        return {m.name: m for m in tar.getmembers()}


def _views(daemon: PouchDaemon) -> list[Path]:
    """What copies and exports left mounted, or not removed, under the run folder."""
    views = daemon.run_dir / "views"
    return [*mounts_under(views), *(views.iterdir() if views.exists() else [])]


def test_cp_a_file_and_a_folder_out_of_a_running_container(daemon: PouchDaemon,
                                                           run: Callable[..., str],
                                                           tmp_path: Path):
    name = run()
    daemon.docker("cp", f"{name}:/etc/passwd", str(tmp_path / "passwd"))
    assert (tmp_path / "passwd").read_text().startswith("root:x:0:0:")
    daemon.docker("cp", f"{name}:/etc", str(tmp_path / "etc"))
    assert (tmp_path / "etc" / "passwd").is_file()


def test_cp_into_a_running_container_and_back(daemon: PouchDaemon, run: Callable[..., str],
                                              tmp_path: Path):
    name = run()
    (tmp_path / "hello.txt").write_text("hello\n")
    daemon.docker("cp", str(tmp_path / "hello.txt"), f"{name}:/tmp/")
    assert daemon.docker("exec", name, "cat", "/tmp/hello.txt") == "hello"
    daemon.docker("cp", str(tmp_path / "hello.txt"), f"{name}:/tmp/renamed.txt")
    assert daemon.docker("exec", name, "cat", "/tmp/renamed.txt") == "hello"
    # A trailing slash asks for a folder: a file of that name is not one (dockerd's ENOTDIR).
    (tmp_path / "other.txt").write_text("other\n")
    refused = daemon.docker_result("cp", str(tmp_path / "other.txt"), f"{name}:/tmp/hello.txt/")
    assert refused.returncode != 0 and "no such directory" in refused.stderr
    assert daemon.docker("exec", name, "cat", "/tmp/hello.txt") == "hello"


def test_cp_into_a_stopped_container_shows_at_its_next_start(daemon: PouchDaemon,
                                                             run: Callable[..., str],
                                                             tmp_path: Path):
    name = run("cat", "/data/in.txt", create=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("copied while stopped\n")
    daemon.docker("cp", str(tmp_path / "data"), f"{name}:/")
    assert daemon.docker("start", "-a", name) == "copied while stopped"
    daemon.docker("cp", f"{name}:/data/in.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "copied while stopped\n"
    assert _views(daemon) == []  # the stopped container's view is unmounted


def test_cp_of_no_such_path_names_it(daemon: PouchDaemon, run: Callable[..., str],
                                     tmp_path: Path):
    name = run()
    failed = daemon.docker_result("cp", f"{name}:/no/such", str(tmp_path))
    assert failed.returncode != 0
    assert f"Could not find the file /no/such in container {name}" in failed.stderr
    (tmp_path / "f").write_text("x")
    failed = daemon.docker_result("cp", str(tmp_path / "f"), f"{name}:/no/such/f")
    assert "Could not find the file /no/such in container" in failed.stderr


def test_symlinks_resolve_inside_the_container(daemon: PouchDaemon,
                                               client: docker.DockerClient, planted: str,
                                               tmp_path: Path):
    container = client.containers.get(planted)
    # Out: /etc/evil/f is the container's /box/f, never the host's /box.
    chunks, stat = container.get_archive("/etc/evil/f")
    assert stat["name"] == "f" and stat["size"] == len("inside\n")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        member = tar.extractfile("f")
        assert member is not None and member.read() == b"inside\n"
    # The symlink itself, stat'd: where it leads, inside.
    _chunks, link = container.get_archive("/etc/rel")
    assert link["linkTarget"] == "/box" and link["mode"] & (1 << 27)
    # In: through both symlinks, into the container's /box.
    (tmp_path / "one.txt").write_text("1")
    daemon.docker("cp", str(tmp_path / "one.txt"), f"{planted}:/etc/evil/")
    assert container.put_archive("/etc/rel", tar_of({"two.txt": b"2"}))
    assert container.put_archive("/", tar_of({"etc/evil/three.txt": b"3"}))
    assert daemon.docker("exec", planted, "ls", "/box").split() == [
        "f", "one.txt", "three.txt", "two.txt"]
    assert not Path("/box").exists()


def test_members_that_climb_out_are_refused(client: docker.DockerClient, planted: str):
    container = client.containers.get(planted)
    with pytest.raises(APIError) as caught:
        container.put_archive("/tmp", tar_of({"../../../escaped.txt": b"x"}))
    assert caught.value.status_code == 400
    assert not Path("/escaped.txt").exists()


def test_docker_py_archives_both_ways(client: docker.DockerClient, run: Callable[..., str]):
    container = client.containers.get(run())
    assert container.put_archive("/tmp", tar_of({"dir/a.txt": b"a", "dir/b.txt": b"bb"}))
    chunks, stat = container.get_archive("/tmp/dir")
    assert stat["name"] == "dir" and stat["mode"] & (1 << 31)
    assert set(_untar(chunks)) == {"dir", "dir/a.txt", "dir/b.txt"}
    with pytest.raises(NotFound):
        container.get_archive("/tmp/none")


def test_export_is_the_whole_file_system(daemon: PouchDaemon, client: docker.DockerClient,
                                         run: Callable[..., str], tmp_path: Path):
    name = run("sh", "-c", "echo mine > /root/mine && sleep 300")
    wait_for(lambda: daemon.docker_result("exec", name, "cat", "/root/mine").returncode == 0,
             DEADLINE, "the file written")
    out = tmp_path / "export.tar"
    daemon.docker("export", "-o", str(out), name)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        mine = tar.extractfile("root/mine")
        assert mine is not None and mine.read() == b"mine\n"
    assert {"bin/busybox", "etc/passwd", "root/mine", ".dockerenv"} <= names
    exported = _untar(client.containers.get(name).export())
    assert "root/mine" in exported
    assert _views(daemon) == []


def test_an_export_whose_client_leaves_leaves_no_mount(daemon: PouchDaemon,
                                                       run: Callable[..., str]):
    name = run()
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(daemon.socket))
        conn.sendall(f"GET /v1.41/containers/{name}/export HTTP/1.1\r\nHost: pouch\r\n\r\n"
                     .encode())
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
        wait_for(lambda: _views(daemon), DEADLINE, "the export's view mounted")
    wait_for(lambda: _views(daemon) == [], DEADLINE, "the view unmounted")


def test_a_copy_does_not_race_the_containers_removal(daemon: PouchDaemon,
                                                     client: docker.DockerClient,
                                                     run: Callable[..., str]):
    name = run("true", detach=False)
    container = client.containers.get(name)
    big = tar_of({f"f{i}": b"x" * 65536 for i in range(64)})
    assert container.put_archive("/tmp", big)
    daemon.docker("rm", name)
    with pytest.raises(NotFound):
        container.put_archive("/tmp", big)
    assert _views(daemon) == []


def test_a_view_left_by_a_killed_actor_is_dropped_when_it_comes_back(pouchd: PouchDaemon):
    """An export holds its view while its client reads slowly (here: not at all); the
    container actor dies meanwhile (SIGKILL, no finally runs): its successor unmounts it."""
    name = f"cp-{uuid.uuid4().hex[:10]}"
    pouchd.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "dd if=/dev/zero of=/big bs=1048576 count=16 && sleep 300")
    try:
        wait_for(lambda: pouchd.docker_result("exec", name, "ls", "/big").returncode == 0
                 and "16777216" in pouchd.docker("exec", name, "ls", "-l", "/big"),
                 DEADLINE, "the big file written")
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(pouchd.socket))
            conn.sendall(f"GET /v1.41/containers/{name}/export HTTP/1.1\r\nHost: p\r\n\r\n"
                         .encode())
            assert conn.recv(64).startswith(b"HTTP/1.1 200")
            wait_for(lambda: _views(pouchd), DEADLINE, "the export's view mounted")
            old = pouchd.pid_of("container")
            os.kill(old, signal.SIGKILL)
            wait_for(lambda: _views(pouchd) == [], 60.0, "the leftover view dropped")
        assert pouchd.pid_of("container") != old
    finally:
        pouchd.docker_result("rm", "-f", name)
