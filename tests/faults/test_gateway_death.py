"""The gateway killed while a `docker run --rm` is in its hands: the CLI sees its
connection end at once (it does not wait out its timeout), and what the daemon
started finishes there: the container runs to its end and is removed."""

from __future__ import annotations

import os
import subprocess
import time

from pouch.tests.faults.tree import kill, until
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.procs import alive

CLI_TIMEOUT = 60.0
ENDS_WITHIN = 10.0


def test_a_run_rm_cut_by_a_gateway_death_ends_at_once_and_leaves_nothing(pouchd: PouchDaemon):
    old = pouchd.pid_of("gateway")
    env = {**os.environ, "DOCKER_HOST": pouchd.host, "DOCKER_CONFIG": str(pouchd.docker_config)}
    run = subprocess.Popen(["docker", "run", "--rm", "--name", "cut", "busybox", "sh", "-c",
                            "sleep 2; echo done"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: pouchd.docker("ps", "-q", "--filter", "name=cut") or None, 15.0,
              "the container running")
        fault = kill(old)
        run.wait(CLI_TIMEOUT)
        ended = time.monotonic()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert ended - fault < ENDS_WITHIN, f"the CLI waited {ended - fault:.1f} s"
    assert not alive(old)
    # The container ran to its end and the daemon removed it, as --rm asked.
    until(lambda: pouchd.docker("ps", "-aq", "--filter", "name=cut") == "" or None, 15.0,
          "the container auto-removed")
    print(f"gateway killed during `docker run --rm`: the CLI ended {ended - fault:.2f} s "
          f"later (exit {run.returncode}); the container was removed")
