"""When to restart a child that exited: exponential backoff, and restart intensity
as Erlang/OTP supervisors have it (too many restarts in a window: give up)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0
MAX_RESTARTS = 5
WINDOW = 30.0


@dataclass
class RestartPolicy:
    first: float = BACKOFF_FIRST
    cap: float = BACKOFF_CAP
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
        return min(self.cap, self.first * 2 ** (recent - 1))

    def reset(self) -> None:
        self._exits.clear()

    @property
    def recent(self) -> int:
        return len(self._exits)
