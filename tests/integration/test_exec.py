"""docker exec end to end: the docker CLI (on a terminal of our own where it needs one)
and docker-py against a real pouchd, as a user runs more commands in a container."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Callable, Iterator

import docker
import pytest
from docker.errors import APIError, NotFound

from pouch.broker.client import Client
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.tools import require
from pouch.tests.support.wait import wait_for

DEADLINE = 30.0


@pytest.fixture
def new_container(daemon: PouchDaemon) -> Iterator[Callable[..., str]]:
    """Start busybox containers (`sleep 300` unless told); all removed after the test."""
    made: list[str] = []

    def run(*command: str) -> str:
        name = f"ex-{uuid.uuid4().hex[:10]}"
        made.append(name)
        daemon.docker("run", "-d", "--name", name, "busybox", *(command or ("sleep", "300")))
        return name

    yield run
    for name in made:
        daemon.docker_result("rm", "-f", name)


@pytest.fixture
def running(new_container: Callable[..., str]) -> str:
    return new_container()


def exec_ids(daemon: PouchDaemon, name: str) -> list[str]:
    return daemon.inspect(name)["ExecIDs"] or []


# -- the CLI ---------------------------------------------------------------------------


def test_an_exec_gives_its_output_apart_and_its_exit_code(daemon: PouchDaemon, running: str):
    result = daemon.docker_result("exec", running, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_user_working_folder_and_environment_of_its_own(daemon: PouchDaemon, running: str):
    out = daemon.docker("exec", "-u", "1000", "-w", "/tmp", "-e", "A=b", running,
                        "sh", "-c", "id -u; pwd; echo $A")
    assert out.split("\n") == ["1000", "/tmp", "b"]
    # Without them: the container's user, folder and environment.
    env = daemon.docker("exec", running, "sh", "-c", "id -u; pwd; env").split("\n")
    assert env[:2] == ["0", "/"]
    assert f"HOSTNAME={daemon.inspect(running)['Id'][:12]}" in env
    assert not any(line.startswith("TERM=") for line in env)


def test_a_command_that_is_not_there_fails_as_dockerds_does(daemon: PouchDaemon,
                                                            running: str):
    result = daemon.docker_result("exec", running, "no-such-command")
    assert result.returncode == 126
    assert 'exec: "no-such-command": executable file not found' in result.stdout


def test_a_user_that_is_not_there_fails_the_start_on_its_stream(daemon: PouchDaemon,
                                                                running: str):
    # The user is looked up while the gateway writes the head (the exec is made ready
    # meanwhile): the failure still reaches the client on the stream, as dockerd's does.
    result = daemon.docker_result("exec", "-u", "no-such-user", running, "true")
    assert result.returncode == 126
    assert "unable to find user no-such-user" in result.stdout
    assert daemon.docker("exec", running, "echo", "next") == "next"


def test_an_exec_that_leaves_a_process_behind_ends_soon_after_its_exit(daemon: PouchDaemon,
                                                                       running: str):
    # The process left behind holds the output's pipes: the stream ends a little after
    # the exit all the same (dockerd waits as long), with what was written and the code.
    began = time.monotonic()
    result = daemon.docker_result("exec", running, "sh", "-c", "sleep 30 & echo hi; exit 4")
    assert (result.returncode, result.stdout) == (4, "hi\n")
    assert time.monotonic() - began < 15


def test_input_reaches_the_exec_and_its_end_ends_the_input(daemon: PouchDaemon,
                                                           running: str):
    out = daemon.docker("exec", "-i", running, "sh", "-c", "cat; echo done", input="hello\n")
    assert out == "hello\ndone"


def test_a_detached_exec_runs_on_and_is_listed_while_it_runs(daemon: PouchDaemon,
                                                             running: str):
    assert daemon.docker("exec", "-d", running, "sh", "-c", "touch /tmp/began; sleep 300") == ""
    wait_for(lambda: daemon.docker_result("exec", running, "test", "-e", "/tmp/began")
             .returncode == 0, DEADLINE, "the detached exec runs")
    assert len(exec_ids(daemon, running)) == 1


def test_a_privileged_exec_holds_every_capability(daemon: PouchDaemon, running: str):
    def caps(*flags: str) -> dict[str, int]:
        out = daemon.docker("exec", *flags, running, "grep", "^Cap", "/proc/self/status")
        return {k: int(v, 16) for k, v in (line.split(":\t") for line in out.split("\n"))}

    plain, privileged = caps(), caps("--privileged")
    with open("/proc/self/status") as status:  # what pouchd can give: our bounding set
        ours = next(int(line.split()[1], 16) for line in status if line.startswith("CapBnd:"))
    assert privileged["CapEff"] == privileged["CapBnd"] == ours
    assert plain["CapEff"] == plain["CapBnd"] and plain["CapBnd"] != ours


def test_no_exec_in_a_container_that_does_not_run(daemon: PouchDaemon,
                                                  new_container: Callable[..., str]):
    name = new_container("true")
    wait_for(lambda: not daemon.inspect(name)["State"]["Running"], DEADLINE, "it exits")
    result = daemon.docker_result("exec", name, "true")
    assert result.returncode == 1
    assert "is not running" in result.stderr


def test_no_exec_in_a_paused_container(daemon: PouchDaemon, running: str):
    daemon.docker("pause", running)
    try:
        result = daemon.docker_result("exec", running, "true")
    finally:
        daemon.docker("unpause", running)
    assert result.returncode == 1
    assert "is paused, unpause the container before exec" in result.stderr


def test_no_exec_starts_while_the_container_is_being_stopped(daemon: PouchDaemon,
                                                             running: str):
    # `sleep` is the container's init: it ignores SIGTERM, so the stop waits 3 s.
    stop = subprocess.Popen([require("docker", "docker.io"), "stop", "-t", "3", running],
                            env=daemon.cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        refused = wait_for(lambda: "is stopping" in daemon.docker_result(
            "exec", running, "true").stderr, DEADLINE, "an exec is refused while it stops")
        assert refused
    finally:
        stop.wait(DEADLINE)


def test_an_exec_ends_with_its_container(daemon: PouchDaemon, running: str):
    execd = subprocess.Popen([require("docker", "docker.io"), "exec", running, "sleep", "300"],
                             env=daemon.cli_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: exec_ids(daemon, running), DEADLINE, "the exec runs")
        daemon.docker("kill", running)
        assert execd.wait(DEADLINE) == 137, execd.stderr.read() if execd.stderr else ""
    finally:
        with contextlib.suppress(ProcessLookupError):
            execd.kill()
        execd.wait()


# -- a terminal ------------------------------------------------------------------------


class Terminal:
    """The docker CLI on a pseudo-terminal of `rows` x `cols`, as a user's shell runs it."""

    def __init__(self, daemon: PouchDaemon, *args: str, rows: int = 24, cols: int = 80) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen([require("docker", "docker.io"), *args], stdin=slave,
                                     stdout=slave, stderr=slave, env=daemon.cli_env(),
                                     start_new_session=True)
        os.close(slave)
        self.seen = b""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, pattern: bytes, what: str) -> re.Match[bytes]:
        """Read until `pattern` (a regex) shows in what came since the last match."""
        deadline = time.monotonic() + DEADLINE
        while (found := re.search(pattern, self.seen)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{what}: not seen; the terminal shows {self.seen!r}")
        self.seen = self.seen[found.end():]
        return found

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: the CLI has exited and closed its side
            return False
        self.seen += chunk
        return bool(chunk)

    def close(self) -> int:
        try:
            return self.proc.wait(DEADLINE)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            os.close(self.master)


def test_an_interactive_exec_has_a_terminal_of_the_clients_size(daemon: PouchDaemon,
                                                                running: str):
    term = Terminal(daemon, "exec", "-it", running, "sh", rows=30, cols=100)
    try:
        term.expect(rb"# ", "the shell's prompt")
        term.send(b"tty; echo TERM=$TERM\n")
        term.expect(rb"/dev/pts/\d+", "a terminal of its own")
        term.expect(rb"TERM=xterm", "TERM set")
        # The CLI sends its size once the stream is up: the shell sees it soon after.
        deadline = time.monotonic() + DEADLINE
        while True:
            term.send(b"stty size\n")
            size = term.expect(rb"\r\n(\d+ \d+)\r\n", "stty's answer").group(1)
            if size == b"30 100" or time.monotonic() > deadline:
                break
        assert size == b"30 100"
        term.send(b"exit 7\n")
    finally:
        code = term.close()
    assert code == 7


def test_the_detach_keys_leave_the_exec_running(daemon: PouchDaemon, running: str,
                                                client: docker.DockerClient):
    term = Terminal(daemon, "exec", "-it", running, "sh")
    try:
        term.expect(rb"# ", "the shell's prompt")
        term.send(b"\x10\x11")  # ctrl-p ctrl-q
        # The CLI reads the keys itself, closes its input and says so (exit status 1,
        # as against dockerd).
        term.expect(rb"read escape sequence", "the CLI's word on the detach")
    finally:
        term.close()
    [shell] = exec_ids(daemon, running)
    assert client.api.exec_inspect(shell)["Running"] is True


# -- docker-py and the API -------------------------------------------------------------


def test_exec_run_splits_the_streams_and_gives_the_exit_code(client: docker.DockerClient,
                                                             running: str):
    container = client.containers.get(running)
    code, (out, err) = container.exec_run(["sh", "-c", "echo out; echo err >&2; exit 4"],
                                          demux=True)
    assert (code, out, err) == (4, b"out\n", b"err\n")
    assert container.exec_run("echo hi", tty=True) == (0, b"hi\r\n")


def test_inspect_tells_the_exec_from_create_to_exit(client: docker.DockerClient, running: str):
    api = client.api
    exec_id = api.exec_create(running, ["sh", "-c", "exit 5"], user="nobody",
                              privileged=True)["Id"]
    before = api.exec_inspect(exec_id)
    assert (before["Running"], before["ExitCode"], before["Pid"]) == (False, None, 0)
    assert before["ProcessConfig"] == {"tty": False, "entrypoint": "sh",
                                       "arguments": ["-c", "exit 5"], "privileged": True,
                                       "user": "nobody"}
    assert before["ContainerID"] == client.containers.get(running).id
    assert client.containers.get(running).attrs["ExecIDs"] == [exec_id]
    api.exec_start(exec_id)
    after = api.exec_inspect(exec_id)
    assert (after["Running"], after["ExitCode"]) == (False, 5)
    assert client.containers.get(running).attrs["ExecIDs"] is None
    with pytest.raises(APIError) as again:
        api.exec_start(exec_id)
    assert again.value.status_code == 409 and "has already run" in str(again.value)


def test_the_detach_keys_typed_on_the_stream_end_it(client: docker.DockerClient,
                                                    running: str):
    api = client.api
    exec_id = api.exec_create(running, "sh", stdin=True, tty=True, detach_keys="ctrl-x,x")["Id"]
    assert api.exec_inspect(exec_id)["DetachKeys"] == "GHg="  # the bytes 0x18 'x', base64
    sock = api.exec_start(exec_id, tty=True, socket=True)
    raw = sock._sock
    try:
        raw.settimeout(DEADLINE)
        raw.sendall(b"echo hi\n")
        seen = b""
        while seen.count(b"hi") < 2:  # the terminal's echo of the command, then its output
            seen += raw.recv(4096)
        raw.sendall(b"\x18x")
        while raw.recv(4096):  # the stream ends
            pass
    finally:
        sock.close()
    assert api.exec_inspect(exec_id)["Running"] is True


def test_a_removed_containers_execs_are_gone(client: docker.DockerClient,
                                             new_container: Callable[..., str]):
    name = new_container()
    exec_id = client.api.exec_create(name, "true")["Id"]
    client.api.remove_container(name, force=True)
    with pytest.raises(NotFound, match="No such exec instance"):
        client.api.exec_inspect(exec_id)
    with pytest.raises(NotFound):
        client.api.exec_start(exec_id)


def test_an_unknown_container_or_exec_is_404(client: docker.DockerClient):
    with pytest.raises(NotFound, match="No such container"):
        client.api.exec_create("no-such-container", "true")
    with pytest.raises(NotFound, match="No such exec instance"):
        client.api.exec_inspect("0" * 64)
    with pytest.raises(NotFound):
        client.api.exec_resize("0" * 64, height=10, width=10)


def test_an_exec_without_a_command_is_refused(client: docker.DockerClient, running: str):
    with pytest.raises(APIError) as refused:
        client.api.exec_create(running, [])
    assert refused.value.status_code == 400 and "No exec command" in str(refused.value)


def test_execs_are_told_in_events_as_dockerd_tells_them(daemon: PouchDaemon,
                                                        client: docker.DockerClient,
                                                        running: str):
    # The gateway serves no /events yet: the events service, as a ZeroMQ client reads it.
    since = time.time()
    exec_id = client.api.exec_create(running, ["sh", "-c", "exit 2"])["Id"]
    client.api.exec_start(exec_id)

    def told(filters: dict[str, list[str]]) -> list[dict]:
        calls = Client(f"ipc://{daemon.run_dir}/broker.sock", timeout=20)
        try:
            with calls.stream("system", "events", {
                    "since": since, "until": time.time(),
                    "filters": {"container": [running], **filters}}, timeout=20) as stream:
                history = [e for e in stream if e["Action"].startswith("exec_")]
        finally:
            calls.close()
        return history if len(history) >= (1 if filters else 3) else []

    seen = wait_for(lambda: told({}), DEADLINE, "the exec's events")
    assert [e["Action"] for e in seen] == ["exec_create: sh -c exit 2",
                                           "exec_start: sh -c exit 2", "exec_die"]
    assert all(e["Actor"]["Attributes"]["execID"] == exec_id for e in seen)
    assert seen[-1]["Actor"]["Attributes"]["exitCode"] == "2"
    assert seen[0]["Actor"]["Attributes"]["name"] == running
    # The filter `event=exec_start` matches the action before its colon.
    filtered = wait_for(lambda: told({"event": ["exec_start"]}), DEADLINE, "the filter")
    assert [e["Action"] for e in filtered] == ["exec_start: sh -c exit 2"]


def test_an_exec_create_sent_again_with_its_token_makes_one_exec(daemon: PouchDaemon,
                                                                client: docker.DockerClient,
                                                                running: str):
    """A caller that lost the answer sends the create again with the same token (the
    broker's client does so after an actor's restart): it gets the same exec, and the
    container has one."""
    calls = Client(f"ipc://{daemon.run_dir}/broker.sock", timeout=20)
    try:
        args = {"id": running, "config": {"Cmd": ["true"]}, "token": uuid.uuid4().hex}
        first = calls.call("container", "exec_create", args)
        again = calls.call("container", "exec_create", args)
        other = calls.call("container", "exec_create", {**args, "token": uuid.uuid4().hex})
    finally:
        calls.close()
    assert again == first
    assert other["Id"] != first["Id"]
    assert sorted(client.api.inspect_container(running)["ExecIDs"]) == sorted(
        [first["Id"], other["Id"]])


def test_a_raw_client_gets_the_upgraded_stream(daemon: PouchDaemon, running: str):
    created = json.loads(post(daemon, f"/containers/{running}/exec",
                              {"Cmd": ["echo", "hi"], "AttachStdout": True}).partition(
                                  b"\r\n\r\n")[2])
    answer = post(daemon, f"/exec/{created['Id']}/start", {"Tty": False}, upgrade=True)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert body == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"  # stdout, 3 bytes
    # Without the upgrade: the same stream, chunked, and its end said by the last chunk.
    created = json.loads(post(daemon, f"/containers/{running}/exec",
                              {"Cmd": ["echo", "hi"], "AttachStdout": True}).partition(
                                  b"\r\n\r\n")[2])
    answer = post(daemon, f"/exec/{created['Id']}/start", {"Tty": False})
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Transfer-Encoding: chunked" in head
    assert body == b"b\r\n\x01\x00\x00\x00\x00\x00\x00\x03hi\n\r\n0\r\n\r\n"


def post(daemon: PouchDaemon, path: str, body: dict[str, object],
         upgrade: bool = False) -> bytes:
    data = json.dumps(body).encode()
    head = (f"POST /v1.41{path} HTTP/1.1\r\nHost: pouch\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n")
    head += "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else "Connection: close\r\n"
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(DEADLINE)
        s.connect(str(daemon.socket))
        s.sendall(head.encode() + b"\r\n" + data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


# -- the container actor restarts ------------------------------------------------------


def test_execs_end_with_the_container_actor_and_the_container_runs_on(pouchd: PouchDaemon):
    # As dockerd's, execs are kept in memory: a restarted actor knows none. The stream of
    # one that ran is ended saying why; the container, and new execs, go on.
    from pouch.tests.integration.test_live_restore import restart_container_actor

    name = f"ex-{uuid.uuid4().hex[:10]}"
    pouchd.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    execd = subprocess.Popen([require("docker", "docker.io"), "exec", name, "sh", "-c",
                              "echo began; sleep 300"], env=pouchd.cli_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert execd.stdout is not None and execd.stdout.readline() == "began\n"
        restart_container_actor(pouchd)
        _, err = execd.communicate(timeout=DEADLINE)
        assert execd.returncode != 0 and "restarted during exec_start" in err
    finally:
        with contextlib.suppress(ProcessLookupError):
            execd.kill()
        execd.wait()
    assert pouchd.inspect(name)["State"]["Running"] is True
    assert pouchd.inspect(name)["ExecIDs"] is None
    assert pouchd.docker("exec", name, "echo", "again") == "again"
