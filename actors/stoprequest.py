"""A stop that a signal handler may ask for.

A Python signal handler runs in the main thread between two of its bytecodes,
wherever that thread was: also while it holds a lock, such as the one inside the
threading.Event it waits on. A handler that takes that lock (Event.set) then
deadlocks its own thread. So a request here only writes an eventfd, which takes
no lock, and a thread of its own, woken by it, sets the Event that the rest of
the process watches.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable


class StopRequest:
    """`event` is set once a stop was requested, after `on_stop(why)` (the first
    request's reason) returned."""

    def __init__(self, on_stop: Callable[[str], None] | None = None) -> None:
        self.event = threading.Event()
        self._on_stop = on_stop
        self._why: collections.deque[str] = collections.deque()  # appends take no lock
        self._fd = os.eventfd(0, os.EFD_CLOEXEC)
        threading.Thread(target=self._wait, name="stop-request", daemon=True).start()

    def request(self, why: str = "") -> None:
        """Ask for the stop; safe in a signal handler, and from any thread."""
        self._why.append(why)
        os.eventfd_write(self._fd, 1)

    def _wait(self) -> None:
        os.read(self._fd, 8)  # os.read: retried if a signal interrupts it (PEP 475)
        if self._on_stop is not None:
            self._on_stop(self._why[0])
        self.event.set()
