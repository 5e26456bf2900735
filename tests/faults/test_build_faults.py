"""The builder actor killed (kill -9) in the middle of a RUN step: the client is told,
its restarted successor removes the step's container, no lease is left, and the next
build goes through."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from pouch.tests.faults.checks import list_leases
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for


def test_a_builder_killed_mid_step_leaves_nothing_running(pouchd: PouchDaemon,
                                                           tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo started; sleep 120\n")
    env = {**pouchd.cli_env(), "DOCKER_BUILDKIT": "0"}
    proc = subprocess.Popen(["docker", "build", "-t", "cut:v1", str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "started":
                break
        old = pouchd.pid_of("builder")
        os.kill(old, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "builder" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_for(lambda: pouchd.pid_of("builder") != old, 30, "a new builder actor")
    wait_for(lambda: pouchd.docker("ps", "-aq") == "", 30, "the cut step's container removed")
    assert pouchd.docker_result("image", "inspect", "cut:v1").returncode != 0
    wait_for(lambda: list_leases(pouchd.containerd_socket) == [], 30, "no lease left")

    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo again > /again\n")
    out = pouchd.docker("build", "-t", "again:v1", str(tmp_path), timeout=120)
    assert "Successfully tagged again:v1" in out
