"""Giving a client's connection to the actor that streams to it.

Under gunicorn the raw socket is `req.env["gunicorn.socket"]`. The gateway
passes its descriptor to the actor (`pouch.proto.handoff`), together with the
response head the actor writes first, and then must keep gunicorn from
touching the connection: gunicorn would write its own response and shut the
socket down, which ends the connection for the actor too. So the descriptor
number is pointed at a dead socket pair (dup2): gunicorn's writes fail with
EPIPE, which it treats as a client that went away, and its close reaches
only the dead pair. The real connection lives on in the actor process, and
no gunicorn thread waits on it.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Any

import falcon

from pouch.proto.envelope import PouchError
from pouch.proto.handoff import hand_over

API_HEADERS = "Api-Version: 1.41\r\nDocker-Experimental: false\r\nOstype: linux\r\n"


def upgrade_head(content_type: str) -> bytes:
    return ("HTTP/1.1 101 UPGRADED\r\n"
            f"Content-Type: {content_type}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            f"{API_HEADERS}\r\n").encode()


def stream_head(content_type: str) -> bytes:
    # Chunked (see pouch.proto.handoff): the actor ends the body, then the connection.
    return ("HTTP/1.1 200 OK\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\n{API_HEADERS}\r\n").encode()


def hijack(req: falcon.Request, handoff_dir: Path, service: str, method: str,
           args: dict[str, Any]) -> None:
    """Hand the request's connection to `service.method`; raises PouchError if refused."""
    sock = req.env.get("gunicorn.socket")
    if not isinstance(sock, socket.socket):
        raise PouchError("internal", "this server cannot hand connections over")
    if isinstance(sock, ssl.SSLSocket):  # TLS state cannot move to another process
        raise PouchError("invalid", "streams are not supported over TLS yet")
    hand_over(handoff_dir, service, method, args, sock.fileno())
    _detach(sock)


def _detach(sock: socket.socket) -> None:
    dead, other = socket.socketpair()
    other.close()
    sock.setblocking(True)
    os.dup2(dead.fileno(), sock.fileno())
    dead.close()
