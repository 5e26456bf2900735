"""Streams that outlive an actor's restart: a `wait` or a `logs -f` goes on with the
restarted container actor, an events stream with the restarted system actor; an
attach, which cannot, ends saying why instead of a bare end of file."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pouch.broker.client import Client
from pouch.proto import stdstream
from pouch.proto.envelope import PouchError
from pouch.tests.faults.checks import docker_api
from pouch.tests.faults.tree import BrokerView, broker, internal, kill, until, watch_replacement
from pouch.tests.support.daemon import PouchDaemon, running
from pouch.tests.support.procs import alive, children_of
from pouch.tests.support.tools import require
from pouch.tests.support.unixhttp import UnixConnection
from pouch.tests.support.wait import wait_for

ANSWER_WITHIN = 20.0
# A container that runs until `docker kill -s TERM`, then exits with this status.
EXIT_ON_TERM = 7
WAITS_FOR_TERM = ["sh", "-c", f"trap 'exit {EXIT_ON_TERM}' TERM; while true; do sleep 0.1; done"]
TICKING = ["sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done"]
LIVE_AFTER = 10  # lines: a second of ticks

PASSED_ON = re.compile(r"container\.wait: its gateway process died; "
                       r"passed to gateway process (\d+)")


def passed_to_a_new_worker(daemon: PouchDaemon, master: int, killed: list[int]) -> bool:
    """Whether the actor last passed the wait to a worker the master made since."""
    passed = PASSED_ON.findall(daemon.log_path.read_text(errors="replace"))
    return bool(passed) and int(passed[-1]) in set(children_of(master)) - set(killed)


def sockets_of(pid: int) -> int:
    """How many sockets a process holds."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def restart_container_actor(daemon: PouchDaemon, view: BrokerView) -> None:
    """kill -9 the container actor and wait for its successor."""
    pid = daemon.pid_of("container")
    watch_replacement(view, daemon, "container", pid, kill(pid))


