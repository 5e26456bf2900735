"""Fixtures of the fault tests: a pouchd of each test's own, and a time box."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from pouch.tests.support.daemon import PouchDaemon

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


def start_with_busybox(daemon: PouchDaemon, tarball: Path) -> PouchDaemon:
    daemon.start()
    daemon.docker("load", "-i", str(tarball))
    return daemon


@pytest.fixture
def pouchd(busybox_tarball: Path) -> Iterator[PouchDaemon]:
    """A pouchd (--debug, so fault points are honoured) for this test alone."""
    daemon = PouchDaemon()
    try:
        yield start_with_busybox(daemon, busybox_tarball)
    finally:
        daemon.stop()
