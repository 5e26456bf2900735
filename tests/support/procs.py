"""What /proc (and `ss`) say about processes, for tests and benchmarks that watch
pouch's tree."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


def pids() -> Iterator[int]:
    """Every process but this one."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me:
            yield int(entry.name)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Running or stopped; a zombie has exited (only its parent's wait is missing)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def stopped(pid: int) -> bool:
    """Stopped by a signal (state T)."""
    fields = _stat(pid)
    return fields is not None and fields[0] == "T"


def children_of(parent: int) -> list[int]:
    """Living direct children of `parent`."""
    return sorted(pid for pid in pids()
                  if (fields := _stat(pid)) and int(fields[1]) == parent
                  and fields[0] not in ("Z", "X"))


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def in_cgroups_named(names: set[str]) -> list[int]:
    """Processes in a cgroup whose last path part is one of `names` (a container's
    processes, named by its ID, whichever hierarchy or parent)."""
    found = []
    for pid in pids():
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if any(line.rsplit("/", 1)[-1] in names for line in text.splitlines()):
            found.append(pid)
    return found


def unread_from(reader: int, writers: list[int]) -> bool | None:
    """Whether something `writers` sent waits for `reader` (`ss`): unread bytes on a unix
    socket `reader` holds whose other end one of `writers` holds, or a connection not yet
    accepted on a socket `reader` listens on (its peer is not shown: anyone's counts);
    None if not, for `until`."""
    listed = subprocess.run(["ss", "-xapnH"], capture_output=True, text=True, check=True)
    rows = [row for line in listed.stdout.splitlines() if len(row := line.split()) > 8]
    owner = {row[5]: row[8] for row in rows}  # a socket's inode: who holds it
    return any(int(row[2]) > 0 and f"pid={reader}," in row[8]
               and (row[1] == "LISTEN"
                    or any(f"pid={pid}," in owner.get(row[7], "") for pid in writers))
               for row in rows) or None
