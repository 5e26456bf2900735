"""What a signal handler may do without deadlocking its own thread.

A Python signal handler runs in the main thread between two of its bytecodes,
wherever that thread was: also while it holds a lock, such as the one inside a
threading.Event it waits on. A handler that takes that lock (Event.set) then
deadlocks the thread. So a handler here only writes an eventfd, which takes no
lock, and another thread, woken by it, does the rest.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable


class Wakeup:
    """A count of notices that a signal handler may add to and a thread waits for."""

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_CLOEXEC)

    def notify(self) -> None:
        """Add a notice; safe in a signal handler, and from any thread."""
        os.eventfd_write(self._fd, 1)

    def wait(self) -> None:
        """Until there is a notice; takes all there are. os.read, not eventfd_read: a
        signal that interrupts it is then retried (PEP 475), not raised."""
        os.read(self._fd, 8)


class StopRequest:
    """`event` is set once a stop was requested, after `on_stop(why)` (the first
    request's reason) returned."""

    def __init__(self, on_stop: Callable[[str], None] | None = None) -> None:
        self.event = threading.Event()
        self._on_stop = on_stop
        self._why: collections.deque[str] = collections.deque()  # appends take no lock
        self._asked = Wakeup()
        threading.Thread(target=self._wait, name="stop-request", daemon=True).start()

    def request(self, why: str = "") -> None:
        """Ask for the stop; safe in a signal handler, and from any thread."""
        self._why.append(why)
        self._asked.notify()

    def _wait(self) -> None:
        self._asked.wait()
        if self._on_stop is not None:
            self._on_stop(self._why[0])
        self.event.set()
