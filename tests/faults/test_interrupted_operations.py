"""Operations the container actor's death cut halfway are finished when it comes back:
a removal (its intent is in the record before it begins; the client's retry learns
from the container's tomb that it went through; one with nothing to release saves no
intent, and a cut leaves the container as it was), an auto-removal (of a container that
exited while the actor was down, or whose removal was cut), a start of an auto-removed
container (its retry runs it); and a create cut before its record was written leaves
nothing, as does one whose caller (a gateway worker) died before it was answered. A
wait for the removal outlives the actor's restart and gets the exit status."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
import requests

from pouch.actors.containerd.client import Containerd
from pouch.proto.stubs import Calls
from pouch.tests.faults.checks import NAMESPACE, docker_api, settled, wait_restored
from pouch.tests.faults.test_fault_points import arm, crash_during
from pouch.tests.faults.test_streams_resume import wait_request
from pouch.tests.faults.tree import BrokerView, broker, kill, until, watch_replacement
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.procs import alive, children_of
from pouch.tests.support.wait import wait_for

EXIT_WITHIN = 10.0


@pytest.fixture
def api(pouchd: PouchDaemon) -> Iterator[docker.APIClient]:
    client = docker_api(pouchd)
    yield client
    client.close()


def auto_removed(api: docker.APIClient, name: str, *command: str) -> str:
    """A container created as `docker run --rm` creates it; its ID."""
    return str(api.create_container("busybox", list(command), name=name,
                                    host_config=api.create_host_config(auto_remove=True))["Id"])


def removed(pouchd: PouchDaemon, api: docker.APIClient, cid: str, what: str) -> None:
    """Wait until `cid` is no longer listed; then nothing of it may be left."""
    wait_for(lambda: cid not in [c["Id"] for c in api.containers(all=True)], EXIT_WITHIN, what)
    settled(pouchd)


def test_a_remove_cut_halfway_is_finished_at_restore_and_its_retry_answers(
        pouchd: PouchDaemon, api):
    cid = api.create_container("busybox", ["true"], name="half-removed")["Id"]

    # Killed from outside (kill -9), not by the request: the client sends it again.
    answer = crash_during(pouchd, "container.remove.task_deleted",
                          lambda: api.remove_container(cid), "kill")

    assert answer == "ok", answer
    state = settled(pouchd)
    assert cid not in state.listed and cid not in state.containers


@pytest.mark.parametrize(("network", "saved_first"), [("bridge", True), ("none", False)])
def test_a_removal_saves_its_intent_first_only_if_a_cut_one_would_leave_a_trace(
        pouchd: PouchDaemon, api, network: str, saved_first: bool):
    """Releasing its network endpoint cannot be undone, so that removal is recorded first
    and finished at restore; one with nothing to release changes nothing a restore reads
    before its folder goes, and spares the wait for the disk."""
    cid = api.create_container("busybox", ["true"], name=f"intent-{network}",
                               host_config=api.create_host_config(network_mode=network))["Id"]
    meta = pouchd.home / "containers" / cid / "meta.json"
    arm(pouchd, "container.remove.task_deleted", "delay")  # held before anything is released

    with ThreadPoolExecutor(1) as pool:
        removing = pool.submit(api.remove_container, cid)
        wait_for(lambda: "fault injected at container.remove.task_deleted"
                 in pouchd.log_tail(200), EXIT_WITHIN, "the removal to be held")
        on_disk = json.loads(meta.read_text())["Pouch"]
        removing.result(timeout=EXIT_WITHIN)

    assert bool(on_disk.get("RemovalPending")) is saved_first
    assert cid not in [c["Id"] for c in api.containers(all=True)]


def test_a_cut_removal_with_nothing_to_release_is_done_by_its_retry(pouchd: PouchDaemon, api):
    cid = api.create_container("busybox", ["true"], name="cut-untouched",
                               host_config=api.create_host_config(network_mode="none"))["Id"]

    # Its intent was never saved: the restored actor finds it as it was, and removes it
    # when the client sends the request again.
    answer = crash_during(pouchd, "container.remove.task_deleted",
                          lambda: api.remove_container(cid), "kill")

    assert answer == "ok", answer
    state = settled(pouchd)
    assert cid not in state.listed and cid not in state.containers


def test_a_removal_answers_before_containerd_s_deletes_end(pouchd: PouchDaemon, api):
    cid = api.create_container("busybox", ["true"], name="removed-first")["Id"]
    arm(pouchd, "container.remove.deleting", "delay")  # containerd slow to delete

    api.remove_container(cid)

    assert cid not in [c["Id"] for c in api.containers(all=True)]
    with Containerd(pouchd.containerd_socket, NAMESPACE) as ctrd:
        assert ctrd.containers.get(cid) is not None  # its delete is still held
    state = settled(pouchd)  # then nothing of it is left
    assert cid not in state.containers and cid not in state.snapshots


def test_containerd_s_deletes_cut_by_the_actor_s_death_are_swept(pouchd: PouchDaemon, api):
    cid = api.create_container("busybox", ["true"], name="delete-cut")["Id"]

    crash_during(pouchd, "container.remove.deleting", lambda: api.remove_container(cid),
                 "kill")

    removed(pouchd, api, cid, "the removal being finished")


def test_an_auto_removal_cut_halfway_is_finished_at_restore(pouchd: PouchDaemon, api):
    cid = auto_removed(api, "rm-cut", "true")

    # The start answers; the container's exit then removes it, and that is cut.
    crash_during(pouchd, "container.remove.task_deleted", lambda: api.start(cid))

    removed(pouchd, api, cid, "the auto-removal being finished")


def test_a_container_that_exits_while_the_actor_is_down_is_auto_removed(
        pouchd: PouchDaemon, api):
    cid = auto_removed(api, "rm-while-down", "sleep", "300")
    api.start(cid)
    sleeper = api.inspect_container(cid)["State"]["Pid"]
    view = BrokerView(pouchd)
    old = pouchd.pid_of("container")
    try:
        stopped_at = kill(old, signal.SIGSTOP)  # down: it sees no exit
        # Ended from outside, now: a timed exit may come before the actor is stopped.
        kill(sleeper, signal.SIGKILL)
        with Containerd(pouchd.containerd_socket, NAMESPACE) as ctrd:
            wait_for(lambda: ctrd.tasks.list()[cid].status == "STOPPED", EXIT_WITHIN,
                     "the container's exit")
        with contextlib.suppress(ProcessLookupError):  # unless its supervisor did already
            kill(old)
        watch_replacement(view, pouchd, "container", old, stopped_at)
    finally:
        view.close()

    removed(pouchd, api, cid, "the auto-removal at restore")


def test_a_start_of_an_auto_removed_container_cut_by_the_actors_death_is_retried(
        pouchd: PouchDaemon, api):
    """What `docker run --rm` does when the actor dies in its start: the container
    waits for the start to be sent again (lc.START_RETRY_GRACE), which runs it; its
    exit then removes it, and the wait for that hears how it ended."""
    cid = auto_removed(api, "rm-start-cut", "sh", "-c", "exit 3")
    wait = wait_request(pouchd, cid, "removed")

    answer = crash_during(pouchd, "container.start.task_created", lambda: api.start(cid),
                          "kill")

    assert answer == "ok", answer
    assert json.loads(wait.read())["StatusCode"] == 3  # it ran
    removed(pouchd, api, cid, "the auto-removal after its exit")


def test_a_start_whose_container_ran_and_was_removed_before_its_retry_answers_ok(
        pouchd: PouchDaemon, api):
    """`docker run --rm` of a quick command, the actor killed right after the start: the
    container runs, exits and is removed while the start is sent again, and that retry
    answers as the start did (from the container's tomb), not 404."""
    cid = auto_removed(api, "rm-ran", "echo", "hi")

    answer = crash_during(pouchd, "container.start.task_started", lambda: api.start(cid),
                          "kill")

    assert answer == "ok", answer
    removed(pouchd, api, cid, "the auto-removal after its exit")


def test_a_create_sent_again_while_it_is_still_being_made_gets_its_answer(
        pouchd: PouchDaemon, api):
    """The broker restarts while a slow create runs: the client's retry (the same token)
    reaches the actor before that create is done, and gets its answer, not a conflict
    with the name the first attempt holds. The client is one whose calls all go through
    the broker, as a remote one's do (a local one's create goes straight to the actor)."""
    view = BrokerView(pouchd)
    client = broker(pouchd, timeout=30)
    arm(pouchd, "container.create.prepared", "delay")
    try:
        with ThreadPoolExecutor(1) as pool:
            creating = pool.submit(Calls(client).container.create, name="slow",
                                   config={"Image": "busybox", "Cmd": ["true"]})
            until(lambda: view.busy("container"), 5.0, "the create reaching the container actor")
            wait_restored(pouchd, kill(pouchd.pid_of("broker")))
            created = creating.result(30)
    finally:
        view.close()
        client.close()

    assert [c["Id"] for c in api.containers(all=True)] == [created["Id"]]


def test_a_create_cut_after_containerd_made_the_container_leaves_only_its_retry(
        pouchd: PouchDaemon, api):
    """The half-made create is undone at restore; the client's retry (the same token)
    makes the container once."""
    answer = crash_during(pouchd, "container.create.container_made",
                          lambda: api.create_container("busybox", ["true"], name="cut"))

    assert answer == "ok", answer
    state = settled(pouchd)
    assert [c["Names"] for c in api.containers(all=True)] == [["/cut"]]
    assert set(state.containers) == set(state.listed) == set(state.snapshots)
    assert len(list((pouchd.home / "containers").iterdir())) == 1


def test_an_exit_whose_recording_was_cut_keeps_its_status(pouchd: PouchDaemon, api):
    """Deleting the task loses its exit status: one the dying actor had not recorded yet
    is found at restore, not reported as 255 (a task that vanished)."""
    cid = api.create_container("busybox", ["sh", "-c", "exit 7"], name="exit-cut")

    crash_during(pouchd, "container.exit.task_deleted", lambda: api.start(cid))

    wait_for(lambda: api.inspect_container(cid)["State"]["Status"] == "exited", EXIT_WITHIN,
             "the exit being recorded at restore")
    assert api.inspect_container(cid)["State"]["ExitCode"] == 7
    assert api.wait(cid, timeout=EXIT_WITHIN)["StatusCode"] == 7


def test_a_create_whose_answer_was_lost_is_retried_and_makes_one_container(
        pouchd: PouchDaemon, api):
    """The stub sends a token with each create; the retry after the actor's death gets
    the container the first attempt made, not a second one (nor a name conflict)."""
    answer = crash_during(pouchd, "container.create.recorded",
                          lambda: api.create_container("busybox", ["true"], name="once"))

    assert answer == "ok", answer
    assert [c["Names"] for c in api.containers(all=True)] == [["/once"]]


def test_a_start_whose_answer_was_lost_is_retried_and_runs_the_container_once(
        pouchd: PouchDaemon, api):
    # Each run leaves a line in a host folder. Not its output: a line the crashed actor's
    # IO hub had read from its FIFO and not yet logged dies with it (once, the log was empty).
    runs = pouchd.base / "ran-once"
    runs.mkdir()
    cid = api.create_container("busybox", ["sh", "-c", "echo ran >> /runs/log; sleep 2"],
                               name="ran-once", volumes=["/runs"],
                               host_config=api.create_host_config(binds=[f"{runs}:/runs"]))["Id"]

    answer = crash_during(pouchd, "container.start.task_started", lambda: api.start(cid))

    assert answer == "ok", answer
    wait_for(lambda: api.inspect_container(cid)["State"]["Status"] == "exited", EXIT_WITHIN,
             "the exit being recorded")
    assert (runs / "log").read_text().splitlines() == ["ran"]


def test_a_create_whose_gateway_worker_died_before_its_answer_leaves_nothing(
        pouchd: PouchDaemon, api):
    """The client's create fails (its connection ends): nobody knows the container it
    made, so it must not be listed as if the create had gone through. The broker cannot
    deliver the answer and tells the actor, which removes the container never started."""
    view = BrokerView(pouchd)
    workers = children_of(pouchd.pid_of("gateway"))
    arm(pouchd, "container.create.prepared", "delay")
    try:
        with ThreadPoolExecutor(1) as pool:
            creating = pool.submit(api.create_container, "busybox", ["true"], name="orphan")
            until(lambda: view.busy("container"), 5.0, "the create reaching the container actor")
            for pid in workers:
                kill(pid)
            with pytest.raises(requests.ConnectionError):
                creating.result(30)
        until(lambda: not view.busy("container") or None, 10.0, "the create ending")
    finally:
        view.close()
    assert not any(alive(pid) for pid in workers)

    wait_for(lambda: api.containers(all=True) == [], 10.0, "the unclaimed container removed")
    state = settled(pouchd)
    assert not state.containers and not state.snapshots and not state.meta
