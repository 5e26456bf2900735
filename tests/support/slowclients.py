"""Clients that cost a server nothing but a connection, if it is built right: idle
ones, and ones that send a request body a byte at a time (for the tests and the
benchmark of the gateway's limits)."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

# A body whose head promises more than the client will ever send in time.
SLOW_HEAD = (b"POST /containers/create HTTP/1.1\r\nHost: pouch\r\n"
             b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")


@contextlib.contextmanager
def fd_limit(needed: int) -> Iterator[None]:
    """This process may open `needed` descriptors more than it has now (the soft
    limit raised as far as the hard one allows), restored on the way out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, needed + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(path: Path, first: bytes = b"") -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(path))
        s.sendall(first)
    except OSError:
        s.close()
        raise
    return s


@contextlib.contextmanager
def idle(path: Path, count: int, first: bytes = b"") -> Iterator[list[socket.socket]]:
    """`count` connections to the unix socket at `path` that send `first` and then
    nothing; all closed on the way out."""
    conns: list[socket.socket] = []
    try:
        for _ in range(count):
            conns.append(connect(path, first))
        yield conns
    finally:
        for s in conns:
            s.close()


class Trickle:
    """`count` clients that send SLOW_HEAD, then one byte of body every `interval`
    seconds each, on a thread; a client the server closes is replaced by a new one
    (`reopened` counts them)."""

    def __init__(self, path: Path, count: int, interval: float) -> None:
        self.path = path
        self.count = count
        self.interval = interval
        self.reopened = 0
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)

    def __enter__(self) -> Trickle:
        self.conns = [connect(self.path, SLOW_HEAD) for _ in range(self.count)]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for s in self.conns:
            s.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for i, s in enumerate(self.conns):
                try:
                    s.send(b" ")
                except OSError:  # closed by the server: a new client takes its place
                    s.close()
                    self.conns[i] = connect(self.path, SLOW_HEAD)
                    self.reopened += 1
