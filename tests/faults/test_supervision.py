"""Supervision that never leaves the daemon serving nothing: an actor given up on is
tried again after a cool-down, and says when; a gateway that keeps dying makes pouchd
exit non-zero (for systemd to start it afresh); every child's state is readable with
`pouchd status`, which needs neither the gateway nor the broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from pouch.actors.supervisor.policy import COOL_DOWN, MAX_RESTARTS
from pouch.actors.supervisor.status import DEGRADED_EXIT, NOT_RUNNING, RUNNING
from pouch.tests.faults.checks import docker_api
from pouch.tests.faults.test_restart_intensity import FaultyDaemon, wait_given_up
from pouch.tests.faults.tree import kill, until
from pouch.tests.support.daemon import PouchDaemon, running
from pouch.tests.support.procs import alive

EXIT_WITHIN = 30.0
# Well below any broker or gateway deadline (status needs neither), and above an
# interpreter's start on a loaded machine.
STATUS_ANSWERS_WITHIN = 10.0


def pouchd_status(daemon: PouchDaemon, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pouch.actors.supervisor.main",
                           "--exec-root-dir", str(daemon.run_dir), "--config-file", "",
                           "status", *flags],
                          capture_output=True, text=True, timeout=STATUS_ANSWERS_WITHIN)


def test_an_actor_given_up_on_is_retried_after_its_cool_down(busybox_tarball: Path):
    with running(busybox_tarball, FaultyDaemon("container.restore=crash")) as daemon:
        container, gave_up = wait_given_up(daemon, "container")
        assert container["state"] == "cooling-down"
        retry_at = str(container["retry_at"])
        assert retry_at, container

        # Said everywhere: /info, the answer to a container call, pouchd status.
        api = docker_api(daemon)
        try:
            info = api.info()
            assert info["Degraded"] == ["container"]
            assert any(f"tried again at {retry_at}" in w for w in info["Warnings"]), info
            failed = daemon.docker_result("ps")
            assert f"tried again at {retry_at}" in failed.stderr, failed.stderr
        finally:
            api.close()
        status = pouchd_status(daemon)
        assert status.returncode == DEGRADED_EXIT, status
        assert f"cooling-down until {retry_at}" in status.stdout, status.stdout

        # After the cool-down it is started again (and, crashing again, cools down longer).
        def retried() -> dict[str, object] | None:
            child = json.loads(pouchd_status(daemon, "--json").stdout)["children"]["container"]
            return child if int(child["restarts"]) > MAX_RESTARTS else None

        _, at = until(retried, COOL_DOWN.first + 15.0, "the container actor retried")
        assert at - gave_up >= COOL_DOWN.first - 1.0


def test_pouchd_status_needs_neither_the_gateway_nor_the_broker(pouchd: PouchDaemon):
    status = pouchd_status(pouchd)
    assert status.returncode == RUNNING, status
    broker = pouchd.pid_of("broker")
    kill(broker, signal.SIGSTOP)
    try:
        kill(pouchd.pid_of("gateway"))

        # The status file says what the supervisor saw: the gateway's exit, at once.
        def gateway_restarted() -> dict[str, dict[str, object]] | None:
            answer = pouchd_status(pouchd, "--json")
            children: dict[str, dict[str, object]] = json.loads(answer.stdout)["children"]
            return children if "SIGKILL" in str(children["gateway"]["last_exit"]) else None

        children, _ = until(gateway_restarted, 10.0, "pouchd status showing the gateway's exit")
        assert children["broker"]["pid"] == broker
        assert set(children) >= {"broker", "containerd", "system", "image", "volume", "container",
                                 "gateway"}
    finally:
        kill(broker, signal.SIGCONT)


def test_a_gateway_that_keeps_dying_makes_pouchd_exit_non_zero(pouchd: PouchDaemon):
    assert pouchd.proc is not None
    killed: set[int] = set()

    def new_gateway() -> int | None:
        pid = pouchd.pid_of("gateway")
        return pid if pid not in killed and alive(pid) else None

    for _ in range(MAX_RESTARTS + 1):
        pid, _ = until(new_gateway, 10.0, "a new gateway")
        kill(pid)
        killed.add(pid)
    code = pouchd.proc.wait(EXIT_WITHIN)
    assert code == 1, pouchd.log_tail()
    assert "gateway keeps crashing" in pouchd.log_tail(200)
    status = pouchd_status(pouchd)
    assert status.returncode == NOT_RUNNING, status
    assert "is not running" in status.stdout
