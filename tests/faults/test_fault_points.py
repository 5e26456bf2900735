"""The container actor crashing in the middle of an operation, at a named fault point:
the caller is told the outcome is unknown, and what the restarted actor finds is
either the whole container or nothing of it."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator

import docker
import pytest
from docker.errors import APIError

from pouch.tests.faults.checks import check_invariants, docker_api, settled, wait_restored
from pouch.tests.faults.tree import BrokerView, internal, watch_replacement
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for

RUN_WITHIN = 10.0


def arm(daemon: PouchDaemon, point: str, action: str = "crash") -> None:
    client = internal(daemon)
    try:
        client.call("container", "debug_fault", {"point": point, "action": action})
    finally:
        client.close()


def crash_during(pouchd: PouchDaemon, point: str, request: Callable[[], object],
                 action: str = "crash") -> str:
    """Arm a crash (or another action of pouch.actors.faults) at `point`, make the
    request, wait for the actor's successor; how the request ended."""
    view = BrokerView(pouchd)
    old = pouchd.pid_of("container")
    arm(pouchd, point, action)
    sent = time.monotonic()
    try:
        try:
            request()
            answer = "ok"
        except APIError as exc:
            answer = f"{exc.status_code} {exc.explanation}"
        watch_replacement(view, pouchd, "container", old, sent)
    finally:
        view.close()
    wait_restored(pouchd, sent)
    return answer


@pytest.fixture
def api(pouchd: PouchDaemon) -> Iterator[docker.APIClient]:
    client = docker_api(pouchd)
    yield client
    client.close()


def test_a_crash_after_the_snapshot_is_prepared_leaves_only_the_retried_create(
        pouchd: PouchDaemon, api):
    """The half-made create is undone; the client library sends the create again with its
    token, and the restarted actor makes the container once."""
    view = BrokerView(pouchd)
    old = pouchd.pid_of("container")
    arm(pouchd, "container.create.prepared")
    sent = time.monotonic()
    try:
        cid = api.create_container("busybox", ["echo", "made"], name="half-made")["Id"]
        took = time.monotonic() - sent
        recovery = watch_replacement(view, pouchd, "container", old, sent)
    finally:
        view.close()

    restored = wait_restored(pouchd, sent)
    state = check_invariants(pouchd, [])
    assert set(state.listed) == set(state.meta) == set(state.containers) == {cid}
    assert state.snapshots == {cid} and state.leases == []
    assert [p.name for p in (pouchd.home / "containers").iterdir()] == [cid]
    api.start(cid)
    assert api.wait(cid)["StatusCode"] == 0 and api.logs(cid) == b"made\n"
    print(f"create.prepared: the create answered after {took:.3f} s, the actor was back after "
          f"{recovery.back_after:.3f} s, the service after {restored:.3f} s")


def test_a_crash_once_recorded_running_before_the_task_started_leaves_the_start_cut(
        pouchd: PouchDaemon, api):
    """The record says the container runs while containerd starts its task: an actor that
    dies before the start reached containerd finds the task made and never started, and
    the record put back as it was; the client's retry runs the container, once."""
    cid = api.create_container("busybox", ["echo", "ran"], name="recorded-early")["Id"]
    answer = crash_during(pouchd, "container.start.recorded_running", lambda: api.start(cid))
    assert answer == "ok" or (answer.startswith("503") and "container actor" in answer), answer
    settled(pouchd)
    if answer != "ok":
        assert api.inspect_container(cid)["State"]["Status"] == "created"
        api.start(cid)
    wait_for(lambda: api.inspect_container(cid)["State"]["Status"] == "exited", RUN_WITHIN,
             "the container running its command and exiting")
    assert api.wait(cid)["StatusCode"] == 0 and api.logs(cid) == b"ran\n"
    check_invariants(pouchd, [])


def test_a_crash_between_task_create_and_start_leaves_a_container_that_starts(
        pouchd: PouchDaemon, api):
    cid = api.create_container("busybox", ["echo", "ran"], name="half-started")["Id"]
    view = BrokerView(pouchd)
    old = pouchd.pid_of("container")
    arm(pouchd, "container.start.task_created")
    sent = time.monotonic()
    try:
        try:
            api.start(cid)
            answer = "ok"
        except APIError as exc:
            answer = f"{exc.status_code} {exc.explanation}"
        recovery = watch_replacement(view, pouchd, "container", old, sent)
    finally:
        view.close()

    # start is retried across the restart (it is declared idempotent), or fails clearly.
    assert answer == "ok" or (answer.startswith("503") and "container actor" in answer), answer
    wait_restored(pouchd, sent)
    state = settled(pouchd)  # the container, its task and its record agree
    assert list(state.listed) == [cid]
    if answer != "ok":
        api.start(cid)
    # Whichever it was, the container then runs its command, once, and exits.
    wait_for(lambda: api.inspect_container(cid)["State"]["Status"] == "exited", RUN_WITHIN,
             "the container running its command and exiting")
    assert api.wait(cid)["StatusCode"] == 0 and api.logs(cid) == b"ran\n"
    check_invariants(pouchd, [])
    print(f"start.task_created: start answered {answer!r}, the actor was back after "
          f"{recovery.back_after:.3f} s")


def test_a_network_is_not_removed_under_a_container_whose_start_is_under_way(
        pouchd: PouchDaemon):
    """The container's start has passed the network actor's check and its task is being
    made (held there by a delay): the container actor does not list it as running yet,
    but its network may not go, or it would run without it."""
    pouchd.docker("network", "create", "held")
    pouchd.docker("create", "--name", "starting", "--network", "held", "busybox", "sleep",
                  "600")
    arm(pouchd, "container.start.task_created", "delay")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        start = pool.submit(pouchd.docker, "start", "starting")
        wait_for(lambda: "fault injected at container.start.task_created"
                 in pouchd.log_tail(200), RUN_WITHIN, "the start held after its check")
        refused = pouchd.docker_result("network", "rm", "held")
        assert refused.returncode != 0 and "has active endpoints" in refused.stderr
        start.result(timeout=RUN_WITHIN)
    assert "eth0" in pouchd.docker("exec", "starting", "ip", "-o", "link")
    pouchd.docker("rm", "-f", "starting")
    pouchd.docker("network", "rm", "held")
