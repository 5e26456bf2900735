"""Health checks, as dockerd 20.10 runs them (its daemon/health.go).

A container's check (Config.Healthcheck) is its image's, overridden field by field by
its create body's. While the container runs, a probe runs every Interval as an exec in
the container (the exec machinery of pouch.actors.container.exec, so it publishes
exec_create / exec_start / exec_die events and is listed in ExecIDs while it runs, as
dockerd's probes are); one that outlasts Timeout is killed and counts as a failure.
State.Health keeps the status, the failing streak and the last LOG_KEPT results; it is
in the record, so it survives an actor restart (the probing resumes at restore).

Pure rules first (the merged config, the probe's command, the next status); the
effects (`HealthMonitor`, on its worker's thread) after.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pouch.actors.timefmt import parse_rfc3339, rfc3339_nano
from pouch.proto.envelope import PouchError, invalid
from pouch.proto.stream import StreamSession, StreamSpec

log = logging.getLogger("pouch.container")

SECOND = 1_000_000_000  # the API's durations are in nanoseconds
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_RETRIES = 3
DEFAULT_START_PERIOD = 0
MIN_DURATION = 1_000_000  # 1 ms: dockerd refuses a shorter non-zero duration
LOG_KEPT = 5              # dockerd's maxLogEntries
OUTPUT_KEPT = 4096        # dockerd's maxOutputLen
# dockerd records a probe that could not run, or ran out of time, with this exit code.
PROBE_ERROR = -1

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"

_DURATIONS = ("Interval", "Timeout", "StartPeriod")
KILL = int(signal.SIGKILL)


# -- the rules ------------------------------------------------------------------------


def check_config(check: Any) -> None:
    """A create body's Healthcheck, with dockerd's words. Errors: invalid."""
    if check is None:
        return
    if not isinstance(check, dict):
        raise invalid("invalid field Healthcheck: must be an object")
    test = check.get("Test")
    if test is not None and not (isinstance(test, list) and all(isinstance(t, str)
                                                                 for t in test)):
        raise invalid("invalid field Healthcheck.Test: must be a list of strings")
    for key in _DURATIONS:
        value = check.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid(f"invalid field Healthcheck.{key}: must be an integer")
        if value != 0 and value < MIN_DURATION:
            raise invalid(f"{key} in Healthcheck cannot be less than 1ms")
    retries = check.get("Retries")
    if retries is not None:
        if not isinstance(retries, int) or isinstance(retries, bool):
            raise invalid("invalid field Healthcheck.Retries: must be an integer")
        if retries < 0:
            raise invalid("Retries in Healthcheck cannot be negative")


def merge(image: dict[str, Any] | None, body: dict[str, Any] | None) -> dict[str, Any] | None:
    """The container's check: the body's, each field it leaves empty taken from the
    image's (dockerd's merge). None: neither has one."""
    if not body:
        return _shown(image) if image else None
    merged = dict(body)
    for key in ("Test", "Interval", "Timeout", "StartPeriod", "Retries"):
        if not merged.get(key) and image and image.get(key):
            merged[key] = image[key]
    return _shown(merged)


def _shown(check: dict[str, Any]) -> dict[str, Any]:
    """A check as dockerd records it: its empty fields (null, 0) left out (`omitempty`)."""
    return {key: value for key, value in check.items() if value}


@dataclass(frozen=True)
class Check:
    """A check with dockerd's defaults filled in (durations in seconds)."""

    command: list[str]
    interval: float
    timeout: float
    retries: int
    start_period: float


def probe_command(test: list[str], shell: list[str] | None = None) -> list[str] | None:
    """The command a Test runs; None: no probe (NONE, empty, or a form dockerd ignores)."""
    if not test:
        return None
    kind, rest = test[0], list(test[1:])
    if kind == "CMD" and rest:
        return rest
    if kind == "CMD-SHELL" and rest:
        return [*(shell or ["/bin/sh", "-c"]), " ".join(rest)]
    return None


