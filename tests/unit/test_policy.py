"""When the supervisor restarts a child: at once the first time, then a backoff from
100 ms doubling to 2 s, and
giving up after more than 10 restarts within 30 s (a crash loop: one child killed
now and then, even often, is restarted), for a cool-down of 30 s doubling to 5 min."""

from __future__ import annotations

import pytest

from pouch.actors.backoff import Backoff
from pouch.actors.supervisor.policy import MAX_RESTARTS, RestartPolicy


def test_the_first_restart_is_at_once_then_the_backoff_starts_at_100_ms_and_doubles():
    policy = RestartPolicy()
    assert [policy.next_delay(t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)] == \
        pytest.approx([0.0, 0.1, 0.2, 0.4, 0.8])


def test_the_backoff_stops_growing_at_2_s():
    policy = RestartPolicy(max_restarts=100)
    delays = [policy.next_delay(float(t)) for t in range(10)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 2.0])


def test_one_exit_more_than_the_intensity_within_30_s_gives_up():
    policy = RestartPolicy()
    for t in range(MAX_RESTARTS):
        assert policy.next_delay(t * 2.5) is not None
    assert policy.next_delay(29.0) is None
    assert policy.recent == MAX_RESTARTS + 1


def test_exits_older_than_the_window_no_longer_count():
    policy = RestartPolicy()
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        policy.next_delay(t)
    # At 31 s the exits at 0 s and 1 s have left the window: four remain.
    assert policy.next_delay(31.0) == pytest.approx(0.4)
    assert policy.recent == 4


def test_an_exit_exactly_one_window_ago_has_left_it():
    policy = RestartPolicy()
    policy.next_delay(0.0)
    assert policy.next_delay(30.0) == 0.0
    assert policy.recent == 1


def test_exits_spread_out_never_give_up():
    policy = RestartPolicy()
    assert all(policy.next_delay(t * 10.0) is not None for t in range(50))


def test_after_giving_up_time_brings_it_back():
    policy = RestartPolicy()
    for t in range(MAX_RESTARTS + 1):
        policy.next_delay(float(t))
    assert policy.next_delay(float(MAX_RESTARTS + 1)) is None
    assert policy.next_delay(100.0) == 0.0


def test_reset_starts_the_backoff_afresh():
    policy = RestartPolicy()
    for t in range(4):
        policy.next_delay(float(t))
    policy.reset()
    assert policy.recent == 0
    assert policy.next_delay(5.0) == 0.0


def test_the_limits_can_be_chosen():
    policy = RestartPolicy(Backoff(first=1.0, cap=3.0), max_restarts=3, window=10.0)
    assert policy.next_delay(0.0) == 0.0
    assert policy.next_delay(1.0) == 1.0
    assert policy.next_delay(2.0) == 2.0
    assert policy.next_delay(3.0) is None
    assert policy.next_delay(12.5) == 1.0


def test_a_child_given_up_on_is_retried_after_a_cool_down_that_grows_to_5_minutes():
    policy = RestartPolicy()
    cool_downs = []
    for _ in range(6):
        for t in range(MAX_RESTARTS):
            policy.next_delay(float(t))
        assert policy.next_delay(float(MAX_RESTARTS)) is None
        cool_downs.append(policy.give_up())
        assert policy.recent == 0  # the retry starts with a fresh intensity
    assert cool_downs == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]


def test_a_stable_run_starts_the_cool_down_afresh():
    policy = RestartPolicy()
    assert (policy.give_up(), policy.give_up()) == (30.0, 60.0)
    policy.reset()
    assert policy.give_up() == 30.0
