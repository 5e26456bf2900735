"""Fault injection: make a named actor crash or hang at a named point.

Honoured only when pouchd runs with --debug. Arm a fault in either of two ways:

- at start-up, through the environment of pouchd (inherited by every actor):
      POUCH_FAULTS="container.restore=crash,image.load.unpacked=hang"
- at run time, through any actor's declared method `debug_fault`:
      {"method": "debug_fault", "args": {"point": "container.create.prepared",
                                         "action": "crash", "once": true}}

Actions: `crash` ends the process at once (exit status 70, as a bug would,
without cleaning up); `kill` sends it SIGKILL (as `kill -9`, the OOM killer or
a chaos test would: not the request's doing); `delay` holds the calling thread
DELAY seconds (a slow disk or containerd); `hang` stops the process with SIGSTOP, so it neither
works nor answers heartbeats, as a deadlock would. The points are the calls
to `Faults.hit()` in the actors' code (POINTS lists them).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger("pouch.faults")

ACTIONS = ("crash", "kill", "delay", "hang")
DELAY = 2.0
ENV = "POUCH_FAULTS"
CRASH_STATUS = 70

# Every point the actors' code passes through, by name: the documented list.
POINTS = (
    "container.restore",            # the container actor restores its containers at start
    "container.create.prepared",    # snapshot prepared, containerd container not yet created
    "container.create.container_made",  # the containerd container exists, no meta.json yet
    "container.create.recorded",    # meta.json written, the create not yet answered
    "container.start.task_created",  # the task exists in containerd, not yet started
    "container.start.recorded_running",  # the task exists, recorded as running, not started
    "container.start.task_started",  # the task runs, the start not yet recorded nor answered
    "container.remove.task_deleted",  # the task is gone, the container and snapshot not yet
    "container.remove.deleting",    # a helper about to delete its containerd container or snapshot
    "container.exit.task_deleted",  # an exited task is deleted, its exit not yet recorded
    "container.stream.taken",       # a handed-over stream taken (its head goes out), not begun
    "image.load.unpacked",          # layers unpacked, the image not yet in the index
    "volume.create.staged",         # a volume's folder made under a temporary name
    "volume.remove.trashed",        # a volume's folder renamed away, its files not deleted
    "network.container.leaving",    # a container's ports or endpoints about to be released
)


class Faults:
    """The faults armed in this process (a lock, since any actor thread may pass a point)."""

    def __init__(self, enabled: bool, armed: str | None = None) -> None:
        """`armed` defaults to $POUCH_FAULTS."""
        self.enabled = enabled
        armed = os.environ.get(ENV, "") if armed is None else armed
        self._lock = threading.Lock()
        self._armed: dict[str, tuple[str, bool]] = {}
        for item in filter(None, (part.strip() for part in armed.split(","))):
            point, _, action = item.partition("=")
            if self.enabled:
                self.arm(point, action or "crash", once=False)

    def arm(self, point: str, action: str, once: bool = True) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r}: one of {', '.join(ACTIONS)}")
        if point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}: one of {', '.join(POINTS)}")
        with self._lock:
            self._armed[point] = (action, once)

    def armed(self, point: str) -> bool:
        """Whether a fault waits at `point` (for a caller that reaches a state first)."""
        with self._lock:
            return self.enabled and point in self._armed

    def hit(self, point: str) -> None:
        """Crash or hang here if a fault is armed for `point` (never without --debug)."""
        if not self.enabled:
            return
        with self._lock:
            armed = self._armed.get(point)
            if armed is None:
                return
            action, once = armed
            if once:
                del self._armed[point]
        log.error("fault injected at %s: %s", point, action)
        for handler in logging.getLogger().handlers:
            handler.flush()
        if action == "crash":
            os._exit(CRASH_STATUS)
        if action == "delay":
            time.sleep(DELAY)
            return
        os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGSTOP)

