"""Atomic file writes: every write to the state on disk goes through here."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes, mode: int = 0o644, durable: bool = True,
                 sync_dir: bool = True) -> None:
    """Write `data` so that readers see the old file or the new one, never a torn one.
    `durable`: on disk before this returns, so that it outlives the machine's crash
    (not only the process's). `sync_dir=False`: the rename is left for the caller to
    make durable, with one fsync of the folder after several writes into it."""
    # Unique while this thread writes it: no two writes of one thread overlap, and a
    # leftover of a dead process with the same ids is only overwritten.
    tmp = path.parent / f".{path.name}.{os.getpid()}-{threading.get_native_id()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not (durable and sync_dir):
        return
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a crash
    finally:
        os.close(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write_json(path: Path, value: Any, durable: bool = True) -> None:
    atomic_write(path, json.dumps(value, indent=None, separators=(",", ":")).encode(),
                 durable=durable)


def rewrite_in_place(path: str, change: Callable[[str], str]) -> None:
    """Rewrite a text file as `change` makes its text, in place (truncate and write, not
    a rename: a bind mount holds the inode, not the name), under an exclusive lock, so
    that writers of its parts take turns. A file that is gone is left so."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        text = change(f.read())
        f.seek(0)
        f.write(text)
        f.truncate()
