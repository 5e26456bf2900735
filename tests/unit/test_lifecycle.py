"""A container's lifecycle with plain values: what each request and each exit does,
the restart policy as dockerd applies it, and its backoff."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from pouch.actors.backoff import Backoff
from pouch.actors.container import lifecycle as lc
from pouch.actors.container.lifecycle import (
    AnswerBy,
    AnswerWaiters,
    CancelRestart,
    Destroy,
    KillAfter,
    RestartAfter,
    RestartPolicy,
    Signal,
    State,
    Status,
    StopPolicy,
    TellStopped,
)
from pouch.proto.envelope import PouchError

T0 = 1_700_000_000.0
QUICK = 1.0  # a run this long is too short to reset the backoff


def running(**fields: Any) -> State:
    return replace(State(id="c1", status=Status.RUNNING, started_at=T0), **fields)


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(PouchError) as err:
        call()
    assert err.value.code == "conflict"
    return err.value.message


def crash_loop(policy: RestartPolicy, exits: int, code: int = 1,
               ran: float = QUICK) -> list[lc.Transition]:
    """Start, exit after `ran` s with `code`, restart when told: `exits` times at most."""
    state, now, seen = running(), T0, []
    for _ in range(exits):
        now += ran
        transition = lc.on_exit(state, policy, code, now)
        seen.append(transition)
        if not lc.on_restart_due(transition.state):
            break
        delay = next(e.seconds for e in transition.effects if isinstance(e, RestartAfter))
        now += delay
        state = lc.on_started(transition.state, now, by_policy=True)
    return seen


def delays(transitions: list[lc.Transition]) -> list[float]:
    return [e.seconds for t in transitions for e in t.effects if isinstance(e, RestartAfter)]


# -- backoff -----------------------------------------------------------------------


def test_backoff_doubles_from_its_first_delay_up_to_its_cap():
    backoff = Backoff(first=0.1, cap=1.0)
    assert [backoff.delay(n) for n in range(1, 7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.delay(10_000) == 1.0


def test_backoff_counts_attempts_from_one():
    with pytest.raises(ValueError):
        Backoff(first=0.1, cap=1.0).delay(0)


# -- the restart policy ----------------------------------------------------------------


@pytest.mark.parametrize(("policy", "code", "manually_stopped", "restarts"), [
    ("no", 1, False, False),
    ("always", 0, False, True),
    ("always", 1, False, True),
    ("always", 137, True, True),  # signalled by a user, not stopped: always restarts
    ("unless-stopped", 0, False, True),
    ("unless-stopped", 1, True, False),
    ("on-failure", 0, False, False),
    ("on-failure", 1, False, True),
    ("on-failure", 1, True, True),
])
def test_the_restart_policy_table(policy, code, manually_stopped, restarts):
    state = running(manually_stopped=manually_stopped)
    transition = lc.on_exit(state, RestartPolicy(policy), code, T0 + QUICK)
    assert lc.on_restart_due(transition.state) is restarts
    assert transition.state.status is (Status.RESTARTING if restarts else Status.EXITED)


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure"])
def test_an_exit_that_was_asked_for_is_never_restarted(policy):
    transition = lc.on_exit(running(exit_requested=True), RestartPolicy(policy), 143, T0 + 1)
    assert transition.state.status is Status.EXITED
    assert not transition.state.exit_requested  # spent: the next run starts afresh


def test_on_failure_3_restarts_three_times_then_rests():
    seen = crash_loop(RestartPolicy("on-failure", maximum_retry_count=3), exits=10)
    assert len(seen) == 4
    assert [t.state.restart_count for t in seen] == [1, 2, 3, 3]
    assert [t.state.status for t in seen] == [Status.RESTARTING] * 3 + [Status.EXITED]


def test_on_failure_without_a_count_restarts_as_long_as_it_fails():
    seen = crash_loop(RestartPolicy("on-failure"), exits=20)
    assert len(seen) == 20 and seen[-1].state.restart_count == 20


def test_unless_stopped_rests_after_a_manual_stop():
    policy = RestartPolicy("unless-stopped")
    stop = lc.on_stop(running(), StopPolicy(), timeout=None)
    after = lc.on_exit(stop.state, policy, 143, T0 + 5)
    assert after.state.status is Status.EXITED and after.state.manually_stopped
    # A kill with another signal than the stop one, when it names one: still a user's doing.
    stop_policy = StopPolicy(signal=signal.SIGQUIT, signal_given=True)
    killed = lc.on_kill(running(), stop_policy, signal.SIGUSR1)
    assert not killed.state.exit_requested
    assert lc.on_exit(killed.state, policy, 1, T0 + 5).state.status is Status.EXITED
    # A start by hand makes it a candidate again.
    restarted = lc.on_started(after.state, T0 + 60)
    assert not restarted.manually_stopped
    assert lc.on_exit(restarted, policy, 1, T0 + 61).state.status is Status.RESTARTING


def test_auto_remove_destroys_after_the_exit():
    transition = lc.on_exit(running(), RestartPolicy(auto_remove=True), 0, T0 + 1)
    assert transition.effects == (AnswerWaiters(), Destroy())


# -- the backoff between restarts --------------------------------------------------


def test_quick_crashes_wait_100_ms_then_twice_as_long_each_time_up_to_a_minute():
    waits = delays(crash_loop(RestartPolicy("always"), exits=12))
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 60, 60])


def test_a_run_of_ten_seconds_starts_the_backoff_again():
    policy = RestartPolicy("always")
    quick = crash_loop(policy, exits=5)
    state = lc.on_started(quick[-1].state, T0 + 100, by_policy=True)
    assert state.backoff == 5
    assert delays([lc.on_exit(state, policy, 1, T0 + 100 + lc.STABLE_RUN)]) == [0.1]
    assert delays([lc.on_exit(state, policy, 1, T0 + 109.9)]) == pytest.approx([3.2])


def test_a_start_by_hand_resets_the_count_and_the_backoff():
    quick = crash_loop(RestartPolicy("always"), exits=4)
    started = lc.on_started(quick[-1].state, T0 + 100)
    assert (started.restart_count, started.backoff, started.status) == (0, 0, Status.RUNNING)


def test_a_restart_that_cannot_start_counts_as_a_quick_exit():
    policy = RestartPolicy("on-failure", maximum_retry_count=2)
    first = lc.on_exit(running(), policy, 1, T0 + QUICK)
    failed = lc.on_start_failed(first.state, policy, 127, T0 + 2, by_policy=True)
    assert failed.state.status is Status.RESTARTING and failed.state.restart_count == 2
    assert delays([failed]) == pytest.approx([0.2])
    by_hand = lc.on_start_failed(State(id="c1", status=Status.CREATED), policy, 127, T0)
    assert by_hand == lc.Transition(State(id="c1", status=Status.EXITED))


def test_a_pending_restart_is_scheduled_again_after_a_restore():
    waiting = lc.on_exit(running(backoff=2), RestartPolicy("always"), 1, T0 + QUICK)
    assert lc.on_restore(waiting.state).effects == (RestartAfter(0.4),)
    assert lc.on_restore(running()).effects == ()


def test_a_removal_cut_by_a_restart_is_finished_at_the_restore():
    for state in (lc.on_remove(State(id="c1", status=Status.EXITED), force=False).state,
                  lc.on_exit(running(), RestartPolicy(auto_remove=True), 0, T0).state,
                  lc.on_exit(lc.on_remove(running(), force=True).state, RestartPolicy(),
                             137, T0).state):
        assert state.removal_pending
        assert lc.on_restore(state, RestartPolicy()).effects == (Destroy(),)


def test_an_exited_auto_removed_container_is_removed_at_the_restore():
    exited = State(id="c1", status=Status.EXITED)
    assert lc.on_restore(exited, RestartPolicy(auto_remove=True)).effects == (Destroy(),)
    assert lc.on_restore(exited, RestartPolicy()).effects == ()
    created = State(id="c1", status=Status.CREATED)  # never started: it stays
    assert lc.on_restore(created, RestartPolicy(auto_remove=True)).effects == ()


def test_a_start_cut_by_a_restart_leaves_an_auto_removed_container_time_for_its_retry():
    starting = lc.on_starting(State(id="c1", status=Status.CREATED))
    assert starting.start_pending
    waiting = lc.on_restore(starting, RestartPolicy(auto_remove=True))
    assert waiting.effects == (lc.RemoveUnlessStarted(lc.START_RETRY_GRACE),)
    assert not waiting.state.start_pending and waiting.state.status is Status.CREATED
    # The retry never came: removed, as the failed start would have removed it.
    over = lc.on_unclaimed(waiting.state)
    assert over.effects == (Destroy(),) and over.state.removal_pending
    # It came: the container runs (or ran) and stays until its exit removes it.
    assert lc.on_unclaimed(lc.on_started(waiting.state, T0)).effects == ()
    kept = lc.on_restore(starting, RestartPolicy())
    assert kept.effects == () and not kept.state.start_pending
    assert not lc.on_started(starting, T0).start_pending


def test_a_start_on_its_way_is_recorded_running_with_its_intent_kept():
    starting = lc.on_starting(State(id="c1", status=Status.EXITED, restart_count=3, backoff=2))
    sent = lc.on_start_sent(starting, T0)
    assert sent == replace(lc.on_started(starting, T0), start_pending=True)
    assert sent.status is Status.RUNNING and sent.restart_count == 0
    # Found with its task started, it runs, its intent settled; gone, the exit is recorded.
    assert lc.on_restore_live(sent) == lc.Transition(lc.on_started(starting, T0))
    assert not lc.on_exit(sent, RestartPolicy(), 255, T0 + 1).state.start_pending


def test_a_failed_start_removes_an_auto_removed_container_as_dockerd_does():
    created = State(id="c1", status=Status.CREATED)
    failed = lc.on_start_failed(created, RestartPolicy(auto_remove=True), 127, T0)
    assert failed.effects == (Destroy(),) and failed.state.removal_pending


def test_a_forced_removal_whose_task_lives_at_the_restore_kills_it_again():
    removing = lc.on_remove(running(), force=True).state
    assert lc.on_restore_live(removing).effects == (Signal(signal.SIGKILL, all=True),)
    assert lc.on_restore_live(running(start_pending=True)) == lc.Transition(running())


def test_a_container_whose_removal_is_pending_cannot_start():
    assert refused(lambda: lc.on_start(State(id="c1", status=Status.EXITED,
                                             removal_pending=True))) == \
        "container c1 is marked for removal and cannot be started"


# -- start ---------------------------------------------------------------------------


def test_start_starts_what_does_not_run():
    for status in (Status.CREATED, Status.EXITED, Status.RESTARTING):
        assert lc.on_start(State(id="c1", status=status)) is True
    assert lc.on_start(running()) is False


@pytest.mark.parametrize("status", [Status.REMOVING, Status.DEAD])
def test_start_refuses_a_container_on_its_way_out(status):
    assert refused(lambda: lc.on_start(State(id="c1", status=status))) == \
        "container c1 is marked for removal and cannot be started"


def test_a_restart_timer_that_fires_after_a_cancel_does_nothing():
    stopped = lc.on_stop(State(id="c1", status=Status.RESTARTING), StopPolicy(), None)
    assert not lc.on_restart_due(stopped.state)


# -- stop ----------------------------------------------------------------------------


def test_stop_signals_then_kills_after_the_grace_and_answers_on_the_exit():
    transition = lc.on_stop(running(), StopPolicy(), timeout=None)
    assert transition.effects == (Signal(signal.SIGTERM), KillAfter(lc.DEFAULT_STOP_TIMEOUT),
                                  AnswerBy(lc.DEFAULT_STOP_TIMEOUT + lc.KILL_WAIT),
                                  TellStopped(at_exit=True))
    assert transition.held and transition.result is True
    assert transition.state.exit_requested and transition.state.manually_stopped


def test_stop_uses_the_containers_signal_and_timeout_unless_the_request_gives_one():
    config = StopPolicy.of({"StopSignal": "SIGQUIT", "StopTimeout": 60})
    assert lc.on_stop(running(), config, None).effects[:2] == \
        (Signal(signal.SIGQUIT), KillAfter(60))
    assert lc.on_stop(running(), config, 2).effects[:2] == (Signal(signal.SIGQUIT), KillAfter(2))


def test_a_negative_grace_waits_for_the_exit_without_end_as_dockerd():
    for policy, timeout in ((StopPolicy(), -100), (StopPolicy.of({"StopTimeout": -1}), None)):
        transition = lc.on_stop(running(), policy, timeout)
        assert transition.effects == (Signal(signal.SIGTERM), TellStopped(at_exit=True))
        assert transition.held and transition.result is True


def test_stop_with_no_grace_signals_then_kills_at_once_as_dockerd():
    assert lc.on_stop(running(), StopPolicy(), 0).effects == (
        Signal(signal.SIGTERM), KillAfter(0), AnswerBy(lc.KILL_WAIT), TellStopped(at_exit=True))


def test_stop_with_its_own_signal_sends_that_and_sigkill_alone_once():
    """A signal given in the request replaces the container's; a SIGKILL first (the
    CRI's stop with no grace, as containerd's) needs no second SIGKILL after it."""
    assert lc.on_stop(running(), StopPolicy(), 5, signal.SIGINT).effects[:2] == (
        Signal(signal.SIGINT), KillAfter(5))
    for grace in (0, 5, -1):
        transition = lc.on_stop(running(), StopPolicy(), grace, signal.SIGKILL)
        assert transition.effects == (Signal(signal.SIGKILL, all=True),
                                      AnswerBy(lc.KILL_WAIT), TellStopped(at_exit=True))
        assert transition.held and transition.result is True


def test_stop_of_a_restarting_container_cancels_the_restart():
    transition = lc.on_stop(State(id="c1", status=Status.RESTARTING), StopPolicy(), None)
    assert transition.effects == (CancelRestart(), TellStopped())  # told at once: no exit comes
    assert transition.state.status is Status.EXITED and transition.result is True
    assert not transition.held


def test_only_a_stop_is_told_as_one_not_a_kill_a_removal_or_an_exit():
    """dockerd's `stop` event follows docker stop (and restart) alone."""
    for transition in (lc.on_kill(running(), StopPolicy(), signal.SIGKILL),
                       lc.on_kill(running(), StopPolicy(), signal.SIGTERM),
                       lc.on_remove(running(), force=True),
                       lc.on_exit(running(), RestartPolicy(), 0, 100.0),
                       lc.on_exit(running(), RestartPolicy("always"), 1, 100.0)):
        assert not any(isinstance(e, TellStopped) for e in transition.effects)


