"""The broker stopped (SIGSTOP) for a few seconds and resumed: its silence is its own,
so no actor is dropped or killed for it, and the daemon serves on at once."""

from __future__ import annotations

import signal
import time
from functools import partial

from pouch.tests.faults.checks import check_invariants, wait_restored
from pouch.tests.faults.tree import BrokerView, kill, until
from pouch.tests.faults.workload import Workload
from pouch.tests.support.daemon import PouchDaemon

ACTORS = ("system", "image", "volume", "network", "container", "builder")
PAUSE = 3.0
PAUSES = 3
BACK_WITHIN = 5.0


def pause(pid: int, seconds: float) -> float:
    """SIGSTOP `pid` for `seconds`; when (monotonic) it resumed."""
    kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)  # the fault itself lasts this long: nothing is awaited
    finally:
        resumed = kill(pid, signal.SIGCONT)
    return resumed


def successor(view: BrokerView, service: str, old: int) -> set[int] | None:
    return view.pids(service) - {old} or None


def test_a_paused_broker_kills_no_actor(pouchd: PouchDaemon):
    actors = {name: pouchd.pid_of(name) for name in ACTORS}
    broker = pouchd.pid_of("broker")
    back = []
    with Workload(pouchd.host).running() as load:
        load.wait_for_cycles(2)
        for _ in range(PAUSES):
            resumed = pause(broker, PAUSE)
            back.append(wait_restored(pouchd, resumed, within=BACK_WITHIN))
            load.wait_for_cycles(1)
    assert {name: pouchd.pid_of(name) for name in ACTORS} == actors
    assert pouchd.pid_of("broker") == broker
    log = pouchd.log_tail(100_000)
    assert "stopped answering heartbeats" not in log
    assert "missed its heartbeats" not in log
    check_invariants(pouchd, load.requests)
    print(f"broker paused {PAUSE:.0f} s x{PAUSES}: no actor killed; `docker run --rm` works "
          f"again {', '.join(f'{b:.2f}' for b in back)} s after each resume")


def test_an_actor_killed_while_the_broker_is_paused_is_replaced_and_the_rest_serves(
        pouchd: PouchDaemon):
    """The 18 s wedge of the chaos soak: an actor dies while the broker is stopped
    (its connection closes unseen); on resuming, the broker must drop it, route to
    its successor, and keep every other actor."""
    others = {name: pouchd.pid_of(name) for name in ACTORS if name != "image"}
    broker = pouchd.pid_of("broker")
    view = BrokerView(pouchd)
    try:
        for _ in range(PAUSES):
            old = pouchd.pid_of("image")
            kill(broker, signal.SIGSTOP)
            try:
                kill(old)
                time.sleep(PAUSE)  # the fault itself
            finally:
                resumed = kill(broker, signal.SIGCONT)
            _, ready = until(partial(successor, view, "image", old), BACK_WITHIN,
                             "a new image actor registered")
            _, answered = until(
                lambda: pouchd.docker_result("images", "-q", timeout=BACK_WITHIN).returncode == 0,
                BACK_WITHIN, "docker images answering")
            assert pouchd.docker("run", "--rm", "busybox", "echo", "hi",
                                 timeout=BACK_WITHIN) == "hi"
            assert ready - resumed < BACK_WITHIN
            assert answered - resumed < BACK_WITHIN
    finally:
        view.close()
    assert {name: pouchd.pid_of(name) for name in others} == others
    assert pouchd.pid_of("broker") == broker