def check_of(config: dict[str, Any]) -> Check | None:
    """The check a container's Config holds, or None if it has no probe to run."""
    check = config.get("Healthcheck") or {}
    command = probe_command(check.get("Test") or [], config.get("Shell") or None)
    if command is None:
        return None
    return Check(command=command,
                 interval=(check.get("Interval") or DEFAULT_INTERVAL) / SECOND,
                 timeout=(check.get("Timeout") or DEFAULT_TIMEOUT) / SECOND,
                 retries=check.get("Retries") or DEFAULT_RETRIES,
                 start_period=(check.get("StartPeriod") or DEFAULT_START_PERIOD) / SECOND)


def fresh(health: dict[str, Any] | None) -> dict[str, Any]:
    """State.Health as a (re)start leaves it: starting, its log kept (as dockerd)."""
    return {"Status": STARTING, "FailingStreak": 0, "Log": list((health or {}).get("Log") or [])}


def limit_output(data: bytes) -> str:
    """What a probe's output keeps: its first OUTPUT_KEPT bytes."""
    return data[:OUTPUT_KEPT].decode(errors="replace")


def on_result(health: dict[str, Any], result: dict[str, Any], retries: int,
              start_period: float, started_at: float) -> dict[str, Any]:
    """State.Health after a probe's `result` ({Start, End, ExitCode, Output}): a success
    makes it healthy; a failure adds to the streak (but not while it is still starting
    within the start period, counted from `started_at`), unhealthy once the streak
    reaches `retries`. Pure: a new dict."""
    status, streak = health.get("Status", STARTING), int(health.get("FailingStreak", 0))
    logs = [*(health.get("Log") or []), result][-LOG_KEPT:]
    if result["ExitCode"] == 0:
        status, streak = HEALTHY, 0
    else:
        in_start_period = status == STARTING and \
            parse_rfc3339(result["Start"]) - started_at < start_period
        if not in_start_period:
            streak += 1
            if streak >= retries:
                status = UNHEALTHY
    return {"Status": status, "FailingStreak": streak, "Log": logs}


def status_note(health: dict[str, Any] | None) -> str:
    """What `docker ps` adds to a running container's status: ' (healthy)'..."""
    if not health:
        return ""
    status = health.get("Status")
    return " (health: starting)" if status == STARTING else f" ({status})"


# -- the effects: one container's probes, on its worker's thread ---------------------


@dataclass(frozen=True)
class HealthEnv:
    """What the probing needs of its worker."""

    cid: str
    record: Callable[[], dict[str, Any]]
    save: Callable[[], None]
    event: Callable[..., None]
    on_worker: Callable[[Callable[[], None]], None]  # run later on the worker's thread
    # Run an exec (command, output session); its ID. Errors: PouchError.
    run_exec: Callable[[list[str], StreamSession], str]
    exit_code: Callable[[str], int | None]  # an exec's, once recorded
    kill_exec: Callable[[str], None]
    # Whether a probe may run now: not while the container is paused or being stopped
    # (dockerd's monitor rests then); a probe due meanwhile waits for the next interval.
    may_probe: Callable[[], bool] = lambda: True


class _Capture:
    """A probe's output: the exec's stdout and stderr together, through a socket pair
    whose far end the IO hub writes like a client's; read on a thread of its own up to
    its end (the hub ends it once the exec's exit code is recorded)."""

    def __init__(self, done: Callable[[bytes], None]) -> None:
        ours, theirs = socket.socketpair()
        self.session = StreamSession(theirs, StreamSpec("upgrade", ""))
        self._sock, self._done = ours, done
        threading.Thread(target=self._read, name="health-probe", daemon=True).start()

    def _read(self) -> None:
        kept = bytearray()
        with self._sock, contextlib.suppress(OSError):
            while chunk := self._sock.recv(65536):
                if len(kept) < OUTPUT_KEPT:
                    kept += chunk
        self._done(bytes(kept))


@dataclass
class _Probe:
    generation: int
    start: str
    exec_id: str = ""
    over: bool = False


