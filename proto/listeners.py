"""The API's listening sockets, held by pouchd's supervisor and handed to each gateway.

A gateway that dies closes only its copies: connections that arrive until the
next one serves wait in the listen backlog instead of being refused, as with
systemd's socket activation (which the gateway also takes). The gateway finds
them by the descriptor numbers in LISTEN_FDS_ENV.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
from collections.abc import Sequence
from pathlib import Path

LISTEN_FDS_ENV = "POUCH_LISTEN_FDS"
BACKLOG = 2048
SOCKET_MODE_UMASK = 0o117  # unix sockets 0660: the API socket's mode from the start


DEFAULT_GROUP = "pouch"


def bind_all(addresses: Sequence[str], group: str = "") -> list[socket.socket]:
    """A listening socket per --listen address (unix:// or tcp://host:port); the unix
    ones belong to `group` ("": pouch's when it exists, else root's only).
    Raises ValueError for a group that does not exist."""
    gid = socket_gid(group)
    return [_bind(address, gid) for address in addresses]


def socket_gid(group: str) -> int | None:
    """The group the API's unix sockets are given, as dockerd's --group."""
    try:
        return grp.getgrnam(group or DEFAULT_GROUP).gr_gid
    except KeyError:
        if group:
            raise ValueError(f"--group {group}: no such group") from None
        return None


def _bind(address: str, gid: int | None) -> socket.socket:
    if address.startswith("unix://"):
        path = Path(address[len("unix://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of a pouchd that died
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(SOCKET_MODE_UMASK)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old)
        if gid is not None:
            os.chown(path, -1, gid)
    else:
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, int(port)))
    listener.listen(BACKLOG)
    return listener


def env_for(listeners: list[socket.socket]) -> dict[str, str]:
    """What a child needs to find them (they must also be passed to an exec'd one)."""
    return {LISTEN_FDS_ENV: ",".join(str(s.fileno()) for s in listeners)} if listeners else {}


def inherited() -> list[int]:
    """The descriptors pouchd's supervisor handed to this gateway, if any."""
    raw = os.environ.get(LISTEN_FDS_ENV, "")
    return [int(fd) for fd in raw.split(",") if fd]


def close_all(listeners: list[socket.socket]) -> None:
    for listener in listeners:
        name = listener.getsockname() if listener.family == socket.AF_UNIX else None
        listener.close()
        if name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
