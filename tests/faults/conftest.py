"""Fixtures of the fault tests: a time box (each test's own pouchd: tests/conftest.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest

# No fault test may run longer than this, hung or not; its daemon is stopped anyway.
TIME_BOX = 120


@pytest.fixture(autouse=True)
def time_box() -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the test ran longer than its time box of {TIME_BOX} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TIME_BOX)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

