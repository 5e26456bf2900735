"""pouchd as a process tree: SIGTERM stops all of it and leaves nothing behind,
except the containers still running, which a new pouchd finds again."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from pathlib import Path

from pouch.tests.support.containerd import shims_of
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.procs import alive, cmdline, pids
from pouch.tests.support.wait import wait_for

STOP_WITHIN = 10.0
CHILDREN = ("pouchd", "broker", "containerd", "system", "image", "container", "gateway")
TICKER = "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"


def containerds_under(base: Path) -> list[int]:
    """Pids of containerd daemons whose --config file lives under `base`."""
    found = []
    for pid in pids():
        argv = cmdline(pid)
        if not argv or Path(argv[0]).name != "containerd":
            continue
        for flag, value in itertools.pairwise(argv):
            if flag in ("--config", "-c") and Path(value).is_relative_to(base):
                found.append(pid)
    return found


def eventually(check: Callable[[], object], deadline: float) -> object:
    """The first truthy value of `check` before `deadline` (monotonic), else its last value."""
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def stop_pouchd(daemon: PouchDaemon) -> tuple[int, float]:
    """SIGTERM to pouchd alone (not PouchDaemon.stop, which also cleans up); its exit
    status and the monotonic deadline that started with the signal."""
    assert daemon.proc is not None
    deadline = time.monotonic() + STOP_WITHIN
    daemon.proc.send_signal(signal.SIGTERM)
    return daemon.proc.wait(STOP_WITHIN), deadline


def test_sigterm_stops_the_whole_tree_and_leaves_nothing(busybox_tarball: Path):
    daemon = PouchDaemon()
    try:
        daemon.start()
        daemon.docker("load", "-i", str(busybox_tarball))
        assert daemon.docker("run", "--rm", "busybox", "echo", "hi") == "hi"
        cid = daemon.docker("run", "-d", "busybox", "sleep", "300")
        daemon.docker("rm", "-f", cid)
        pids = {name: daemon.pid_of(name) for name in CHILDREN}
        assert containerds_under(daemon.base) == [pids["containerd"]]

        status, deadline = stop_pouchd(daemon)

        assert status == 0, daemon.log_tail()
        assert eventually(lambda: not daemon.leftovers(), deadline), daemon.leftovers()
        assert eventually(lambda: not containerds_under(daemon.base), deadline)
        assert eventually(lambda: not shims_of(daemon.containerd_socket), deadline)
        assert [name for name, pid in pids.items() if alive(pid)] == []
        assert daemon.mounts() == []
        assert sorted(daemon.run_dir.glob("*.pid")) == []
    finally:
        daemon.stop()


def test_a_running_container_outlives_pouchd_and_a_new_pouchd_finds_it(busybox_tarball: Path):
    first = PouchDaemon()
    second = PouchDaemon(base=first.base)  # the same home and exec root
    try:
        first.start()
        first.docker("load", "-i", str(busybox_tarball))
        first.docker("run", "-d", "--name", "survivor", "busybox", "sh", "-c", TICKER)
        before = first.inspect("survivor")["State"]
        shims = shims_of(first.containerd_socket)
        assert before["Running"] and len(shims) == 1
        ticks_before = len(first.docker("logs", "survivor").split())

        status, _ = stop_pouchd(first)

        assert status == 0, first.log_tail()
        assert first.leftovers() == []
        assert alive(before["Pid"]), "the container died with pouchd"
        assert all(alive(pid) for pid in shims), "its shim died with pouchd"

        second.start()
        listed = second.docker("ps", "--format", "{{.Names}} {{.Status}}").splitlines()
        assert any(line.startswith("survivor Up ") for line in listed), listed
        after = second.inspect("survivor")["State"]
        assert (after["Status"], after["Pid"]) == ("running", before["Pid"])
        assert after["StartedAt"] == before["StartedAt"]
        # What it printed while no pouchd read its output waited in the pipe.
        def more_ticks() -> list[str] | None:
            ticks = second.docker("logs", "survivor").split()
            return ticks if len(ticks) > ticks_before + 2 else None

        ticks = wait_for(more_ticks, 10, "ticks logged since the restart")
        assert ticks == [f"tick{i}" for i in range(len(ticks))]

        second.docker("rm", "-f", "survivor")
        deadline = time.monotonic() + STOP_WITHIN
        assert eventually(lambda: not alive(before["Pid"]), deadline)
        assert eventually(lambda: not shims_of(second.containerd_socket), deadline)
        assert second.docker("ps", "-a", "--format", "{{.Names}}") == ""
    finally:
        second.stop()
        first.stop()
