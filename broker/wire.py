"""Multipart send and receive at the cost of the frames alone.

pyzmq's send_multipart and recv_multipart type-check every frame and combine
enum flags in Python; on the request path, where every message crosses three
sockets, that doubled the time spent per frame. These go straight to the
socket's low-level send and recv with plain int flags, and `Wakeup` sleeps on
several sockets for one system call where zmq.Poller makes six.
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from typing import cast

import zmq
from zmq.backend import Socket as _Raw

NOBLOCK = int(zmq.NOBLOCK)
POLLIN = int(zmq.POLLIN)
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_send, _recv, _get = _Raw.send, _Raw.recv, _Raw.get


def send(sock: zmq.Socket, frames: Sequence[bytes], flags: int = 0) -> None:
    """Send one multipart message of bytes frames."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        _send(sock, frame, flags | _SNDMORE if i < last else flags)


def recv(sock: zmq.Socket, flags: int = 0) -> list[bytes]:
    """Receive one multipart message (raises zmq.Again with NOBLOCK when none waits)."""
    # A zmq.Frame knows whether more follow: asking the socket (RCVMORE) costs pyzmq
    # an enum lookup per frame, more than the Frame and its copy to bytes.
    frame = _recv(sock, flags, False)
    frames = [frame.bytes]
    while frame.more:
        frame = _recv(sock, 0, False)
        frames.append(frame.bytes)
    return frames


def readable(sock: zmq.Socket) -> bool:
    """Whether a message waits, without a system call (ZMQ_EVENTS)."""
    return bool(cast(int, _get(sock, _EVENTS)) & POLLIN)


class Wakeup:
    """Sleep until one of some sockets may have a message: one poll(2) on their ZMQ_FDs.

    zmq.Poller asks each socket's ZMQ_EVENTS before and after it sleeps, and each
    ask is a system call of libzmq's own: six for two sockets, on every wake. A
    socket's ZMQ_FD is readable when libzmq has news for it, but only until libzmq
    reads that news, which any send or receive on the socket may do: the caller
    asks `readable` of every socket it used since it last slept before sleeping again.
    """

    def __init__(self, socks: Sequence[zmq.Socket]) -> None:
        self._poll = select.poll()
        self._sock_of: dict[int, zmq.Socket] = {}
        for sock in socks:
            fd = cast(int, sock.getsockopt(zmq.FD))
            self._poll.register(fd, select.POLLIN)
            self._sock_of[fd] = sock

    def wait(self, timeout_ms: int) -> list[zmq.Socket]:
        """The sockets that may have a message after at most `timeout_ms` ms."""
        return [self._sock_of[fd] for fd, _ in self._poll.poll(timeout_ms)]
