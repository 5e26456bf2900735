"""A real pouchd for a benchmark (the test suite's PouchDaemon), stopped whatever happens."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from pouch.bench.common import require
from pouch.tests.images import build_busybox_tarball
from pouch.tests.support.daemon import PouchDaemon

# The cgroup parent pouch puts each container under (cgroup v1 and v2 alike).
CGROUP_PARENT = "pouch"


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Clean-up that a second Ctrl-C must not cut short."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def pouchd(*, busybox: bool = True, debug: bool = False) -> Iterator[PouchDaemon]:
    """A started pouchd (busybox loaded if asked); on the way out, stopped and removed."""
    require("docker")
    daemon = PouchDaemon(debug=debug)
    try:
        daemon.start()
        if busybox:
            load_busybox(daemon)
        yield daemon
    finally:
        with uninterrupted():
            stop(daemon)


def stop(daemon: PouchDaemon) -> None:
    """Stop pouchd and end its containers' processes too.

    A running container outlives pouchd (as with live restore), and once
    PouchDaemon has killed the shims nothing would ever end it: remove the
    containers first, then end whatever is still in one of their cgroups.
    """
    ids = container_ids(daemon)
    if ids and daemon.proc is not None and daemon.proc.poll() is None:
        with contextlib.suppress(Exception):
            daemon.docker_result("rm", "-f", *ids, timeout=30)
    daemon.stop()
    for pid in processes_in_cgroups(ids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)
    for cid in ids:
        for group in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/{cid}"):
            with contextlib.suppress(OSError):
                group.rmdir()


def container_ids(daemon: PouchDaemon) -> list[str]:
    """The containers pouchd knows, from its meta store (readable while it is down too)."""
    folder = daemon.home / "containers"
    return [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []


def processes_in_cgroups(ids: list[str]) -> list[int]:
    wanted = {f"/{CGROUP_PARENT}/{cid}" for cid in ids}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            groups = (entry / "cgroup").read_text().splitlines()
        except OSError:
            continue
        if any(line.split(":", 2)[-1] in wanted for line in groups):
            found.append(int(entry.name))
    return found


def load_busybox(daemon: PouchDaemon) -> None:
    """`docker load` the offline busybox image (docker.io/library/busybox:latest)."""
    tarball = daemon.base / "busybox.tar"
    build_busybox_tarball(tarball)
    daemon.docker("load", "-i", str(tarball))


def restart(daemon: PouchDaemon) -> None:
    """Stop pouchd as a user would (SIGTERM) and start it again on the same home."""
    proc = daemon.proc
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    daemon.start()
