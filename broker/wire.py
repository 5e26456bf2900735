"""Multipart send and receive at the cost of the frames alone.

pyzmq's send_multipart and recv_multipart type-check every frame and combine
enum flags in Python; on the request path, where every message crosses three
sockets, that doubled the time spent per frame. These go straight to the
socket's low-level send and recv with plain int flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import zmq
from zmq.backend import Socket as _Raw

NOBLOCK = int(zmq.NOBLOCK)
POLLIN = int(zmq.POLLIN)
_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_send, _recv, _get = _Raw.send, _Raw.recv, _Raw.get


def send(sock: zmq.Socket, frames: Sequence[bytes], flags: int = 0) -> None:
    """Send one multipart message of bytes frames."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        _send(sock, frame, flags | _SNDMORE if i < last else flags)


def recv(sock: zmq.Socket, flags: int = 0) -> list[bytes]:
    """Receive one multipart message (raises zmq.Again with NOBLOCK when none waits)."""
    frames = [_recv(sock, flags)]
    while _get(sock, _RCVMORE):
        frames.append(_recv(sock, 0))
    return frames


def readable(sock: zmq.Socket) -> bool:
    """Whether a message waits, without a system call (ZMQ_EVENTS)."""
    return bool(cast(int, _get(sock, _EVENTS)) & POLLIN)
