"""The container actor killed while containerd starts a task's shim: containerd, its
caller gone, kills `containerd-shim-runc-v2 start` after it forked the shim's daemon and
forgets it; the shim then serves no task and nobody ends it. The actor finds such shims
(at a removal, by its sweep, at a clean stop) and ends them."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import docker
import pytest
from docker.errors import APIError

from pouch.actors.container.actor import SWEEP_FIRST
from pouch.tests.faults.checks import docker_api, live_shims, observe, settled, wait_restored
from pouch.tests.faults.tree import BrokerView, kill, watch_replacement
from pouch.tests.support.daemon import STOP_TIMEOUT, PouchDaemon
from pouch.tests.support.wait import POLL, wait_for

TRIES = 4
SHIM_WITHIN = 10.0
# The sweep after a restore, with room for the restore itself and the shims' ends.
SWEPT_WITHIN = SWEEP_FIRST + 10.0


@pytest.fixture
def api(pouchd: PouchDaemon) -> Iterator[docker.APIClient]:
    client = docker_api(pouchd)
    yield client
    client.close()


def cut_start(pouchd: PouchDaemon, api: docker.APIClient, name: str) -> str:
    """Create a container, start it, and kill the container actor the moment the
    task's shim appears; once the actor is back, the container's ID."""
    cid = api.create_container("busybox", ["sleep", "1"], name=name)["Id"]
    view = BrokerView(pouchd)
    old = pouchd.pid_of("container")
    answers: list[str] = []

    def start() -> None:
        try:
            api.start(cid)
            answers.append("ok")
        except APIError as exc:
            answers.append(f"{exc.status_code} {exc.explanation}")

    starting = threading.Thread(target=start)
    starting.start()
    try:
        # Polled finely: the kill must land while containerd still starts the shim.
        wait_for(lambda: cid in live_shims(pouchd).values(), SHIM_WITHIN,
                 "the task's shim appearing", poll=POLL / 10)
        killed_at = kill(old)
        watch_replacement(view, pouchd, "container", old, killed_at)
    finally:
        starting.join()
        view.close()
    if not (answers and (answers[0] == "ok" or answers[0].startswith("503"))):
        print(pouchd.log_tail(400))  # shown with the failure: which call went wrong
        raise AssertionError(answers)
    return cid


def taskless(pouchd: PouchDaemon) -> dict[int, str]:
    return observe(pouchd).taskless_shims


def test_a_start_cut_by_the_actors_death_leaves_no_shim_once_removed(pouchd: PouchDaemon, api):
    cids = [cut_start(pouchd, api, f"cut-{i}") for i in range(TRIES)]
    left = taskless(pouchd)
    wait_restored(pouchd, time.monotonic())

    pouchd.docker("rm", "-f", *cids)

    wait_for(lambda: not live_shims(pouchd), SHIM_WITHIN, "no shim left")
    settled(pouchd)
    print(f"{len(left)} of {TRIES} cut starts left a shim serving no task; none after rm -f")


def test_a_shim_a_cut_start_left_is_swept_while_its_container_stays(pouchd: PouchDaemon, api):
    cids = [cut_start(pouchd, api, f"kept-{i}") for i in range(TRIES)]
    left = taskless(pouchd)

    wait_for(lambda: not taskless(pouchd), SWEPT_WITHIN, "the sweep ending taskless shims")

    listed = {c["Id"] for c in api.containers(all=True)}
    assert set(cids) <= listed
    for cid in cids:  # each container still starts and runs its command, once
        if api.inspect_container(cid)["State"]["Status"] != "running":
            api.start(cid)
        assert api.wait(cid, timeout=SHIM_WITHIN)["StatusCode"] == 0
    settled(pouchd)
    print(f"{len(left)} of {TRIES} cut starts left a shim serving no task; swept")


def test_a_clean_stop_leaves_no_shim_that_serves_no_task(pouchd: PouchDaemon, api):
    for i in range(TRIES):
        cut_start(pouchd, api, f"stop-{i}")
    # A running container's shim outlives pouchd by design (live restore): none runs.
    wait_for(lambda: not api.containers(), SHIM_WITHIN, "the containers' commands ending")
    assert pouchd.proc is not None
    pouchd.proc.send_signal(signal.SIGTERM)
    pouchd.proc.wait(STOP_TIMEOUT)

    assert live_shims(pouchd) == {}, pouchd.log_tail(400)


def sweeps(pouchd: PouchDaemon) -> int:
    """How many periodic sweeps the daemon's container actors have logged (--debug)."""
    return pouchd.log_path.read_text(errors="replace").count("swept containerd's leftovers")


def test_a_task_of_another_client_in_pouchs_namespace_is_left_alone(pouchd: PouchDaemon):
    """The sweep ends what pouch's own containers left; a container that another client
    (ctr, say) made in pouch's namespace has no owner label, and it, its task and its
    shim are not pouch's to end: not at a restore, nor at the sweeps that follow."""
    ctr = ["ctr", "--address", str(pouchd.containerd_socket), "--namespace", "pouch"]
    subprocess.run([*ctr, "run", "-d", "docker.io/library/busybox:latest", "foreign",
                    "sleep", "600"], check=True, capture_output=True, timeout=60)
    try:
        view = BrokerView(pouchd)
        old = pouchd.pid_of("container")
        swept = sweeps(pouchd)
        watch_replacement(view, pouchd, "container", old, kill(old))
        wait_restored(pouchd, time.monotonic())
        # The new actor's first periodic sweep too (its restore's sweep came before).
        wait_for(lambda: sweeps(pouchd) > swept, SWEPT_WITHIN, "the new actor's sweep")
        tasks = subprocess.run([*ctr, "task", "ls"], check=True, capture_output=True,
                               text=True).stdout
        assert any(line.split()[:1] == ["foreign"] and "RUNNING" in line
                   for line in tasks.splitlines()), tasks
    finally:
        subprocess.run([*ctr, "task", "kill", "-s", "SIGKILL", "foreign"], capture_output=True)
        wait_for(lambda: subprocess.run([*ctr, "task", "delete", "foreign"],
                                        capture_output=True).returncode == 0
                 or "not found" in subprocess.run([*ctr, "task", "ls"], capture_output=True,
                                                  text=True).stdout or None,
                 10.0, "the foreign task deleted")
        subprocess.run([*ctr, "container", "delete", "foreign"], capture_output=True)
