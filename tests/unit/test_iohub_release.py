"""An attached client ends once the container's exit is recorded (release), not when
its output ends: one that then removes the container must find it stopped, as with
dockerd (which closes attach streams under the container's lock, as it records the exit).
The test plays the shim (it writes the stdout FIFO) and the client (a socketpair)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pouch.actors.container.iohub import Consumer, IOHub
from pouch.proto.stream import RAW_STREAM, StreamSession, StreamSpec

WITHIN = 10.0


def read_until(conn: socket.socket, end: bytes) -> bytes:
    conn.settimeout(WITHIN)
    data = b""
    while not data.endswith(end):
        part = conn.recv(1)
        assert part, f"the stream ended before {end!r}: {data!r}"
        data += part
    return data


def test_an_attached_client_ends_on_release_after_the_output(tmp_path: Path) -> None:
    hub = IOHub(close_stdin=lambda _cid: None)
    try:
        paths, drained = hub.open("c1", tmp_path / "c1", tmp_path / "c1.log", tty=True,
                                  stdin=False, stdin_once=False)
        writer = os.open(paths["stdout"], os.O_WRONLY | os.O_CLOEXEC)
        hub.writers_ready("c1")
        ours, theirs = socket.socketpair()
        with ours:
            session = StreamSession(theirs, StreamSpec("upgrade", RAW_STREAM))
            assert session.start(multiplexed=False)
            hub.attach("c1", Consumer(session=session))
            read_until(ours, b"\r\n\r\n")
            os.write(writer, b"last words\n")
            os.close(writer)  # the shim is done: the output has ended
            assert drained.wait(WITHIN)
            assert read_until(ours, b"last words\n") == b"last words\n"
            # The hub's thread delivered the output and set `drained` in one go: an end
            # of the stream would be in the socket now.
            ours.setblocking(False)
            try:
                early = ours.recv(1)
            except BlockingIOError:
                early = None
            assert early is None, "the attach ended before the exit was recorded"

            hub.release("c1")
            ours.settimeout(WITHIN)
            assert ours.recv(1) == b""
            assert (tmp_path / "c1.log").read_bytes().count(b"last words") == 1
    finally:
        hub.stop()
