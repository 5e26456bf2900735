"""The direct path: a local client's calls that may be sent again, straight to the
actor's process.

Through the broker a request crosses four ZeroMQ sockets, each with libzmq's I/O
thread behind it: about fourteen thread wake-ups and half a millisecond of CPU
for a call whose handler takes a tenth of that (bench/request_floor.py). So each
actor also listens on a unix stream socket of its own (`<exec-root>/direct/
<service>.sock`, mode 0600), polled by the actor's serving thread beside its
broker socket, and a local client sends there its calls that are idempotent or
done once per token (a container's create, start and remove): one write and one
wake-up each way.

The broker stays the way everything else goes, and the way of last resort: a
call that is neither (its outcome must be known when an actor dies midway), a
stream, a hand-off, a remote client, and any call the direct path cannot finish
(no actor listening, or the link ends before the answer) go through it, which
also waits for an actor that restarts. A call may then run twice, which an
idempotent one is declared to allow, and which a once-per-token one answers
with its first run's outcome (its token goes again). The actor treats a link
its client closed as the broker's cancel of that link's calls in flight, and
tells itself of a once-per-token answer that found no link as of one the broker
could not deliver.

On the socket, each message is a request or reply body exactly as the broker
carries them (`pouch.proto.envelope`), prefixed with its length (4 bytes,
big-endian): a reply can be larger than a datagram may be.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from pathlib import Path

from pouch.broker.trust import umask

_LENGTH = struct.Struct(">I")
MAX_BODY = 256 << 20  # a length beyond this is a peer that does not speak the protocol
READ_SIZE = 256 * 1024
# How long the actor's serving thread may wait on one reply's write: a client that
# reads nothing for this long is dropped rather than let it stall the actor.
SEND_WAIT = 2.0


class BadFrame(Exception):
    """The peer sent what is not a length-prefixed body."""


def socket_path(direct_dir: Path, service: str) -> Path:
    return direct_dir / f"{service}.sock"


def listen(path: Path) -> socket.socket:
    """The actor's listening socket at `path` (replacing a dead predecessor's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    with umask(0o177):  # mode 0600 from the moment the socket exists
        sock.bind(str(path))
    sock.listen(64)
    return sock


def frame(body: bytes) -> bytes:
    return _LENGTH.pack(len(body)) + body


class Reader:
    """Bodies out of a stream socket's bytes, as they arrive."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        bodies = []
        while len(self._buf) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buf)
            if size > MAX_BODY:
                raise BadFrame(f"a body of {size} bytes")
            end = _LENGTH.size + size
            if len(self._buf) < end:
                break
            bodies.append(bytes(self._buf[_LENGTH.size:end]))
            del self._buf[:end]
        return bodies


def connect(path: Path) -> socket.socket | None:
    """A link to the actor listening at `path`; None if none listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def exchange(sock: socket.socket, body: bytes, timeout: float | None) -> bytes:
    """Send one request body and read the first reply body; TimeoutError after
    `timeout` seconds, ConnectionError if the link ends first."""
    sock.settimeout(timeout)
    sock.sendall(frame(body))
    reader = Reader()
    while True:
        data = sock.recv(READ_SIZE)
        if not data:
            raise ConnectionError("the actor closed the link")
        bodies = reader.feed(data)
        if bodies:
            return bodies[0]
