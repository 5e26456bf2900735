"""The volume actor killed, crashed at a fault point, or pouchd restarted: volumes, their
labels, options, users and mounts are what they were; an operation cut short leaves
the whole volume or nothing of it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from pouch.tests.faults.tree import broker, internal
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.volumes import fails, fake_container, mount_of, unique
from pouch.tests.support.wait import wait_for


def replaced(pouchd: PouchDaemon, old: int) -> None:
    """Wait until a new volume actor serves."""
    wait_for(lambda: pouchd.pid_of("volume") != old and
             pouchd.docker_result("volume", "ls").returncode == 0, 30, "a new volume actor")


def test_volumes_and_their_users_outlive_kill_9_and_a_pouchd_restart(pouchd: PouchDaemon):
    calls = broker(pouchd, timeout=20)
    try:
        name, anonymous_of = unique("kept"), fake_container()
        pouchd.docker("volume", "create", "--label", "kept=yes", "-o", "type=tmpfs",
                      "-o", "device=tmpfs", "-o", "o=size=1m", name)
        # A real container: a reference to one the container actor does not know is
        # dropped once it is old (see the orphan below).
        user = pouchd.docker("create", "busybox", "true")
        calls.call("volume", "acquire", {"container": user, "name": name})
        data = Path(calls.call("volume", "mount", {"name": name, "container": user}))
        anonymous = calls.call("volume", "acquire",
                               {"container": anonymous_of, "destination": "/d"})["Name"]
        # A reference left by a container that is long gone (its removal cut short).
        orphan = unique("orphan")
        calls.call("volume", "acquire", {"container": fake_container(), "name": orphan})
        orphan_meta = pouchd.home / "volumes" / orphan / "volume.json"
        meta = json.loads(orphan_meta.read_text())
        meta["Users"] = dict.fromkeys(meta["Users"], time.time() - 3600)
        orphan_meta.write_text(json.dumps(meta))  # read by the next volume actor

        def intact() -> None:
            info = json.loads(pouchd.docker("volume", "inspect", name))[0]
            assert info["Labels"] == {"kept": "yes"}
            assert info["Options"]["o"] == "size=1m"
            assert f"volume is in use - [{user}]" in fails(pouchd, "volume", "rm", name)
            assert mount_of(data) is not None  # its user still has it mounted
            pouchd.docker("volume", "inspect", anonymous)

        old = pouchd.pid_of("volume")
        os.kill(old, signal.SIGKILL)
        replaced(pouchd, old)
        intact()
        assert pouchd.docker("volume", "rm", orphan) == orphan

        assert pouchd.proc is not None
        pouchd.proc.send_signal(signal.SIGTERM)
        assert pouchd.proc.wait(30) == 0
        pouchd.start()  # the same home: it restores what it finds
        intact()

        # What it remembered is what it acts on: the anonymous volume goes with its user.
        assert calls.call("volume", "release", {"container": anonymous_of,
                                                "remove_anonymous": True}) == [anonymous]
        calls.call("volume", "unmount", {"name": name, "container": user})
        assert mount_of(data) is None
        pouchd.docker("rm", user)
        calls.call("volume", "release", {"container": user})  # done by rm already, or now
        assert pouchd.docker("volume", "rm", name) == name
    finally:
        calls.close()


def test_a_create_or_remove_cut_by_a_crash_leaves_no_half_volume(pouchd: PouchDaemon):
    calls = broker(pouchd, timeout=20)
    root = pouchd.home / "volumes"

    def crash_at(point: str) -> int:
        client = internal(pouchd)
        try:
            client.call("volume", "debug_fault", {"point": point, "action": "crash"})
        finally:
            client.close()
        return pouchd.pid_of("volume")

    try:
        name = unique("cut")
        old = crash_at("volume.create.staged")
        # create is idempotent: sent again to the restarted actor, which made it whole.
        assert pouchd.docker("volume", "create", "--label", "a=1", name) == name
        assert pouchd.pid_of("volume") != old
        assert json.loads(pouchd.docker("volume", "inspect", name))[0]["Labels"] == {"a": "1"}
        assert [p.name for p in root.iterdir()] == [name]  # the staged one went at restart

        (root / name / "_data" / "f").write_text("x")
        old = crash_at("volume.remove.trashed")
        fails(pouchd, "volume", "rm", name)
        replaced(pouchd, old)
        assert name not in pouchd.docker("volume", "ls", "-q").splitlines()
        wait_for(lambda: list(root.iterdir()) == [], 10, "the trashed files deleted")
    finally:
        calls.close()
