"""gRPC's two client cores against containerd, alternating: the one pouchd's processes use
(the calling thread polls for the answer) and grpcio's default (its EventEngine threads
take it and hand it over).

    python -m pouch.bench.grpc_client [--runs N] [--calls N] [--json PATH]

Each core runs in a process of its own, as grpcio reads GRPC_EXPERIMENTS once, at its
start: there, pouch's containerd client asks a containerd of the benchmark's own for
its version, `--calls` times a block, one call at a time as a worker makes them. Per
call: the time to its answer, the CPU of the client process (every thread of it) and
its context switches; the CPU and the switches are what other processes on the machine
(containerd, runc and the shims of a start) lose to the call.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pouch.bench.common import (
    US,
    alternate,
    end_process,
    parser,
    ratio,
    require,
    run_main,
    summarize,
    table,
    write_json,
)
from pouch.bench.procfs import context_switches, cpu_ns
from pouch.tests.support.containerd import run_containerd

# The core pouchd's processes use (actors/supervisor/__init__.py), and grpcio's default.
CORES = {"caller polls (pouchd's)": "-event_engine_client", "EventEngine (default)": ""}
METRICS = ("wall", "cpu", "switches")


def child(address: str) -> int:
    """The client process: a block of calls per line read, its per-call figures back."""
    from pouch.actors.containerd.client import Containerd

    ctrd = Containerd(address)
    pid = os.getpid()
    for line in sys.stdin:
        calls = int(line)
        cpu, switches, start = cpu_ns(pid), context_switches(pid), time.perf_counter()
        for _ in range(calls):
            ctrd.version()
        wall = time.perf_counter() - start
        print(json.dumps({"wall": wall / calls, "cpu": (cpu_ns(pid) - cpu) / 1e9 / calls,
                          "switches": (context_switches(pid) - switches) / calls}), flush=True)
    ctrd.close()
    return 0


class Client:
    def __init__(self, address: Path, experiments: str) -> None:
        env = {**os.environ, "GRPC_EXPERIMENTS": experiments}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pouch.bench.grpc_client", "--child", str(address)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.figures: dict[str, list[float]] = {m: [] for m in METRICS}

    def close(self) -> None:
        """Its stdin's end ends it; a child that does not end is stopped."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            end_process(self.proc)

    def block(self, calls: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{calls}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("the client process ended")
        figures = json.loads(answer)
        for metric in METRICS:
            self.figures[metric].append(figures[metric])
        return float(figures["wall"])


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=10)
    p.add_argument("--calls", type=int, default=500, help="calls per block")
    p.add_argument("--child", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    require("containerd")
    with tempfile.TemporaryDirectory(prefix="bg-", dir="/tmp") as base, \
            run_containerd(Path(base)) as ctrd:
        clients = {name: Client(ctrd.address, core) for name, core in CORES.items()}
        try:
            alternate(args.runs, {name: functools.partial(c.block, args.calls)
                                  for name, c in clients.items()})
        finally:
            for c in clients.values():
                c.close()
    # The first block of each is the warm-up, not recorded by alternate: drop it here too.
    results = {name: {m: summarize(c.figures[m][1:]) for m in METRICS}
               for name, c in clients.items()}
    baseline = results["EventEngine (default)"]
    rows = [[name, r["wall"]["median"] * US, r["cpu"]["median"] * US,
             r["switches"]["median"], ratio(r["cpu"]["median"], baseline["cpu"]["median"])]
            for name, r in results.items()]
    print(table(["containerd Version call, one at a time", "us per call", "CPU us per call",
                 "switches per call", "x CPU of default"], rows))
    write_json(args.json, {"benchmark": "grpc_client", "unit": "seconds per call",
                           "results": results})
    return 0


if __name__ == "__main__":
    run_main(main)