def test_stop_of_what_does_not_run_answers_false():
    for status in (Status.CREATED, Status.EXITED, Status.DEAD):
        transition = lc.on_stop(State(id="c1", status=status), StopPolicy(), None)
        assert (transition.result, transition.effects, transition.held) == (False, (), False)


def test_the_stop_defaults_live_in_one_place():
    assert StopPolicy.of({}) == StopPolicy(signal=signal.SIGTERM,
                                           timeout=lc.DEFAULT_STOP_TIMEOUT, signal_given=False)
    assert StopPolicy.of({"StopSignal": None, "StopTimeout": None}) == StopPolicy()
    assert StopPolicy.of({"StopTimeout": 0}).timeout == 0


# -- kill ----------------------------------------------------------------------------


def test_sigkill_answers_once_the_exit_is_recorded_within_a_bound():
    transition = lc.on_kill(running(), StopPolicy(), signal.SIGKILL)
    assert transition.held
    assert transition.effects == (Signal(signal.SIGKILL), AnswerBy(lc.KILL_WAIT))
    assert transition.state.exit_requested and transition.state.manually_stopped


def test_another_signal_answers_at_once():
    transition = lc.on_kill(running(), StopPolicy(), signal.SIGHUP)
    assert not transition.held and transition.effects == (Signal(signal.SIGHUP),)


