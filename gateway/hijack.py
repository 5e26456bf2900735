"""Giving a client's connection to the actor that streams to it.

Under gunicorn the raw socket is `req.env["gunicorn.socket"]`. The gateway
passes its descriptor to the actor (`pouch.proto.handoff`), together with a
description of the response the actor writes (`pouch.proto.stream`), and then
must keep gunicorn from touching the connection: gunicorn would write its own
response and shut the socket down, which ends the connection for the actor
too. So the descriptor number is pointed at a dead socket pair (dup2):
gunicorn's writes fail with EPIPE, which it treats as a client that went
away, and its close reaches only the dead pair. The real connection lives on
in the actor process, and no gunicorn thread waits on it.

A TLS connection cannot move: its session state lives in this process. The
actor gets one end of a socket pair instead, and the request's thread relays
between the other end and the TLS socket until the stream is over (the slow
path: that thread is taken for the stream's life).
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon

from pouch.proto.envelope import PouchError
from pouch.proto.handoff import hand_over
from pouch.proto.stream import StreamSpec

READ_SIZE = 64 * 1024
RELAY_BUFFER = 1 << 20  # stop reading a side while this much waits for the other
TLS_CLOSE_TIMEOUT = 2.0  # how long a client may take to answer our close_notify


@dataclass(frozen=True)
class StreamRequest:
    """A request to answer with a stream: the `conn` that a route passes to a
    hand-off stub (`pouch.proto.stubs.Handoffs`)."""

    req: falcon.Request
    spec: StreamSpec


class Hijacker:
    """The gateway's `HandOver` for the hand-off stubs."""

    def __init__(self, handoff_dir: Path) -> None:
        self.handoff_dir = handoff_dir

    def hand_over(self, conn: StreamRequest, service: str, method: str,
                  args: dict[str, Any]) -> None:
        hijack(conn.req, self.handoff_dir, service, method, args, conn.spec)


def hijack(req: falcon.Request, handoff_dir: Path, service: str, method: str,
           args: dict[str, Any], spec: StreamSpec) -> None:
    """Hand the request's connection to `service.method`, which answers as `spec` says;
    raises PouchError if refused."""
    sock = req.env.get("gunicorn.socket")
    if not isinstance(sock, socket.socket):
        raise PouchError("internal", "this server cannot hand connections over")
    give = functools.partial(hand_over, handoff_dir, service, method, args, spec)
    if isinstance(sock, ssl.SSLSocket):
        hand_over_relayed(sock, give)
        _end_tls(sock)
    else:
        give(sock.fileno())
    _detach(sock)


def hand_over_relayed(tls: ssl.SSLSocket, give: Callable[[int], None]) -> None:
    """Hand over one end of a socket pair with `give`, then relay the other end and
    `tls` both ways until the stream is over."""
    ours, theirs = socket.socketpair()
    with ours:
        with theirs:
            give(theirs.fileno())
        relay(tls, ours)


def relay(tls: ssl.SSLSocket, plain: socket.socket) -> None:
    """Move bytes both ways until `plain`'s side has ended and all it sent is
    delivered, or either side fails. The client's end of input is passed on as a
    half-close: an attached client that closes stdin still reads the output."""
    tls.setblocking(False)
    plain.setblocking(False)
    up, down = bytearray(), bytearray()  # client -> actor, actor -> client
    client_sending, actor_sending, half_closed = True, True, False
    tls_wants_write = False  # a TLS read that must write first (a key update)
    while actor_sending or down:
        if not (client_sending or up or half_closed):
            plain.shutdown(socket.SHUT_WR)
            half_closed = True
        reading_tls = client_sending and len(up) < RELAY_BUFFER
        readable: list[socket.socket] = [tls]
        writable: list[socket.socket] = []
        if not (reading_tls and tls.pending()):  # else decrypted already: select cannot see it
            readers = [s for s, on in ((tls, reading_tls),
                                       (plain, actor_sending and len(down) < RELAY_BUFFER)) if on]
            writers = [s for s, on in ((plain, up), (tls, down or tls_wants_write)) if on]
            readable, writable, _ = select.select(readers, writers, [])
        try:
            if tls in readable or (tls_wants_write and tls in writable):
                tls_wants_write = False
                try:
                    data = tls.recv(READ_SIZE)
                    up += data
                    client_sending = bool(data)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLWantWriteError:
                    tls_wants_write = True
            if plain in readable:
                data = plain.recv(READ_SIZE)
                down += data
                actor_sending = bool(data)
            if plain in writable:
                del up[:plain.send(up)]
            if tls in writable and down:
                with contextlib.suppress(ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    del down[:tls.send(down)]
        except OSError:
            return


def _end_tls(tls: ssl.SSLSocket) -> None:
    """Close the TLS session (close_notify both ways) once the stream is over. gunicorn
    then writes its own response to a plain socket that _detach makes fail quietly, not
    to a closed TLS session, which it would report as an invalid request."""
    tls.settimeout(TLS_CLOSE_TIMEOUT)
    with contextlib.suppress(OSError, ValueError):
        tls.unwrap()


def _detach(sock: socket.socket) -> None:
    dead, other = socket.socketpair()
    other.close()
    sock.setblocking(True)
    os.dup2(dead.fileno(), sock.fileno())
    dead.close()