def docker_in_background(daemon: PouchDaemon, *args: str) -> subprocess.Popen[str]:
    env = daemon.cli_env()
    return subprocess.Popen([require("docker", "docker.io"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def waiting(daemon: PouchDaemon, condition: str) -> http.client.HTTPResponse:
    """A container that runs until told, and a wait on it whose head is out (so the
    container actor holds its connection)."""
    daemon.docker("run", "-d", "--name", "waited", "busybox", *WAITS_FOR_TERM)
    return wait_request(daemon, "waited", condition)


def wait_request(daemon: PouchDaemon, container: str, condition: str) -> http.client.HTTPResponse:
    """A wait on `container` whose head is out (the container actor holds its connection)."""
    conn = UnixConnection(daemon.socket, ANSWER_WITHIN)
    conn.request("POST", f"/containers/{container}/wait?condition={condition}")
    answer = conn.getresponse()
    assert answer.status == 200
    return answer


@pytest.mark.parametrize("gateway", ["as-is", "master-killed", "workers-killed"],
                         ids=lambda case: f"gateway-{case}")
def test_a_wait_outlives_a_restart_of_the_container_actor(pouchd, gateway):
    """The gateway process that handed the wait over is gone before the actor dies:
    `master-killed`: its orphaned workers exit once a new master's serve, and pass the
    streams they keep watch over to them; `workers-killed`: they are killed outright,
    and the actor passes each stream to a new worker. (Once, the watch ended with the
    worker, and the wait got "unexpected EOF" at the actor's restart.)"""
    answer = waiting(pouchd, "not-running")
    master = pouchd.pid_of("gateway")
    workers = children_of(master)
    if gateway == "master-killed":
        kill(master)
        until(lambda: not any(alive(pid) for pid in workers) or None, ANSWER_WITHIN,
              "the killed master's workers gone")
    elif gateway == "workers-killed":
        for pid in workers:
            kill(pid)
        until(lambda: passed_to_a_new_worker(pouchd, master, workers) or None, ANSWER_WITHIN,
              "the actor passing the wait to a new worker")
    view = BrokerView(pouchd)

    restart_container_actor(pouchd, view)
    pouchd.docker("kill", "-s", "TERM", "waited")

    assert json.loads(answer.read()) == {"StatusCode": EXIT_ON_TERM, "Error": None}
    view.close()


def test_docker_wait_and_docker_py_wait_outlive_a_restart_of_the_container_actor(pouchd):
    pouchd.docker("run", "-d", "--name", "waited", "busybox", *WAITS_FOR_TERM)
    view = BrokerView(pouchd)
    actor = pouchd.pid_of("container")
    before = sockets_of(actor)
    cli = docker_in_background(pouchd, "wait", "waited")
    api = docker_api(pouchd)
    from_py: dict[str, Any] = {}
    py = threading.Thread(target=lambda: from_py.update(api.wait("waited", timeout=60)))
    py.start()
    # Each wait's connection and the link that goes with it.
    until(lambda: sockets_of(actor) >= before + 4, ANSWER_WITHIN, "both waits handed over")

    restart_container_actor(pouchd, view)
    pouchd.docker("kill", "-s", "TERM", "waited")

    out, err = cli.communicate(timeout=ANSWER_WITHIN)
    assert (cli.returncode, out.strip()) == (0, str(EXIT_ON_TERM)), err
    py.join(ANSWER_WITHIN)
    assert from_py["StatusCode"] == EXIT_ON_TERM
    api.close()
    view.close()


def exit_while_the_actor_is_down(daemon: PouchDaemon, view: BrokerView,
                                 gateway_late: bool = False) -> None:
    """kill -9 the container actor, end "waited" while no actor is there to see it, and
    wait for the actor's successor. `gateway_late`: the gateway's processes are stopped
    meanwhile, so they learn of the actor's death only after the exit."""
    shell = daemon.inspect("waited")["State"]["Pid"]
    pid = daemon.pid_of("container")
    gateway = daemon.pid_of("gateway")
    with stopped((children_of(gateway) or [gateway]) if gateway_late else []):
        fault = kill(pid)
        until(lambda: not alive(pid), ANSWER_WITHIN, "the container actor gone")
        os.kill(shell, signal.SIGTERM)
        until(lambda: not alive(shell), ANSWER_WITHIN, "the container's process gone")
    watch_replacement(view, daemon, "container", pid, fault)


@contextlib.contextmanager
def stopped(pids: list[int]) -> Iterator[None]:
    """`pids` stopped (SIGSTOP) for the block."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("gateway_late", [False, True], ids=["gateway-at-once", "gateway-late"])
def test_a_wait_for_the_next_exit_sees_an_exit_while_the_actor_was_down(pouchd, gateway_late):
    """Also when the gateway learns of the actor's death only after the exit (its
    keeper thread had to wait for the CPU: once the wait hung, as the restarted actor
    looked for an exit after the gateway's time of the cut, not after the wait began)."""
    answer = waiting(pouchd, "next-exit")
    view = BrokerView(pouchd)
    exit_while_the_actor_is_down(pouchd, view, gateway_late)

    assert json.loads(answer.read()) == {"StatusCode": EXIT_ON_TERM, "Error": None}
    view.close()


def test_a_wait_for_a_removal_done_while_the_actor_was_down_gets_the_exit_status(pouchd):
    """The container exits while no actor is there, and the new one's restore removes it
    (AutoRemove): the wait, taken up by the new actor before or after that removal,
    learns how the container ended (after: from its tomb), not a bare end of file."""
    pouchd.docker("run", "-d", "--rm", "--name", "waited", "busybox", *WAITS_FOR_TERM)
    # By name, as `docker wait` sends it; by ID, as `docker run --rm` does.
    answers = [wait_request(pouchd, ref, "removed")
               for ref in ("waited", pouchd.inspect("waited")["Id"])]
    view = BrokerView(pouchd)
    exit_while_the_actor_is_down(pouchd, view)

    for answer in answers:
        assert json.loads(answer.read()) == {"StatusCode": EXIT_ON_TERM, "Error": None}
    view.close()


def test_output_of_a_process_that_ends_while_the_actor_is_down_is_kept(pouchd):
    """The container writes and exits while no container actor reads its output, and its
    shim closes the FIFOs: the supervisor's pipe keeper holds them open, so what was
    written waits in them for the actor's successor, which logs it and sends it to the
    attach it takes up again (before the keeper, the pipes went with the shim's ends)."""
    pouchd.docker("run", "-d", "--name", "waited", "busybox", "sh", "-c",
                  f"trap 'echo bye; exit {EXIT_ON_TERM}' TERM; "
                  "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done")
    attach = docker_in_background(pouchd, "attach", "--no-stdin", "waited")
    assert attach.stdout is not None
    first = int(attach.stdout.readline())  # attached: it follows live
    view = BrokerView(pouchd)
    exit_while_the_actor_is_down(pouchd, view)

    rest, _ = attach.communicate(timeout=ANSWER_WITHIN)
    attached = [str(first), *rest.splitlines()]
    logged = pouchd.docker("logs", "waited").splitlines()
    assert logged[-1] == "bye" and attached[-1] == "bye"
    assert logged[:-1] == [str(i) for i in range(len(logged) - 1)], "lines lost or repeated"
    assert attached[:-1] == logged[first:-1]
    assert attach.returncode == EXIT_ON_TERM
    view.close()


def kept_fifos(daemon: PouchDaemon, cid: str) -> list[str]:
    """The FIFOs of `cid` that pouchd's pipe keeper holds."""
    folder = str(daemon.run_dir / "fifo" / cid) + "/"
    found = []
    for fd in Path(f"/proc/{daemon.pid_of('pouchd')}/fd").iterdir():
        with contextlib.suppress(OSError):
            if (target := os.readlink(fd)).startswith(folder):
                found.append(target.removeprefix(folder))
    return sorted(found)


def test_the_keeper_holds_a_containers_output_only_while_it_runs(pouchd):
    pouchd.docker("run", "-d", "--name", "kept", "busybox", *WAITS_FOR_TERM)
    cid = pouchd.inspect("kept")["Id"]
    held = ["stderr", "stdout"]
    wait_for(lambda: kept_fifos(pouchd, cid) == held, ANSWER_WITHIN, "the keeper holding")
    pouchd.docker("stop", "kept")  # its output read to the end: let go
    wait_for(lambda: kept_fifos(pouchd, cid) == [], ANSWER_WITHIN, "the keeper letting go")
    pouchd.docker("start", "kept")
    wait_for(lambda: kept_fifos(pouchd, cid) == held, ANSWER_WITHIN, "the keeper holding")
    pouchd.docker("rm", "-f", "kept")
    wait_for(lambda: kept_fifos(pouchd, cid) == [], ANSWER_WITHIN, "the keeper letting go")


def log_lines(proc: subprocess.Popen[str]) -> Iterator[int]:
    assert proc.stdout is not None
    for line in proc.stdout:
        yield int(line.split()[1])


def test_docker_logs_follow_outlives_a_restart_of_the_container_actor(pouchd):
    pouchd.docker("run", "-d", "--name", "ticking", "busybox", *TICKING)
    view = BrokerView(pouchd)
    logged = len(pouchd.docker("logs", "ticking").splitlines())
    follow = docker_in_background(pouchd, "logs", "-f", "ticking")
    lines = log_lines(follow)
    # Past what was logged when it began: it follows live (a replay cut midway ends
    # with an error instead, as it cannot tell where it was).
    seen = [next(lines)]
    while seen[-1] < logged + LIVE_AFTER:
        seen.append(next(lines))
    at_fault = seen[-1]

    restart_container_actor(pouchd, view)
    deadline = time.monotonic() + ANSWER_WITHIN
    while seen[-1] < at_fault + 30 and time.monotonic() < deadline:
        seen.append(next(lines))
    follow.kill()
    follow.wait()

    assert seen[-1] >= at_fault + 30, "the log stopped at the restart"
    assert seen == list(range(seen[0], seen[0] + len(seen))), "lines lost or repeated"
    view.close()


def read_frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """The multiplexed frames of an attach until the end of the stream."""
    data = b""
    while True:
        while len(data) >= 8 and len(data) >= 8 + int.from_bytes(data[4:8], "big"):
            size = int.from_bytes(data[4:8], "big")
            yield data[0], data[8:8 + size]
            data = data[8 + size:]
        part = sock.recv(65536)
        if not part:
            return
        data += part


def attach_request(daemon: PouchDaemon, container: str, stdin: bool = False) -> socket.socket:
    """An attach to `container`'s stdout (and stdin) whose head is out (the actor holds it)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(ANSWER_WITHIN)
    sock.connect(str(daemon.socket))
    sock.sendall(f"POST /containers/{container}/attach?stream=1&stdout=1&stdin={int(stdin)} "
                 "HTTP/1.1\r\n"
                 "Host: pouch\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def test_an_attach_without_stdin_outlives_a_restart_of_the_container_actor(pouchd):
    """As `docker run` (without -i) attaches, then starts: the restarted actor takes the
    attach up, before or after the start, and sends what was logged since the cut."""
    pouchd.docker("create", "--name", "attached", "busybox", "echo", "hi")
    before_start = attach_request(pouchd, "attached")
    pouchd.docker("run", "-d", "--name", "ticking", "busybox", *TICKING)
    running = attach_request(pouchd, "ticking")
    ticks = read_frames(running)
    assert next(ticks)[0] == stdstream.STREAMS["stdout"]
    view = BrokerView(pouchd)

    restart_container_actor(pouchd, view)
    pouchd.docker("start", "attached")

    assert list(read_frames(before_start)) == [(stdstream.STREAMS["stdout"], b"hi\n")]
    seen = [int(text.split()[1]) for _, text in itertools.islice(ticks, 40)]
    assert seen == list(range(seen[0], seen[0] + len(seen))), "lines lost or repeated"
    for sock in (before_start, running):
        sock.close()
    view.close()


def cut_before_it_began(daemon: PouchDaemon, request: Callable[[], Any], cid: str) -> Any:
    """`request`'s stream (its head out) with the container actor killed as it takes it,
    before it begins; then the container runs and exits under the restarted actor
    before the gateway hands the stream over again (its keeper thread had to wait for
    the CPU). What `request` returned."""
    view = BrokerView(daemon)
    actors = internal(daemon)
    actors.call("container", "debug_fault", {"point": "container.stream.taken",
                                             "action": "kill"})
    actors.close()
    pid = daemon.pid_of("container")
    answer = request()
    gateway = daemon.pid_of("gateway")
    with stopped(children_of(gateway) or [gateway]):
        watch_replacement(view, daemon, "container", pid, time.monotonic())
        client = broker(daemon, timeout=ANSWER_WITHIN)
        client.call("container", "start", {"id": cid})
        until(lambda: client.call("container", "inspect", {"id": cid})["State"]["Status"]
              == "exited" or None, ANSWER_WITHIN, "the container's exit")
        client.close()
    view.close()
    return answer


def test_an_attach_cut_before_it_began_gets_the_output_of_a_run_since(pouchd):
    """`docker run busybox echo hi` whose container actor died after the gateway wrote
    the attach's head, but before the actor began the stream: the client goes on to
    start the container. The attach handed over again must still bring "hi" and end
    (once, the restarted actor took it for a new one: it waited for a next start, and
    the soak's `run --rm` printed nothing)."""
    pouchd.docker("create", "--name", "attached", "busybox", "echo", "hi")
    cid = pouchd.inspect("attached")["Id"]

    sock = cut_before_it_began(pouchd, lambda: attach_request(pouchd, "attached"), cid)

    assert list(read_frames(sock)) == [(stdstream.STREAMS["stdout"], b"hi\n")]
    sock.close()


def test_a_wait_for_the_next_exit_cut_before_it_began_sees_a_run_since(pouchd):
    """The same for the wait `docker run` makes: it gets the exit status, not a hang."""
    pouchd.docker("create", "--name", "waited", "busybox", "sh", "-c", "exit 3")
    cid = pouchd.inspect("waited")["Id"]

    answer = cut_before_it_began(pouchd, lambda: wait_request(pouchd, "waited", "next-exit"),
                                 cid)

    assert json.loads(answer.read()) == {"StatusCode": 3, "Error": None}


def test_an_attach_with_stdin_cut_by_a_restart_ends_saying_why(pouchd):
    """What was sent to the container's stdin died with the actor: no taking it up."""
    pouchd.docker("run", "-d", "-i", "--name", "attached", "busybox", *TICKING)
    view = BrokerView(pouchd)
    sock = attach_request(pouchd, "attached", stdin=True)
    frames = read_frames(sock)
    assert next(frames)[0] == stdstream.STREAMS["stdout"]

    restart_container_actor(pouchd, view)
    rest = list(frames)

    assert rest, "the attach ended without a word"
    stream, text = rest[-1]
    assert stream == stdstream.SYSTEM_ERROR
    assert b"container actor restarted" in text and b"attach again" in text
    sock.close()
    view.close()


def test_an_events_stream_outlives_a_restart_of_the_system_actor(pouchd):
    view = BrokerView(pouchd)
    client = broker(pouchd, timeout=ANSWER_WITHIN)
    events = client.stream("system", "events", {"since": time.time(),
                                                "filters": {"event": ["create"]}})
    pouchd.docker("create", "--name", "before", "busybox")
    assert next(events)["Actor"]["Attributes"]["name"] == "before"

    pid = pouchd.pid_of("system")
    watch_replacement(view, pouchd, "system", pid, kill(pid))
    pouchd.docker("create", "--name", "after", "busybox")
    pouchd.docker("create", "--name", "later", "busybox")

    names = [next(events)["Actor"]["Attributes"]["name"] for _ in range(2)]
    assert names == ["after", "later"]
    events.close()
    client.close()
    view.close()


def test_docker_events_outlives_a_restart_of_the_system_actor(pouchd):
    """GET /events, as the docker CLI reads it: the same connection goes on."""
    view = BrokerView(pouchd)
    watcher = docker_in_background(pouchd, "events", "--filter", "event=create",
                                   "--format", "{{.Actor.Attributes.name}}")
    try:
        assert watcher.stdout is not None
        # Its head is out once a create made before the kill reaches it.
        pouchd.docker("create", "--name", "before", "busybox")
        assert watcher.stdout.readline().strip() == "before"

        pid = pouchd.pid_of("system")
        watch_replacement(view, pouchd, "system", pid, kill(pid))
        pouchd.docker("create", "--name", "after", "busybox")
        pouchd.docker("create", "--name", "later", "busybox")
        names = [watcher.stdout.readline().strip() for _ in range(2)]
        assert names == ["after", "later"]
        assert watcher.poll() is None  # still following
    finally:
        watcher.kill()
        watcher.wait()
        view.close()


def removed_while_the_gateway_is_stopped(daemon: PouchDaemon, cid: str,
                                         end: Callable[[Client], None],
                                         while_removing: bool = False) -> None:
    """kill -9 the container actor while the gateway's processes are stopped, so that its
    keeper thread learns of the death late; `end` makes the container exit (through the
    broker: the gateway is stopped), and it is removed (AutoRemove) before the gateway
    goes on and hands its streams over again. `while_removing`: the removal is held
    (a fault point's delay) and the gateway goes on during it."""
    view = BrokerView(daemon)
    client = broker(daemon, timeout=ANSWER_WITHIN)
    gateway = daemon.pid_of("gateway")

    def state() -> str:
        try:
            return str(client.call("container", "inspect", {"id": cid})["State"]["Status"])
        except PouchError as exc:
            return "gone" if exc.code == "not_found" else exc.code
    with stopped(children_of(gateway) or [gateway]):
        restart_container_actor(daemon, view)
        if while_removing:
            actors = internal(daemon)
            actors.call("container", "debug_fault",
                        {"point": "container.remove.task_deleted", "action": "delay"})
            actors.close()
        end(client)
        # Its exit recorded, the auto-removal follows at once on the same thread.
        until(lambda: state() == ("exited" if while_removing else "gone"), ANSWER_WITHIN,
              "the container's removal")
    if while_removing:
        until(lambda: state() == "gone", ANSWER_WITHIN, "the container removed")
    client.close()
    view.close()


@pytest.mark.parametrize("while_removing", [False, True], ids=["after", "during"])
def test_an_attach_taken_up_after_its_container_was_removed_gets_the_output(
        pouchd, while_removing):
    """`docker run --rm busybox echo hi` whose container actor dies after the attach
    began: the start goes on with the restarted actor, and the container may run, exit
    and be removed before the gateway hands the attach over again (its keeper thread had
    to wait for the CPU), or while it is being removed. The attach must still bring "hi"
    (once, it came back empty)."""
    pouchd.docker("create", "--rm", "--name", "attached", "busybox", "echo", "hi")
    sock = attach_request(pouchd, "attached")
    cid = pouchd.inspect("attached")["Id"]

    removed_while_the_gateway_is_stopped(
        pouchd, cid, lambda client: client.call("container", "start", {"id": cid}),
        while_removing)

    assert list(read_frames(sock)) == [(stdstream.STREAMS["stdout"], b"hi\n")]
    sock.close()


def test_a_logs_follow_taken_up_after_its_container_was_removed_gets_the_last_lines(pouchd):
    """The same for `docker logs -f` of a `--rm` container: the lines logged after the
    cut, then the end of the stream."""
    pouchd.docker("run", "-d", "--rm", "--name", "followed", "busybox", "sh", "-c",
                  "trap 'echo tick' USR1; trap 'echo bye; exit 0' TERM; "
                  "while true; do sleep 0.1; done")
    cid = pouchd.inspect("followed")["Id"]
    conn = UnixConnection(pouchd.socket, ANSWER_WITHIN)
    conn.request("GET", "/containers/followed/logs?follow=1&stdout=1")
    answer = conn.getresponse()
    assert answer.status == 200
    # A line logged after the request: the stream follows live (it could be taken up).
    pouchd.docker("kill", "-s", "USR1", "followed")
    assert read_frame(answer) == (stdstream.STREAMS["stdout"], b"tick\n")
    shell = pouchd.inspect("followed")["State"]["Pid"]

    removed_while_the_gateway_is_stopped(
        pouchd, cid, lambda _client: os.kill(shell, signal.SIGTERM))

    assert read_frame(answer) == (stdstream.STREAMS["stdout"], b"bye\n")
    assert answer.read() == b""  # and the stream ended whole (http.client checks the chunks)
    conn.close()


def read_frame(answer: http.client.HTTPResponse) -> tuple[int, bytes]:
    """One multiplexed frame of a chunked response."""
    head = answer.read(8)
    return head[0], answer.read(int.from_bytes(head[4:8], "big"))


class SlowRestoreDaemon(PouchDaemon):
    """Every container actor it starts takes DELAY seconds more over its restore."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "POUCH_FAULTS": "container.restore=delay"}


@pytest.fixture
def slow_restore(busybox_tarball: Path) -> Iterator[PouchDaemon]:
    with running(busybox_tarball, SlowRestoreDaemon()) as daemon:
        yield daemon


def test_a_wait_being_handed_over_again_as_its_gateway_process_exits_goes_on(slow_restore):
    """The container actor and the gateway's master killed at once: the old master's
    workers are to exit once a new master's serve, while their keepers still wait for
    the restarted actor (its restore is slow) to take the wait up again. They wait for
    that hand-over (LEAVE_WITHIN at most), then pass the stream on (once, the wait died
    with the worker: "unexpected EOF")."""
    daemon = slow_restore
    answer = waiting(daemon, "not-running")
    master, actor = daemon.pid_of("gateway"), daemon.pid_of("container")
    orphans = children_of(master)
    kill(actor)
    kill(master)
    until(lambda: not any(alive(pid) for pid in orphans) or None, ANSWER_WITHIN,
          "the killed master's workers gone")

    daemon.docker("kill", "-s", "TERM", "waited")

    assert json.loads(answer.read()) == {"StatusCode": EXIT_ON_TERM, "Error": None}