def test_which_kills_mean_the_exit_is_wanted():
    own = StopPolicy(signal=signal.SIGQUIT, signal_given=True)
    assert lc.on_kill(running(), own, signal.SIGQUIT).state.exit_requested
    assert lc.on_kill(running(), own, signal.SIGKILL).state.exit_requested
    assert not lc.on_kill(running(), own, signal.SIGTERM).state.exit_requested
    # A container that names no stop signal: any kill is meant to end it (as dockerd has it).
    assert lc.on_kill(running(), StopPolicy(), signal.SIGUSR1).state.exit_requested


def test_kill_of_a_restarting_container_cancels_the_restart():
    transition = lc.on_kill(State(id="c1", status=Status.RESTARTING), StopPolicy(), 9)
    assert transition.effects == (CancelRestart(),)
    assert transition.state.status is Status.EXITED


@pytest.mark.parametrize("status", [Status.CREATED, Status.EXITED, Status.DEAD])
def test_kill_refuses_what_does_not_run(status):
    assert refused(lambda: lc.on_kill(State(id="c1", status=status), StopPolicy(), 9)) == \
        "Container c1 is not running"


def test_signals_are_read_as_docker_takes_them():
    assert lc.parse_signal("SIGTERM") == lc.parse_signal("term") == lc.parse_signal("15") == 15
    assert lc.parse_signal(9) == signal.SIGKILL
    for bad in ("SIGNOPE", "0", "999", ""):
        with pytest.raises(PouchError) as err:
            lc.parse_signal(bad)
        assert err.value.code == "invalid"


