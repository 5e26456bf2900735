"""Detaching from a container's terminal: the detach keys (ctrl-p ctrl-q, or the client's
own) end the attach, the client gets its prompt back and the container runs on. The
docker CLI is driven through a pseudo-terminal, as a person at a terminal would."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import subprocess
import termios
import time
from collections.abc import Callable, Iterator

import docker
import pytest
from docker.utils.socket import frames_iter

from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.tools import require
from pouch.tests.support.wait import wait_for

CTRL_P_CTRL_Q = b"\x10\x11"


class Terminal:
    """The docker CLI run on a pseudo-terminal of its own: what it prints, keys typed."""

    def __init__(self, daemon: PouchDaemon, *args: str,
                 env: dict[str, str] | None = None) -> None:
        env = env or daemon.cli_env()
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [require("docker", "docker.io"), *args], stdin=slave, stdout=slave,
            stderr=slave, env=env, start_new_session=True, preexec_fn=self._take_terminal)
        os.close(slave)
        self.seen = b""

    @staticmethod
    def _take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes the CLI's terminal

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def expect(self, text: bytes, timeout: float = 20) -> None:
        """Read what the CLI prints until `text` shows."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not shown within {timeout} s: {self.seen!r}")
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the CLI is gone and its side of the terminal with it
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the CLI ended before {text!r}: {self.seen!r}")
                self.seen += chunk

    def exit_code(self, timeout: float = 20) -> int:
        """Wait for the CLI to end (reading what it still prints meanwhile)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the CLI did not end within {timeout} s: {self.seen!r}")
            if select.select([self.master], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):  # the CLI's side is gone already
                    self.seen += os.read(self.master, 4096)
        # What it printed last may still wait in the terminal after it exited.
        while select.select([self.master], [], [], 0.05)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: all read, and the CLI's side is closed
                break
            if not chunk:
                break
            self.seen += chunk
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminals() -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_one(daemon: PouchDaemon, *args: str) -> Terminal:
        opened.append(Terminal(daemon, *args))
        return opened[-1]

    yield open_one
    for terminal in opened:
        terminal.close()


def running(daemon: PouchDaemon, name: str) -> bool:
    return daemon.inspect(name)["State"]["Status"] == "running"


def shell_ready(terminal: Terminal, marker: str) -> None:
    """Have the shell print `marker` (computed, so the echo of the command is no match)."""
    terminal.type(f"echo {marker}-$((6*7))\r".encode())
    terminal.expect(f"{marker}-42".encode())


# -- the docker CLI at a terminal ------------------------------------------------------


def test_run_it_detaches_on_ctrl_p_ctrl_q_and_the_container_runs_on(daemon, names,
                                                                     terminals):
    name = names("detach-run")
    run = terminals(daemon, "run", "-it", "--name", name, "busybox", "sh")
    shell_ready(run, "first")
    run.type(CTRL_P_CTRL_Q)
    assert run.exit_code() == 0  # `run` says nothing on a detach and succeeds
    assert running(daemon, name)

    # Attached again, the same shell answers; its exit ends the attach with its status.
    again = terminals(daemon, "attach", name)
    shell_ready(again, "second")
    again.type(b"exit 3\r")
    assert again.exit_code() == 3
    wait_for(lambda: daemon.inspect(name)["State"]["Status"] == "exited", 10, "the exit")
    assert daemon.inspect(name)["State"]["ExitCode"] == 3


def test_attach_detaches_on_the_keys_it_is_given(daemon, names, terminals):
    name = names("detach-keys")
    daemon.docker("run", "-dit", "--name", name, "busybox", "sh")
    attach = terminals(daemon, "attach", "--detach-keys", "ctrl-x,x", name)
    shell_ready(attach, "custom")
    attach.type(CTRL_P_CTRL_Q)  # not the keys asked for: they go to the shell
    shell_ready(attach, "still")
    attach.type(b"\x18x")
    assert attach.exit_code() == 1  # the CLI's way to tell a detach from `attach`
    assert b"read escape sequence" in attach.seen
    assert running(daemon, name)


def test_detaching_from_a_run_whose_input_closes_on_the_end_keeps_it(daemon, names,
                                                                      terminals):
    # docker run -it sets StdinOnce: the client leaving must not close the shell's input.
    name = names("detach-once")
    run = terminals(daemon, "run", "-it", "--name", name, "busybox", "sh")
    shell_ready(run, "once")
    run.type(CTRL_P_CTRL_Q)
    assert run.exit_code() == 0
    assert json.loads(daemon.docker("inspect", "-f", "{{json .Config.StdinOnce}}", name))
    # Checked again later: nothing took the shell's input away meanwhile.
    again = terminals(daemon, "attach", name)
    shell_ready(again, "alive")
    assert running(daemon, name)


def test_invalid_detach_keys_are_refused(daemon, names, terminals, api):
    name = names("detach-bad")
    daemon.docker("run", "-dit", "--name", name, "busybox", "sh")
    attach = terminals(daemon, "attach", "--detach-keys", "ctrl-", name)
    assert attach.exit_code() != 0
    assert b"400" in attach.seen
    head = raw_request(daemon, f"POST /containers/{name}/attach?stream=1&stdin=1"
                               "&detachKeys=ctrl-P HTTP/1.1")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Invalid detach keys (ctrl-P) provided" in head
    assert running(daemon, name)


# -- what the daemon does for any client ---------------------------------------------


def raw_request(daemon: PouchDaemon, request_line: str) -> bytes:
    """One HTTP request on the daemon's socket; the answer as far as it goes."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(20)
        conn.connect(str(daemon.socket))
        conn.sendall(f"{request_line}\r\nHost: pouch\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def attached(api: docker.APIClient, name: str, **params: object) -> socket.socket:
    sock = api.attach_socket(name, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                            "stream": 1, **params})
    raw: socket.socket = getattr(sock, "_sock", sock)
    raw.settimeout(20)
    return raw


