"""How long `docker ps` is unavailable after the container actor is killed with SIGKILL.

    python -m pouch.bench.recovery [--runs N] [--gap SECONDS] [--json PATH]

A pouchd with busybox loaded and three containers (running, exited,
created). Each run: a few GET /containers/json with nothing killed (the
baseline), then `kill -9` of the container actor (pid from
<run_dir>/container.pid), and two raw GETs on the unix socket:

  - one sent at the kill, retried until it answers 200: what a `docker ps`
    typed right after the crash waits (target: a median of 150 ms);
  - one sent the moment the broker lists a new container actor: when the
    service is back for a caller that retries.

The broker drops the dead actor at once (a send to it fails, or the
supervisor reports the exit with `worker_gone`) and queues the GET sent at
the kill until the new actor says READY, so the two answer within a few ms
of each other. The daemon's log and /proc split the time: the supervisor
noticing the exit, the new process forked by the zygote (or, without one,
an interpreter starting and importing) up to its pid file, READY at the
broker (the actor restores its state before it connects), and the answer.

The supervisor restarts a child at once after its first exit within 30 s,
then backs off (0.1, 0.2, 0.4 ... s) and gives up after more than 5, so by
default pouchd is restarted before every kill and each kill is a first exit.
`--gap S` instead kills the same daemon every S seconds (S > 6 keeps it under
the give-up limit) and shows the backoff growing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pouch.bench.common import MS, parser, ratio, run_main, summarize, table, write_json
from pouch.bench.pouchd import pouchd, restart
from pouch.bench.procfs import started_at
from pouch.broker.client import Client
from pouch.proto.envelope import PouchError
from pouch.tests.support.daemon import PouchDaemon

TARGET = 0.15
PROBE = b"GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: pouch\r\nConnection: close\r\n\r\n"
ATTEMPT_TIMEOUT = 2.0   # a GET with nothing killed

GIVE_UP = 30.0
BASELINE_PER_RUN = 5
STABLE_TIMEOUT = 30.0
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def get_containers(sock_path: Path, timeout: float = ATTEMPT_TIMEOUT) -> int:
    """One raw GET /containers/json on the unix socket: the HTTP status (0: no answer)."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(sock_path))
            s.sendall(PROBE)
            head = b""
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    return 0
                head += chunk
            status = int(head.split(b" ", 2)[1])
            while s.recv(65536):
                pass  # the whole body: the answer is complete only when it has arrived
            return status
    except (OSError, ValueError, IndexError):
        return 0


def timed_get(sock_path: Path) -> float:
    start = time.perf_counter()
    status = get_containers(sock_path)
    elapsed = time.perf_counter() - start
    if status != 200:
        raise RuntimeError(f"GET /containers/json answered {status or 'nothing'} "
                           "with nothing killed")
    return elapsed


@dataclass
class Recovery:
    first: float        # kill -> the answer to a GET sent at the kill (what `docker ps` sees)
    restored: float     # kill -> the answer to a GET sent once the new actor is registered
    statuses: list[int] = field(default_factory=list)   # of the GET(s) sent at the kill
    split: dict[str, float] = field(default_factory=dict)


def answered(sock_path: Path, start: float) -> tuple[float, list[int]]:
    """Seconds from `start` (perf_counter) until a GET answers 200, retrying; the statuses."""
    statuses = []
    while True:
        status = get_containers(sock_path, timeout=GIVE_UP)
        statuses.append(status)
        if status == 200:
            return time.perf_counter() - start, statuses
        if time.perf_counter() - start > GIVE_UP:
            raise RuntimeError(f"docker ps did not come back within {GIVE_UP:.0f} s")
        time.sleep(0.01)


