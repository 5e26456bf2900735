"""The container actor's streams (attach, wait), as the builder consumes them: through
the hand-off socket, with one end of a socket pair as the "client connection", read
here as a client reads the HTTP response the container actor writes on it.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pouch.proto.handoff import hand_over
from pouch.proto.stdstream import STREAMS
from pouch.proto.stream import JSON, RAW_STREAM, StreamSpec

READ_SIZE = 64 * 1024
_NAMES = {number: name for name, number in STREAMS.items()}


class Stream:
    """One end of a socket pair whose other end a container actor writes a response on."""

    def __init__(self, handoff_dir: Path, method: str, args: dict[str, Any],
                 spec: StreamSpec) -> None:
        self.ours, theirs = socket.socketpair()
        try:
            link = hand_over(handoff_dir, "container", method, args, spec, theirs.fileno(),
                             wait_for_actor=10.0)
            link.close()  # its notices are for a gateway: none keeps watch here
        except BaseException:
            self.ours.close()
            raise
        finally:
            theirs.close()
        self._buf = bytearray()

    def close(self) -> None:
        self.ours.close()

    def _more(self) -> bool:
        try:
            data = self.ours.recv(READ_SIZE)
        except OSError:
            return False
        self._buf += data
        return bool(data)

    def head(self) -> None:
        """Read past the HTTP head."""
        while b"\r\n\r\n" not in self._buf:
            if not self._more():
                raise EOFError("the container actor ended the stream before its head")
        end = self._buf.index(b"\r\n\r\n")
        del self._buf[:end + 4]

    def frames(self) -> Iterator[tuple[str, bytes]]:
        """A multiplexed stream's frames, (stream name, data), until it ends."""
        while True:
            while len(self._buf) < 8:
                if not self._more():
                    return
            kind, size = self._buf[0], int.from_bytes(self._buf[4:8], "big")
            while len(self._buf) < 8 + size:
                if not self._more():
                    return
            data = bytes(self._buf[8:8 + size])
            del self._buf[:8 + size]
            yield _NAMES.get(kind, "stdout"), data

    def chunked_body(self) -> bytes:
        """A chunked response's body, once it has ended."""
        while self._more():
            pass
        body, data = bytearray(), bytes(self._buf)
        while data:
            size_line, _, rest = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body += rest[:size]
            data = rest[size + 2:]
        return bytes(body)


def attach(handoff_dir: Path, cid: str) -> Stream:
    """Attach to a container's stdout and stderr (before it starts: nothing is missed)."""
    stream = Stream(handoff_dir, "attach", {"id": cid, "stream": True, "stdout": True,
                                            "stderr": True},
                    StreamSpec("upgrade", RAW_STREAM))
    return stream


def pump(stream: Stream, emit: Callable[[str, bytes], None]) -> None:
    """Hand every frame of an attach to `emit` until the container's output ends."""
    with contextlib.closing(stream):
        stream.head()
        for name, data in stream.frames():
            emit(name, data)


def wait(handoff_dir: Path, cid: str) -> dict[str, Any]:
    """Wait for a container to stop running: Docker's wait answer {StatusCode, Error}."""
    stream = Stream(handoff_dir, "wait", {"id": cid, "condition": "not-running"},
                    StreamSpec("chunked", JSON))
    with contextlib.closing(stream):
        stream.head()
        answer = json.loads(stream.chunked_body() or b"{}")
    return answer if isinstance(answer, dict) else {}
