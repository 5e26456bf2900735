"""The IO hub under a client that stops reading, and when its attached clients end: the
test plays the shim (it writes the container's stdout FIFO) and the attached clients
(socketpairs)."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import random
import socket
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pouch.actors.container.iohub import Consumer, IOHub
from pouch.proto.stream import RAW_STREAM, StreamSession, StreamSpec
from pouch.tests.support.wait import wait_for

MiB = 1 << 20
# More than the hub, the pipe and the socket buffers hold together: the writer must stall.
FLOOD = 4 * MiB
# What a client that stops reading may cost in the hub (about a MiB is its design).
HELD_AT_MOST = 2 * MiB
STALL = 0.25
WITHIN = 10.0


def queued(fd: int) -> int:
    """Bytes waiting in a pipe or a socket's receive queue."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


@dataclass
class Container:
    """One container's output as the hub sees it: its stdout FIFO, written by the test."""

    cid: str
    writer: int  # our end of the stdout FIFO, as the shim holds it

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.writer, view):]


@pytest.fixture
def hub() -> Iterator[IOHub]:
    io = IOHub(close_stdin=lambda _cid: None)
    yield io
    io.stop()


@pytest.fixture
def start(hub: IOHub, tmp_path: Path) -> Iterator[Callable[[str], Container]]:
    """start(cid): a container with a terminal (its output unframed) whose task runs."""
    writers: list[int] = []

    def started(cid: str) -> Container:
        paths, _drained = hub.open(cid, tmp_path / cid, tmp_path / f"{cid}.log", tty=True,
                                   stdin=False, stdin_once=False)
        writers.append(os.open(paths["stdout"], os.O_WRONLY | os.O_CLOEXEC))
        hub.writers_ready(cid)
        return Container(cid, writers[-1])

    yield started
    for fd in writers:
        os.close(fd)


def attach(hub: IOHub, container: Container) -> socket.socket:
    """An attached client, past the response's head; the test holds its end."""
    ours, theirs = socket.socketpair()
    session = StreamSession(theirs, StreamSpec("upgrade", RAW_STREAM))
    assert session.start(multiplexed=False)
    hub.attach(container.cid, Consumer(session=session))
    head = read_until(ours, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n"), head
    return ours


def read_until(conn: socket.socket, end: bytes) -> bytes:
    conn.settimeout(WITHIN)
    data = b""
    while not data.endswith(end):
        part = conn.recv(1)
        assert part, f"the stream ended before {end!r}: {data!r}"
        data += part
    return data


def read_exactly(conn: socket.socket, size: int) -> bytes:
    conn.settimeout(WITHIN)
    data = bytearray()
    while len(data) < size:
        part = conn.recv(min(size - len(data), MiB))
        assert part, f"the stream ended after {len(data)} of {size} bytes"
        data += part
    return bytes(data)


class Flood:
    """A container that prints FLOOD bytes as fast as its pipe takes them."""

    CHUNK = 64 * 1024

    def __init__(self, container: Container) -> None:
        self.fifo = container.writer
        # Long lines: what the hub logs costs per line, and order shows in random text.
        text = random.Random(6).randbytes(FLOOD // 2).hex()
        self.data = b"".join(text[i:i + 4095].encode() + b"\n" for i in range(0, FLOOD, 4096))
        assert len(self.data) == FLOOD
        self.written = 0  # may trail the pipe by one chunk while a write waits
        self._seen, self._since = -1, 0.0
        self.thread = threading.Thread(target=self._print, daemon=True)
        self.thread.start()

    def _print(self) -> None:
        data = memoryview(self.data)
        with contextlib.suppress(BrokenPipeError):  # the hub stopped first: output is cut
            while self.written < len(data):
                self.written += os.write(self.fifo, data[self.written:self.written + self.CHUNK])

    def stalled(self) -> bool:
        """The pipe has stayed full, the writer waiting in write(), for STALL s: the hub
        no longer reads it. (A pause is the absence of reads: only time shows it.)"""
        full = self.thread.is_alive() and \
            queued(self.fifo) == fcntl.fcntl(self.fifo, fcntl.F_GETPIPE_SZ)
        now = time.monotonic()
        if not full or self.written != self._seen:
            self._seen, self._since = self.written, now
            return False
        return now - self._since >= STALL

    def held_by_hub(self, client: socket.socket) -> int:
        """At most what left the pipe and did not reach the client's socket."""
        return self.written + self.CHUNK - queued(self.fifo) - queued(client.fileno())

    def wait_stalled(self, client: socket.socket) -> None:
        def stalled_holding_little() -> bool:
            assert self.held_by_hub(client) <= HELD_AT_MOST, "the hub buffers without bound"
            return self.stalled()
        wait_for(stalled_holding_little, WITHIN, "the container's writes blocking on a full pipe")


def test_a_client_that_stops_reading_stalls_the_output_and_loses_nothing(hub, start):
    container = start("flood")
    client = attach(hub, container)
    flood = Flood(container)

    flood.wait_stalled(client)
    assert flood.written < FLOOD

    # Reading again resumes the container; every byte arrives, in order.
    assert read_exactly(client, FLOOD) == flood.data
    flood.thread.join(WITHIN)
    assert flood.written == FLOOD


def test_a_stalled_client_holds_up_no_other_container_and_lets_go_when_gone(hub, start, tmp_path):
    flooding = start("flood")
    stuck = attach(hub, flooding)
    flood = Flood(flooding)
    flood.wait_stalled(stuck)

    quiet = start("quiet")
    listener = attach(hub, quiet)
    quiet.write(b"still here\n")
    assert read_exactly(listener, len(b"still here\n")) == b"still here\n"
    assert wait_for(lambda: b"still here" in (tmp_path / "quiet.log").read_bytes(), WITHIN,
                    "the line in the quiet container's log")

    # The stalled client goes away: the flooding container is let go and prints on.
    stuck.close()
    flood.thread.join(WITHIN)
    assert flood.written == FLOOD


def test_an_attached_client_ends_on_release_after_the_output(hub: IOHub, tmp_path: Path):
    """Not when the output ends, but once the container's exit is recorded (release): a
    client that then removes the container must find it stopped, as with dockerd (which
    closes attach streams under the container's lock, as it records the exit)."""
    paths, drained = hub.open("c1", tmp_path / "c1", tmp_path / "c1.log", tty=True,
                              stdin=False, stdin_once=False)
    writer = os.open(paths["stdout"], os.O_WRONLY | os.O_CLOEXEC)
    hub.writers_ready("c1")
    with attach(hub, Container("c1", writer)) as ours:
        os.write(writer, b"last words\n")
        os.close(writer)  # the shim is done: the output has ended
        assert drained.wait(WITHIN)
        assert read_until(ours, b"last words\n") == b"last words\n"
        # The hub's thread delivered the output and set `drained` in one go: an end of
        # the stream would be in the socket now.
        ours.setblocking(False)
        with pytest.raises(BlockingIOError):
            ours.recv(1)
        hub.release("c1")
        ours.settimeout(WITHIN)
        assert ours.recv(1) == b""
    assert (tmp_path / "c1.log").read_bytes().count(b"last words") == 1
