"""Hook plugins in a real pouchd: the example plugin (tests/support/example_plugin),
installed as a distribution on pouchd's path, changes what the docker CLI and docker-py
see: creates, starts, updates, pulls, its own route, pouchd's start and stop."""

from __future__ import annotations

import importlib.metadata
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import APIError

from pouch.actors.plugins import GROUP
from pouch.tests.support.daemon import PouchDaemon, running
from pouch.tests.support.example_plugin import LOG_ENV, install
from pouch.tests.support.example_plugin.dist import FAIL_START_ENV
from pouch.tests.support.example_plugin.plugin import LABEL
from pouch.tests.support.registry import Registry, image_config, layer, publish

MiB = 1024 * 1024
BUSYBOX = Path("/bin/busybox")


class PluggedDaemon(PouchDaemon):
    """A pouchd whose path holds the example plugin's distribution."""

    def __init__(self, plugin_path: Path, log: Path, **env: str) -> None:
        super().__init__()
        self.plugin_path = plugin_path
        self.plugin_log = log
        self.extra_env = env

    def env(self) -> dict[str, str]:
        env = super().env()
        path = [str(self.plugin_path), *filter(None, [env.get("PYTHONPATH")])]
        return {**env, "PYTHONPATH": os.pathsep.join(path), LOG_ENV: str(self.plugin_log),
                **self.extra_env}

    def hooks_ran(self, hook: str) -> list[dict[str, Any]]:
        """What the plugin recorded for `hook`, in every process of this pouchd."""
        try:
            lines = self.plugin_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [entry for entry in map(json.loads, lines) if entry["hook"] == hook]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(tmp_path_factory.mktemp("plugins"))


@pytest.fixture(scope="module")
def plugged(plugin_path: Path, busybox_tarball: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluggedDaemon]:
    pouchd = PluggedDaemon(plugin_path, tmp_path_factory.mktemp("plugin-log") / "hooks.jsonl")
    with running(busybox_tarball, pouchd):
        yield pouchd


@pytest.fixture
def api(plugged: PluggedDaemon) -> Iterator[docker.APIClient]:
    client = docker.APIClient(base_url=plugged.host, version="1.41", timeout=60)
    yield client
    client.close()


@pytest.fixture
def names(plugged: PluggedDaemon) -> Iterator[Any]:
    """Container names for the test, removed after it."""
    made: list[str] = []

    def name(base: str) -> str:
        made.append(f"plugins-{base}")
        return made[-1]

    yield name
    for each in made:
        plugged.docker("rm", "-f", each, check=False)


def test_the_distribution_is_one_importlib_finds(plugin_path: Path):
    dists = importlib.metadata.distributions(path=[str(plugin_path)])
    points = [ep for dist in dists for ep in dist.entry_points if ep.group == GROUP]
    assert {ep.name for ep in points} == {"example", "broken"}


def test_pre_create_labels_the_container_and_sets_its_env(plugged: PluggedDaemon, names):
    name = names("labelled")
    plugged.docker("create", "--name", name, "-e", "MINE=1", "busybox", "env")
    config = plugged.inspect(name)["Config"]
    assert config["Labels"][LABEL] == "pre_create"
    assert {"MINE=1", "EXAMPLE_PRE_CREATE=1"} <= set(config["Env"])
    assert any(entry["name"] == name for entry in plugged.hooks_ran("pre_create"))


def test_pre_volume_create_labels_the_volume_or_refuses_it(plugged: PluggedDaemon):
    name, refused = (f"plugins-vol-{n}-{os.getpid()}" for n in ("made", "refused"))
    try:
        plugged.docker("volume", "create", "--label", "mine=1", name)
        labels = json.loads(plugged.docker("volume", "inspect", name))[0]["Labels"]
        assert labels == {"mine": "1", LABEL: "pre_volume_create"}
        assert any(e["name"] == name for e in plugged.hooks_ran("pre_volume_create"))
        done = plugged.docker_result("volume", "create", "--label", "example.refuse=1",
                                     refused)
        assert done.returncode != 0
        assert 'plugin "example": pre_volume_create: volumes labelled example.refuse are ' \
            "refused here" in done.stderr
        assert refused not in plugged.docker("volume", "ls", "-q").splitlines()
    finally:
        plugged.docker("volume", "rm", "-f", name, refused, check=False)


def test_pre_start_changes_the_process_the_container_runs(plugged: PluggedDaemon, names):
    name = names("started")
    cid = plugged.docker("create", "--name", name, "busybox", "env")
    plugged.docker("start", "-a", name)  # the output is in the log
    env = plugged.docker("logs", name).splitlines()
    assert f"EXAMPLE_PRE_START={cid[:12]}" in env
    assert "EXAMPLE_PRE_CREATE=1" in env
    # Started again, the variable is set once, not added twice.
    plugged.docker("start", "-a", name)
    again = plugged.docker("logs", name).splitlines()
    assert again.count(f"EXAMPLE_PRE_START={cid[:12]}") == 2  # one per run
    assert len(again) == 2 * len(env)
    assert [entry["id"] for entry in plugged.hooks_ran("pre_start")].count(cid) == 2