# -- remove --------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "words"), [
    (Status.RUNNING, "You cannot remove a running container c1. Stop the container"),
    (Status.RESTARTING, "You cannot remove a restarting container c1. Stop the container"),
    (Status.PAUSED, "You cannot remove a paused container c1. Unpause and then stop"),
])
def test_remove_without_force_refuses_what_runs_or_restarts(status, words):
    message = refused(lambda: lc.on_remove(State(id="c1", status=status), force=False))
    assert message.startswith(words)
    assert message.endswith("before attempting removal or force remove")


def test_force_remove_of_a_restarting_container_cancels_and_destroys():
    transition = lc.on_remove(State(id="c1", status=Status.RESTARTING), force=True)
    assert transition.effects == (CancelRestart(), Destroy())


def test_force_remove_of_a_running_container_kills_it_and_removes_on_the_exit():
    transition = lc.on_remove(running(), force=True)
    assert transition.effects == (Signal(signal.SIGKILL, all=True),)
    assert transition.held and transition.state.status is Status.REMOVING
    assert transition.state.live  # its task still runs until the exit comes
    after = lc.on_exit(transition.state, RestartPolicy("always"), 137, T0 + QUICK)
    assert after.effects == (AnswerWaiters(), Destroy())


def test_a_second_remove_while_one_is_under_way_is_refused():
    removing = lc.on_remove(running(), force=True).state
    assert refused(lambda: lc.on_remove(removing, force=True)) == \
        "removal of container c1 is already in progress"


