"""What /proc says about a process: CPU time, memory, start time, command line."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

KIB = 1024
MIB = 1024 * 1024


def _sum_over_threads(pid: int, read: Callable[[Path], int]) -> int:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    total = 0
    for task in tasks:
        try:
            total += read(task)
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` so far, in ns (schedstat, not 10 ms ticks)."""
    return _sum_over_threads(pid, lambda task: int((task / "schedstat").read_text().split()[0]))


def context_switches(pid: int, voluntary: bool = False) -> int:
    """Voluntary and involuntary context switches of every thread of `pid` so far;
    `voluntary`: only those (a thread's own waits, not the scheduler's preemptions,
    which a loaded machine adds)."""
    return _sum_over_threads(pid, lambda task: _switches(task, voluntary))


def thread_context_switches(pid: int, tid: int, voluntary: bool = False) -> int:
    """context_switches of one thread of `pid` (its main thread's `tid` is `pid`)."""
    return _switches(Path(f"/proc/{pid}/task/{tid}"), voluntary)


def _switches(task: Path, voluntary: bool) -> int:
    key = "voluntary_ctxt_switches:" if voluntary else "ctxt_switches:"
    return sum(int(line.split()[1]) for line in (task / "status").read_text().splitlines()
               if key in line)


def children_of(pid: int) -> list[int]:
    """Direct children, from every thread's children list."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = children_of(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children_of(child)
    return out


def memory(pid: int) -> dict[str, int]:
    """Bytes: rss, pss, uss, anonymous and file-backed parts (smaps_rollup)."""
    fields = {"Rss": "rss", "Pss": "pss", "Pss_Anon": "pss_anon", "Pss_File": "pss_file",
              "Anonymous": "anon", "Private_Clean": "private_clean",
              "Private_Dirty": "private_dirty", "Swap": "swap"}
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        if key in fields:
            out[fields[key]] = int(rest.split()[0]) * KIB
    # Unique set size: what ending the process would give back.
    out["uss"] = out.get("private_clean", 0) + out.get("private_dirty", 0)
    return out


def mappings(pid: int) -> dict[str, dict[str, int]]:
    """Bytes of RSS and PSS per mapped file ("[anon]" for the rest), from smaps."""
    out: dict[str, dict[str, int]] = {}
    current = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(None, 1)[0]
        if "-" in first and not first.endswith(":"):
            parts = line.split(None, 5)
            current = parts[5].strip() if len(parts) > 5 else "[anon]"
            continue
        if first in ("Rss:", "Pss:"):
            entry = out.setdefault(current, {"rss": 0, "pss": 0})
            entry[first[:-1].lower()] += int(line.split()[1]) * KIB
    return out


def started_at(pid: int) -> float:
    """Wall-clock time the process started, to the kernel's tick (10 ms)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    since_boot = ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
