"""What every benchmark shares: alternating runs, summaries, the table, JSON, clean-up.

This machine is noisy (two shared cores), so no figure stands alone: each is
set against a baseline measured in the same script, with the cases
interleaved (A, B, A, B, ...) so that a burst of outside load hits both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

MS = 1e3
US = 1e6


def parser(description: str, default_runs: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", type=int, default=default_runs,
                   help=f"measured runs per case (default {default_runs})")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    return p


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), interpolated between the nearest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p90": quantile(values, 0.90),
        "p99": quantile(values, 0.99),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def alternate(runs: int, cases: Mapping[str, Callable[[], float | list[float]]],
              warmup: int = 1) -> dict[str, list[float]]:
    """Run every case once per round, in turn, `runs` rounds after `warmup` unrecorded ones.

    A case returns one sample, or a block of them.
    """
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_no in range(warmup + runs):
        for name, case in cases.items():
            value = case()
            if round_no >= warmup:
                samples[name].extend(value if isinstance(value, list) else [value])
    return samples


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    out = [line, "-" * len(line)]
    for row in cells:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) < 10:
            return f"{value:.2f}"
        return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def machine() -> dict[str, Any]:
    """What the figures were measured on, noise included."""
    return {"cpus": os.cpu_count(), "loadavg": os.getloadavg(),
            "python": sys.version.split()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(f"\nwrote {path}")


def sigterm_as_interrupt() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` that cleans up runs."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    # Even when started in the background of a script, which ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def require(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        sys.exit(f"needs {', '.join(missing)} on PATH")


def end_process(proc: subprocess.Popen[Any] | None, timeout: float = 3.0) -> None:
    """SIGTERM, SIGKILL after `timeout`; reaped either way. Only ever our own child."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def children() -> Iterator[list[subprocess.Popen[Any]]]:
    """A list to append the processes a benchmark starts; all are ended on the way out."""
    procs: list[subprocess.Popen[Any]] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            end_process(proc)


def run_main(main: Callable[[list[str] | None], int]) -> None:
    """`python -m pouch.bench.X`: Ctrl-C and SIGTERM leave nothing behind and exit 130."""
    sigterm_as_interrupt()
    try:
        sys.exit(main(None))
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
