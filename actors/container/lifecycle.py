"""A container's lifecycle as a pure state machine: its states, what each request and
each exit of its task does to it, the restart policy and its backoff.

No I/O and no clock of its own: every function takes plain values (the state, the
policy, the exit code, the time) and returns what follows, a Transition (the new state
and the effects the worker applies: signals, timers, removal, answers). The rules are
dockerd's, so that a container behaves here as it would there.
"""

from __future__ import annotations

import signal as signals
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pouch.actors.backoff import Backoff
from pouch.proto.envelope import conflict, invalid

DEFAULT_STOP_SIGNAL = "SIGTERM"
DEFAULT_STOP_TIMEOUT = 10
# dockerd's restart delay: 100 ms, doubling up to a minute; a run of 10 s or more
# starts the series again.
RESTART_BACKOFF = Backoff(first=0.1, cap=60.0)
STABLE_RUN = 10.0
# A SIGKILL answers once the exit is recorded, or after this long (dockerd waits as long
# before it kills the process directly).
KILL_WAIT = 10.0
# A start cut by an actor's death never ran, and its caller sends it again (once per
# token) as soon as the actor is back: an AutoRemove container waits this long for that
# start before it is removed, as the failed start would have removed it.
START_RETRY_GRACE = 30.0


class Status(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


# The task lives: a signal reaches it and its exit is to come.
LIVE = frozenset({Status.RUNNING, Status.PAUSED, Status.REMOVING})


def parse_signal(value: str | int) -> int:
    """SIGTERM, TERM, 15 -> 15. Errors: invalid."""
    text = str(value).strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < signals.NSIG:
            return number
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        if hasattr(signals.Signals, name):
            return int(signals.Signals[name])
        # Real-time signals by offset, as systemd images name their stop signal.
        base, sign, offset = name.partition("+" if "+" in name else "-")
        if base in ("SIGRTMIN", "SIGRTMAX") and sign and offset.isdigit():
            number = int(getattr(signals, base)) + int(offset) * (1 if sign == "+" else -1)
            if signals.SIGRTMIN <= number <= signals.SIGRTMAX:
                return number
    raise invalid(f"Invalid signal: {value}")


@dataclass(frozen=True)
class State:
    id: str
    status: Status
    started_at: float = 0.0  # when the last run started, in seconds since the epoch
    restart_count: int = 0  # restarts by policy since the last start by hand
    backoff: int = 0  # restarts in a row, each after a run shorter than STABLE_RUN
    manually_stopped: bool = False  # a user stopped or signalled it: unless-stopped rests
    exit_requested: bool = False  # the coming exit was asked for: no restart (ExitOnNext)
    # Intents, written before the operation's first effect: a restore finds what an
    # actor's death cut halfway and finishes it.
    start_pending: bool = False  # a start creates the task; it has not answered yet
    removal_pending: bool = False  # a removal began: it ends with the container gone

    @property
    def live(self) -> bool:
        return self.status in LIVE


@dataclass(frozen=True)
class RestartPolicy:
    """HostConfig's RestartPolicy and AutoRemove: what follows an exit."""

    name: str = "no"
    maximum_retry_count: int = 0
    auto_remove: bool = False

    @classmethod
    def of(cls, host_config: Mapping[str, Any]) -> RestartPolicy:
        policy = host_config.get("RestartPolicy") or {}
        return cls(policy.get("Name") or "no", policy.get("MaximumRetryCount") or 0,
                   bool(host_config.get("AutoRemove")))


RESTART_POLICY_NAMES = ("no", "always", "unless-stopped", "on-failure")


def check_restart_policy(value: Any) -> dict[str, Any]:
    """A HostConfig.RestartPolicy as a request gives it (docker update), checked with
    dockerd's words and written out in full. Errors: invalid."""
    if not isinstance(value, Mapping):
        raise invalid("invalid restart policy: must be an object with Name and "
                      "MaximumRetryCount")
    name = value.get("Name") or "no"
    retries = value.get("MaximumRetryCount") or 0
    if not isinstance(name, str) or name not in RESTART_POLICY_NAMES:
        raise invalid(f"invalid restart policy '{name}'")
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise invalid("invalid restart policy: MaximumRetryCount must be an integer")
    if retries < 0:
        raise invalid("maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise invalid(f"maximum retry count cannot be used with restart policy '{name}'")
    return {"Name": name, "MaximumRetryCount": retries}


@dataclass(frozen=True)
class StopPolicy:
    """Config's StopSignal and StopTimeout: how a stop ends the task."""

    signal: int = signals.SIGTERM
    timeout: int = DEFAULT_STOP_TIMEOUT
    signal_given: bool = False  # the container names its own stop signal

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> StopPolicy:
        """Errors: invalid (a stop signal that is none)."""
        given = config.get("StopSignal")
        timeout = config.get("StopTimeout")
        return cls(parse_signal(given or DEFAULT_STOP_SIGNAL),
                   DEFAULT_STOP_TIMEOUT if timeout is None else timeout, bool(given))


# -- effects: what the worker does for a transition, in order ----------------------


@dataclass(frozen=True)
class Signal:
    """Send `signum` to the task's process (to all its processes with `all`)."""

    signum: int
    all: bool = False


@dataclass(frozen=True)
class KillAfter:
    """SIGKILL every process of this run after `seconds`, unless it has ended."""

    seconds: float


@dataclass(frozen=True)
class AnswerBy:
    """Answer the held request after `seconds` even if the exit has not come."""

    seconds: float


@dataclass(frozen=True)
class RestartAfter:
    """Start the task again after `seconds` (the restart is due)."""

    seconds: float


@dataclass(frozen=True)
class CancelRestart:
    """Forget a pending restart."""


@dataclass(frozen=True)
class AnswerWaiters:
    """Answer what waited for this exit: held stops and kills, wait requests."""


@dataclass(frozen=True)
class Freeze:
    """Pause every process of the task (the cgroup freezer)."""


@dataclass(frozen=True)
class Thaw:
    """Resume a paused task; `after_signal`: one that ends it was just sent, and the
    task may be gone already (a failure to thaw it is no failure of the request)."""

    after_signal: bool = False


@dataclass(frozen=True)
class Destroy:
    """Remove the container and all it holds; answer the remove request with the outcome."""


@dataclass(frozen=True)
class RemoveUnlessStarted:
    """Remove the container after `seconds` unless a start came meanwhile."""

    seconds: float


@dataclass(frozen=True)
class TellStopped:
    """Tell that a stop request is done (dockerd's `stop` event): at once, or, with
    `at_exit`, once the exit it waits for is recorded (after the `die`)."""

    at_exit: bool = False


Effect = (Signal | KillAfter | AnswerBy | RestartAfter | CancelRestart | AnswerWaiters
          | Freeze | Thaw | Destroy | RemoveUnlessStarted | TellStopped)


@dataclass(frozen=True)
class Transition:
    state: State
    effects: tuple[Effect, ...] = ()
    result: Any = None  # the answer to the request
    held: bool = False  # the answer waits for the task's exit


# -- the requests ----------------------------------------------------------------


def on_start(state: State) -> bool:
    """Whether a start request starts the task (False: it runs already). Errors: conflict."""
    if state.status is Status.PAUSED:
        raise conflict("cannot start a paused container, try unpause instead")
    if state.status is Status.RUNNING:
        return False
    if state.status in (Status.REMOVING, Status.DEAD) or state.removal_pending:
        raise conflict(f"container {state.id} is marked for removal and cannot be started")
    return True


def on_starting(state: State) -> State:
    """The start's intent, saved before the task is created."""
    return replace(state, start_pending=True)


def on_started(state: State, now: float, by_policy: bool = False) -> State:
    """The task runs since `now`. A start by hand begins the restart count again."""
    running = replace(state, status=Status.RUNNING, started_at=now, exit_requested=False,
                      start_pending=False)
    if by_policy:
        return running
    return replace(running, restart_count=0, backoff=0, manually_stopped=False)


def on_start_sent(state: State, now: float, by_policy: bool = False) -> State:
    """The task is made and its start on its way: the state it will have once started
    (`on_started`), saved while containerd starts it, the start's intent still in it.
    A restore that finds the task so (running, or gone with the machine) takes it as
    it is; one that finds the task made and never started finds the start cut."""
    return replace(on_started(state, now, by_policy), start_pending=True)


def on_start_failed(state: State, policy: RestartPolicy, exit_code: int, now: float,
                    by_policy: bool = False, ran_before: bool = True) -> Transition:
    """The task could not start. A restart that fails counts as a run that ended at once;
    a start by hand leaves the container as it was, created if it never ran, else
    exited, the error told to the user, or removes it with AutoRemove (as dockerd
    does)."""
    state = replace(state, start_pending=False)
    if by_policy:
        return on_exit(replace(state, status=Status.RUNNING, started_at=now), policy,
                       exit_code, now)
    if policy.auto_remove:
        return Transition(replace(state, status=Status.EXITED, removal_pending=True),
                          (Destroy(),))
    return Transition(replace(state, status=Status.EXITED if ran_before else Status.CREATED))


def on_stop(state: State, stop: StopPolicy, timeout: int | None,
            signum: int | None = None) -> Transition:
    """A stop request, with the grace period it gives (None: the container's own) and
    the signal to send first (None: the container's stop signal). Answers True once the
    task has exited; False if it was not running. A negative grace period waits for the
    exit without end, as dockerd's does. The stop signal goes first even with no grace,
    as dockerd sends it; a SIGKILL first needs no second one after the grace. The stop
    is told once the container is stopped (not when it was not running: dockerd answers
    304 then)."""
    grace = stop.timeout if timeout is None else timeout
    first = stop.signal if signum is None else signum
    if state.live:
        # A paused task is thawed once signalled, as dockerd does, so that the signal
        # (or the SIGKILL after the grace) can end it.
        thaw = (Thaw(after_signal=True),) if state.status is Status.PAUSED else ()
        stopping = replace(state, status=_unpaused(state.status), manually_stopped=True,
                           exit_requested=True)
        force: tuple[Effect, ...]
        if first == signals.SIGKILL:
            signal, force = Signal(first, all=True), (AnswerBy(KILL_WAIT),)
        else:
            signal = Signal(first)
            force = () if grace < 0 else (KillAfter(grace), AnswerBy(grace + KILL_WAIT))
        # Told last: a signal containerd refuses fails the stop, which then is not told.
        return Transition(stopping, (signal, *thaw, *force, TellStopped(at_exit=True)),
                          result=True, held=True)
    if state.status is Status.RESTARTING:
        return Transition(replace(state, status=Status.EXITED, manually_stopped=True),
                          (CancelRestart(), TellStopped()), result=True)
    return Transition(state, result=False)


def on_kill(state: State, stop: StopPolicy, signum: int) -> Transition:
    """A kill request. SIGKILL answers once the exit is recorded (within KILL_WAIT);
    SIGKILL, the stop signal, or any signal when the container names none, means the
    coming exit is wanted and brings no restart. Errors: conflict (not running)."""
    ends = signum == signals.SIGKILL or not stop.signal_given or signum == stop.signal
    if state.status is Status.RESTARTING:
        if ends:
            return Transition(replace(state, status=Status.EXITED, manually_stopped=True),
                              (CancelRestart(),))
        return Transition(replace(state, manually_stopped=True))
    if not state.live:
        raise conflict(f"Container {state.id} is not running")
    killed = replace(state, manually_stopped=True, exit_requested=state.exit_requested or ends)
    # A paused task is thawed after a signal that ends it (dockerd's rule); any other
    # signal waits for the unpause.
    thaw: tuple[Effect, ...] = ()
    if ends and state.status is Status.PAUSED:
        thaw, killed = (Thaw(after_signal=True),), replace(killed, status=Status.RUNNING)
    if signum == signals.SIGKILL:
        return Transition(killed, (Signal(signum), *thaw, AnswerBy(KILL_WAIT)), held=True)
    return Transition(killed, (Signal(signum), *thaw))


def on_remove(state: State, force: bool) -> Transition:
    """A remove request; with force, a live task is killed and the removal follows its
    exit. Errors: conflict."""
    if state.status is Status.REMOVING:
        raise conflict(f"removal of container {state.id} is already in progress")
    if not force and state.status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING):
        advice = "Unpause and then stop" if state.status is Status.PAUSED else "Stop"
        raise conflict(f"You cannot remove a {state.status.value} container {state.id}. "
                       f"{advice} the container before attempting removal or force remove")
    if state.live:
        removing = replace(state, status=Status.REMOVING, manually_stopped=True,
                           exit_requested=True)
        thaw = (Thaw(after_signal=True),) if state.status is Status.PAUSED else ()
        return Transition(removing, (Signal(signals.SIGKILL, all=True), *thaw), held=True)
    if state.status is Status.RESTARTING:
        return Transition(replace(state, status=Status.EXITED, removal_pending=True),
                          (CancelRestart(), Destroy()))
    return Transition(replace(state, removal_pending=True), (Destroy(),))


def on_pause(state: State) -> Transition:
    """A pause request: the task's processes are frozen. Errors: conflict (dockerd's
    words), unless it runs and is not paused yet."""
    if state.status is Status.PAUSED:
        raise conflict(f"Container {state.id} is already paused")
    if state.status is Status.RESTARTING:
        raise conflict(f"Container {state.id} is restarting, wait until the container is "
                       "running")
    if state.status is not Status.RUNNING:
        raise conflict(f"Container {state.id} is not running")
    return Transition(replace(state, status=Status.PAUSED), (Freeze(),))


def on_unpause(state: State) -> Transition:
    """An unpause request. Errors: conflict (it is not paused)."""
    if state.status is not Status.PAUSED:
        raise conflict(f"Container {state.id} is not paused")
    return Transition(replace(state, status=Status.RUNNING), (Thaw(),))


def on_restart(state: State, stop: StopPolicy, timeout: int | None) -> Transition:
    """A restart request: a stop as `on_stop` decides it (held until the exit when the
    task lives), after which the container is started again, by hand (its restart count
    begins again, as dockerd's restart does). Errors: conflict (on its way out)."""
    if state.status in (Status.REMOVING, Status.DEAD) or state.removal_pending:
        raise conflict(f"Cannot restart container {state.id}: container is marked for "
                       "removal and cannot be started")
    return on_stop(state, stop, timeout)


def prunable(state: State) -> bool:
    """Whether `docker container prune` removes the container: it does not run, is not
    about to (restarting) and is not on its way out already."""
    return state.status in (Status.CREATED, Status.EXITED, Status.DEAD) and not (
        state.removal_pending or state.start_pending)


def _unpaused(status: Status) -> Status:
    return Status.RUNNING if status is Status.PAUSED else status


# -- the task's exit and the restart policy -----------------------------------------


def restarts(policy: RestartPolicy, state: State, exit_code: int) -> bool:
    """Whether the policy restarts a container whose run ended with `exit_code`."""
    if state.exit_requested:
        return False
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not state.manually_stopped
    if policy.name == "on-failure":
        limit = policy.maximum_retry_count
        return exit_code != 0 and (limit == 0 or state.restart_count < limit)
    return False


def on_exit(state: State, policy: RestartPolicy, exit_code: int, now: float) -> Transition:
    """The task exited with `exit_code` at `now`."""
    ended = replace(state, status=Status.EXITED, exit_requested=False, start_pending=False)
    if state.status is Status.REMOVING or policy.auto_remove:
        return Transition(replace(ended, removal_pending=True), (AnswerWaiters(), Destroy()))
    if not restarts(policy, state, exit_code):
        return Transition(ended, (AnswerWaiters(),))
    step = 1 if now - state.started_at >= STABLE_RUN else state.backoff + 1
    restarting = replace(ended, status=Status.RESTARTING, restart_count=state.restart_count + 1,
                         backoff=step)
    return Transition(restarting, (AnswerWaiters(), RestartAfter(RESTART_BACKOFF.delay(step))))


def on_restart_due(state: State) -> bool:
    """The restart timer fired: whether the restart still stands (not cancelled meanwhile)."""
    return state.status is Status.RESTARTING


def on_restore(state: State, policy: RestartPolicy | None = None) -> Transition:
    """The worker starts again (the actor or pouchd restarted) with no task: a removal
    that was cut is finished, and so is the auto-removal of an exited container; an
    AutoRemove container whose start was cut waits START_RETRY_GRACE for that start to
    be sent again; a pending restart is scheduled again."""
    auto_remove = policy is not None and policy.auto_remove
    if state.removal_pending or (auto_remove and state.status is Status.EXITED):
        return Transition(replace(state, start_pending=False, removal_pending=True),
                          (Destroy(),))
    cut_start, state = state.start_pending, replace(state, start_pending=False)  # never ran
    if cut_start and auto_remove:
        return Transition(state, (RemoveUnlessStarted(START_RETRY_GRACE),))
    if state.status is Status.RESTARTING:
        return Transition(state, (RestartAfter(RESTART_BACKOFF.delay(max(1, state.backoff))),))
    return Transition(state)


def on_unclaimed(state: State) -> Transition:
    """Nobody will start the container (a start cut by the actor's death was not sent
    again within START_RETRY_GRACE, or its create's caller died before the answer
    reached it): if it never started, it is removed."""
    if state.status is Status.CREATED and not state.start_pending:
        return Transition(replace(state, removal_pending=True), (Destroy(),))
    return Transition(state)


def on_restore_live(state: State, paused: bool = False) -> Transition:
    """The worker starts again and finds the task alive (`paused`: frozen): a start that
    was cut went through; a forced removal whose kill may not have been sent sends it
    again (and thaws the task); a pause or unpause cut between containerd and the record
    is recorded as containerd has it."""
    state = replace(state, start_pending=False)
    if state.status is Status.REMOVING:
        thaw = (Thaw(after_signal=True),) if paused else ()
        return Transition(state, (Signal(signals.SIGKILL, all=True), *thaw))
    if state.status in (Status.RUNNING, Status.PAUSED):
        state = replace(state, status=Status.PAUSED if paused else Status.RUNNING)
    return Transition(state)
