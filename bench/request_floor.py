"""The per-request floor: small API requests against pouchd and dockerd 20.10, alternating.

    python -m pouch.bench.request_floor [--runs N] [--gap MS] [--json PATH]

Three requests that do (almost) nothing: `GET /_ping` (answered by the
gateway alone), `GET /v1.41/containers/json` with no containers (one call to
the container actor) and `GET /v1.41/version` (one call to the system actor,
which asks containerd its version, as dockerd does). Each is sent over the
daemon's unix socket with http.client, in four ways:

    keep-alive, back-to-back    one connection, the next request as soon as the last is read
    keep-alive, after idle      one connection, each request after --gap ms of silence
    new conn, back-to-back      a connection per request, as the docker CLI (a new process) does
    new conn, after idle        the same, after --gap ms of silence

Blocks of each case run in turn (pouch, dockerd, pouch, ...), so a burst of
outside load on this shared machine hits both. Then pouch's time is taken
apart, stage by stage, on the same daemon:

    actor call      ClientPool.call from this process, as the gateway makes it: an
                    idempotent call on the actor's direct socket (pouch.broker.direct),
                    what a gateway thread waits for in `Calls` (no HTTP at all)
    actor handler   from the actor host reading the request to its answer leaving, as the
                    actor's own latency metric says (its sum over count for the block)
    falcon app      the gateway's Falcon app built in this process and called with a WSGI
                    environ: routing, middleware, media, the actor call; no gunicorn, no socket
    HTTP            the full request over the socket (keep-alive): the rest is gunicorn,
                    its event loop, its thread hand-off and the socket

and the CPU time each pouch process spends per request (schedstat, all its
threads): one request at a time, that CPU is on the critical path.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from pouch.bench.common import (
    MS,
    US,
    alternate,
    parser,
    ratio,
    require,
    run_main,
    summarize,
    table,
    write_json,
)
from pouch.bench.dockerd import DOCKERD, dockerd
from pouch.bench.memory import pouch_processes
from pouch.bench.pouchd import pouchd
from pouch.bench.procfs import context_switches, cpu_ns
from pouch.broker.client import ClientPool
from pouch.proto.config import DaemonConfig
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.unixhttp import UnixConnection

POUCH, DOCKERD_NAME = "pouch", "dockerd"
# path -> (service, method) of the one call pouch makes for it (None: the gateway answers)
PATHS: dict[str, tuple[str, str] | None] = {
    "/_ping": None,
    "/v1.41/containers/json": ("container", "list"),
    "/v1.41/version": ("system", "version"),
}
TARGETS = {"/_ping": 1.0, "/v1.41/containers/json": 2.0}  # the issue's, keep-alive back-to-back
BLOCK = 40         # back-to-back requests per block
IDLE_BLOCK = 3     # requests after a gap per block
DEFAULT_GAP_MS = 200.0


def get(conn: UnixConnection, path: str) -> None:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")


def timed_block(sock_path: Path, path: str, keep: bool, gap: float, n: int) -> list[float]:
    """`n` requests, each timed from its send to the end of its answer."""
    samples = []
    conn = UnixConnection(sock_path) if keep else None
    try:
        if conn is not None:
            get(conn, path)  # connect, and warm the connection: not measured
        for _ in range(n):
            if gap:
                time.sleep(gap)
            start = time.perf_counter()
            if conn is None:
                fresh = UnixConnection(sock_path)
                try:
                    get(fresh, path)
                finally:
                    fresh.close()
            else:
                get(conn, path)
            samples.append(time.perf_counter() - start)
    finally:
        if conn is not None:
            conn.close()
    return samples


MODES = {  # name -> (keep-alive, idle)
    "keep-alive, back-to-back": (True, False),
    "keep-alive, after idle": (True, True),
    "new conn, back-to-back": (False, False),
    "new conn, after idle": (False, True),
}


def compare(sockets: dict[str, Path], runs: int, gap: float) -> dict[str, dict[str, Any]]:
    """Every (path, mode) against both daemons, alternating; summaries by case name."""
    cases: dict[str, Callable[[], list[float]]] = {}
    for path in PATHS:
        for mode, (keep, idle) in MODES.items():
            for daemon, sock_path in sockets.items():
                cases[f"{daemon}|{path}|{mode}"] = partial(
                    timed_block, sock_path, path, keep, gap if idle else 0.0,
                    IDLE_BLOCK if idle else BLOCK)
    samples = alternate(runs, cases)
    return {name: summarize(values) for name, values in samples.items()}


# -- pouch taken apart -----------------------------------------------------------------


def environ(path: str) -> dict[str, Any]:
    """A WSGI environ for a GET as gunicorn builds it, less what the app never reads."""
    target, _, query = path.partition("?")
    return {"REQUEST_METHOD": "GET", "PATH_INFO": target, "QUERY_STRING": query,
            "SCRIPT_NAME": "", "SERVER_NAME": "docker", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "docker",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False}


def app_caller(config: DaemonConfig) -> tuple[Callable[[str], None], Callable[[], None]]:
    from pouch.gateway.app import create_app
    pool = ClientPool(config.broker_endpoint, direct_dir=config.direct_dir)
    app = create_app(config, pool)

    def call(path: str) -> None:
        status: list[str] = []
        def start_response(s: str, h: Any, *e: Any) -> Callable[[bytes], object]:
            status.append(s)
            return lambda _: None
        body = b"".join(app(environ(path), start_response))
        if not status or not status[0].startswith("200"):
            raise RuntimeError(f"app GET {path}: {status} {body[:200]!r}")
    return call, pool.close


def actor_latency(pool: ClientPool, service: str, method: str) -> tuple[float, float]:
    """(count, sum of seconds) of `service.method` answered so far, from the actor's metrics."""
    for family in pool.call(service, "metrics"):
        if family["name"] == "pouch_request_seconds":
            for labels, (counts, total) in family["samples"]:
                if labels == [service, method]:
                    return float(sum(counts)), float(total)
    return 0.0, 0.0


