"""A small HTTP server on 127.0.0.1 (a port of its own, a thread) for the tests of
`ADD <url>`: it serves the files of a dict the test may change between two builds, 404
for the rest, and counts what was asked of it.

    with serving({"/a.txt": Served(b"a\\n")}) as server:
        build(f"ADD {server.url('/a.txt')} /")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

PART: Final = 64 << 10

@dataclass
class Served:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    pause: float = 0.0  # seconds between two 64 kB parts of the body: a slow server


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, Served]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.asked: Counter[str] = Counter()
        self.cut: Counter[str] = Counter()  # bodies the client stopped reading

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        self.server.asked[self.path] += 1
        served = self.server.files.get(self.path)
        if served is None:
            body = f"no such file: {self.path}\n".encode()
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
        else:
            body = served.body
            self.send_response(200)
            for name, value in served.headers.items():
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        pause = served.pause if served is not None else 0.0
        step = PART if pause else max(len(body), 1)
        try:
            for start in range(0, len(body), step):
                self.wfile.write(body[start:start + step])
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            self.server.cut[self.path] += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output is not the place for an access log


@contextlib.contextmanager
def serving(files: dict[str, Served] | None = None) -> Iterator[FileServer]:
    server = FileServer(files if files is not None else {})
    thread = threading.Thread(target=server.serve_forever, name="file-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def closed_port() -> int:
    """A loopback port nothing listens on (as far as one can tell: it was free a moment
    ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
