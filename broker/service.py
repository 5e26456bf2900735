"""The broker's own service ("broker"), declared as actors declare theirs.

It answers on the broker's thread, from the routing table: discovery (`ping`,
`services`, `contract`) for every client, and the supervisor's reports
(`mark_down`, `worker_gone`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pouch.proto.contract import method
from pouch.proto.shapes import Contract, ServiceStatus

if TYPE_CHECKING:
    from pouch.broker.router import Broker


class BrokerService:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    @method(idempotent=True, timeout=2.0)
    def ping(self) -> str:
        """Answers "pong": the broker is there."""
        return "pong"

    @method(idempotent=True, timeout=2.0)
    def services(self) -> dict[str, ServiceStatus]:
        """Every service the broker knows: its live actors, queued requests, why it is down."""
        return self._broker.describe_services()

    @method(idempotent=True, errors=("not_found",), timeout=2.0)
    def contract(self, service: str) -> Contract:
        """The methods a service declared when its actor said READY."""
        return self._broker.contract_of(service)

    @method(idempotent=True, timeout=2.0)
    def mark_down(self, service: str, reason: str | None) -> None:
        """The supervisor gave up on a service (reason) or retries it (None): while it is
        down, its requests fail at once."""
        self._broker.mark_down(service, reason)

    @method(idempotent=True, timeout=2.0)
    def worker_gone(self, service: str, pid: int, killed: bool = False) -> bool:
        """The supervisor saw an actor's process exit (`killed` from outside, by a signal
        it did not choose: then not for a request it handled): drop it now, not after
        its heartbeats; False if no such actor was registered."""
        return self._broker.worker_gone(service, pid, killed)
