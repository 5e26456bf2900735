"""http.client over a daemon's unix socket (the Engine API's own transport)."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path


class UnixConnection(http.client.HTTPConnection):
    """One HTTP/1.1 connection (kept alive between requests) to the socket at `path`."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        super().__init__("docker", timeout=timeout)
        self.path_ = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path_)
        self.sock = sock
