"""`docker events` tells what dockerd 20.10 tells: its deprecated fields, the `stop` and
`attach` of a container, no `restart` for a policy's, no volume use at create."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker as docker_py
import pytest

from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for

Docker = Callable[..., str]
TRAPS_TERM = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]


def told(docker: Docker, since: float, *filters: str) -> list[dict[str, Any]]:
    """What `docker events` tells from `since` until now, through these filters."""
    out = docker("events", "--since", f"{since:.6f}", "--until", f"{time.time():.6f}",
                 *(arg for kept in filters for arg in ("--filter", kept)),
                 "--format", "{{json .}}")
    return [json.loads(line) for line in out.splitlines()]


def actions(docker: Docker, since: float, name: str, last: str, times: int = 1) -> list[str]:
    """The container's actions since `since`, once `last` is told `times` times (events
    reach the history a moment after the request that caused them has answered)."""
    def seen() -> list[str]:
        acts = [e["Action"] for e in told(docker, since, f"container={name}")]
        return acts if acts.count(last) >= times else []
    return wait_for(seen, 10, f"{last} x{times} in the events of {name}")


@pytest.fixture
def volume(daemon: PouchDaemon) -> Iterator[str]:
    """A volume name of the test's own; the volume is removed after the test."""
    made = f"ev-vol-{uuid.uuid4().hex[:8]}"
    yield made
    daemon.docker_result("volume", "rm", "-f", made)


# -- the deprecated fields -----------------------------------------------------------


def test_container_and_image_events_carry_status_id_and_from(docker: Docker, name: str):
    since = time.time()
    docker("run", "--name", name, "busybox", "true")
    cid = docker("inspect", "-f", "{{.Id}}", name)
    docker("tag", "busybox", f"{name}:old")
    docker("rmi", f"{name}:old")
    actions(docker, since, name, "die")
    out = docker("events", "--since", f"{since:.6f}", "--until", f"{time.time():.6f}",
                 "--filter", f"container={name}", "--filter", "event=die",
                 "--format", "{{.Status}} {{.ID}} {{.From}}")
    assert out == f"die {cid} busybox"

    untag = wait_for(lambda: [e for e in told(docker, since, "type=image", "event=untag")
                              if e["Actor"]["Attributes"].get("name") == f"{name}:old"],
                     10, "the untag event")[0]
    assert (untag["status"], untag["id"]) == ("untag", untag["Actor"]["ID"])
    assert "from" not in untag


def test_other_events_carry_none_of_them(docker: Docker, volume: str):
    since = time.time()
    docker("volume", "create", volume)
    created = wait_for(lambda: told(docker, since, f"volume={volume}"), 10,
                       "the volume's create event")[0]
    assert created["Action"] == "create"
    assert not {"status", "id", "from"} & set(created)


def test_docker_py_reads_the_status_of_live_events(
        client: docker_py.DockerClient, docker: Docker, name: str):
    since = time.time()
    docker("run", "--name", name, "busybox", "true")
    actions(docker, since, name, "die")
    stream = client.events(decode=True, since=since, until=time.time(),
                           filters={"container": name})
    seen = [(e["status"], e["id"], e["from"]) for e in stream]
    cid = docker("inspect", "-f", "{{.Id}}", name)
    assert ("die", cid, "busybox") in seen


# -- stop ----------------------------------------------------------------------------


def test_a_stop_tells_kill_die_then_stop(docker: Docker, name: str):
    docker("run", "-d", "--name", name, "busybox", *TRAPS_TERM)
    since = time.time()
    docker("stop", "-t", "30", name)
    assert actions(docker, since, name, "stop") == ["kill", "die", "stop"]
    kill = next(e for e in told(docker, since, f"container={name}") if e["Action"] == "kill")
    assert kill["Actor"]["Attributes"]["signal"] == "15"


