"""The ZeroMQ client example (README, "ZeroMQ clients") against a real pouchd: a
program that runs a container without HTTP."""

from __future__ import annotations

import subprocess
import sys

from pouch.tests.support.daemon import PouchDaemon


def test_the_example_runs_a_container_through_the_broker(daemon: PouchDaemon):
    ran = subprocess.run(
        [sys.executable, "-m", "pouch.broker.example", "--broker",
         f"ipc://{daemon.run_dir}/broker.sock", "busybox", "sh", "-c", "exit 4"],
        capture_output=True, text=True, timeout=60)
    assert ran.returncode == 4, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].endswith("containers before")
    assert lines[1].startswith("container ") and lines[1].endswith("exited with 4")
    cid = lines[1].split()[1]
    listed = daemon.docker("ps", "-a", "-q", "--no-trunc")
    assert not any(line.startswith(cid) for line in listed.splitlines())  # removed


def test_the_example_says_what_went_wrong(daemon: PouchDaemon):
    ran = subprocess.run(
        [sys.executable, "-m", "pouch.broker.example", "--broker",
         f"ipc://{daemon.run_dir}/broker.sock", "no-such-image:here", "true"],
        capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1
    assert ran.stderr.startswith("not_found: No such image: no-such-image:here")
