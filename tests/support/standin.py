"""A stand-in actor for broker tests: `python -m pouch.tests.support.standin ENDPOINT`
(the broker's client endpoint: it registers on the actors' endpoint beside it);
`... standin --serve EXEC_ROOT` runs it as pouchd runs an actor's process
(pouch.actors.host.serve), for a broker at EXEC_ROOT/broker.sock."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from pouch.actors.faults import Faults
from pouch.actors.host import ActorBase, ActorContext, Reply, host_of, serve
from pouch.actors.metrics import ActorMetrics
from pouch.broker.trust import private_endpoint
from pouch.proto.config import DaemonConfig
from pouch.proto.contract import method
from pouch.proto.envelope import not_found


def later(seconds: float, reply: Reply, answer: str) -> None:
    # Off the actor's thread, as any handler that waits must be: it serves heartbeats.
    timer = threading.Timer(seconds, reply.send, args=(answer,))
    timer.daemon = True
    timer.start()


class EchoActor(ActorBase):
    service = "echo"

    @method(idempotent=True)
    def echo(self, text: str) -> str:
        """Say it back."""
        return text

    @method(idempotent=False)
    def missing(self) -> None:
        """Always fails, as a value."""
        raise not_found("nothing here")

    @method(idempotent=False, returns=str)
    def slow(self, seconds: float, reply: Reply) -> None:
        """Answer after a while; not safe to retry."""
        later(seconds, reply, "slow done")

    @method(idempotent=True, returns=str)
    def slow_safe(self, seconds: float, reply: Reply) -> None:
        """Answer after a while; safe to retry."""
        later(seconds, reply, "safe done")

    @method(idempotent=False)
    def die(self, why: str) -> None:
        """The process exits at once, as an actor a request takes down."""
        os._exit(3)

    @method(idempotent=False)
    def quit(self) -> None:
        """The actor stops (its process goes on)."""
        self.actor_ref.stop(block=False)

    @method(idempotent=True, stream=True, returns=int)
    def count(self, n: int, reply: Reply) -> None:
        """Stream 0..n-1."""
        for i in range(n):
            reply.more(i)
        reply.send(None)


def main() -> None:
    if sys.argv[1] == "--serve":
        sys.exit(serve(EchoActor, DaemonConfig(exec_root_dir=Path(sys.argv[2]))))
    endpoint = sys.argv[1]
    ctx = ActorContext("echo", None, None, None,  # type: ignore[arg-type]
                       ActorMetrics("echo"), Faults(False))
    ref = EchoActor.start(ctx)
    host_of(ref).attach(ref, "echo", EchoActor.contract, private_endpoint(endpoint))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        host_of(ref).stop()
        ref.stop()


if __name__ == "__main__":
    main()