class CpuMeter:
    """CPU time and context switches of each pouch process over some requests."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.cpu = {role: 0 for role in pids}
        self.switches = {role: 0 for role in pids}
        self.requests = 0
        self.elapsed = 0.0

    def measure(self, block: Callable[[], list[float]]) -> None:
        cpu = {role: cpu_ns(pid) for role, pid in self.pids.items()}
        switches = {role: context_switches(pid) for role, pid in self.pids.items()}
        start = time.perf_counter()
        self.requests += len(block())
        self.elapsed += time.perf_counter() - start
        for role, pid in self.pids.items():
            self.cpu[role] += cpu_ns(pid) - cpu[role]
            self.switches[role] += context_switches(pid) - switches[role]

    def less_idle(self) -> None:
        """Take off what each process spends anyway (heartbeats, sweeps) in as much time."""
        cpu = {role: cpu_ns(pid) for role, pid in self.pids.items()}
        switches = {role: context_switches(pid) for role, pid in self.pids.items()}
        time.sleep(self.elapsed)
        for role, pid in self.pids.items():
            self.cpu[role] = max(0, self.cpu[role] - (cpu_ns(pid) - cpu[role]))
            self.switches[role] = max(0, self.switches[role] -
                                      (context_switches(pid) - switches[role]))

    def per_request(self) -> dict[str, tuple[float, float]]:
        """role -> (CPU us, context switches) per request, for the processes that did any."""
        n = max(self.requests, 1)
        return {role: (self.cpu[role] / n / 1e3, self.switches[role] / n)
                for role in self.pids if self.cpu[role] / n > 5_000}  # above 5 us


def breakdown(daemon: PouchDaemon, runs: int, gap: float) -> dict[str, Any]:
    """pouch's stages for every path, back-to-back and after idle; and CPU per request."""
    config = DaemonConfig(home_dir=daemon.home, exec_root_dir=daemon.run_dir,
                          listen=(daemon.host,))
    pool = ClientPool(config.broker_endpoint, direct_dir=config.direct_dir)
    app, close_app = app_caller(config)
    out: dict[str, Any] = {}
    try:
        for path, target in PATHS.items():
            cases: dict[str, Callable[[], list[float]]] = {}
            for idle in (False, True):
                wait, n = (gap, IDLE_BLOCK) if idle else (0.0, BLOCK)
                suffix = "after idle" if idle else "back-to-back"
                if target is not None:
                    service, method = target
                    cases[f"actor call|{suffix}"] = partial(
                        repeat, partial(pool.call, service, method), wait, n)
                cases[f"falcon app|{suffix}"] = partial(repeat, partial(app, path), wait, n)
                cases[f"HTTP|{suffix}"] = partial(timed_block, daemon.socket, path, True, wait, n)
            before = actor_latency(pool, *target) if target else (0.0, 0.0)
            samples = alternate(runs, cases)
            after = actor_latency(pool, *target) if target else (0.0, 0.0)
            stages = {name: summarize(values)["median"] for name, values in samples.items()}
            count = after[0] - before[0]
            # The actor's mean (its histogram keeps a sum, not the samples): all its calls.
            stages["actor handler|mean"] = (after[1] - before[1]) / count if count else 0.0
            out[path] = stages
        cpu: dict[str, Any] = {}
        for path in PATHS:
            meter = CpuMeter(pouch_processes(daemon))
            for _ in range(max(3, runs // 3)):
                meter.measure(partial(timed_block, daemon.socket, path, True, 0.0, BLOCK))
            meter.less_idle()
            cpu[path] = meter.per_request()
        out["cpu"] = cpu
    finally:
        close_app()
        pool.close()
    return out


def repeat(fn: Callable[[], Any], gap: float, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        if gap:
            time.sleep(gap)
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


# -- report ------------------------------------------------------------------------------


def report(results: dict[str, dict[str, Any]], parts: dict[str, Any], gap: float,
           version: str) -> dict[str, Any]:
    print(f"dockerd {version}; no containers; medians; idle gap {gap * MS:.0f} ms")
    rows = []
    verdicts: dict[str, Any] = {}
    for path in PATHS:
        for mode in MODES:
            mine = results[f"{POUCH}|{path}|{mode}"]
            theirs = results[f"{DOCKERD_NAME}|{path}|{mode}"]
            value = ratio(mine["median"], theirs["median"])
            rows.append([f"{path} {mode}", mine["median"] * MS, mine["p90"] * MS,
                         theirs["median"] * MS, theirs["p90"] * MS, value])
            if mode == "keep-alive, back-to-back" and path in TARGETS:
                verdicts[path] = {"ratio": value, "target": TARGETS[path],
                                  "met": value <= TARGETS[path]}
    print(table(["request, mode", "pouch ms", "p90", "dockerd ms", "p90", "x dockerd"], rows))
    for path, v in verdicts.items():
        print(f"{path}: {v['ratio']:.2f} x dockerd (target <= {v['target']:.1f}: "
              f"{'met' if v['met'] else 'NOT met'})")
    print("\npouch, stage by stage (medians, us; the actor's is a mean; after idle, each stage "
          "is timed after a gap of its own, so differences are rough)")
    stage_rows = []
    for path in PATHS:
        s = parts[path]
        for suffix in ("back-to-back", "after idle"):
            actor_call = s.get(f"actor call|{suffix}", 0.0)
            app = s[f"falcon app|{suffix}"]
            whole = s[f"HTTP|{suffix}"]
            actor = s["actor handler|mean"]
            stage_rows.append([f"{path} {suffix}", actor * US,
                               (actor_call - actor) * US if actor_call else float("nan"),
                               (app - actor_call) * US, (whole - app) * US, whole * US])
    print(table(["request", "actor", "call transport", "falcon", "gunicorn+socket", "HTTP total"],
                stage_rows))
    print("\nCPU per request by pouch process (keep-alive, back-to-back; less what it spends "
          "idle): us, context switches")
    for path in PATHS:
        per = parts["cpu"][path]
        print(f"  {path}: " + "; ".join(f"{role} {us:.0f} us {sw:.1f} cs"
                                        for role, (us, sw) in per.items()))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=15)
    p.add_argument("--gap", type=float, default=DEFAULT_GAP_MS,
                   help=f"idle gap before each 'after idle' request, ms (default "
                        f"{DEFAULT_GAP_MS:g})")
    args = p.parse_args(argv)
    gap = args.gap / MS
    require("docker", str(DOCKERD))
    with pouchd(busybox=False) as daemon, dockerd() as docker:
        version = docker.version()
        sockets = {POUCH: daemon.socket, DOCKERD_NAME: docker.socket}
        for sock_path in sockets.values():  # warm both (first imports, caches)
            for path in PATHS:
                timed_block(sock_path, path, True, 0.0, 20)
        results = compare(sockets, args.runs, gap)
        parts = breakdown(daemon, args.runs, gap)
    firewall_diff = docker.firewall_diff
    verdicts = report(results, parts, gap, version)
    if firewall_diff:
        print("firewall rules changed while dockerd ran (see above); left as they are")
    write_json(args.json, {"benchmark": "request_floor", "unit": "seconds", "gap_s": gap,
                           "results": results, "stages": parts, "targets": verdicts,
                           "dockerd_version": version})
    return 0


if __name__ == "__main__":
    run_main(main)
