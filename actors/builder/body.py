"""A build's request body (its context), read by the builder from the connection the
gateway handed over: first what the gateway had read already (its spool file), then the
socket; with a Content-Length, or chunked (HTTP/1.1 chunked transfer coding).
"""

from __future__ import annotations

import io
import socket
from typing import Final

READ_SIZE: Final = 256 * 1024
MAX_LINE: Final = 8192


class BodyError(Exception):
    """The body is cut short or its framing is broken."""


class BodyReader(io.RawIOBase):
    """The request body as a binary stream; EOF where the body ends."""

    def __init__(self, head: bytes, sock: socket.socket, chunked: bool, length: int) -> None:
        super().__init__()
        self._buf = bytearray(head)
        self._sock = sock
        self._chunked = chunked
        self._left = length if not chunked else 0  # of the body, or of the current chunk
        self._done = not chunked and length == 0
        self.received = 0

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        data = self._sock.recv(READ_SIZE)
        if not data:
            return False
        self._buf += data
        return True

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[:end + 2]
                return line
            if len(self._buf) > MAX_LINE:
                raise BodyError("a chunk size line is too long")
            if not self._fill():
                raise BodyError("the body ended before its last chunk")

    def readinto(self, out: memoryview | bytearray) -> int:  # type: ignore[override]
        want = len(out)
        while not self._done and want:
            if self._chunked and self._left == 0:
                size = self._line().split(b";", 1)[0].strip()
                try:
                    self._left = int(size, 16)
                except ValueError:
                    raise BodyError(f"a chunk size is not hexadecimal: {size!r}") from None
                if self._left == 0:
                    while self._line():  # trailers, up to the blank line
                        pass
                    self._done = True
                    return 0
            if not self._buf and not self._fill():
                if self._left < 0:  # no length: the body ends with the connection
                    self._done = True
                    return 0
                raise BodyError("the body ended before its length")
            take = len(self._buf) if self._left < 0 else min(len(self._buf), self._left)
            take = min(take, want)
            out[:take] = self._buf[:take]
            del self._buf[:take]
            if self._left > 0:
                self._left -= take
                if self._left == 0:
                    if self._chunked:
                        while len(self._buf) < 2:
                            if not self._fill():
                                raise BodyError("a chunk ended without its CRLF")
                        del self._buf[:2]
                    else:
                        self._done = True
            self.received += take
            return take
        return 0
