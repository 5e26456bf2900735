"""When to restart a child that exited: as Erlang/OTP supervisors do, at once the first
time, then with a growing backoff; past the restart intensity (too many restarts in a
window) not for a cool-down, which grows each time the child is given up on again."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pouch.actors.backoff import Backoff

BACKOFF_FIRST = 0.1
BACKOFF_CAP = 2.0
MAX_RESTARTS = 10
WINDOW = 30.0
BACKOFF = Backoff(BACKOFF_FIRST, BACKOFF_CAP)  # frozen: one for every policy
COOL_DOWN = Backoff(30.0, 300.0)


@dataclass
class RestartPolicy:
    backoff: Backoff = BACKOFF
    max_restarts: int = MAX_RESTARTS
    window: float = WINDOW
    cool_down: Backoff = COOL_DOWN
    _exits: deque[float] = field(default_factory=deque)
    _given_up: int = 0

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

    def give_up(self) -> float:
        """The child exceeded its intensity: seconds to leave it down before a new try,
        which then starts with a fresh intensity."""
        self._given_up += 1
        self._exits.clear()
        return self.cool_down.delay(self._given_up)

    def reset(self) -> None:
        """The child ran long enough to count as stable again."""
        self._exits.clear()
        self._given_up = 0

    @property
    def recent(self) -> int:
        return len(self._exits)
