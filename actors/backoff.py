"""Exponential backoff with a cap: how long to wait before trying again."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first: float
    cap: float
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try number `attempt` (1: the first retry)."""
        if attempt < 1:
            raise ValueError(f"attempts count from 1, not {attempt}")
        # Capped before it grows: no float overflow however long the run of retries.
        steps = min(attempt - 1, 64)
        return min(self.cap, self.first * self.factor ** steps)
