"""pouchd forks its actors from a zygote: a killed actor comes back as a fork, at once;
a killed zygote comes back while the actors serve on; SIGTERM leaves nothing behind."""

from __future__ import annotations

import signal
from pathlib import Path

from pouch.tests.faults.tree import BrokerView, broker, kill, until, watch_replacement
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.procs import alive, cmdline

# Forked, a restarted actor skips interpreter start-up and imports (~1 s here): only
# its restore stands between the kill and READY.
BACK_WITHIN = 0.6
STOP_WITHIN = 10.0


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def name_of(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def zygote_pid(daemon: PouchDaemon) -> int:
    client = broker(daemon)
    try:
        child = client.call("supervisor", "status")["children"]["zygote"]
    finally:
        client.close()
    return int(child["pid"]) if child["state"] == "running" and child["pid"] else 0


def forked_for(daemon: PouchDaemon, pid: int) -> bool:
    """`pid` runs an actor the zygote forked (a fork keeps the zygote's command line; an
    exec'd role has its own), and pouchd's supervisor is its parent."""
    assert daemon.proc is not None
    zygote = zygote_pid(daemon)
    return bool(zygote) and cmdline(pid) == cmdline(zygote) \
        and parent_of(pid) == daemon.proc.pid


def test_a_killed_actor_comes_back_forked_from_the_zygote_at_once(pouchd: PouchDaemon):
    view = BrokerView(pouchd)
    try:
        old = pouchd.pid_of("container")
        assert forked_for(pouchd, old) and name_of(old) == "pouch-container"

        back = watch_replacement(view, pouchd, "container", old, kill(old))

        assert forked_for(pouchd, back.new_pid) and name_of(back.new_pid) == "pouch-container"
        assert back.back_after < BACK_WITHIN, f"back after {back.back_after:.3f} s"
        assert pouchd.docker("ps", "-a", "--format", "{{.Names}}") == ""
    finally:
        view.close()


def test_a_killed_zygote_comes_back_and_the_actors_serve_on(pouchd: PouchDaemon):
    actors = {name: pouchd.pid_of(name) for name in ("broker", "system", "image", "container")}
    first = zygote_pid(pouchd)

    kill(first)
    second, _ = until(lambda: (z := zygote_pid(pouchd)) != first and z, 10.0,
                      "a new zygote")

    assert pouchd.docker("images", "--format", "{{.Repository}}") == "busybox"
    assert {name: pouchd.pid_of(name) for name in actors} == actors
    assert all(alive(pid) for pid in actors.values())
    # The new zygote forks the next restart.
    view = BrokerView(pouchd)
    try:
        old = actors["image"]
        back = watch_replacement(view, pouchd, "image", old, kill(old))
    finally:
        view.close()
    assert forked_for(pouchd, back.new_pid)
    assert second != first and alive(second)


def test_sigterm_leaves_neither_the_zygote_nor_its_forks_behind(pouchd: PouchDaemon):
    assert pouchd.proc is not None
    zygote = zygote_pid(pouchd)
    forks = [pouchd.pid_of(name) for name in ("broker", "system", "image", "container",
                                               "gateway")]

    pouchd.proc.send_signal(signal.SIGTERM)

    assert pouchd.proc.wait(STOP_WITHIN) == 0, pouchd.log_tail()
    assert [pid for pid in [zygote, *forks] if alive(pid)] == []
    assert pouchd.leftovers() == []
