"""The supervisor actor: starts the process tree in order, restarts what crashes,
stops it all in reverse.

Every child gets a thread that waits for it to exit and tells the actor, so
all decisions about children are taken on the actor's one thread. Past its
restart intensity an actor cools down and is tried again; the broker,
containerd and the gateway (without which nothing is served) escalate
instead: pouchd exits non-zero, for systemd's Restart= (or whoever started
it) to start it afresh. Every change of a child's state is written to the
status file, which `pouchd status` reads without the broker or the gateway.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pouch.actors.host import ActorBase, ActorContext
from pouch.actors.settings import RELOADABLE, check_proxy, update_labels, write_settings
from pouch.actors.supervisor.children import (
    Child,
    ChildSpec,
    describe_exit,
    stop_process,
    wait_until,
)
from pouch.actors.supervisor.launch import Launcher, Process
from pouch.actors.supervisor.status import write_status
from pouch.proto.config import DaemonConfig
from pouch.proto.contract import method
from pouch.proto.envelope import PouchError, invalid
from pouch.proto.shapes import SupervisorStatus
from pouch.proto.stubs import BrokerCalls

log = logging.getLogger("pouch.supervisor")

# A child that ran this long without crashing starts its backoff afresh.
STABLE_AFTER = 30.0
# Without these nothing is served: past their intensity pouchd escalates.
ESSENTIAL = ("broker", "containerd", "gateway")


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
                 on_started: Callable[[str, int], None] | None = None,
                 status_file: Path | None = None,
                 reread: Callable[[], DaemonConfig] | None = None) -> None:
        super().__init__(ctx)
        self._config = ctx.config  # with the run-time changes made since pouchd started
        self._reread = reread
        self._launcher = launcher
        self._children = {spec.name: Child(spec) for spec in specs}
        self._order = [spec.name for spec in specs]
        self._on_fatal = on_fatal
        self._on_started = on_started
        self._stopping = False
        self._status_file = status_file
        self._restarts = ctx.metrics.counter("pouch_child_restarts",
                                             "Restarts of a supervised child", ("child",))
        self._up = ctx.metrics.gauge("pouch_child_up", "1 while a supervised child runs",
                                     ("child",))
        self._retry_at = ctx.metrics.gauge(
            "pouch_child_retry_at_seconds",
            "When (Unix time) a child given up on is tried again; 0 while it is not",
            ("child",))

    # -- the contract --------------------------------------------------------

    @method(idempotent=True, timeout=2.0)
    def status(self) -> SupervisorStatus:
        """Every child's pid, state and restarts, and which are degraded (given up on
        for a cool-down, or stopped for good)."""
        return {
            "children": {name: self._children[name].describe() for name in self._order},
            "degraded": [n for n in self._order if self._children[n].degraded],
        }

    @method(idempotent=True, returns=None, errors=("invalid",), timeout=2.0)
    def update(self, image_proxy: str | None = None, labels: list[str] | None = None) -> None:
        """Change settings while pouchd runs (POST /daemon/update): `image_proxy` ("" for
        the environment's); `labels` (key=value) replace the value of a key the daemon
        has, else are added. A change lasts until pouchd restarts, as pouchd's."""
        if image_proxy is None and not labels:
            raise invalid("daemon update config cannot be empty: give ImageProxy or Labels")
        config = self._config
        if image_proxy is not None:
            config = dataclasses.replace(config, image_proxy=image_proxy)
        if labels:
            config = dataclasses.replace(config, labels=update_labels(config.labels, labels))
        self._apply(config)

    # -- driven by pouchd's main thread ---------------------------------------

    def reload(self) -> None:
        """Read the config file again (pouchd got a SIGHUP) and apply its registry
        settings; flags still win over the file, as at start."""
        if self._reread is None:
            return
        try:
            fresh = self._reread()
            self._apply(dataclasses.replace(
                self._config, **{name: getattr(fresh, name) for name in RELOADABLE}))
        except ValueError as exc:
            log.error("not reloaded: %s", exc)
        except PouchError as exc:
            log.error("not reloaded: %s", exc.message)

    def _apply(self, config: DaemonConfig) -> None:
        check_proxy(config.image_proxy)
        write_settings(config)
        self._config = config
        log.info("settings now: %s", ", ".join(
            f"{name}={getattr(config, name)!r}" for name in RELOADABLE))

    def start_all(self, cancelled: threading.Event) -> None:
        """Start every child in order, each ready before the next. An actor that fails
        to start is left to the restart policy (pouchd then runs degraded); the broker,
        containerd or the gateway failing to start is fatal: raises."""
        write_settings(self._config)  # a run-time change of an earlier run ends here
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
            self._set_state(child, "running")
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
            self._set_state(child, "stopped")

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
        child.started_at = time.monotonic()
        spec = child.spec
        proc = child.proc = self._launcher.launch(spec.name, spec.argv, spec.role)
        self._set_state(child, "starting")
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
            self._set_state(child, "backoff")
            log.warning("%s (pid %d) %s; restarting it in %.1f s",
                        event.name, event.pid, child.last_exit, delay)
            if delay:
                self._restart_in(delay, event.name)
            else:
                self._restart(event.name)  # before a word to the broker: it is not on the way
        service = child.spec.service
        if service:
            # Killed from outside (kill -9, SIGTERM): not a request's doing, so not
            # counted against the requests it was handling (poison requests).
            killed = -event.status in (signal.SIGKILL, signal.SIGTERM)
            self._tell_broker(lambda b: b.worker_gone(service=service, pid=event.pid,
                                                      killed=killed))
        if delay is None:
            self._give_up(child)

    def _give_up(self, child: Child) -> None:
        name = child.spec.name
        reason = (f"restarted {child.policy.max_restarts} times within "
                  f"{child.policy.window:.0f} s; last {child.last_exit}")
        if name in ESSENTIAL:
            self._set_state(child, "down")
            log.error("%s %s; giving up on it: %s", name, child.last_exit, reason)
            self._on_fatal(f"{name} keeps crashing ({reason}): pouchd exits for its own "
                           "supervisor (systemd) to start it afresh")
            return
        cool_down = child.policy.give_up()
        child.retry_at = time.time() + cool_down
        self._set_state(child, "cooling-down")
        reason += f"; tried again at {child.retry_at_text}"
        log.error("%s %s; giving up on it for %.0f s: %s", name, child.last_exit,
                  cool_down, reason)
        if child.spec.service:
            self._mark_down(child.spec.service, reason)
        self._restart_in(cool_down, name)

    def _restart_in(self, delay: float, name: str) -> None:
        # A daemon thread: a pending restart must not hold up pouchd's exit.
        timer = threading.Timer(delay, self.actor_ref.tell, args=(Restart(name),))
        timer.daemon = True
        timer.start()

    def _restart(self, name: str) -> None:
        child = self._children[name]
        if self._stopping or child.state not in ("backoff", "cooling-down"):
            return
        if child.state == "cooling-down":
            log.info("%s: its cool-down is over; starting it again", name)
            if child.spec.service:
                # Requests wait for its READY again rather than fail at once.
                self._mark_down(child.spec.service, None)
        child.restarts += 1
        self._restarts.inc(name)
        self._start(child)
        # Readiness is not awaited here: the broker queues requests until the
        # actor says READY, and a child that fails again comes back as Exited.
        self._set_state(child, "running")
        self._up.set(name, value=1)

    def _set_state(self, child: Child, state: str) -> None:
        """Every change of a child's state goes through here, into the status file."""
        child.state = state
        if state != "cooling-down":
            child.retry_at = 0.0
        self._retry_at.set(child.spec.name, value=child.retry_at)
        if self._status_file is not None:
            try:
                write_status(self._status_file, {n: self._children[n].describe()
                                                 for n in self._order})
            except OSError as exc:
                log.warning("could not write %s: %s", self._status_file, exc)

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
