"""Health checks as a docker user sees them: State.Health, `docker ps`, events."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pouch.broker.client import Client
from pouch.tests.images import build_busybox_tarball
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for

HEALTH_IMAGE = "pouch-health-test:1"


def health(docker: Callable[..., str], name: str) -> dict[str, Any]:
    return json.loads(docker("inspect", "-f", "{{json .State.Health}}", name)) or {}


def status_is(docker: Callable[..., str], name: str, status: str) -> Callable[[], dict]:
    def check() -> dict:
        state = health(docker, name)
        return state if state.get("Status") == status else {}
    return check


def container_events(calls: Client, name: str, since: float) -> list[str]:
    """The container's events up to now (the events service's history)."""
    with calls.stream("system", "events", {"since": since, "until": time.time(),
                                           "filters": {"type": ["container"]}},
                      timeout=20) as stream:
        history = list(stream)
    return [e["Action"] for e in history if e["Actor"]["Attributes"].get("name") == name]


def test_a_check_turns_unhealthy_then_healthy(docker: Callable[..., str], name: str,
                                              calls: Client):
    since = time.time()
    docker("run", "-d", "--name", name, "--health-cmd", "test -e /tmp/ok",
           "--health-interval", "1s", "--health-retries", "2", "busybox", "sleep", "300")
    assert health(docker, name)["Status"] == "starting"
    assert "(health: starting)" in docker("ps", "--filter", f"name={name}",
                                          "--format", "{{.Status}}")
    failing = wait_for(status_is(docker, name, "unhealthy"), 20, "unhealthy")
    assert failing["FailingStreak"] >= 2
    last = failing["Log"][-1]
    assert last["ExitCode"] == 1 and last["Start"] <= last["End"]
    assert "(unhealthy)" in docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}")

    docker("exec", name, "touch", "/tmp/ok")
    healthy = wait_for(status_is(docker, name, "healthy"), 20, "healthy")
    assert healthy["FailingStreak"] == 0 and len(healthy["Log"]) <= 5
    assert "(healthy)" in docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
    def healed() -> list[str]:
        told = container_events(calls, name, since)
        return told if "health_status: healthy" in told else []
    told = wait_for(healed, 10, "the health events")
    assert [a for a in told if a.startswith("health_status")] == [
        "health_status: unhealthy", "health_status: healthy"]
    # As dockerd's, each probe is an exec, told as one.
    assert "exec_create: /bin/sh -c test -e /tmp/ok" in told and "exec_die" in told

    # Health stops with the container and starts over with it.
    docker("stop", "-t", "0", name)
    docker("start", name)
    assert health(docker, name)["Status"] == "starting"


def test_a_probe_longer_than_its_timeout_fails(docker: Callable[..., str], name: str):
    docker("run", "-d", "--name", name, "--health-cmd", "sleep 30", "--health-interval", "1s",
           "--health-timeout", "1s", "--health-retries", "1", "busybox", "sleep", "300")
    state = wait_for(status_is(docker, name, "unhealthy"), 20, "unhealthy by timeout")
    assert state["Log"][-1]["ExitCode"] == -1
    assert "exceeded timeout" in state["Log"][-1]["Output"]


def test_output_is_kept_and_start_period_spares_failures(docker: Callable[..., str],
                                                          name: str):
    docker("run", "-d", "--name", name, "--health-cmd", "echo out; echo err >&2; exit 3",
           "--health-interval", "1s", "--health-start-period", "1h", "--health-retries", "1",
           "busybox", "sleep", "300")
    state = wait_for(lambda: (h := health(docker, name)) and h["Log"] and h, 20, "a probe")
    assert state["Status"] == "starting" and state["FailingStreak"] == 0
    assert state["Log"][0]["ExitCode"] == 3
    assert state["Log"][0]["Output"] in ("out\nerr\n", "err\nout\n")


@pytest.fixture(scope="module")
def health_image(daemon: PouchDaemon, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[str]:
    """busybox with a HEALTHCHECK (CMD-SHELL, every second), loaded with `docker load`."""
    tarball = tmp_path_factory.mktemp("health") / "image.tar"
    build_busybox_tarball(tarball, HEALTH_IMAGE)
    with_healthcheck(tarball, {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000})
    daemon.docker("load", "-i", str(tarball))
    yield HEALTH_IMAGE
    daemon.docker_result("rmi", "-f", HEALTH_IMAGE)


def with_healthcheck(tarball: Path, check: dict[str, Any]) -> None:
    """Put `check` in the docker-save archive's image config (renamed by its digest)."""
    with tarfile.open(tarball) as tar:
        members = {m.name: (m, tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
                   for m in tar.getmembers()}
    manifest = json.loads(members["manifest.json"][1])
    old = manifest[0]["Config"]
    config = json.loads(members.pop(old)[1])
    config["config"]["Healthcheck"] = check
    data = json.dumps(config, separators=(",", ":")).encode()
    new = hashlib.sha256(data).hexdigest() + ".json"
    members[new] = (tarfile.TarInfo(new), data)
    manifest[0]["Config"] = new
    members["manifest.json"] = (members["manifest.json"][0], json.dumps(manifest).encode())
    with tarfile.open(tarball, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in members.values():
            info.size = len(content) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(content) if info.isfile() else None)


def test_an_images_healthcheck_is_honoured(docker: Callable[..., str], names, health_image):
    checked, unchecked = names("hc"), names("nohc")
    docker("run", "-d", "--name", checked, health_image, "sleep", "300")
    assert json.loads(docker("inspect", "-f", "{{json .Config.Healthcheck}}", checked))[
        "Test"] == ["CMD-SHELL", "true"]
    wait_for(status_is(docker, checked, "healthy"), 20, "healthy by the image's check")

    docker("run", "-d", "--name", unchecked, "--no-healthcheck", health_image, "sleep", "300")
    assert json.loads(docker("inspect", "-f", "{{json .Config.Healthcheck}}", unchecked))[
        "Test"] == ["NONE"]
    assert health(docker, unchecked) == {}
    assert "health" not in docker("ps", "--filter", f"name={unchecked}",
                                  "--format", "{{.Status}}")


def test_health_survives_a_container_actor_restart(pouchd: PouchDaemon):
    from pouch.tests.integration.test_live_restore import restart_container_actor
    name = "health-restore"
    try:
        pouchd.docker("run", "-d", "--name", name, "--health-cmd", "true",
                      "--health-interval", "1s", "busybox", "sleep", "300")
        wait_for(status_is(pouchd.docker, name, "healthy"), 20, "healthy")
        restart_container_actor(pouchd)
        kept = health(pouchd.docker, name)
        assert kept["Status"] == "healthy"
        # The probes go on after restore: newer results come.
        last = kept["Log"][-1]["Start"]
        wait_for(lambda: health(pouchd.docker, name)["Log"][-1]["Start"] > last, 20,
                 "a probe after the restore")
    finally:
        pouchd.docker_result("rm", "-f", name)