class HealthMonitor:
    def __init__(self, env: HealthEnv) -> None:
        self.env = env
        self._generation = 0  # a stop or a start makes earlier timers and probes stale
        self._timer: threading.Timer | None = None
        self._probe: _Probe | None = None

    def started(self) -> None:
        """The container (re)started: State.Health starts over, probes follow."""
        self.stop()
        if self.reset():
            self._schedule()

    def reset(self) -> bool:
        """State.Health as a start leaves it (probes are started()'s); whether the
        container has a check."""
        record = self.env.record()
        if check_of(record["Config"]) is None:
            record["State"].pop("Health", None)
            return False
        record["State"]["Health"] = fresh(record["State"].get("Health"))
        return True

    def resume(self) -> None:
        """At restore, of a container that ran on: the probes go on where they were."""
        record = self.env.record()
        if check_of(record["Config"]) is None:
            return
        if "Health" not in record["State"]:
            record["State"]["Health"] = fresh(None)
            self.env.save()
        self._schedule()

    def stop(self) -> None:
        """The container stopped (or goes): no more probes; one running is dropped."""
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._probe = None

    def _schedule(self) -> None:
        check = check_of(self.env.record()["Config"])
        if check is None:
            return
        generation = self._generation
        self._timer = self._later(check.interval, lambda: self._probe_due(generation))

    def _later(self, seconds: float, step: Callable[[], None]) -> threading.Timer:
        timer = threading.Timer(seconds, self.env.on_worker, args=(step,))
        timer.daemon = True
        timer.start()
        return timer

    def _probe_due(self, generation: int) -> None:
        check = check_of(self.env.record()["Config"])
        if generation != self._generation or check is None:
            return
        if not self.env.may_probe():
            self._schedule()
            return
        probe = self._probe = _Probe(generation, rfc3339_nano())
        capture = _Capture(lambda out: self.env.on_worker(lambda: self._finished(probe, out)))
        try:
            probe.exec_id = self.env.run_exec(check.command, capture.session)
        except PouchError as exc:
            capture.session.close()
            self._record(probe, PROBE_ERROR, exc.message)
            return
        except Exception as exc:
            log.exception("health probe of %s", self.env.cid)
            capture.session.close()
            self._record(probe, PROBE_ERROR, f"{type(exc).__name__}: {exc}")
            return
        self._later(check.timeout, lambda: self._timed_out(probe, check.timeout))

    def _finished(self, probe: _Probe, output: bytes) -> None:
        if probe.over or not probe.exec_id:
            return
        code = self.env.exit_code(probe.exec_id)
        if code is None:
            return  # its container went meanwhile
        self._record(probe, code, limit_output(output))

    def _timed_out(self, probe: _Probe, timeout: float) -> None:
        if probe.over or probe.generation != self._generation:
            return
        with contextlib.suppress(PouchError):
            self.env.kill_exec(probe.exec_id)
        self._record(probe, PROBE_ERROR,
                     f"Health check exceeded timeout ({_go_duration(timeout)})")

    def _record(self, probe: _Probe, code: int, output: str) -> None:
        probe.over = True
        if probe.generation != self._generation:
            return  # the container stopped meanwhile
        self._probe = None
        if not self.env.may_probe():
            # Paused or being stopped since it began: its result says nothing of the
            # container's health (dockerd's monitor drops a probe it stops during).
            self._schedule()
            return
        record = self.env.record()
        check = check_of(record["Config"])
        if check is None:
            return
        state = record["State"]
        before = (state.get("Health") or {}).get("Status")
        result = {"Start": probe.start, "End": rfc3339_nano(), "ExitCode": code,
                  "Output": output}
        try:
            started_at = parse_rfc3339(state["StartedAt"])
        except ValueError:
            started_at = time.time()
        state["Health"] = on_result(state.get("Health") or fresh(None), result,
                                    check.retries, check.start_period, started_at)
        self.env.save()
        if state["Health"]["Status"] != before:
            self.env.event(f"health_status: {state['Health']['Status']}")
        self._schedule()


def _go_duration(seconds: float) -> str:
    """A duration as Go prints it in dockerd's message: 1s, 1.5s, 500ms."""
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"

