"""The gateway killed under `docker run --rm`: a single-process gateway's death
ends the CLI's connection at once (it does not wait out its timeout), and what
the daemon started finishes there (the container runs to its end and is
removed); gunicorn's master killed again and again cuts no run at all; a worker
told to stop drops no request sent on a connection it kept alive."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from functools import partial

from pouch.tests.faults.test_fault_points import arm
from pouch.tests.faults.tree import kill, until
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.procs import alive, children_of
from pouch.tests.support.unixhttp import UnixConnection

CLI_TIMEOUT = 60.0
ENDS_WITHIN = 10.0
MASTER_KILLS = 8
RUNS_BETWEEN_KILLS = 8  # `docker run --rm` done under each new master before it is killed
SERVED_WITHIN = 10.0  # pouchd's restart back-off grows with each kill
RUN_LOOPS = 4


def test_a_run_rm_cut_by_a_gateway_death_ends_at_once_and_leaves_nothing(pouchd: PouchDaemon):
    old = pouchd.pid_of("gateway")
    env = pouchd.cli_env()
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


def enough(runs: list[Run], wanted: int) -> bool | None:
    return len(runs) >= wanted or None


@dataclass(frozen=True)
class Run:
    name: str
    exit: int | None  # None: hung past CLI_TIMEOUT
    stderr: str


def test_gateway_masters_killed_again_and_again_cut_no_run(pouchd: PouchDaemon):
    """Each killed master's workers serve on until a new master's worker does, then
    serve what they took and exit: none accepts a connection it has no time left to
    serve (once, the old workers accepted through their grace time and dropped what
    arrived at its end: `docker run` saw EOF, or waited out its timeout)."""
    env = pouchd.cli_env()
    runs: list[Run] = []
    done = threading.Event()

    def loop(index: int) -> None:
        count = 0
        while not done.is_set():
            count += 1
            name = f"loop{index}-{count}"
            try:
                cli = subprocess.run(["docker", "run", "--rm", "--name", name, "busybox", "true"],
                                     env=env, capture_output=True, text=True,
                                     timeout=CLI_TIMEOUT)
                runs.append(Run(name, cli.returncode, cli.stderr.strip()))
            except subprocess.TimeoutExpired:
                runs.append(Run(name, None, ""))

    loops = [threading.Thread(target=loop, args=(i,)) for i in range(RUN_LOOPS)]
    for thread in loops:
        thread.start()
    orphans: list[int] = []
    killed: set[int] = set()
    serving = pouchd.run_dir / "gateway.serving"
    try:
        for _ in range(MASTER_KILLS):
            ran = len(runs)
            # A new master's worker serves (it says so), and runs go through it.
            master, _ = until(lambda: (p := pouchd.pid_of("gateway")) not in killed and alive(p)
                              and serving.read_text() == str(p) and p, SERVED_WITHIN,
                              "a new gunicorn master's worker serving")
            wanted = ran + RUNS_BETWEEN_KILLS
            until(partial(enough, runs, wanted), CLI_TIMEOUT, "runs under the new master")
            orphans += children_of(master)
            killed.add(master)
            kill(master)
    finally:
        done.set()
        for thread in loops:
            thread.join(CLI_TIMEOUT + 5)
    failed = [r for r in runs if r.exit != 0]
    assert failed == [] and len(runs) > MASTER_KILLS
    until(lambda: not any(alive(pid) for pid in orphans) or None, 10.0,
          "the killed masters' workers exiting")
    assert pouchd.docker("ps", "-aq") == ""
    print(f"{MASTER_KILLS} gateway masters killed: {len(runs)} `docker run --rm`, none failed")


def test_a_stopping_worker_answers_the_next_request_on_a_connection_it_kept_alive(
        pouchd: PouchDaemon):
    """A worker told to stop while it serves a request answers it with keep-alive (it
    was not stopping when it began), so the client may send its next request at once:
    that one is answered too, saying the connection closes (once, the worker closed
    the connection as it answered, and `docker run` saw EOF on the wait it sent on the
    connection of its create)."""
    workers = children_of(pouchd.pid_of("gateway"))
    conn = UnixConnection(pouchd.socket, CLI_TIMEOUT)
    conn.request("GET", "/containers/json")
    conn.getresponse().read()
    # The request is held by a delay in the container actor's create (a stopped actor
    # would not do: the supervisor kills one that misses its heartbeats for 0.75 s).
    arm(pouchd, "container.create.prepared", "delay")
    conn.request("POST", "/containers/create", body=json.dumps({"Image": "busybox"}),
                 headers={"Content-Type": "application/json"})
    until(lambda: "fault injected at container.create.prepared" in pouchd.log_tail(200)
          or None, ENDS_WITHIN, "the create held in the container actor")
    for worker in workers:
        kill(worker, signal.SIGTERM)  # gunicorn's graceful stop
    first = conn.getresponse()
    assert (first.status, first.will_close) == (201, False)
    first.read()
    conn.request("GET", "/containers/json?all=1")
    second = conn.getresponse()
    assert (second.status, second.will_close) == (200, True)
    assert len(json.loads(second.read())) == 1
    conn.close()