def log_times(log: Path, offset: int, pattern: str) -> list[float]:
    """Wall-clock times of the log lines after `offset` that contain `pattern`."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    times = []
    for line in text.splitlines():
        if pattern in line:
            m = LOG_TIME.match(line)
            if m:
                times.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return times


def container_workers(client: Client) -> list[int]:
    try:
        services = client.call("broker", "services", timeout=1.0)
    except PouchError:
        return []
    return [w["pid"] for w in (services.get("container") or {}).get("workers", [])]


def wait_stable(daemon: PouchDaemon, client: Client) -> int:
    """Until exactly one live container actor is registered and answers: its pid."""
    deadline = time.monotonic() + STABLE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            pid = daemon.pid_of("container")
            os.kill(pid, 0)
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        if container_workers(client) == [pid] and get_containers(daemon.socket) == 200:
            return pid
        time.sleep(0.05)
    raise RuntimeError(f"the container actor did not settle:\n{daemon.log_tail()}")


def kill_and_time(daemon: PouchDaemon, client: Client) -> Recovery:
    old = wait_stable(daemon, client)
    offset = daemon.log_path.stat().st_size
    first: list[tuple[float, list[int]]] = []
    killed_at = time.time()
    start = time.perf_counter()
    os.kill(old, signal.SIGKILL)
    # A daemon thread: on Ctrl-C nobody waits for it.
    at_kill = threading.Thread(target=lambda: first.append(answered(daemon.socket, start)),
                               daemon=True)
    at_kill.start()
    # The moment the broker lists a new container actor, ask again.
    deadline = start + GIVE_UP
    while not [p for p in container_workers(client) if p != old]:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no new container actor registered:\n{daemon.log_tail()}")
        time.sleep(0.005)
    registered = time.perf_counter() - start
    restored, _ = answered(daemon.socket, start)
    at_kill.join(GIVE_UP)
    if not first:
        raise RuntimeError(f"the GET sent at the kill never answered:\n{daemon.log_tail()}")
    result = Recovery(first[0][0], restored, first[0][1])
    result.split = split(daemon, offset, old, killed_at)
    result.split["registered (seen by polling)"] = registered
    result.split["GET sent at the kill: 200"] = result.first
    result.split["GET sent once registered: 200"] = result.restored
    return result


def split(daemon: PouchDaemon, offset: int, old: int, killed_at: float) -> dict[str, float]:
    """Seconds after the kill at which each step was seen (NaN: not seen)."""
    nan = float("nan")
    # The pid file is rewritten by the new process once it has started (and imported).
    deadline = time.monotonic() + 5
    new = old
    while new == old and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            new = daemon.pid_of("container")
        if new == old:
            time.sleep(0.02)
    pidfile = daemon.run_dir / "container.pid"

    def first(pattern: str) -> float:
        times = log_times(daemon.log_path, offset, pattern)
        return times[0] - killed_at if times else nan

    try:
        spawned = started_at(new) - killed_at if new != old else nan
        imported = pidfile.stat().st_mtime - killed_at if new != old else nan
    except OSError:
        spawned = imported = nan
    return {
        "exit noticed": first(f"container (pid {old}) killed by SIGKILL"),
        "process started": spawned,
        "pid file (started)": imported,
        "READY at broker": first(f"container actor ready (pid {new})"),
        "old worker dropped by broker": first(f"container actor (pid {old}) removed"),
    }


def populate(daemon: PouchDaemon) -> None:
    daemon.docker("run", "-d", "--name", "bench-running", "busybox", "sleep", "3600")
    daemon.docker("run", "--name", "bench-exited", "busybox", "true")
    daemon.docker("create", "--name", "bench-created", "busybox", "true")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=10)
    p.add_argument("--gap", type=float, default=0.0,
                   help="kill the same pouchd every GAP s instead of restarting it per kill")
    args = p.parse_args(argv)
    baseline: list[float] = []
    runs: list[Recovery] = []
    with pouchd() as daemon:
        populate(daemon)
        client = Client(f"ipc://{daemon.run_dir / 'broker.sock'}")
        try:
            last_kill = 0.0
            for run in range(args.runs):
                if run and not args.gap:
                    restart(daemon)  # the client's socket reconnects to the new broker
                wait_stable(daemon, client)
                baseline += [timed_get(daemon.socket) for _ in range(BASELINE_PER_RUN)]
                if args.gap:
                    time.sleep(max(0.0, last_kill + args.gap - time.monotonic()))
                    last_kill = time.monotonic()
                runs.append(kill_and_time(daemon, client))
                print(f"run {run + 1}: GET at the kill answered after {runs[-1].first * MS:.0f} ms,"
                      f" GET once registered after {runs[-1].restored * MS:.0f} ms", flush=True)
            wait_stable(daemon, client)
        finally:
            client.close()
    return report(args, baseline, runs)


def report(args: Any, baseline: list[float], runs: list[Recovery]) -> int:
    base = summarize(baseline)
    first = summarize([r.first for r in runs])
    restored = summarize([r.restored for r in runs])
    print()
    print(table(["GET /containers/json", "n", "median ms", "p90 ms", "max ms", "x baseline"], [
        ["nothing killed (baseline)", base["n"], base["median"] * MS, base["p90"] * MS,
         base["max"] * MS, 1.0],
        *([name, s["n"], s["median"] * MS, s["p90"] * MS, s["max"] * MS,
           ratio(s["median"], base["median"])]
          for name, s in (("kill -9, GET sent at the kill", first),
                          ("kill -9, GET sent once registered", restored)))]))
    steps = list(runs[0].split) if runs else []
    print("\nms after the kill at which each step was seen (log lines: ms resolution; "
          "process start: 10 ms ticks)")
    print(table(["step", *(f"run {i + 1}" for i in range(len(runs))), "median"],
                [[step, *(r.split[step] * MS for r in runs), _median(runs, step) * MS]
                 for step in steps]))
    if runs:
        med = {step: _median(runs, step) for step in steps}
        print("\nmedian split (ms):")
        print(table(["phase", "ms"], [[name, (med[b] - med[a]) * MS] for name, a, b in (
            ("exit noticed -> process started (fork by the zygote)", "exit noticed",
             "process started"),
            ("start-up (-> pid file)", "process started", "pid file (started)"),
            ("pid file -> READY at broker (restore)", "pid file (started)",
             "READY at broker"),
            ("READY -> the queued GET answered", "READY at broker",
             "GET sent at the kill: 200"))]))
    for name, s in (("GET sent at the kill", first), ("GET sent once registered", restored)):
        verdict = "met" if s["median"] <= TARGET else "NOT met"
        print(f"target <= {TARGET * MS:.0f} ms, {name}: {verdict} (median {s['median'] * MS:.0f}"
              f" ms, max {s['max'] * MS:.0f} ms)")
    print("(" + (f"the same pouchd, killed every {args.gap:.1f} s" if args.gap
                 else "pouchd restarted before each kill") + ")")
    write_json(args.json, {
        "benchmark": "recovery", "unit": "seconds", "target": TARGET, "gap": args.gap,
        "baseline": base,
        "first": {**first, "ratio_to_baseline": ratio(first["median"], base["median"])},
        "restored": {**restored, "ratio_to_baseline": ratio(restored["median"], base["median"])},
        "runs": [{"first": r.first, "restored": r.restored, "statuses": r.statuses,
                  "split": r.split} for r in runs]})
    return 0


def _median(runs: list[Recovery], step: str) -> float:
    seen = [r.split[step] for r in runs if r.split[step] == r.split[step]]
    return summarize(seen)["median"]


if __name__ == "__main__":
    run_main(main)