@pytest.mark.parametrize("grace", ["1", "0"])
def test_a_stop_whose_grace_runs_out_also_tells_the_sigkill(docker: Docker, name: str,
                                                            grace: str):
    # sleep, the container's init, ignores SIGUSR1: only the SIGKILL ends it.
    docker("run", "-d", "--name", name, "--stop-signal", "SIGUSR1", "busybox", "sleep", "300")
    since = time.time()
    docker("stop", "-t", grace, name)
    assert actions(docker, since, name, "stop") == ["kill", "kill", "die", "stop"]
    kills = [e for e in told(docker, since, f"container={name}") if e["Action"] == "kill"]
    assert [e["Actor"]["Attributes"]["signal"] for e in kills] == ["10", "9"]


def test_a_restart_tells_the_stop_before_the_start(docker: Docker, name: str):
    docker("run", "-d", "--name", name, "busybox", *TRAPS_TERM)
    since = time.time()
    docker("restart", "-t", "30", name)
    assert actions(docker, since, name, "restart") == ["kill", "die", "stop", "start",
                                                       "restart"]


def test_an_exit_or_a_kill_tells_no_stop(docker: Docker, names: Callable[[str], str]):
    exits, killed = names("ev-exits"), names("ev-killed")
    since = time.time()
    docker("run", "--name", exits, "busybox", "true")
    docker("run", "-d", "--name", killed, "busybox", "sleep", "300")
    docker("kill", killed)
    assert "stop" not in actions(docker, since, exits, "die")
    assert actions(docker, since, killed, "die") == ["create", "start", "kill", "die"]


# -- attach --------------------------------------------------------------------------


def test_run_start_a_and_attach_tell_the_attach(docker: Docker, names: Callable[[str], str]):
    ran, started, attached = names("ev-run"), names("ev-start-a"), names("ev-attach")
    since = time.time()
    docker("run", "--name", ran, "busybox", "true")
    assert actions(docker, since, ran, "die") == ["create", "attach", "start", "die"]

    docker("create", "--name", started, "busybox", "echo", "hi")
    assert docker("start", "-a", started) == "hi"
    assert actions(docker, since, started, "die") == ["create", "attach", "start", "die"]

    docker("run", "-d", "-i", "--name", attached, "busybox", "sh", "-c",
           "read line; echo got $line")
    assert docker("attach", attached, input="hi\n") == "got hi"
    assert actions(docker, since, attached, "die") == ["create", "start", "attach", "die"]


def test_a_detached_run_tells_no_attach(docker: Docker, name: str):
    since = time.time()
    docker("run", "-d", "--name", name, "busybox", "true")
    assert actions(docker, since, name, "die") == ["create", "start", "die"]


# -- the restart policy --------------------------------------------------------------


def test_restarts_by_the_policy_tell_die_and_start_only(docker: Docker, daemon: PouchDaemon,
                                                        name: str):
    since = time.time()
    docker("run", "-d", "--name", name, "--restart", "on-failure:2", "busybox",
           "sh", "-c", "exit 3")

    def given_up() -> bool:
        shown = daemon.inspect(name)
        return shown["State"]["Status"] == "exited" and shown["RestartCount"] == 2
    wait_for(given_up, 20, f"the policy giving {name} up")
    assert actions(docker, since, name, "die", times=3) == [
        "create", "start", "die", "start", "die", "start", "die"]


# -- volumes -------------------------------------------------------------------------


def test_a_new_volume_is_told_mounted_at_start_only(docker: Docker, name: str, volume: str):
    since = time.time()
    docker("create", "--name", name, "-v", f"{volume}:/a", "busybox", "true")
    docker("start", "-a", name)
    actions(docker, since, name, "die")

    def uses() -> list[dict[str, Any]]:
        events = told(docker, since, f"volume={volume}")
        return events if "unmount" in [e["Action"] for e in events] else []
    events = wait_for(uses, 10, f"the unmount of {volume}")
    assert [e["Action"] for e in events] == ["create", "mount", "unmount"]
    assert events[1]["Actor"]["Attributes"]["destination"] == "/a"
