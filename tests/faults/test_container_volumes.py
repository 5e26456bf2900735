"""A running container with volumes outlives kill -9 of the container actor and of the
volume actor: it keeps its files and its references, and its exit and removal later
end its mounts and uses as if nothing had happened."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker as docker_py
import pytest
import requests

from pouch.tests.faults.checks import docker_api
from pouch.tests.faults.test_fault_points import arm
from pouch.tests.faults.tree import BrokerView, kill, until, watch_replacement
from pouch.tests.support.daemon import DockerError, PouchDaemon
from pouch.tests.support.procs import children_of
from pouch.tests.support.wait import wait_for


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == str(path) for line in mountinfo)


def test_a_container_with_volumes_survives_its_actors_kill_9(pouchd: PouchDaemon) -> None:
    docker = pouchd.docker
    docker("volume", "create", "keep")
    docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
           "--opt", "o=size=1m", "scratch")
    cid = docker("run", "-d", "--name", "holder", "-v", "keep:/data", "-v", "scratch:/scratch",
                 "--mount", "type=volume,target=/anon", "busybox", "sh", "-c",
                 "echo one > /data/f; echo two > /scratch/f; exec sleep 600")
    wait_for(lambda: docker("exec", "holder", "cat", "/scratch/f") == "two", 20,
             "the files written")
    scratch = pouchd.home / "volumes" / "scratch" / "_data"
    assert _mounted(scratch)
    anonymous = next(m["Name"] for m in pouchd.inspect("holder")["Mounts"]
                     if m["Destination"] == "/anon")

    view = BrokerView(pouchd)
    try:
        for actor in ("container", "volume"):
            old = pouchd.pid_of(actor)
            watch_replacement(view, pouchd, actor, old, kill(old), timeout=20)
    finally:
        view.close()

    assert pouchd.inspect("holder")["State"]["Running"]
    assert docker("exec", "holder", "cat", "/data/f", "/scratch/f").split() == ["one", "two"]
    try:
        docker("volume", "rm", "keep")
        raise AssertionError("a volume in use was removed")
    except DockerError as exc:
        assert f"volume is in use - [{cid}]" in exc.stderr
    docker("kill", "holder")
    wait_for(lambda: not _mounted(scratch), 20, "the tmpfs volume unmounted after the exit")
    assert docker("run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f") == "one"
    docker("rm", "-v", "holder")
    left = set(docker("volume", "ls", "-q").split())
    assert {"keep", "scratch"} <= left
    assert anonymous not in left
    docker("volume", "rm", "keep", "scratch")
    assert json.loads(docker("volume", "ls", "--format", "{{json .Name}}") or "null") is None


def test_a_container_with_volumes_runs_on_across_a_pouchd_restart(pouchd: PouchDaemon) -> None:
    docker = pouchd.docker
    docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
           "--opt", "o=size=1m", "scratch")
    cid = docker("run", "-d", "--name", "holder", "-v", "keep:/data", "-v", "scratch:/scratch",
                 "busybox", "sh", "-c",
                 "echo one > /data/f; echo two > /scratch/f; exec sleep 600")
    wait_for(lambda: docker("exec", "holder", "cat", "/scratch/f") == "two", 20,
             "the files written")
    scratch = pouchd.home / "volumes" / "scratch" / "_data"
    assert pouchd.proc is not None
    pouchd.proc.send_signal(signal.SIGTERM)  # pouchd stops; the container runs on
    assert pouchd.proc.wait(15) == 0
    assert _mounted(scratch)  # the container still uses it

    pouchd.start()  # the same home: it restores what it finds

    assert pouchd.inspect("holder")["State"]["Running"]
    assert docker("exec", "holder", "cat", "/data/f", "/scratch/f").split() == ["one", "two"]
    try:
        docker("volume", "rm", "scratch")
        raise AssertionError("a volume in use was removed")
    except DockerError as exc:
        assert f"volume is in use - [{cid}]" in exc.stderr
    docker("kill", "holder")
    wait_for(lambda: not _mounted(scratch), 20, "the tmpfs volume unmounted after the exit")
    docker("rm", "holder")
    docker("volume", "rm", "keep", "scratch")


def test_a_create_whose_answer_was_lost_leaves_no_anonymous_volume(pouchd: PouchDaemon) -> None:
    """The caller of a create died before its answer: the container never started is
    removed, and the anonymous volume made for it goes with it."""
    api = docker_api(pouchd)
    view = BrokerView(pouchd)
    workers = children_of(pouchd.pid_of("gateway"))
    arm(pouchd, "container.create.prepared", "delay")
    try:
        with ThreadPoolExecutor(1) as pool:
            creating = pool.submit(
                api.create_container, "busybox", ["true"], name="orphan",
                host_config=api.create_host_config(
                    mounts=[docker_py.types.Mount("/anon", None, type="volume")]))
            until(lambda: view.busy("container"), 5.0, "the create reaching the container actor")
            for pid in workers:
                kill(pid)
            with pytest.raises(requests.ConnectionError):
                creating.result(30)
        until(lambda: not view.busy("container") or None, 10.0, "the create ending")
    finally:
        view.close()
        api.close()
    api = docker_api(pouchd)
    try:
        wait_for(lambda: api.containers(all=True) == [], 10.0, "the unclaimed container removed")
        wait_for(lambda: not api.volumes()["Volumes"], 10.0, "its anonymous volume removed")
    finally:
        api.close()
