"""An actor's process as pouchd runs it (pouch.actors.host.serve): it ends when told
(SIGTERM: status 0) or when its actor stops (status 1, so that pouchd restarts it),
and waits for either without waking: an idle process wakes for its heartbeats alone."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pouch.bench.procfs import thread_context_switches
from pouch.broker.client import Client
from pouch.proto.envelope import PouchError
from pouch.tests.support.wait import wait_for
from pouch.tests.unit.test_broker_hostile import Running

IDLE_FOR = 1.5
ENDS_WITHIN = 5.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Client]]:
    """A stand-in actor's process, served by a broker at <tmp_path>/broker.sock."""
    broker = Running(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "pouch.tests.support.standin", "--serve",
                             str(tmp_path)])
    client = Client(broker.endpoint, timeout=15)
    try:
        assert client.call("echo", "echo", {"text": "up?"}) == "up?"
        yield proc, client
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        broker.close()


def main_thread_switches(pid: int) -> int:
    """Times the process's main thread gave up its CPU to wait."""
    return thread_context_switches(pid, pid, voluntary=True)


def settled(pid: int) -> Callable[[], bool]:
    """A predicate: the main thread did not switch since the last time it was asked."""
    seen = [-1]

    def unchanged() -> bool:
        last, seen[0] = seen[0], main_thread_switches(pid)
        return last == seen[0]
    return unchanged


def test_an_idle_actor_process_s_main_thread_sleeps_until_told_to_stop(served):
    proc, _client = served
    # Its actor answers before the main thread is done starting helper threads.
    wait_for(settled(proc.pid), ENDS_WITHIN, "the main thread to settle", poll=0.3)
    before = main_thread_switches(proc.pid)
    time.sleep(IDLE_FOR)  # a window, not a wait: nothing is to happen in it
    woken = main_thread_switches(proc.pid) - before

    proc.send_signal(signal.SIGTERM)

    assert woken == 0, f"the main thread woke {woken} times in {IDLE_FOR} s of idleness"
    assert proc.wait(timeout=ENDS_WITHIN) == 0


def test_an_actor_process_whose_actor_stops_ends_with_a_failure(served):
    proc, client = served

    with contextlib.suppress(PouchError):  # its answer may or may not leave first
        client.call("echo", "quit", timeout=ENDS_WITHIN)

    assert proc.wait(timeout=ENDS_WITHIN) == 1
