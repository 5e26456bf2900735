"""TCP ports on 127.0.0.1 that lead elsewhere: to a unix socket, for HTTP clients
(schemathesis) that speak TCP only; to a local server, as an HTTP proxy that records
what went through it."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


def _pump(src: socket.socket, dst: socket.socket, seen: bytearray | None = None) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            if seen is not None:
                seen += data
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def tcp_to_unix(target: Path) -> Iterator[str]:
    """The base URL (http://127.0.0.1:PORT) of a forwarder to `target`, while open."""

    def connect() -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(str(target))
        return upstream

    with _forwarder(connect) as base:
        yield base


@contextlib.contextmanager
def recording_proxy(port: int) -> Iterator[tuple[str, bytearray]]:
    """An HTTP proxy (its URL) that leads every connection to 127.0.0.1:`port`, and the
    bytes its clients sent. As an HTTP server must, the one behind it takes the request
    lines in absolute form ("GET http://name/v2/ HTTP/1.1") that clients send a proxy."""
    seen = bytearray()

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port))

    with _forwarder(connect, seen) as base:
        yield base, seen


@contextlib.contextmanager
def _forwarder(connect: Callable[[], socket.socket],
               seen: bytearray | None = None) -> Iterator[str]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with connect() as upstream:
                back = threading.Thread(target=_pump, args=(upstream, self.request),
                                        daemon=True)
                back.start()
                _pump(self.request, upstream, seen)
                back.join()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    with Server(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