def test_a_plugin_refusing_a_create_is_named_and_its_code_kept(plugged: PluggedDaemon,
                                                               api: docker.APIClient, names):
    name = names("refused")
    refused = plugged.docker_result("create", "--name", name, "--label", "example.refuse=1",
                                    "busybox")
    assert refused.returncode != 0
    assert 'plugin "example": pre_create: containers labelled example.refuse are ' \
        "refused here" in refused.stderr
    with pytest.raises(APIError) as err:
        api.create_container("busybox", name=name, labels={"example.refuse": "1"})
    assert err.value.status_code == 400
    # Nothing was made; the name is free.
    assert name not in plugged.docker("ps", "-a", "--format", "{{.Names}}").splitlines()
    plugged.docker("create", "--name", name, "busybox")


def test_a_hook_that_breaks_fails_its_create_only(plugged: PluggedDaemon,
                                                  api: docker.APIClient, names):
    with pytest.raises(APIError) as err:
        api.create_container("busybox", name=names("broken"), labels={"example.crash": "1"})
    assert err.value.status_code == 500
    assert 'plugin "example": pre_create failed: RuntimeError: the example plugin broke' \
        in str(err.value.explanation)
    name = names("after")
    assert plugged.docker("run", "--name", name, "busybox", "echo", "still here") == \
        "still here"


def test_pre_create_runs_before_the_body_is_checked(plugged: PluggedDaemon,
                                                    api: docker.APIClient, names):
    name = names("imageless")
    made = api.create_container("", name=name, labels={"example.image": "busybox"})
    assert plugged.inspect(made["Id"])["Config"]["Image"] == "busybox"
    # What the plugin leaves is checked as any body is.
    with pytest.raises(APIError) as err:
        api.create_container("", name=names("imageless-refused"))
    assert err.value.status_code == 400
    assert "an image is required" in str(err.value.explanation)


def test_pre_update_rewrites_the_update_and_post_update_sees_it(plugged: PluggedDaemon,
                                                                names):
    name = names("updated")
    cid = plugged.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    plugged.docker("update", "--memory", str(10 * MiB + 1), name)
    assert plugged.inspect(name)["HostConfig"]["Memory"] == 11 * MiB
    pid = plugged.inspect(name)["State"]["Pid"]
    done = [entry for entry in plugged.hooks_ran("post_update") if entry["id"] == cid]
    assert done and done[-1]["rootfs"] == f"/proc/{pid}/root"
    assert "EXAMPLE_PRE_CREATE=1" in done[-1]["env"]


def test_post_pull_gets_the_pulled_image(plugged: PluggedDaemon):
    layers = [layer({"bin/sh": BUSYBOX.read_bytes()}, executable=("bin/sh",))]
    with Registry() as registry:
        digest = publish(registry.url, "demo/plugged", "v1", layers, image_config(layers))
        name = f"{registry.host}/demo/plugged:v1"
        try:
            plugged.docker("pull", name)
            image_id = plugged.inspect(name)["Id"]
        finally:
            plugged.docker("rmi", name, check=False)
    pulls = [entry for entry in plugged.hooks_ran("post_pull")
             if entry["reference"] == name]
    assert [(entry["image"], entry["digest"]) for entry in pulls] == [(image_id, digest)]


def test_a_plugin_route_answers_on_plain_and_versioned_paths(plugged: PluggedDaemon,
                                                              api: docker.APIClient):
    versioned = api._result(api._get(api._url("/example/ping")), json=True)
    plain = api._result(api.get(f"{api.base_url}/example/ping"), json=True)
    assert versioned["Ping"] == plain["Ping"] == "pong"
    assert versioned["Containers"] == len(api.containers(all=True))


def test_a_plugin_that_does_not_load_is_skipped_and_said(plugged: PluggedDaemon):
    assert 'skipping plugin "broken"' in plugged.log_path.read_text()
    assert plugged.docker("run", "--rm", "busybox", "true") == ""


def test_daemon_hooks_run_as_pouchd_starts_and_stops(plugin_path: Path, tmp_path: Path):
    pouchd = PluggedDaemon(plugin_path, tmp_path / "hooks.jsonl")
    try:
        pouchd.start()
        started = pouchd.hooks_ran("daemon_pre_start")
        assert [entry["home"] for entry in started] == [str(pouchd.home)]
        assert pouchd.hooks_ran("daemon_pre_stop") == []
    finally:
        pouchd.stop()
    stopped = pouchd.hooks_ran("daemon_pre_stop")
    assert [(entry["home"], entry["pid"]) for entry in stopped] == \
        [(str(pouchd.home), started[0]["pid"])]


def test_a_failing_daemon_pre_start_keeps_pouchd_from_starting(plugin_path: Path,
                                                               tmp_path: Path):
    pouchd = PluggedDaemon(plugin_path, tmp_path / "hooks.jsonl", **{FAIL_START_ENV: "1"})
    try:
        with pytest.raises(RuntimeError) as err:
            pouchd.start()
        assert "pouchd exited 1" in str(err.value)
        assert 'plugin "example": daemon_pre_start failed: RuntimeError: told not to let ' \
            "pouchd start" in str(err.value)
    finally:
        pouchd.stop()
    assert pouchd.hooks_ran("daemon_pre_stop") == []
