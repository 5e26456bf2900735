"""docker top, docker stats and docker diff end to end: the docker CLI and docker-py
against a real pouchd, as a user watches a container."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import APIError

from pouch.tests.support.daemon import DockerError, PouchDaemon
from pouch.tests.support.wait import wait_for

DEADLINE = 30.0


@pytest.fixture
def run(daemon: PouchDaemon) -> Iterator[Callable[..., str]]:
    """Start busybox containers (detached); all removed after the test."""
    made: list[str] = []

    def start(*command: str, detach: bool = True) -> str:
        name = f"ob-{uuid.uuid4().hex[:10]}"
        made.append(name)
        daemon.docker("run", *(["-d"] if detach else []), "--name", name, "busybox",
                      *(command or ("sleep", "300")))
        return name

    yield start
    for name in made:
        daemon.docker_result("rm", "-f", name)


def test_top_lists_the_containers_processes(daemon: PouchDaemon, run: Callable[..., str]):
    name = run("sleep", "301")
    pid = str(daemon.inspect(name)["State"]["Pid"])
    lines = daemon.docker("top", name).splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
    rows = [line.split() for line in lines[1:]]
    assert [row[1] for row in rows] == [pid]
    assert lines[1].endswith("sleep 301")
    # ps's own arguments: other columns, the same rows.
    custom = daemon.docker("top", name, "-o", "pid,comm").splitlines()
    assert custom[0].split() == ["PID", "COMMAND"] and custom[1].split() == [pid, "sleep"]


def test_top_counts_every_process_of_the_container(client: docker.DockerClient,
                                                    run: Callable[..., str]):
    name = run("sh", "-c", "sleep 302 & sleep 303 & wait")

    def three() -> dict | None:
        table = client.containers.get(name).top()
        return table if len(table["Processes"]) == 3 else None

    table = wait_for(three, DEADLINE, "three processes")
    assert table["Titles"][1] == "PID"
    assert sorted(row[-1] for row in table["Processes"])[1:] == ["sleep 302", "sleep 303"]


def test_top_of_a_container_that_does_not_run_is_a_conflict(daemon: PouchDaemon,
                                                             run: Callable[..., str]):
    name = run("true", detach=False)
    failed = daemon.docker_result("top", name)
    assert failed.returncode != 0 and "is not running" in failed.stderr


def test_arguments_ps_refuses_are_a_bad_request(client: docker.DockerClient,
                                                run: Callable[..., str]):
    name = run()
    with pytest.raises(APIError) as caught:
        client.containers.get(name).top(ps_args="--no-such-option")
    assert caught.value.status_code == 400 and "ps: " in str(caught.value.explanation)
    with pytest.raises(APIError) as renamed:
        client.containers.get(name).top(ps_args="-o user=PID")
    assert renamed.value.status_code == 400
    assert 'specifying "user=PID" is not allowed' in str(renamed.value.explanation)


def test_stats_no_stream_shows_a_container_burning_cpu(daemon: PouchDaemon,
                                                       client: docker.DockerClient,
                                                       run: Callable[..., str]):
    name = run("sh", "-c", "while :; do :; done")
    container = client.containers.get(name)
    first = container.stats(stream=False)
    assert first["name"] == f"/{name}" and first["id"] == container.id
    assert first["precpu_stats"]["cpu_usage"]["total_usage"] > 0  # primed, as dockerd
    assert first["cpu_stats"]["online_cpus"] >= 1
    assert first["memory_stats"]["usage"] > 0 and first["pids_stats"]["current"] == 1
    assert "eth0" in first["networks"]  # its veth on the default bridge
    # The numbers move: what the loop burns grows from one reading to the next.
    wait_for(lambda: container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"]
             > first["cpu_stats"]["cpu_usage"]["total_usage"], DEADLINE, "cpu usage grows")
    row = json.loads(daemon.docker("stats", "--no-stream", "--format", "{{json .}}", name))
    assert row["Name"] == name and float(row["CPUPerc"].rstrip("%")) > 10.0
    assert row["PIDs"] == "1"


def test_one_shot_stats_come_at_once_without_precpu(client: docker.DockerClient,
                                                    run: Callable[..., str]):
    container = client.containers.get(run())
    stats = container.stats(stream=False, one_shot=True)
    assert stats["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0


def test_stats_stream_a_reading_a_second(client: docker.DockerClient,
                                         run: Callable[..., str]):
    container = client.containers.get(run())
    stream = container.stats(stream=True, decode=True)
    try:
        readings = [next(stream) for _ in range(3)]
    finally:
        stream.close()
    assert readings[1]["preread"] == readings[0]["read"]
    assert readings[2]["preread"] == readings[1]["read"]
    assert all(r["read"] != "0001-01-01T00:00:00Z" for r in readings)


def test_stats_of_a_stopped_container_are_zeros(daemon: PouchDaemon,
                                                client: docker.DockerClient,
                                                run: Callable[..., str]):
    name = run("true", detach=False)
    stats = client.containers.get(name).stats(stream=False)
    assert stats["read"] == "0001-01-01T00:00:00Z" and stats["name"] == f"/{name}"
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] == 0 and stats["memory_stats"] == {}
    line = daemon.docker("stats", "--no-stream", "--format", "{{.CPUPerc}} {{.PIDs}}", name)
    assert line == "0.00% 0"


def test_stats_of_no_such_container(daemon: PouchDaemon):
    with pytest.raises(DockerError) as caught:
        daemon.docker("stats", "--no-stream", "ob-no-such")
    assert "No such container" in caught.value.stderr


def test_diff_shows_what_the_container_changed(daemon: PouchDaemon,
                                               client: docker.DockerClient,
                                               run: Callable[..., str]):
    name = run("sh", "-c", "echo x > /tmp/new; rm /etc/group; echo more >> /etc/passwd; "
                           "mkdir -p /made/deep; sleep 300")
    wait_for(lambda: "A /made/deep" in daemon.docker("diff", name), DEADLINE, "changes")
    shown = daemon.docker("diff", name).splitlines()
    assert {"C /etc", "D /etc/group", "C /etc/passwd", "C /tmp", "A /tmp/new", "A /made",
            "A /made/deep"} <= set(shown)
    # What the runtime made for the container's mounts (/etc/hosts ...) is not its doing.
    assert not any(line.endswith(("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"))
                   for line in shown)
    changes = client.containers.get(name).diff()
    assert {"Path": "/etc/group", "Kind": 2} in changes
    assert {"Path": "/tmp/new", "Kind": 1} in changes
    # Where the layers are, as dockerd's overlay2 shows them: the change in the upper one,
    # the whole file system merged while the container runs.
    data = daemon.inspect(name)["GraphDriver"]["Data"]
    assert (Path(data["UpperDir"]) / "tmp" / "new").read_text() == "x\n"
    assert (Path(data["MergedDir"]) / "bin" / "busybox").exists()
    assert all(Path(lower).is_dir() for lower in data["LowerDir"].split(":"))
    assert Path(data["WorkDir"]).is_dir()


def test_a_container_that_changed_nothing_has_no_changes(client: docker.DockerClient,
                                                         run: Callable[..., str]):
    name = run()
    # dockerd's marker of a container is there, and not the container's change.
    assert client.containers.get(name).exec_run(["stat", "-c", "%a %s %U", "/.dockerenv"]
                                                ).output == b"755 0 root\n"
    assert client.containers.get(name).diff() is None  # null, as dockerd
