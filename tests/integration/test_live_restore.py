"""Live restore: containers outlive the container actor, and the actor finds them again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import docker

from pouch.actors.containerd.client import Containerd
from pouch.actors.image.store import image_rootfs_chain
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for

COUNTER = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def restart_container_actor(daemon: PouchDaemon, how: int = signal.SIGKILL) -> None:
    """Kill the container actor and wait until a new one answers."""
    old = daemon.pid_of("container")
    os.kill(old, how)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if daemon.pid_of("container") != old and \
                    daemon.docker_result("ps", timeout=10).returncode == 0:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the container actor did not come back:\n{daemon.log_tail()}")


def log_lines(daemon: PouchDaemon, name: str) -> int:
    return len(daemon.docker("logs", name).splitlines())


def test_a_running_container_outlives_the_container_actor(pouchd: PouchDaemon):
    name = unique("counter")
    pouchd.docker("run", "-d", "--name", name, "busybox", "sh", "-c", COUNTER)
    wait_for(lambda: log_lines(pouchd, name) >= 3, 10, "three lines logged")
    pid = pouchd.inspect(name)["State"]["Pid"]

    restart_container_actor(pouchd)

    state = pouchd.inspect(name)["State"]
    assert (state["Status"], state["Pid"]) == ("running", pid)
    # Its output keeps reaching json.log, with no line lost or repeated.
    before = log_lines(pouchd, name)
    wait_for(lambda: log_lines(pouchd, name) >= before + 5, 10,
             "five more lines logged after the restart")
    lines = pouchd.docker("logs", name).splitlines()
    assert lines == [f"line {i}" for i in range(len(lines))]

    # logs -f works again: it replays, then follows.
    follow = subprocess.Popen(
        ["docker", "logs", "-f", "--tail", "0", name], stdout=subprocess.PIPE, text=True,
        env=pouchd.cli_env())
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline().startswith("line ")
    finally:
        follow.kill()
        follow.wait()

    # attach works again: the live output reaches a newly attached client.
    client = docker.APIClient(base_url=pouchd.host, version="1.41")
    try:
        attached = client.attach(name, stream=True, logs=False, demux=True)
        out, _ = next(attached)
        assert out is not None and out.startswith(b"line ")
    finally:
        client.close()

    # wait works again: it answers when the container stops. The response's head says
    # the actor holds the wait; its body comes with the exit.
    with socket.socket(socket.AF_UNIX) as waiter:
        waiter.settimeout(20)
        waiter.connect(str(pouchd.socket))
        waiter.sendall(f"POST /v1.41/containers/{name}/wait HTTP/1.1\r\nHost: pouch\r\n"
                       "Content-Length: 0\r\n\r\n".encode())
        response = waiter.recv(4096)
        while b"\r\n\r\n" not in response:
            response += waiter.recv(4096)
        assert response.startswith(b"HTTP/1.1 200 "), response
        pouchd.docker("kill", name)
        while chunk := waiter.recv(4096):
            response += chunk
    assert b'"StatusCode": 137' in response, response
    pouchd.docker("rm", name)


def test_an_exit_nobody_watched_is_recorded_and_its_restart_policy_applied(pouchd):
    name = unique("unwatched")
    pouchd.docker("run", "-d", "--name", name, "--restart", "on-failure:1", "busybox",
                  "sh", "-c", "sleep 1; exit 7")
    pid = pouchd.inspect(name)["State"]["Pid"]
    assert pouchd.proc is not None
    pouchd.proc.send_signal(signal.SIGTERM)  # pouchd (and containerd) stop; the shim stays
    assert pouchd.proc.wait(15) == 0
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, f"pid {pid} gone")

    pouchd.start()  # the same home and exec root: it restores what it finds

    wait_for(lambda: pouchd.inspect(name)["RestartCount"] == 1, 20, "one restart")
    wait_for(lambda: pouchd.inspect(name)["State"]["Status"] == "exited", 20,
             "the container exited")
    info = pouchd.inspect(name)
    assert info["State"]["ExitCode"] == 7
    assert info["State"]["FinishedAt"] > info["State"]["StartedAt"]
    pouchd.docker("rm", name)


def test_a_container_gone_from_containerd_is_marked_dead_not_dropped(pouchd):
    name = unique("gone")
    cid = pouchd.docker("create", "--name", name, "busybox", "true")
    with Containerd(pouchd.containerd_socket) as ctrd:
        ctrd.containers.delete(cid)

    restart_container_actor(pouchd)

    state = pouchd.inspect(name)["State"]
    assert (state["Status"], state["Dead"]) == ("dead", True)
    assert "containerd" in state["Error"]
    pouchd.docker("rm", name)
    assert name not in pouchd.docker("ps", "-a", "--format", "{{.Names}}")
    with Containerd(pouchd.containerd_socket) as ctrd:
        assert ctrd.snapshots.stat(cid) is None  # its snapshot went with it


def test_what_containerd_holds_for_us_unknown_to_the_meta_store_is_cleaned(pouchd):
    stray = uuid.uuid4().hex * 2
    with Containerd(pouchd.containerd_socket) as ctrd:
        image = ctrd.images.get("docker.io/library/busybox:latest")
        assert image is not None
        manifest = json.loads(ctrd.content.read(image.target["digest"]))
        top = image_rootfs_chain(json.loads(ctrd.content.read(manifest["config"]["digest"])))
        labels = {"io.pouch.container": "stray"}
        ctrd.snapshots.prepare(stray, top, labels=labels)
        ctrd.containers.create(stray, "docker.io/library/busybox:latest",
                               {"ociVersion": "1.0.2"}, snapshot_key=stray, labels=labels)

    restart_container_actor(pouchd)

    with Containerd(pouchd.containerd_socket) as ctrd:
        assert ctrd.containers.get(stray) is None
        assert ctrd.snapshots.stat(stray) is None
