"""The gateway beside idle and slow clients, and its cost per request against the
previous commit's.

    python -m pouch.bench.slow_clients [--runs N] [--base PYTHON] [--json PATH]

Slow clients: `docker ps` (the CLI) and a bare GET /containers/json, each timed
unloaded and then with 1,000 idle connections open and 50 clients sending a
body at one byte per second (tests/support/slowclients.py), alternating in
every round (the load is opened and closed each round). Target: loaded
`docker ps` median <= 2x unloaded.

Overhead: GET /_ping and GET /containers/json (no containers), one connection
each as the docker CLI makes, against this tree's pouchd and the one that
`--base PYTHON` runs (the interpreter of another checkout's venv, installed at
the previous commit: `git worktree add DIR HEAD~1 && make -C DIR install`), both running,
in alternating blocks. Target: no regression (ratio ~1 within the noise).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pouch.bench.common import MS, alternate, parser, ratio, run_main, summarize, table, write_json
from pouch.bench.pouchd import stop, uninterrupted
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.slowclients import Trickle, fd_limit, idle

IDLE = 1000
SLOW = 50
TARGET = 2.0
BLOCK = 5        # samples per case per round (slow clients)
OVERHEAD_BLOCK = 40  # requests per case per round (overhead)


class BaseDaemon(PouchDaemon):
    """A pouchd run by another tree's interpreter (and so its code)."""

    def __init__(self, python: Path) -> None:
        super().__init__(debug=False)
        self.python = python

    def argv(self) -> list[str]:
        return [str(self.python), *super().argv()[1:]]


@contextlib.contextmanager
def running(daemon: PouchDaemon) -> Iterator[PouchDaemon]:
    try:
        yield daemon.start()
    finally:
        with uninterrupted():
            stop(daemon)


def get(daemon: PouchDaemon, path: str) -> float:
    """Seconds one GET took on a new connection, to the end of the answer (a 200)."""
    start = time.perf_counter()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(str(daemon.socket))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: pouch\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    elapsed = time.perf_counter() - start
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET {path}: {answer[:200]!r}")
    return elapsed


def docker_ps(daemon: PouchDaemon) -> float:
    start = time.perf_counter()
    daemon.docker("ps", "--format", "{{.ID}}")
    return time.perf_counter() - start


def block(measure: Callable[[], float], n: int) -> list[float]:
    return [measure() for _ in range(n)]


def slow_clients(daemon: PouchDaemon, runs: int) -> tuple[dict[str, list[float]], int]:
    """Each round: unloaded, then loaded (the load opened for the block and closed after)."""
    samples: dict[str, list[float]] = {}
    reopened = 0
    for round_no in range(1 + runs):  # a first, unrecorded round warms up
        for case in ("unloaded", "loaded"):
            with contextlib.ExitStack() as load:
                if case == "loaded":
                    load.enter_context(idle(daemon.socket, IDLE))
                    trickle = load.enter_context(Trickle(daemon.socket, SLOW, 1.0))
                ps = block(lambda: docker_ps(daemon), BLOCK)
                raw = block(lambda: get(daemon, "/containers/json"), BLOCK)
                if case == "loaded":
                    reopened += trickle.reopened
            if round_no:
                samples.setdefault(f"docker ps, {case}", []).extend(ps)
                samples.setdefault(f"GET /containers/json, {case}", []).extend(raw)
    return samples, reopened


def overhead(new: PouchDaemon, base: PouchDaemon, runs: int) -> dict[str, list[float]]:
    cases = {f"{path}, {tree}": (lambda d=daemon, p=path: block(lambda: get(d, p), OVERHEAD_BLOCK))
             for path in ("/_ping", "/containers/json")
             for tree, daemon in (("base", base), ("this tree", new))}
    return alternate(runs, cases)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=5)
    p.add_argument("--base", type=Path, required=True,
                   help="the interpreter of a venv installed at the previous commit")
    args = p.parse_args(argv)
    with fd_limit(IDLE + 2 * SLOW), contextlib.ExitStack() as stack:
        new = stack.enter_context(running(PouchDaemon(debug=False)))
        base = stack.enter_context(running(BaseDaemon(args.base)))
        slow, reopened = slow_clients(new, args.runs)
        costs = overhead(new, base, args.runs)
    results: dict[str, dict[str, float]] = {}
    rows = []
    for name, values in {**slow, **costs}.items():
        s = summarize(values)
        results[name] = s
        rows.append([name, s["n"], s["median"] * MS, s["p90"] * MS, s["max"] * MS])
    print(table(["case", "n", "median ms", "p90 ms", "max ms"], rows))
    ratios = {
        "docker ps loaded / unloaded": ratio(results["docker ps, loaded"]["median"],
                                             results["docker ps, unloaded"]["median"]),
        "GET /containers/json loaded / unloaded": ratio(
            results["GET /containers/json, loaded"]["median"],
            results["GET /containers/json, unloaded"]["median"]),
        **{f"{path} this tree / base": ratio(results[f"{path}, this tree"]["median"],
                                             results[f"{path}, base"]["median"])
           for path in ("/_ping", "/containers/json")},
    }
    print()
    print(table(["ratio (medians)", "x"], [[k, v] for k, v in ratios.items()]))
    print(f"\nslow clients closed by the gateway and replaced: {reopened}"
          f"; docker ps target: <= {TARGET:g}x unloaded")
    write_json(args.json, {"benchmark": "slow_clients", "unit": "seconds", "results": results,
                           "ratios": ratios, "slow_clients_replaced": reopened,
                           "base": str(args.base), "python": sys.executable})
    return 0 if ratios["docker ps loaded / unloaded"] <= TARGET else 1


if __name__ == "__main__":
    run_main(main)
