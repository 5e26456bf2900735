"""A stand-in actor for broker tests: `python -m pouch.tests.support.standin ENDPOINT`."""

from __future__ import annotations

import signal
import sys
import time

from pouch.actors.contract import method
from pouch.actors.faults import Faults
from pouch.actors.host import ActorBase, ActorContext, Host, Reply
from pouch.actors.metrics import ActorMetrics
from pouch.proto.envelope import not_found


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

    @method(idempotent=False)
    def slow(self, seconds: float) -> str:
        """Answer after a while; not safe to retry."""
        time.sleep(seconds)
        return "slow done"

    @method(idempotent=True)
    def slow_safe(self, seconds: float) -> str:
        """Answer after a while; safe to retry."""
        time.sleep(seconds)
        return "safe done"

    @method(idempotent=True, stream=True)
    def count(self, n: int, reply: Reply) -> None:
        """Stream 0..n-1."""
        for i in range(n):
            reply.more(i)
        reply.send(None)


def main() -> None:
    endpoint = sys.argv[1]
    ctx = ActorContext("echo", None, None, lambda e: None,  # type: ignore[arg-type]
                       ActorMetrics("echo"), Faults(False))
    ref = EchoActor.start(ctx)
    host = Host(ref, "echo", EchoActor.contract, endpoint)
    signal.signal(signal.SIGTERM, lambda *_: host.stop())
    try:
        host.run()
    finally:
        ref.stop()


if __name__ == "__main__":
    main()
