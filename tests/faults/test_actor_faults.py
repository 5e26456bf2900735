"""An actor killed or hung while a user works: it comes back, and only what was in
flight to it fails, with an error that says so."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from pouch.tests.faults.checks import (
    check_failures_clear,
    check_invariants,
    docker_api,
    failures,
    names_actor,
    wait_restored,
)
from pouch.tests.faults.tree import BrokerView, kill, kill_while_busy, until, watch_replacement
from pouch.tests.faults.workload import Workload
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.procs import alive, stopped

# The broker drops an actor after 3 missed heartbeats of 250 ms (broker/router.py),
# checked at each of its beats: within a second of the actor's last one.
DETECT_WITHIN = 1.0
# How late the test itself may see it: it asks the broker every 10 ms.
POLL_SLACK = 0.1

# An idempotent call each actor answers, sent right after the kill.
PROBES: dict[str, Callable[[docker.APIClient], object]] = {
    "system": lambda api: api.version(),
    "image": lambda api: api.images(),
    "volume": lambda api: api.volumes(),
    "network": lambda api: api.networks(),
    "container": lambda api: api.containers(all=True),
}


def answered_after(daemon: PouchDaemon, actor: str, since: float) -> float:
    """Seconds from `since` until the actor's probe call answered."""
    api = docker_api(daemon)
    try:
        PROBES[actor](api)
    finally:
        api.close()
    return time.monotonic() - since


# What the workload asks of the container actor that is not retried by the client.
NOT_IDEMPOTENT = ("create", "start")

@pytest.mark.parametrize(("actor", "what"), [
    ("system", "version"),
    ("image", "images"),
    ("volume", "volumes"),
    ("network", "networks"),
    ("container", "create"),
])
def test_a_killed_actor_comes_back_and_only_its_requests_fail(
        pouchd: PouchDaemon, actor: str, what: str):
    view = BrokerView(pouchd)
    try:
        with Workload(pouchd.host).running() as load:
            load.wait_for_cycles(3)
            old, fault = kill_while_busy(view, load, actor, what)
            with ThreadPoolExecutor(1) as pool:
                # Sent at the kill, it waits for the successor: it is not an error.
                probe = pool.submit(answered_after, pouchd, actor, fault)
                recovery = watch_replacement(view, pouchd, actor, old, fault)
                probed = probe.result(timeout=30)
            restored = wait_restored(pouchd, fault)
            load.wait_for_cycles(3)
    finally:
        view.close()

    requests = load.requests
    assert not alive(old) and recovery.new_pid != old
    # A killed actor is noticed by its silence at worst (the supervisor may tell at once).
    assert recovery.detected_after < DETECT_WITHIN + POLL_SLACK, recovery
    failed = check_failures_clear(requests, fault, recovery.ready + 0.2, names_actor(actor))
    if actor == "container":
        # create and start are not idempotent: one the kill caught cannot be retried. (The
        # kill may also land just after it was answered: then nothing failed.)
        assert len(failed) <= 1 and all(r.what in NOT_IDEMPOTENT for r in failed), failed
        assert all(r.outcome_unknown for r in failed)
    else:
        # Everything the workload asks of these actors is idempotent: retried, not failed.
        assert failed == []
    assert probed < recovery.back_after + 1.0
    check_invariants(pouchd, requests)
    print(f"{actor}: dropped by the broker after {recovery.detected_after:.3f} s, successor "
          f"ready after {recovery.back_after:.3f} s, a call sent at the kill answered after "
          f"{probed:.3f} s, service back after {restored:.3f} s; "
          f"{len(requests)} requests, failed: {[str(r) for r in failed]}")


def test_a_hung_actor_is_detected_within_a_second_and_replaced(pouchd: PouchDaemon):
    view = BrokerView(pouchd)
    old = pouchd.pid_of("container")
    try:
        with Workload(pouchd.host).running() as load:
            load.wait_for_cycles(3)
            old, fault = kill_while_busy(view, load, "container", "create", signal.SIGSTOP)
            recovery = watch_replacement(view, pouchd, "container", old, fault)
            until(lambda: not alive(old), 5.0, "the supervisor killing the hung actor")
            restored = wait_restored(pouchd, fault)
            load.wait_for_cycles(3)
    finally:
        view.close()
        if stopped(old):  # the supervisor did not get to it: never leave it behind
            with contextlib.suppress(ProcessLookupError):
                kill(old, signal.SIGKILL)
                kill(old, signal.SIGCONT)

    requests = load.requests
    assert recovery.detected_after < DETECT_WITHIN + POLL_SLACK, recovery
    failed = check_failures_clear(requests, fault, recovery.ready + 0.2, names_actor("container"))
    assert len(failed) <= 1 and all(r.what in NOT_IDEMPOTENT for r in failed), failed
    assert all(r.outcome_unknown for r in failed), failed
    # What failed, failed when the broker gave up on the actor, not at its deadline.
    assert all(r.ended - fault < DETECT_WITHIN + POLL_SLACK for r in failed), failed
    check_invariants(pouchd, requests)
    print(f"hung container actor: dropped after {recovery.detected_after:.3f} s, "
          f"{[f'{r.what} failed {r.ended - fault:.3f} s' for r in failed]} after the SIGSTOP, "
          f"successor ready after "
          f"{recovery.back_after:.3f} s, service back after {restored:.3f} s; "
          f"{len(requests)} requests, {len(failures(requests))} failed")
