"""What /proc says of a peer process: whether it is stopped, and whose descendant it is."""

from __future__ import annotations

from pathlib import Path

MAX_DEPTH = 64  # ancestors looked at: pouchd's tree is a few levels deep


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # gone, or never was
    # The command name, in parentheses, may hold spaces and parentheses itself.
    state, ppid = text.rpartition(")")[2].split()[:2]
    return state, int(ppid)


def stopped(pid: int) -> bool:
    """Stopped by a signal (SIGSTOP, SIGTSTP) or by a debugger: its silence is not the doing
    of what it was serving."""
    known = _state_and_parent(pid)
    return known is not None and known[0] in ("T", "t")


def descends_from(pid: int, ancestor: int) -> bool:
    """`pid` is `ancestor` or one of its descendants (through parent links, as they are now)."""
    for _ in range(MAX_DEPTH):
        if pid == ancestor:
            return True
        known = _state_and_parent(pid) if pid > 1 else None
        if known is None:
            return False
        pid = known[1]
    return False


def parent(pid: int) -> int | None:
    """The parent of `pid`; None if it is gone."""
    known = _state_and_parent(pid)
    return known[1] if known is not None else None
