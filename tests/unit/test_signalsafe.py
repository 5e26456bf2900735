"""What signal handlers may do (pouch.actors.signalsafe): ask for a stop without taking
a lock."""

from __future__ import annotations

import os
import signal
import threading

from pouch.actors.signalsafe import StopRequest

WITHIN = 5.0


def test_a_request_made_while_the_waiting_thread_holds_the_events_lock_goes_through():
    """Where a handler lands when it interrupts Event.wait() on its way in or out:
    Event.set() there deadlocked the main thread; a request must not even block."""
    reasons: list[str] = []
    stop = StopRequest(reasons.append)
    held = stop.event._cond  # type: ignore[attr-defined]  # CPython's, which wait() holds
    with held:
        stop.request("SIGTERM")
    assert stop.event.wait(WITHIN)
    assert reasons == ["SIGTERM"]


def test_a_signal_handler_stops_the_main_thread_waiting_on_the_event():
    reasons: list[str] = []
    stop = StopRequest(reasons.append)
    previous = signal.signal(signal.SIGUSR1, lambda s, _f: stop.request(signal.Signals(s).name))
    try:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        assert stop.event.wait(WITHIN)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert reasons == ["SIGUSR1"]


def test_only_the_first_reason_is_told_and_later_requests_change_nothing():
    reasons: list[str] = []
    stop = StopRequest(reasons.append)
    stop.request("first")
    stop.request("second")
    assert stop.event.wait(WITHIN)
    stop.request("third")
    assert reasons == ["first"]
