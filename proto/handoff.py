"""Handing a client connection to an actor: the gateway's side of long streams.

A long stream (attach, wait, logs -f) must not hold a gunicorn thread for its
whole life, so the gateway passes the client's socket to the actor that
produces the stream, over a SOCK_SEQPACKET unix socket per service
(`<exec-root>/handoff/<service>.sock`, SCM_RIGHTS). One message carries the
descriptor and `{method, args, stream}`, `stream` describing the response
(`pouch.proto.stream.StreamSpec`); the actor answers with one reply body in
the broker's shape: ok once it has taken the connection, or an error the
gateway turns into an HTTP status while it still owns the connection.
"""

from __future__ import annotations

import array
import socket
from pathlib import Path
from typing import Any

from pouch.proto import envelope as env
from pouch.proto.envelope import PouchError
from pouch.proto.stream import StreamSpec

MAX_MESSAGE = 64 * 1024


def socket_path(handoff_dir: Path, service: str) -> Path:
    return handoff_dir / f"{service}.sock"


def hand_over(handoff_dir: Path, service: str, method: str, args: dict[str, Any],
              spec: StreamSpec, fd: int, timeout: float = 30.0) -> None:
    """Pass `fd` to the service's actor for `method`, which answers on it as `spec`
    says; raises PouchError if it refuses."""
    path = socket_path(handoff_dir, service)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as link:
        link.settimeout(timeout)
        try:
            link.connect(str(path))
        except OSError:
            raise env.unavailable(f"the {service} actor is not running "
                                  f"(nothing listens on {path})") from None
        fds = array.array("i", [fd])
        link.sendmsg([env.pack({"method": method, "args": args, "stream": spec.to_wire()})],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        try:
            data = link.recv(MAX_MESSAGE)
        except TimeoutError:
            raise PouchError("timeout", f"{service}.{method} did not take the connection") from None
    if not data:
        raise env.unavailable(f"the {service} actor went away while taking the connection")
    body = env.unpack(data)
    if not body.get("ok"):
        raise PouchError.from_wire(body.get("error") or {})


def receive(link: socket.socket) -> tuple[dict[str, Any], socket.socket | None]:
    """One hand-off message and the connection it carries (None if it carried none)."""
    data, ancdata, _flags, _addr = link.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(4 * 4))
    conns: list[socket.socket] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            conns += [socket.socket(fileno=fd) for fd in fds]
    for extra in conns[1:]:
        extra.close()
    message = env.unpack(data) if data else {}
    return message, (conns[0] if conns else None)
