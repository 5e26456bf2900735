"""The status file (`<exec-root>/status.json`) and `pouchd status`, which reads it.

The supervisor rewrites the file (atomically) at every change of a child's
state, so what it holds is readable when the gateway or the broker is down,
and even after pouchd died (its pid then names no live pouchd).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pouch.actors.fsutil import atomic_write_json
from pouch.actors.timefmt import rfc3339_nano
from pouch.proto.shapes import ChildStatus

STATUS_FILE = "status.json"
DEGRADED = ("cooling-down", "down")
# `pouchd status` exits with: all running; some child degraded; pouchd not running
# (as `systemctl status` does: 3 for an inactive unit).
RUNNING, DEGRADED_EXIT, NOT_RUNNING = 0, 1, 3


def write_status(path: Path, children: dict[str, ChildStatus]) -> None:
    atomic_write_json(path, {"pid": os.getpid(), "updated": rfc3339_nano(),
                             "children": children})


def show_status(exec_root: Path, as_json: bool) -> int:
    """Print pouchd's status (a table, or JSON); the exit status of `pouchd status`."""
    path = exec_root / STATUS_FILE
    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"pouchd is not running (no status in {path}: {exc})")
        return NOT_RUNNING
    children: dict[str, ChildStatus] = status.get("children") or {}
    running = _is_pouchd(int(status.get("pid") or 0))
    degraded = [name for name, child in children.items() if child["state"] in DEGRADED]
    if as_json:
        print(json.dumps({**status, "running": running, "degraded": degraded}, indent=2))
    else:
        print(render(status, running, degraded))
    if not running:
        return NOT_RUNNING
    return DEGRADED_EXIT if degraded else RUNNING


def render(status: dict[str, Any], running: bool, degraded: list[str]) -> str:
    pid = status.get("pid")
    head = (f"pouchd (pid {pid}) is running" if running else
            f"pouchd (pid {pid}) is not running; its children as it last saw them")
    if running and degraded:
        head += f", degraded: {', '.join(degraded)}"
    rows = [("CHILD", "PID", "STATE", "RESTARTS", "LAST EXIT")]
    for name, child in (status.get("children") or {}).items():
        state = child["state"]
        if child.get("retry_at"):
            state += f" until {child['retry_at']}"
        rows.append((name, str(child["pid"] or "-"), state, str(child["restarts"]),
                     child["last_exit"] or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in rows]
    return "\n".join([f"{head} (as of {status.get('updated')})",
                      *(line.rstrip() for line in lines)])


def _is_pouchd(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pouch" in cmdline