def test_remove_of_a_stopped_container_destroys_it_at_once():
    for status in (Status.CREATED, Status.EXITED, Status.DEAD):
        transition = lc.on_remove(State(id="c1", status=status), force=False)
        assert transition.effects == (Destroy(),) and not transition.held


# -- pause and unpause ---------------------------------------------------------------


def paused(**fields: Any) -> State:
    return replace(running(), status=Status.PAUSED, **fields)


def test_pause_freezes_a_running_container_and_unpause_thaws_it():
    frozen = lc.on_pause(running())
    assert frozen.state.status is Status.PAUSED and frozen.effects == (lc.Freeze(),)
    assert frozen.state.live  # its task lives on, frozen: a signal reaches it
    thawed = lc.on_unpause(frozen.state)
    assert thawed.state == running() and thawed.effects == (lc.Thaw(),)


@pytest.mark.parametrize(("status", "words"), [
    (Status.PAUSED, "Container c1 is already paused"),
    (Status.RESTARTING, "Container c1 is restarting, wait until the container is running"),
    (Status.CREATED, "Container c1 is not running"),
    (Status.EXITED, "Container c1 is not running"),
    (Status.DEAD, "Container c1 is not running"),
    (Status.REMOVING, "Container c1 is not running"),
])
def test_pause_refuses_in_dockerds_words(status, words):
    assert refused(lambda: lc.on_pause(State(id="c1", status=status))) == words


