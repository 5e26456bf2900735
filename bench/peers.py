"""Minimal ZeroMQ peers that broker_rtt sets pouch's own against.

    python -m pouch.bench.peers forwarder ENDPOINT     ROUTER: client <-> echo, nothing else
    python -m pouch.bench.peers echo ENDPOINT          DEALER: says each message back
    python -m pouch.bench.peers bare-actor ENDPOINT    pouch's actor frames, no pykka, no threads

The first two are the raw baseline: the least a DEALER -> ROUTER -> DEALER
round trip costs in Python with pyzmq. The bare actor speaks pouch's
protocol (READY, heartbeats, REP) on one thread and answers straight from
its receive loop; the real actor host also answers on the thread that owns
the socket, so set against it the bare actor shows what pykka, the contract
and the host's bookkeeping cost. The clients live in the benchmark process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from typing import Any

import zmq

from pouch.broker.router import HEARTBEAT_INTERVAL
from pouch.broker.trust import private_endpoint, read_token
from pouch.proto import envelope as env

HELLO = b"HELLO"
BARE_SERVICE = "echo-bare"
ECHO_DECLARATION = {"doc": "Say it back.", "idempotent": True, "stream": False,
                    "handoff": False, "args": {"text": {"type": "str", "required": True}}}


def forwarder(endpoint: str) -> None:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    echo: bytes | None = None
    while True:
        sender, *rest = sock.recv_multipart()
        if rest == [HELLO]:
            echo = sender
        elif sender == echo:
            sock.send_multipart(rest)  # [client, payload]
        elif echo is not None:
            sock.send_multipart([echo, sender, *rest])


def echo(endpoint: str) -> None:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send(HELLO)
    while True:
        sock.send_multipart(sock.recv_multipart())


def bare_actor(endpoint: str) -> None:
    """`endpoint`: the broker's client endpoint; actors register on the private one."""
    actors = private_endpoint(endpoint)
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(actors)

    def ready() -> None:
        hello = {"pid": os.getpid(), "token": read_token(actors),
                 "methods": {"echo": ECHO_DECLARATION}}
        sock.send_multipart([env.ACTOR, env.READY, BARE_SERVICE.encode(), env.pack(hello)])

    ready()
    next_beat = time.monotonic() + HEARTBEAT_INTERVAL
    while True:
        if sock.poll(max(0, int((next_beat - time.monotonic()) * 1000))):
            frames = sock.recv_multipart()
            if frames[1] == env.REQ:
                msg = env.unpack(frames[3])
                sock.send_multipart([env.ACTOR, env.REP, frames[2],
                                     env.ok_reply(msg["id"], msg["args"]["text"])])
            elif frames[1] == env.BYE:
                ready()
        if time.monotonic() >= next_beat:
            sock.send_multipart([env.ACTOR, env.HEARTBEAT])
            next_beat = time.monotonic() + HEARTBEAT_INTERVAL


class RawClient:
    """DEALER to the forwarder: a payload out, the same payload back."""

    def __init__(self, endpoint: str) -> None:
        self._sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)

    def call(self, payload: bytes) -> bytes:
        self._sock.send(payload)
        return self._sock.recv()

    def send(self, payload: bytes) -> None:
        self._sock.send(payload)

    def receive(self) -> Any:
        return self._sock.recv()

    def close(self) -> None:
        self._sock.close(linger=0)


class BareClient:
    """pouch's client frames and msgpack bodies, and nothing else (no monitor, no retries)."""

    def __init__(self, endpoint: str, service: str) -> None:
        self._sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._service = service.encode()
        self._ids = itertools.count(1)

    def call(self, text: str) -> Any:
        self.send(text)
        return self.receive()

    def send(self, text: str) -> None:
        rid = next(self._ids)
        body = env.request(rid, "echo", {"text": text}, time.time() + 30)
        self._sock.send_multipart([env.CLIENT, env.REQ, self._service, body])

    def receive(self) -> Any:
        reply = env.unpack(self._sock.recv_multipart()[3])
        if not reply["ok"]:
            raise RuntimeError(f"echo failed: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        self._sock.close(linger=0)


ROLES = {"forwarder": forwarder, "echo": echo, "bare-actor": bare_actor}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ROLES:
        print(__doc__, file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        ROLES[argv[0]](argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
