"""The supervisor actor: starts the process tree in order, restarts what crashes,
stops it all in reverse.

Every child gets a thread that waits for it to exit and tells the actor, so
all decisions about children are taken on the actor's one thread.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pouch.actors.host import ActorBase, ActorContext
from pouch.actors.supervisor.children import (
    Child,
    ChildSpec,
    describe_exit,
    stop_process,
    wait_until,
)
from pouch.actors.supervisor.launch import Launcher, Process
from pouch.proto.contract import method
from pouch.proto.envelope import PouchError
from pouch.proto.shapes import SupervisorStatus
from pouch.proto.stubs import BrokerCalls

log = logging.getLogger("pouch.supervisor")

# A child that ran this long without crashing starts its backoff afresh.
STABLE_AFTER = 30.0


@dataclass(frozen=True)
class Exited:
    name: str
    pid: int
    status: int


@dataclass(frozen=True)
class Restart:
    name: str


@dataclass(frozen=True)
class Unresponsive:
    service: str
    pid: int


def _running(proc: Process) -> bool:
    return proc.poll() is None


class SupervisorActor(ActorBase):
    service = "supervisor"

    def __init__(self, ctx: ActorContext, specs: list[ChildSpec], launcher: Launcher,
                 on_fatal: Callable[[str], None],
                 on_started: Callable[[str, int], None] | None = None) -> None:
        super().__init__(ctx)
        self._launcher = launcher
        self._children = {spec.name: Child(spec) for spec in specs}
        self._order = [spec.name for spec in specs]
        self._on_fatal = on_fatal
        self._on_started = on_started
        self._stopping = False
        self._restarts = ctx.metrics.counter("pouch_child_restarts",
                                             "Restarts of a supervised child", ("child",))
        self._up = ctx.metrics.gauge("pouch_child_up", "1 while a supervised child runs",
                                     ("child",))

    # -- the contract --------------------------------------------------------

    @method(idempotent=True, timeout=2.0)
    def status(self) -> SupervisorStatus:
        """Every child's pid, state and restarts, and which are degraded."""
        return {
            "children": {name: self._children[name].describe() for name in self._order},
            "degraded": [n for n in self._order if self._children[n].state == "down"],
        }

    # -- driven by pouchd's main thread ---------------------------------------

    def start_all(self, cancelled: threading.Event) -> None:
        """Start every child in order, each ready before the next. An actor that fails
        to start is left to the restart policy (pouchd then runs degraded); the broker,
        containerd or the gateway failing to start is fatal: raises."""
        for name in self._order:
            if cancelled.is_set():
                raise PouchError("unavailable", "start-up interrupted")
            child = self._children[name]
            self._start(child)
            proc = child.proc
            assert proc is not None
            ready = wait_until(child.spec.ready, child.spec.ready_timeout,
                               functools.partial(_running, proc))
            # From here an exit of this child is handled as any other: restart or give up.
            child.state = "running"
            if ready:
                self._up.set(name, value=1)
                log.info("%s ready (pid %s)", name, child.pid)
                continue
            status = proc.poll()
            why = describe_exit(status) if status is not None else "did not become ready"
            if not child.spec.service:
                raise PouchError("unavailable", f"{name} {why} within "
                                                f"{child.spec.ready_timeout:.0f} s")
            log.error("%s %s at start-up; going on without it for now", name, why)

    def stop_all(self) -> None:
        """Stop every child in reverse order."""
        self._stopping = True
        for name in reversed(self._order):
            child = self._children[name]
            if child.proc is not None:
                stop_process(child.proc, child.spec.stop_timeout, name)
                log.info("%s stopped", name)
            child.state = "stopped"

    # -- messages from the watcher threads -----------------------------------

    def on_message(self, message: Any) -> Any:
        if isinstance(message, Exited):
            self._exited(message)
        elif isinstance(message, Restart):
            self._restart(message.name)
        elif isinstance(message, Unresponsive):
            self._unresponsive(message)
        return None

    def _start(self, child: Child) -> None:
        child.state = "starting"
        child.started_at = time.monotonic()
        spec = child.spec
        proc = child.proc = self._launcher.launch(spec.name, spec.argv, spec.role)
        if self._on_started:
            self._on_started(spec.name, proc.pid)
        ref = self.actor_ref

        def watch() -> None:
            status = proc.wait()
            self._launcher.forget(proc.pid)
            ref.tell(Exited(spec.name, proc.pid, status))

        threading.Thread(target=watch, name=f"watch-{child.spec.name}", daemon=True).start()

    def _exited(self, event: Exited) -> None:
        child = self._children[event.name]
        if child.pid != event.pid or self._stopping or child.state == "starting":
            return  # start_all (or stop_all) deals with it
        child.last_exit = describe_exit(event.status)
        self._up.set(event.name, value=0)
        now = time.monotonic()
        if now - child.started_at > STABLE_AFTER:
            child.policy.reset()
        delay = child.policy.next_delay(now)
        if delay is not None:
            child.state = "backoff"
            log.warning("%s (pid %d) %s; restarting it in %.1f s",
                        event.name, event.pid, child.last_exit, delay)
            if delay:
                threading.Timer(delay, self.actor_ref.tell, args=(Restart(event.name),)).start()
            else:
                self._restart(event.name)  # before a word to the broker: it is not on the way
        service = child.spec.service
        if service:
            self._tell_broker(lambda b: b.worker_gone(service=service, pid=event.pid))
        if delay is None:
            child.state = "down"
            reason = (f"restarted {child.policy.max_restarts} times within "
                      f"{child.policy.window:.0f} s; last {child.last_exit}")
            log.error("%s %s; giving up on it: %s", event.name, child.last_exit, reason)
            if child.spec.service:
                self._mark_down(child.spec.service, reason)
            if event.name in ("containerd", "broker"):
                self._on_fatal(f"{event.name} keeps crashing ({reason}): pouchd stops")

    def _restart(self, name: str) -> None:
        child = self._children[name]
        if self._stopping or child.state != "backoff":
            return
        child.restarts += 1
        self._restarts.inc(name)
        self._start(child)
        # Readiness is not awaited here: the broker queues requests until the
        # actor says READY, and a child that fails again comes back as Exited.
        child.state = "running"
        self._up.set(name, value=1)

    def _unresponsive(self, event: Unresponsive) -> None:
        child = self._children.get(event.service)
        if child is None or child.pid != event.pid or child.proc is None:
            return
        if child.proc.poll() is None:
            log.error("%s (pid %d) stopped answering heartbeats: killing it",
                      event.service, event.pid)
            child.proc.kill()

    def _mark_down(self, service: str, reason: str | None) -> None:
        self._tell_broker(lambda b: b.mark_down(service=service, reason=reason))

    def _tell_broker(self, report: Callable[[BrokerCalls], object]) -> None:
        try:
            report(self.ctx.calls.broker)
        except PouchError as exc:
            log.warning("could not report to the broker: %s", exc.message)
