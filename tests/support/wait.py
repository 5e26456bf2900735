"""Waiting in tests: on a condition, with a deadline, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL = 0.01


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str,
             poll: float = POLL) -> T:
    """The first truthy value of `predicate`, asked every `poll` s; fails naming `what`
    once `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {value!r})")
        time.sleep(poll)
