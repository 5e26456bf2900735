"""The plugin registry: discovery from entry points, which plugin a hook reaches, in
what order, and what a failing hook becomes. Plain objects stand in for plugins."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import falcon
import pytest

from pouch.actors import plugins
from pouch.actors.plugins import (
    GROUP,
    ContainerCreate,
    ContainerStart,
    ContainerUpdate,
    Plugin,
    Plugins,
    add_hook,
    set_env,
)
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError, invalid
from pouch.tests.support.example_plugin import install
from pouch.tests.support.example_plugin.plugin import ExamplePlugin


class Recorder:
    """A plugin with a few hooks, noting each call in `calls`."""

    def __init__(self, calls: list[str], tag: str) -> None:
        self.calls, self.tag = calls, tag

    def pre_create(self, request: ContainerCreate) -> None:
        self.calls.append(f"{self.tag}:pre_create")
        request.config.setdefault("Labels", {})[self.tag] = "seen"

    def daemon_pre_stop(self, config: DaemonConfig) -> None:
        self.calls.append(f"{self.tag}:daemon_pre_stop")


class Raising:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def pre_create(self, request: ContainerCreate) -> None:
        raise self.error

    def daemon_pre_stop(self, config: DaemonConfig) -> None:
        raise self.error

    def update_api(self, api: Any) -> None:
        raise self.error


def create(name: str = "web", **config: Any) -> ContainerCreate:
    return ContainerCreate(name, {"Image": "busybox", **config})


# -- discovery ----------------------------------------------------------------------


def entry(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name, value, GROUP)


def test_the_installed_distribution_is_found_and_its_broken_entry_skipped(tmp_path: Path,
                                                                          caplog):
    install(tmp_path)
    found = [ep for dist in importlib.metadata.distributions(path=[str(tmp_path)])
             for ep in dist.entry_points if ep.group == GROUP]
    loaded = plugins.discover(found)
    assert [p.name for p in loaded.plugins] == ["example"]
    assert isinstance(loaded.plugins[0].target, ExamplePlugin)  # a class is made
    assert 'skipping plugin "broken"' in caplog.text
    assert "ModuleNotFoundError" in caplog.text


def test_an_entry_without_hooks_or_without_its_attribute_is_skipped(caplog):
    loaded = plugins.discover([entry("plain", "json"), entry("absent", "json:nope")])
    assert loaded.plugins == ()
    assert 'skipping plugin "plain" (json): it has none of the hooks' in caplog.text
    assert 'skipping plugin "absent" (json:nope): AttributeError' in caplog.text


def test_a_module_may_be_a_plugin():
    loaded = plugins.discover([entry("mod", "pouch.tests.support.example_plugin.plugin")])
    assert loaded.plugins == ()  # its functions are not hooks: its class has them
    loaded = plugins.discover([entry("cls", "pouch.tests.support.example_plugin.plugin:"
                                            "ExamplePlugin")])
    assert loaded.has("post_pull") and not loaded.has("cri_pre_create_container")


def test_entries_load_in_name_order_and_a_name_once():
    loaded = plugins.discover([
        entry("b", "pouch.tests.support.example_plugin.plugin:ExamplePlugin"),
        entry("a", "pouch.tests.support.example_plugin.plugin:ExamplePlugin"),
        entry("a", "json:nope")])
    assert [p.name for p in loaded.plugins] == ["a", "b"]


def test_a_process_discovers_once(monkeypatch):
    seen: list[int] = []

    def discover() -> Plugins:
        seen.append(1)
        return Plugins()

    monkeypatch.setattr(plugins, "discover", discover)
    monkeypatch.setattr(plugins, "_loaded", None)
    assert plugins.loaded() is plugins.loaded()
    assert len(seen) == 1
    monkeypatch.setattr(plugins.os, "getpid", lambda: -1)  # a forked child
    plugins.loaded()
    assert len(seen) == 2


# -- calling hooks ------------------------------------------------------------------


def test_only_plugins_with_the_hook_are_called_in_order():
    calls: list[str] = []
    registry = Plugins((Plugin("a", Recorder(calls, "a")), Plugin("x", object()),
                        Plugin("b", Recorder(calls, "b"))))
    body = registry.pre_create(create())
    assert calls == ["a:pre_create", "b:pre_create"]
    assert body["Labels"] == {"a": "seen", "b": "seen"}
    assert registry.has("pre_create") and not registry.has("post_pull")


def test_no_plugin_leaves_everything_as_it_was():
    registry = Plugins()
    request = create(Env=["A=1"])
    assert registry.pre_create(request) == {"Image": "busybox", "Env": ["A=1"]}
    assert not any(registry.has(hook) for hook in plugins.HOOKS)


def test_a_plugin_may_replace_the_body():
    class Replacing:
        def pre_update(self, request: ContainerUpdate) -> None:
            request.config = {"Memory": 1}

    registry = Plugins((Plugin("r", Replacing()),))
    assert registry.pre_update(ContainerUpdate("id", "web", {"Memory": 2})) == {"Memory": 1}


def test_a_body_that_is_no_longer_an_object_is_refused_naming_the_plugin():
    class Spoiling:
        def pre_create(self, request: ContainerCreate) -> None:
            request.config = ["not", "an", "object"]  # type: ignore[assignment]

    with pytest.raises(PouchError) as err:
        Plugins((Plugin("spoil", Spoiling()),)).pre_create(create())
    assert err.value.code == "internal"
    assert err.value.message == \
        'plugin "spoil": pre_create left a config that is not an object'


def test_a_refusal_keeps_its_code_and_names_the_plugin():
    registry = Plugins((Plugin("policy", Raising(invalid("no privileged containers"))),))
    with pytest.raises(PouchError) as err:
        registry.pre_create(create())
    assert (err.value.code, err.value.message) == \
        ("invalid", 'plugin "policy": pre_create: no privileged containers')


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyError("Labels"), SystemExit(3)])
def test_any_other_failure_is_internal_and_names_the_plugin(error):
    registry = Plugins((Plugin("buggy", Raising(error)),))
    with pytest.raises(PouchError) as err:
        registry.pre_create(create())
    assert err.value.code == "internal"
    assert err.value.message.startswith(
        f'plugin "buggy": pre_create failed: {type(error).__name__}: ')


def test_a_failure_stops_the_plugins_after_it():
    calls: list[str] = []
    registry = Plugins((Plugin("a", Raising(RuntimeError("boom"))),
                        Plugin("b", Recorder(calls, "b"))))
    with pytest.raises(PouchError):
        registry.pre_create(create())
    assert calls == []


def test_every_pre_stop_runs_though_one_fails(caplog):
    calls: list[str] = []
    registry = Plugins((Plugin("a", Raising(RuntimeError("boom"))),
                        Plugin("b", Recorder(calls, "b"))))
    registry.daemon_pre_stop(DaemonConfig())
    assert calls == ["b:daemon_pre_stop"]
    assert 'plugin "a": daemon_pre_stop failed: RuntimeError: boom' in caplog.text


def test_an_api_hook_that_fails_is_logged_not_raised(caplog):
    caplog.set_level(logging.ERROR, logger="pouch.plugins")
    Plugins((Plugin("api", Raising(RuntimeError("no route"))),)).update_api(
        None)  # type: ignore[arg-type]
    assert 'plugin "api": update_api failed: RuntimeError: no route' in caplog.text


# -- the spec helpers ----------------------------------------------------------------


def start_request(spec: dict[str, Any]) -> ContainerStart:
    return ContainerStart("c1", "web", {}, {}, spec)


def test_set_env_replaces_a_variable_and_so_is_done_once():
    spec: dict[str, Any] = {"process": {"env": ["PATH=/bin", "A=1"]}}
    set_env(spec, "A", "2")
    set_env(spec, "A", "2")
    set_env(spec, "B", "x=y")
    assert spec["process"]["env"] == ["PATH=/bin", "A=2", "B=x=y"]


def test_add_hook_replaces_the_same_hook():
    spec: dict[str, Any] = {}
    add_hook(spec, "createRuntime", "/usr/bin/setup", ["setup", "--net"])
    add_hook(spec, "createRuntime", "/usr/bin/setup", ["setup", "--net"], timeout=5)
    add_hook(spec, "createRuntime", "/usr/bin/other")
    assert spec["hooks"]["createRuntime"] == [
        {"path": "/usr/bin/setup", "args": ["setup", "--net"], "timeout": 5},
        {"path": "/usr/bin/other", "args": ["/usr/bin/other"]}]


def test_pre_start_hands_back_the_spec_a_plugin_changed():
    class Env:
        def pre_start(self, request: ContainerStart) -> None:
            set_env(request.spec, "FROM_PLUGIN", request.id)

    spec = Plugins((Plugin("env", Env()),)).pre_start(start_request({"process": {}}))
    assert spec == {"process": {"env": ["FROM_PLUGIN=c1"]}}


def test_a_plugin_finds_the_route_it_wraps():
    class Resource:
        def on_get(self, req: Any, resp: Any) -> None:
            resp.media = {}

    app = falcon.App()
    ours = Resource()
    app.add_route("/containers/{id}/json", ours)
    api = plugins.ApiExtension(app, None, DaemonConfig())  # type: ignore[arg-type]
    assert api.resource("/containers/abc/json") is ours
    assert api.resource("/nowhere") is None
