"""Helpers of the volume tests: names, failing commands, references to containers made
by hand, and what is mounted where."""

from __future__ import annotations

import uuid
from pathlib import Path

from pouch.tests.support.daemon import PouchDaemon


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fails(daemon: PouchDaemon, *args: str) -> str:
    """Run a docker command that must fail; its stderr."""
    done = daemon.docker_result(*args)
    assert done.returncode != 0, f"docker {' '.join(args)} succeeded: {done.stdout}"
    return done.stderr.strip()


def fake_container() -> str:
    """A container ID for references made through the broker (no container is made)."""
    return uuid.uuid4().hex + uuid.uuid4().hex


def mount_of(point: Path) -> tuple[str, str] | None:
    """(file system type, super options) of the top mount at `point`, if any."""
    found = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        if fields[4] == str(point):
            rest = fields[fields.index("-") + 1:]
            found = (rest[0], rest[2])
    return found
