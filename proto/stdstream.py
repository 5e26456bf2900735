"""Docker's multiplexed stream: each frame is an 8-byte header, then the payload.

Header: one byte for the stream (0 stdin, 1 stdout, 2 stderr, 3 the daemon's
own errors), three zero bytes, and the payload's length as a big-endian
uint32. Used when the container has no TTY; with a TTY the bytes go unframed.
"""

from __future__ import annotations

import struct

STDIN, STDOUT, STDERR, SYSTEM_ERROR = 0, 1, 2, 3
STREAMS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR}
_HEADER = struct.Struct(">BxxxI")
HEADER_SIZE = _HEADER.size
MAX_FRAME = 32 * 1024


def frame(stream: int, payload: bytes) -> bytes:
    """One or more frames carrying `payload`, none longer than MAX_FRAME."""
    if len(payload) <= MAX_FRAME:
        return _HEADER.pack(stream, len(payload)) + payload
    return b"".join(_HEADER.pack(stream, len(payload[i:i + MAX_FRAME])) + payload[i:i + MAX_FRAME]
                    for i in range(0, len(payload), MAX_FRAME))


def parse(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete frames in `data`, and the bytes left over (a partial frame)."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while len(data) - offset >= HEADER_SIZE:
        stream, size = _HEADER.unpack_from(data, offset)
        end = offset + HEADER_SIZE + size
        if end > len(data):
            break
        frames.append((stream, data[offset + HEADER_SIZE:end]))
        offset = end
    return frames, data[offset:]
