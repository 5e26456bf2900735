"""An actor host under test, in this process: a small actor and the test as its broker.

    with hosted(tmp_dir) as (ref, broker):
        broker.request("echo", {"text": "hi"})
        assert broker.reply()["result"] == "hi"

The test binds the ROUTER socket the actor's host connects to and speaks the
broker's frames itself (see `pouch.proto.envelope`). The host heartbeats once
a minute here, so its thread sleeps in its poll: whatever arrives promptly
was woken by what the test did, not by a heartbeat.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import zmq

from pouch.actors.faults import Faults
from pouch.actors.host import ActorBase, ActorContext, Reply, host_of
from pouch.actors.metrics import ActorMetrics
from pouch.broker.client import ClientPool
from pouch.proto import envelope as env
from pouch.proto.config import DaemonConfig
from pouch.proto.contract import method
from pouch.proto.stream import StreamSession
from pouch.proto.stubs import Calls

QUIET_HEARTBEAT = 60.0
CLIENT = b"client-1"
ANSWER_WITHIN = 5.0


class ProbeActor(ActorBase):
    service = "probe"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.held: list[tuple[Reply, str]] = []
        self.lost: list[tuple[str, dict[str, Any]]] = []

    @method(idempotent=True)
    def echo(self, text: str) -> str:
        """Say it back."""
        return text

    @method(idempotent=False, errors=("internal",))
    def broken(self) -> None:
        """Fails as a handler that was not written to fail does."""
        raise OSError("the FIFO is gone")

    @method(idempotent=True, returns=str)
    def later(self, text: str, reply: Reply) -> None:
        """Say it back from another thread."""
        threading.Thread(target=reply.send, args=(text,), daemon=True).start()

    @method(idempotent=True, stream=True, returns=int)
    def count(self, n: int, reply: Reply) -> None:
        """Stream 0..n-1."""
        for i in range(n):
            reply.more(i)
        reply.send(None)

    @method(idempotent=False, returns=None)
    def greet(self, name: str, conn: StreamSession, reply: Reply) -> None:
        """Takes a handed-over connection: answers a greeting on it and ends the stream."""
        reply.send(None)
        if conn.start():
            conn.write_json({"hello": name})
            conn.end()

    @method(idempotent=False, once=True, returns=str)
    def hold(self, text: str, token: str, reply: Reply) -> None:
        """Done once per token: says it back when the test sends "release"."""
        self.held.append((reply, text))

    def on_answer_lost(self, method: str, args: dict[str, Any]) -> None:
        self.lost.append((method, dict(args)))

    def on_message(self, message: Any) -> Any:
        """What the test asks of the actor's state; anything else is said back."""
        if message == "held":
            return [reply.cancelled for reply, _ in self.held]
        if message == "release":
            for reply, text in self.held:
                reply.send(text)
            self.held.clear()
            return None
        if message == "lost":
            return list(self.lost)
        return ("seen", message)


class BrokerEnd:
    """The broker's side of the actor's DEALER socket, played by the test."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.actor = b""
        self.hello: dict[str, Any] = {}  # what the actor registered with

    def close(self) -> None:
        self.sock.close(linger=0)

    def receive(self, timeout: float = ANSWER_WITHIN) -> list[bytes]:
        """The next frames from the actor, heartbeats aside; fails at `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                raise AssertionError(f"the actor sent nothing within {timeout:g} s")
            self.actor, *frames = self.sock.recv_multipart()
            if frames != [env.ACTOR, env.HEARTBEAT]:
                return frames

    def request(self, name: str, args: dict[str, Any] | None = None, *, rid: int = 1,
                deadline: float | None = None) -> None:
        body = env.request(rid, name, args or {}, deadline or time.time() + 30)
        self.sock.send_multipart([self.actor, env.ACTOR, env.REQ, CLIENT, body])

    def reply(self, timeout: float = ANSWER_WITHIN) -> dict[str, Any]:
        frames = self.receive(timeout)
        assert frames[:3] == [env.ACTOR, env.REP, CLIENT], frames
        return dict(env.unpack(frames[3]))


def start_probe(endpoint: str, direct_dir: Path | None = None,
                heartbeat: float = QUIET_HEARTBEAT) -> pykka.ActorRef[Any]:
    """A started ProbeActor whose host serves `endpoint` (and direct calls in `direct_dir`)."""
    pool = ClientPool(endpoint)
    ctx = ActorContext(service="probe", config=DaemonConfig(), pool=pool, calls=Calls(pool),
                       metrics=ActorMetrics("probe"), faults=Faults(False))
    ref = ProbeActor.start(ctx)
    host_of(ref).attach(ref, "probe", ProbeActor.contract, endpoint, heartbeat=heartbeat,
                        direct_dir=direct_dir)
    return ref


def stop_probe(ref: pykka.ActorRef[Any]) -> None:
    """As an actor process stops: the host says goodbye, then the actor ends."""
    host_of(ref).stop()
    with contextlib.suppress(pykka.ActorDeadError):
        ref.stop(timeout=5)


@contextlib.contextmanager
def hosted(folder: Path, direct_dir: Path | None = None, heartbeat: float = QUIET_HEARTBEAT
           ) -> Iterator[tuple[pykka.ActorRef[Any], BrokerEnd]]:
    """A ProbeActor registered with the test's broker end (its READY already read)."""
    broker = BrokerEnd(f"ipc://{folder}/broker.sock")
    ref = start_probe(broker.endpoint, direct_dir, heartbeat)
    try:
        ready = broker.receive()
        assert ready[:3] == [env.ACTOR, env.READY, b"probe"], ready
        broker.hello = dict(env.unpack(ready[3]))
        yield ref, broker
    finally:
        stop_probe(ref)
        broker.close()
