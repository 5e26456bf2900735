"""Work done inside another network namespace by a short-lived thread made for it.

setns(2) moves only the calling thread, so no other thread of the process (its ZeroMQ
loop, its actors, a pool that could hand the thread to someone else) ever runs in the
namespace; the thread ends with the work. What the work makes there, a socket, stays in
that namespace after the thread is gone. Used for the network actor's netlink work
(pouch.actors.network.sandbox) and embedded DNS sockets, and the CRI's port-forward.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(path: str, work: Callable[[], T]) -> T:
    """`work`'s result, run by a thread that entered the namespace at `path` (a
    bind-mounted nsfs file, or /proc/<pid>/ns/net). Errors: OSError, and work's."""
    def run() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"setns {path}: {os.strerror(code)}")
        finally:
            os.close(fd)
        return work()
    return in_thread(run)


def in_thread(work: Callable[[], T]) -> T:
    """`work`'s result, run by a thread made for it (which then ends): its errors are
    raised here."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err

    thread = threading.Thread(target=run, name="pouch-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
