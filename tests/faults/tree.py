"""pouchd's process tree as the fault tests see it: pids, the broker's view, timings."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pouch.broker.client import Client
from pouch.broker.trust import private_endpoint
from pouch.proto.envelope import PouchError
from pouch.tests.faults.workload import Workload
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import POLL, wait_for

T = TypeVar("T")


def until(check: Callable[[], T | None], timeout: float, what: str) -> tuple[T, float]:
    """The first truthy value of `check` and when (monotonic) it came; fails at `timeout`."""
    return wait_for(check, timeout, what), time.monotonic()


def kill(pid: int, signum: int = signal.SIGKILL) -> float:
    """Send the signal; when (monotonic) it was sent."""
    at = time.monotonic()
    os.kill(pid, signum)
    return at


def broker(daemon: PouchDaemon, timeout: float = 2.0) -> Client:
    return Client(f"ipc://{daemon.run_dir}/broker.sock", timeout=timeout)


def internal(daemon: PouchDaemon, timeout: float = 2.0) -> Client:
    """A client on the actors' endpoint, as pouchd's own processes call: what the
    client endpoint refuses (fault points, the supervisor's reports) is served there."""
    return Client(private_endpoint(f"ipc://{daemon.run_dir}/broker.sock"), timeout=timeout)


class BrokerView:
    """The broker's routing table, asked often; None while the broker cannot answer. And
    what the actors hold in flight: a local client sends some calls straight to them."""

    def __init__(self, daemon: PouchDaemon) -> None:
        self._client = broker(daemon, timeout=0.5)
        self._actors = Client(f"ipc://{daemon.run_dir}/broker.sock", timeout=0.5,
                              direct_dir=daemon.run_dir / "direct")

    def close(self) -> None:
        self._client.close()
        self._actors.close()

    def services(self) -> dict[str, Any] | None:
        try:
            return dict(self._client.call("broker", "services", timeout=0.5))
        except PouchError:
            return None

    def workers(self, service: str) -> list[dict[str, Any]]:
        return list(((self.services() or {}).get(service) or {}).get("workers") or [])

    def pids(self, service: str) -> set[int]:
        return {int(w["pid"]) for w in self.workers(service)}

    def busy(self, service: str) -> bool:
        """A request in the actor's hands: in flight at the broker, or taken by the actor
        (a local client's create, start or remove goes straight to it)."""
        return any(w["inflight"] for w in self.workers(service)) or self._taken(service)

    def _taken(self, service: str) -> bool:
        try:
            families = self._actors.call(service, "metrics", timeout=0.5)
        except PouchError:
            return False
        return any(value > 0 and labels[1] != "metrics"
                   for family in families if family["name"] == "pouch_requests_in_flight"
                   for labels, value in family["samples"])


@dataclass(frozen=True)
class Recovery:
    """When the broker dropped a killed actor and when its successor said READY."""

    fault: float
    lost: float
    ready: float
    new_pid: int

    @property
    def detected_after(self) -> float:
        return self.lost - self.fault

    @property
    def back_after(self) -> float:
        return self.ready - self.fault


def watch_replacement(view: BrokerView, daemon: PouchDaemon, service: str, old_pid: int,
                      fault: float, timeout: float = 10.0) -> Recovery:
    """Follow the broker until `old_pid` is gone from `service` and a new pid serves it."""
    lost = ready = 0.0
    new_pid = 0
    deadline = time.monotonic() + timeout
    while not (lost and ready):
        pids = view.pids(service)
        now = time.monotonic()
        if not lost and old_pid not in pids:
            lost = now
        if not ready and pids - {old_pid}:
            ready, new_pid = now, next(iter(pids - {old_pid}))
        if now >= deadline:
            raise AssertionError(f"{service}: old pid {old_pid} gone at {lost or '-'}, new one "
                                 f"ready at {ready or '-'}; not both within {timeout:.0f} s\n"
                                 f"{daemon.log_tail()}")
        time.sleep(POLL)
    assert daemon.pid_of(service) == new_pid, "the pid file does not name the new actor"
    return Recovery(fault, lost, ready, new_pid)


def kill_while_busy(view: BrokerView, load: Workload, actor: str, what: str,
                    signum: int = signal.SIGKILL, pid: int = 0) -> tuple[int, float]:
    """Signal `actor` (or `pid`) while the workload's `what` request is in the actor's
    hands: the pid and when (monotonic)."""
    pid = pid or view.pids(actor).pop()
    load.wait_sending(what)
    with contextlib.suppress(AssertionError):
        until(lambda: view.busy(actor), 2.0, f"{what} reaching the {actor} actor")
    return pid, kill(pid, signum)
