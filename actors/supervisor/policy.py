"""When to restart a child that exited: as Erlang/OTP supervisors do, at once the first
time, then with a growing backoff, and past the restart intensity (too many restarts
in a window) not at all."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pouch.actors.backoff import Backoff

BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0
MAX_RESTARTS = 5
WINDOW = 30.0
BACKOFF = Backoff(BACKOFF_FIRST, BACKOFF_CAP)  # frozen: one for every policy


@dataclass
class RestartPolicy:
    backoff: Backoff = BACKOFF
    max_restarts: int = MAX_RESTARTS
    window: float = WINDOW
    _exits: deque[float] = field(default_factory=deque)

    def next_delay(self, now: float) -> float | None:
        """Seconds to wait before restarting after an exit at `now`; None: give up."""
        self._exits.append(now)
        while self._exits and self._exits[0] <= now - self.window:
            self._exits.popleft()
        recent = len(self._exits)
        if recent > self.max_restarts:
            return None
        # The first exit in the window is restarted at once; a second one backs off.
        return self.backoff.delay(recent - 1) if recent > 1 else 0.0

    def reset(self) -> None:
        self._exits.clear()

    @property
    def recent(self) -> int:
        return len(self._exits)
