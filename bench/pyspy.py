"""Sample processes with py-spy while a load runs, and say where their CPU goes.

py-spy is a profiling aid, not a dependency of pouch: `.venv/bin/pip install
py-spy`. It samples without pausing the targets (--nonblocking), so the load
runs at its usual speed; idle threads (blocked in poll) are not counted.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pouch.bench.procfs import cpu_ns

RATE = 500  # samples per second

# Where a sample's innermost frame is, by the first matching pattern.
CATEGORIES = (
    ("zmq poll", ("Poller.poll", "Socket.poll", "zmq/sugar/poll.py")),
    ("zmq send", ("Socket.send",)),
    ("zmq recv (and Again)", ("Socket.recv", "zmq/error.py")),
    ("pykka and locks", ("pykka/", "threading.py", "queue.py")),
    ("msgpack", ("msgpack/", "proto/envelope.py")),
    ("metrics", ("prometheus_client/", "actors/metrics.py")),
    ("contract validation", ("proto/contract.py", "typing.py")),
    ("enum (pyzmq flags)", ("enum.py",)),
    ("broker logic", ("broker/router.py",)),
    ("client logic", ("broker/client.py",)),
    ("actor host logic", ("actors/host.py",)),
)


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def profile_processes(targets: dict[str, int | None], load: Callable[[], Any], out: Path,
                      seconds: float) -> dict[str, Any] | None:
    """Sample each target (None: this process) while `load` is called in a loop."""
    spy = py_spy()
    if spy is None:
        print("\n--profile: py-spy is not installed (.venv/bin/pip install py-spy); skipped")
        return None
    out.mkdir(parents=True, exist_ok=True)
    pids = {name: pid or os.getpid() for name, pid in targets.items()}
    spies = []
    try:
        for name, pid in pids.items():
            spies.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                 "--rate", str(RATE), "--format", "raw", "--nonblocking", "--threads",
                 "--output", str(out / f"{_slug(name)}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL))
        time.sleep(0.5)  # py-spy attaches
        cpu_before = {name: cpu_ns(pid) for name, pid in pids.items()}
        calls = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds - 1.0:
            load()
            calls += 1
        cpu = {name: cpu_ns(pid) - cpu_before[name] for name, pid in pids.items()}
        for spy_proc in spies:
            _, err = spy_proc.communicate(timeout=seconds + 30)
            if spy_proc.returncode != 0:
                print(f"py-spy: {err.decode(errors='replace').strip()}", file=sys.stderr)
    finally:
        for spy_proc in spies:
            if spy_proc.poll() is None:
                spy_proc.kill()
                spy_proc.wait()
    summary: dict[str, Any] = {"calls": calls, "dir": str(out), "processes": {}}
    for name in pids:
        path = out / f"{_slug(name)}.txt"
        if path.exists():
            cats, top = summarize_collapsed(path)
            summary["processes"][name] = {"cpu_us_per_call": cpu[name] / 1e3 / max(calls, 1),
                                          "categories": cats, "top_frames": top,
                                          "raw": str(path)}
    return summary


def print_profile(summary: dict[str, Any]) -> None:
    print(f"\npy-spy, {summary['calls']} pouch calls: each process's CPU per call, and where its "
          "sampled (non-idle) time was")
    for name, proc in summary["processes"].items():
        print(f"\n{name}: {proc['cpu_us_per_call']:.0f} us CPU per call (all threads)")
        for cat, share in sorted(proc["categories"].items(), key=lambda kv: -kv[1]):
            if share >= 0.01:
                print(f"  {share * 100:5.1f}%  {cat}")
        top = proc["top_frames"][:5]
        print("  top frames: " + "; ".join(f"{frame} {share * 100:.0f}%" for frame, share in top))
    print(f"\nraw stacks (input for flamegraph.pl or speedscope) in {summary['dir']}")


def summarize_collapsed(path: Path) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Category shares and the top innermost frames of a py-spy raw (collapsed) file."""
    cats: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.rsplit(";", 1)[-1]
        leaves[leaf] += n
        cats[_category(leaf)] += n
    if not total:
        return {}, []
    return ({c: n / total for c, n in cats.items()},
            [(f, n / total) for f, n in leaves.most_common(12)])


def _category(frame: str) -> str:
    for name, patterns in CATEGORIES:
        if any(p in frame for p in patterns):
            return name
    return "other"


def _slug(name: str) -> str:
    return name.replace(" ", "-")
