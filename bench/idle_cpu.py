"""CPU an idle daemon takes from its machine: pouchd (every process it starts,
containerd included) against dockerd 20.10 with its own containerd, both started
with no container, measured in turns in the same run.

    python -m pouch.bench.idle_cpu [--runs N] [--seconds S] [--json PATH]

Each run reads both trees' CPU time (/proc, every thread) over S seconds of
nothing asked of either. Then where pouchd's goes: CPU and context switches
per second by process, over one more window.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from pouch.bench.common import alternate, parser, ratio, run_main, summarize, table, write_json
from pouch.bench.dockerd import dockerd
from pouch.bench.pouchd import pouchd
from pouch.bench.procfs import context_switches, cpu_ns, descendants

SETTLE = 3.0  # seconds after the start, before the first window


def tree(root: int) -> list[int]:
    return [root, *descendants(root)]


def cpu_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone meanwhile: it took what it took
            total += cpu_ns(pid)
    return total


def window(root: int, seconds: float) -> float:
    """The tree's CPU, in ms per second, over `seconds` of idleness."""
    pids = tree(root)
    before = cpu_of(pids)
    time.sleep(seconds)
    return (cpu_of(pids) - before) / 1e6 / seconds


def by_process(root: int, seconds: float) -> list[tuple[str, float, float]]:
    """(name, CPU ms/s, context switches/s) of each process of the tree."""
    pids = tree(root)
    before = {pid: (cpu_ns(pid), context_switches(pid)) for pid in pids}
    time.sleep(seconds)
    rows = []
    for pid, (cpu, switches) in before.items():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            rows.append((name, (cpu_ns(pid) - cpu) / 1e6 / seconds,
                         (context_switches(pid) - switches) / seconds))
        except OSError:
            continue
    return sorted(rows, key=lambda row: -row[1])


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=6)
    p.add_argument("--seconds", type=float, default=5.0, help="length of a window")
    args = p.parse_args(argv)
    with pouchd(busybox=False) as pouch, dockerd() as docker:
        assert pouch.proc is not None and docker.proc is not None
        time.sleep(SETTLE)
        ours, theirs = pouch.proc.pid, docker.proc.pid
        samples = alternate(args.runs, {
            "dockerd 20.10 + containerd": lambda: window(theirs, args.seconds),
            "pouchd + containerd": lambda: window(ours, args.seconds)}, warmup=0)
        processes = by_process(ours, args.seconds)
    baseline = summarize(samples["dockerd 20.10 + containerd"])["median"]
    results = {name: summarize(values) for name, values in samples.items()}
    print(table(["idle, no containers", "n", "median CPU ms/s", "max", "x dockerd"],
                [[name, s["n"], s["median"], s["max"], ratio(s["median"], baseline)]
                 for name, s in results.items()]))
    print()
    print(table(["pouchd's process", "CPU ms/s", "switches/s"], processes))
    write_json(args.json, {"results": results,
                           "processes": [{"name": n, "cpu_ms_per_s": c, "switches_per_s": s}
                                         for n, c, s in processes]})
    return 0


if __name__ == "__main__":
    run_main(main)