@pytest.mark.parametrize("status", [Status.RUNNING, Status.CREATED, Status.EXITED,
                                    Status.RESTARTING])
def test_unpause_refuses_what_is_not_paused(status):
    assert refused(lambda: lc.on_unpause(State(id="c1", status=status))) == \
        "Container c1 is not paused"


def test_a_paused_container_cannot_be_started():
    assert refused(lambda: lc.on_start(paused())) == \
        "cannot start a paused container, try unpause instead"


def test_stop_of_a_paused_container_signals_then_thaws_it():
    transition = lc.on_stop(paused(), StopPolicy(), timeout=3)
    assert transition.effects == (Signal(signal.SIGTERM), lc.Thaw(after_signal=True),
                                  KillAfter(3), AnswerBy(3 + lc.KILL_WAIT),
                                  TellStopped(at_exit=True))
    assert transition.state.status is Status.RUNNING and transition.held
    # With no grace, the SIGKILL follows the thaw at once.
    assert lc.on_stop(paused(), StopPolicy(), 0).effects == \
        (Signal(signal.SIGTERM), lc.Thaw(after_signal=True), KillAfter(0),
         AnswerBy(lc.KILL_WAIT), TellStopped(at_exit=True))


def test_a_kill_that_ends_a_paused_container_thaws_it_and_others_wait_for_the_unpause():
    killed = lc.on_kill(paused(), StopPolicy(), signal.SIGKILL)
    assert killed.effects == (Signal(signal.SIGKILL), lc.Thaw(after_signal=True),
                              AnswerBy(lc.KILL_WAIT))
    assert killed.state.status is Status.RUNNING
    own = StopPolicy(signal=signal.SIGQUIT, signal_given=True)
    hup = lc.on_kill(paused(), own, signal.SIGHUP)  # not the stop signal: it stays paused
    assert hup.effects == (Signal(signal.SIGHUP),) and hup.state.status is Status.PAUSED


def test_force_remove_of_a_paused_container_kills_and_thaws_it():
    transition = lc.on_remove(paused(), force=True)
    assert transition.effects == (Signal(signal.SIGKILL, all=True),
                                  lc.Thaw(after_signal=True))
    assert transition.state.status is Status.REMOVING and transition.held


def test_the_restore_takes_the_pause_as_containerd_has_it():
    # A pause (or unpause) whose record was not written before the actor died.
    assert lc.on_restore_live(running(), paused=True).state.status is Status.PAUSED
    assert lc.on_restore_live(paused(), paused=False).state.status is Status.RUNNING
    assert lc.on_restore_live(paused(), paused=True) == lc.Transition(paused())
    removing = lc.on_remove(paused(), force=True).state
    assert lc.on_restore_live(removing, paused=True).effects == \
        (Signal(signal.SIGKILL, all=True), lc.Thaw(after_signal=True))


# -- restart (by request) ------------------------------------------------------------


