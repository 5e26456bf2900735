"""The events service, as a ZeroMQ client of the broker reads it (pouch.proto PROTOCOL.md)."""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from pathlib import Path

import pytest

from pouch.broker.client import Client
from pouch.proto.envelope import PouchError
from pouch.tests.faults.tree import internal
from pouch.tests.images import build_busybox_tarball
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for


def actions(events: list[dict], cid: str) -> list[str]:
    return [e["Action"] for e in events if e["Actor"]["ID"] == cid]


def test_a_containers_life_is_told_in_events_kept_for_since(docker, calls: Client):
    started = time.time()
    name = f"ev-{uuid.uuid4().hex[:8]}"
    docker("run", "--name", name, "--label", "team=a", "busybox", "true")
    cid = docker("inspect", "-f", "{{.Id}}", name)
    docker("rm", name)

    def told() -> list[dict]:
        """The history up to now, once it tells the container's end."""
        with calls.stream("system", "events", {"since": started, "until": time.time(),
                                               "filters": {"type": ["container"]}},
                          timeout=20) as stream:
            history = list(stream)
        return history if "destroy" in actions(history, cid) else []

    history = wait_for(told, 10, f"the destroy of {name} in the events' history")
    assert actions(history, cid) == ["create", "attach", "start", "die", "destroy"]
    die = next(e for e in history if e["Actor"]["ID"] == cid and e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "0"
    assert die["Actor"]["Attributes"]["name"] == name
    assert die["Actor"]["Attributes"]["team"] == "a"
    assert die["timeNano"] // 1_000_000_000 == die["time"] >= int(started)


def test_copies_and_exports_are_told_in_dockerds_words(docker, calls: Client,
                                                       tmp_path: Path):
    started = time.time()
    name = f"ev-cp-{uuid.uuid4().hex[:8]}"
    docker("create", "--name", name, "busybox", "true")
    cid = docker("inspect", "-f", "{{.Id}}", name)
    docker("cp", f"{name}:/etc/hostname", str(tmp_path / "out"))
    docker("cp", str(tmp_path / "out"), f"{name}:/tmp/")
    docker("export", "-o", str(tmp_path / "all.tar"), name)
    docker("rm", name)

    def told() -> list[str]:
        with calls.stream("system", "events", {"since": started, "until": time.time(),
                                               "filters": {"container": [cid]}},
                          timeout=20) as stream:
            seen = actions(list(stream), cid)
        return seen if "destroy" in seen else []

    seen = wait_for(told, 10, f"the destroy of {name} in the events' history")
    assert seen == ["create", "archive-path", "extract-to-dir", "export", "destroy"]


def test_live_events_pass_the_filters(docker, calls: Client):
    name = f"ev-{uuid.uuid4().hex[:8]}"
    with calls.stream("system", "events", {"filters": {"event": ["die"], "label": ["team=b"]}},
                      timeout=None) as stream:
        docker("run", "--rm", "--name", f"{name}-other", "busybox", "true")
        docker("run", "--rm", "--name", name, "--label", "team=b", "busybox", "true")
        first = next(iter(stream))
    assert (first["Action"], first["Actor"]["Attributes"]["name"]) == ("die", name)


def test_the_broker_fans_out_actor_events_to_subscribers(daemon: PouchDaemon, calls: Client):
    with calls.subscribe({"Type": ["daemon"], "Action": ["actor-ready"]}) as events:
        # A debug-only fault: the image actor crashes, the supervisor restarts it.
        with contextlib.closing(internal(daemon)) as own:
            own.call("image", "debug_fault", {"point": "image.load.unpacked", "action": "crash"})
        daemon.docker_result("load", "-i", str(daemon_tarball(daemon)))
        ready = next(itertools.islice(events, 1))
    assert ready["Actor"]["ID"] == "image"
    assert int(ready["Actor"]["Attributes"]["pid"]) == daemon.pid_of("image")


def test_bad_filters_are_refused(calls: Client):
    with pytest.raises(PouchError) as err, calls.stream(
            "system", "events", {"filters": {"colour": ["red"]}}, timeout=5) as stream:
        list(stream)
    assert err.value.code == "invalid" and "colour" in err.value.message


def daemon_tarball(daemon: PouchDaemon) -> Path:
    path = daemon.base / "ev-image.tar"
    if not path.exists():
        build_busybox_tarball(path, tag="ev-image:1", extra_files={"etc/ev": b"x"})
    return path


def test_a_listener_whose_until_comes_ends_without_a_dummy_event(docker, calls: Client):
    """Another stream reaching its `until` sends nothing to a live one."""
    now = time.time()
    with calls.stream("system", "events", {"since": now, "filters": {"type": ["container"]}},
                      timeout=None) as forever, \
            calls.stream("system", "events", {"since": now, "until": now + 0.3},
                         timeout=None) as short:
        assert list(short) == []  # it ends at its `until`, with nothing to say
        docker("run", "--rm", "busybox", "true")
        first = next(iter(forever))
    assert (first["Type"], first["Action"]) == ("container", "create")
