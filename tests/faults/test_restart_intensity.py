"""An actor that keeps dying: after more than 10 restarts within 30 s the supervisor
leaves it down for a cool-down and says so, and the rest of the daemon serves on
(test_supervision.py follows it through the cool-down)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from docker.errors import APIError

from pouch.actors.supervisor.policy import MAX_RESTARTS, WINDOW
from pouch.tests.faults.checks import docker_api
from pouch.tests.faults.tree import BrokerView, broker, kill, until
from pouch.tests.support.daemon import PouchDaemon, running
from pouch.tests.support.procs import alive

GIVE_UP_WITHIN = 30.0
AT_ONCE = 1.0


class FaultyDaemon(PouchDaemon):
    """A pouchd whose environment arms fault points in every actor it starts."""

    def __init__(self, faults: str) -> None:
        super().__init__()
        self.faults = faults

    def env(self) -> dict[str, str]:
        return {**super().env(), "POUCH_FAULTS": self.faults}


def supervised(daemon: PouchDaemon) -> dict[str, dict[str, object]]:
    """The supervisor's view of its children: pid, state, restarts, last exit."""
    client = broker(daemon)
    try:
        return dict(client.call("supervisor", "status")["children"])
    finally:
        client.close()


def wait_given_up(daemon: PouchDaemon, actor: str) -> tuple[dict[str, object], float]:
    """The supervisor's entry of `actor` once it cools down, and when that was seen."""
    def given_up() -> dict[str, object] | None:
        child = supervised(daemon)[actor]
        return child if child["state"] == "cooling-down" else None
    return until(given_up, GIVE_UP_WITHIN, f"the supervisor giving up on the {actor} actor")


def check_left_down_and_the_rest_serves(daemon: PouchDaemon) -> str:
    """The container actor stays down; ping, info and images answer; container calls
    fail at once, naming it. The message they fail with."""
    time.sleep(1.0)  # time for a restart it should not get
    container = supervised(daemon)["container"]
    assert (container["state"], container["restarts"]) == ("cooling-down", MAX_RESTARTS), \
        container
    assert not alive(daemon.pid_of("container"))

    api = docker_api(daemon)
    try:
        assert api.ping() is True
        info = api.info()
        assert info["Degraded"] == ["container"], info["Degraded"]
        assert any("container actor is down" in w for w in info["Warnings"]), info["Warnings"]
        assert [i["RepoTags"] for i in api.images()] == [["busybox:latest"]]
        message = ""
        for what, call in (("list", lambda: api.containers(all=True)),
                           ("create", lambda: api.create_container("busybox", ["true"]))):
            sent = time.monotonic()
            with pytest.raises(APIError) as failed:
                call()
            took = time.monotonic() - sent
            message = str(failed.value.explanation)
            assert failed.value.status_code == 503, (what, failed.value)
            assert "the container actor is down" in message, message
            assert took < AT_ONCE, f"{what} failed after {took:.3f} s, not at once"
        return message
    finally:
        api.close()


def test_an_actor_that_keeps_dying_is_left_down_and_the_rest_serves(pouchd: PouchDaemon):
    view = BrokerView(pouchd)
    try:
        first = time.monotonic()
        killed: list[int] = []
        for _ in range(MAX_RESTARTS + 1):  # one exit more than the intensity within 30 s
            fresh, _ = until(lambda: (view.pids("container") - set(killed)) or None, 10.0,
                             "a new container actor")
            pid = fresh.pop()
            kill(pid)
            killed.append(pid)
        container, gave_up = wait_given_up(pouchd, "container")
    finally:
        view.close()
    assert gave_up - first < WINDOW
    assert "SIGKILL" in str(container["last_exit"]), container
    message = check_left_down_and_the_rest_serves(pouchd)
    print(f"restart intensity: {len(killed)} kills, given up {gave_up - first:.3f} s after "
          f"the first; container calls then fail at once with {message!r}")


def test_pouchd_serves_degraded_when_an_actor_crashes_at_every_start(busybox_tarball: Path):
    with running(busybox_tarball, FaultyDaemon("container.restore=crash")) as daemon:
        container, _ = wait_given_up(daemon, "container")
        assert "status 70" in str(container["last_exit"]), container
        crashes = re.findall(r"container\[\d+\] ERROR pouch\.faults", daemon.log_tail(10_000))
        assert len(crashes) == MAX_RESTARTS + 1
        check_left_down_and_the_rest_serves(daemon)