def test_restart_stops_what_runs_as_stop_does():
    assert lc.on_restart(running(), StopPolicy(), 4) == lc.on_stop(running(), StopPolicy(), 4)
    assert lc.on_restart(paused(), StopPolicy(), 4).effects[:2] == \
        (Signal(signal.SIGTERM), lc.Thaw(after_signal=True))


def test_restart_of_what_does_not_run_only_cancels_a_pending_restart():
    for status in (Status.CREATED, Status.EXITED):
        transition = lc.on_restart(State(id="c1", status=status), StopPolicy(), None)
        assert not transition.held and transition.effects == ()
    restarting = lc.on_restart(State(id="c1", status=Status.RESTARTING), StopPolicy(), None)
    assert restarting.effects == (CancelRestart(), TellStopped()) and not restarting.held


@pytest.mark.parametrize("state", [State(id="c1", status=Status.DEAD),
                                   State(id="c1", status=Status.REMOVING),
                                   State(id="c1", status=Status.EXITED, removal_pending=True)])
def test_restart_refuses_a_container_on_its_way_out(state):
    assert "is marked for removal" in refused(lambda: lc.on_restart(state, StopPolicy(), None))


# -- prune ---------------------------------------------------------------------------


def test_prune_takes_what_does_not_run_and_is_not_about_to():
    for status in (Status.CREATED, Status.EXITED, Status.DEAD):
        assert lc.prunable(State(id="c1", status=status))
    for status in (Status.RUNNING, Status.PAUSED, Status.RESTARTING, Status.REMOVING):
        assert not lc.prunable(State(id="c1", status=status))
    assert not lc.prunable(State(id="c1", status=Status.EXITED, removal_pending=True))
    assert not lc.prunable(State(id="c1", status=Status.CREATED, start_pending=True))


# -- the restart policy a request gives (docker update) ------------------------------


def test_a_restart_policy_given_is_checked_and_written_out_in_full():
    assert lc.check_restart_policy({"Name": "always"}) == \
        {"Name": "always", "MaximumRetryCount": 0}
    assert lc.check_restart_policy({"Name": "on-failure", "MaximumRetryCount": 3}) == \
        {"Name": "on-failure", "MaximumRetryCount": 3}
    assert lc.check_restart_policy({"Name": ""}) == {"Name": "no", "MaximumRetryCount": 0}


@pytest.mark.parametrize(("policy", "words"), [
    ({"Name": "sometimes"}, "invalid restart policy 'sometimes'"),
    ({"Name": "always", "MaximumRetryCount": 2},
     "maximum retry count cannot be used with restart policy 'always'"),
    ({"Name": "on-failure", "MaximumRetryCount": -1}, "maximum retry count cannot be negative"),
    ({"Name": "on-failure", "MaximumRetryCount": "3"}, "MaximumRetryCount must be an integer"),
    ("always", "must be an object"),
])
def test_a_restart_policy_given_is_refused_in_dockerds_words(policy, words):
    with pytest.raises(PouchError) as err:
        lc.check_restart_policy(policy)
    assert err.value.code == "invalid" and words in err.value.message


# -- the restart policy across restarts of the daemon ---------------------------------


def test_the_count_and_the_backoff_survive_a_restore_and_go_on_from_there():
    policy = RestartPolicy("on-failure", maximum_retry_count=3)
    seen = crash_loop(policy, exits=2)
    waiting = seen[-1].state  # restarting, its second restart pending
    restored = lc.on_restore(waiting, policy)
    assert restored.state.restart_count == 2
    assert restored.effects == (RestartAfter(0.2),)  # where the series was
    started = lc.on_started(restored.state, T0 + 10, by_policy=True)
    third = lc.on_exit(started, policy, 1, T0 + 10 + QUICK)
    assert third.state.restart_count == 3 and delays([third]) == pytest.approx([0.4])
    last = lc.on_exit(lc.on_started(third.state, T0 + 20, by_policy=True), policy, 1, T0 + 21)
    assert last.state.status is Status.EXITED and last.state.restart_count == 3