def read_until_closed(conn: socket.socket) -> bytes:
    """What comes until the daemon ends the stream (a timeout fails the test)."""
    out = b""
    while chunk := conn.recv(65536):
        out += chunk
    return out


def test_the_daemon_ends_a_terminal_attach_on_the_keys(daemon, names, api, calls):
    name = names("detach-raw")
    since = time.time()
    cid = daemon.docker("run", "-dit", "--name", name, "busybox", "cat")
    conn = attached(api, name, detachKeys="ctrl-a,b")
    try:
        conn.sendall(b"hello\r")
        seen = b""
        while b"hello" not in seen:
            seen += conn.recv(4096)
        # A sequence broken off goes on to the container (the terminal echoes it as ^A).
        conn.sendall(b"\x01")
        conn.sendall(b"c")
        while b"^Ac" not in seen:
            seen += conn.recv(4096)
        conn.sendall(b"\x01b")
        rest = read_until_closed(conn)
    finally:
        conn.close()
    assert b"^Ab" not in seen + rest
    assert running(daemon, name)
    with calls.stream("system", "events", {"since": since, "until": time.time() + 1,
                                           "filters": {"container": [cid]}},
                      timeout=20) as stream:
        assert "detach" in [e["Action"] for e in stream]


def test_the_default_keys_end_a_raw_clients_attach_too(daemon, names, api):
    name = names("detach-default")
    daemon.docker("run", "-dit", "--name", name, "busybox", "sh")
    conn = attached(api, name)
    try:
        conn.sendall(b"echo $((6*7))-ok\r")
        seen = b""
        while b"42-ok" not in seen:
            seen += conn.recv(4096)
        conn.sendall(CTRL_P_CTRL_Q)
        read_until_closed(conn)
    finally:
        conn.close()
    assert running(daemon, name)


def test_without_a_terminal_the_keys_are_the_containers(daemon, names, api):
    # As dockerd: detach keys are watched for on a terminal only.
    name = names("detach-notty")
    daemon.docker("run", "-di", "--name", name, "busybox", "cat")
    conn = attached(api, name)
    try:
        conn.sendall(CTRL_P_CTRL_Q + b"still here\n")
        frames = frames_iter(conn, tty=False)
        out = b""
        while b"still here\n" not in out:
            _stream, data = next(frames)
            out += data
    finally:
        conn.close()
    assert out == CTRL_P_CTRL_Q + b"still here\n"
    assert running(daemon, name)
