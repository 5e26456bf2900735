"""Hook plugins, after PouchContainer's `hookplugins`: code of the site's own, run at
fixed points of pouchd's operations.

A plugin is a Python entry point in the group `pouch.plugins` (any installed
distribution may declare one), naming an object, a class (made with no argument)
or a module that defines any subset of these hooks:

    container   pre_create(ContainerCreate)        before the create body is checked;
                                                   may rewrite `request.config`
                pre_start(ContainerStart)          before each start's task is made; may
                                                   change `request.spec` (env, hooks...)
                pre_create_endpoint(EndpointCreate) [not called yet: no networks]
                pre_update(ContainerUpdate)        before an update body is checked; may
                                                   rewrite `request.config`
                post_update(ContainerUpdated)      after an update went through
    image       post_pull(ImagePulled)             after a pull stored the image
    volume      pre_volume_create(VolumeCreate)    before a docker volume create is checked;
                                                   may rewrite `request.config`
    daemon      daemon_pre_start(DaemonConfig)     before pouchd starts its actors
                daemon_pre_stop(DaemonConfig)      before pouchd stops them
    cri         cri_pre_create_container(CriContainerCreate)  [not called yet: no CRI]
    api         update_api(ApiExtension)           when the gateway makes its app; may
                                                   add routes, middleware, or replace one

Each process discovers the plugins once, at its first use (`loaded()`), and calls
every plugin that has the hook, in the order of the entry points' names. A plugin
whose entry point does not load is logged and skipped. A hook that raises fails the
operation with an error naming the plugin (a PouchError keeps its code: a plugin
refuses a create with `invalid`, a 400); it never takes its process down.
A hook runs on the thread of the operation it belongs to (a container's worker, a
pull's thread, ...): it may wait, but the operation waits with it.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pouch.proto.envelope import PouchError

if TYPE_CHECKING:
    import falcon

    from pouch.proto.config import DaemonConfig
    from pouch.proto.stubs import Calls

log = logging.getLogger("pouch.plugins")

GROUP = "pouch.plugins"
HOOKS = ("pre_create", "pre_start", "pre_create_endpoint", "pre_update", "post_update",
         "post_pull", "pre_volume_create", "daemon_pre_start", "daemon_pre_stop",
         "cri_pre_create_container", "update_api")


# -- what each hook receives ------------------------------------------------------


@dataclass
class ContainerCreate:
    """A container create, as the client sent it (Docker's create body)."""

    name: str  # the container's name (no slash); chosen already, and not the plugin's
    config: dict[str, Any]  # the body: change it in place or assign another dict


@dataclass
class ContainerStart:
    """A container about to start: the OCI spec its task is made from."""

    id: str
    name: str
    config: Mapping[str, Any]  # Config, as inspect shows it (a copy: read only)
    host_config: Mapping[str, Any]  # HostConfig, likewise
    # The OCI runtime spec. What a hook changes is kept (the container's next start
    # begins from it): change it so that doing so twice is doing it once (set_env,
    # add_hook).
    spec: dict[str, Any]


@dataclass
class ContainerUpdate:
    """A docker update, as the client sent it (Docker's UpdateConfig body)."""

    id: str
    name: str
    config: dict[str, Any]  # change it in place or assign another dict


@dataclass(frozen=True)
class ContainerUpdated:
    """An update that went through."""

    id: str
    name: str
    rootfs: str  # the running container's root (/proc/<pid>/root); "" when not running
    env: list[str]  # Config.Env


@dataclass
class EndpointCreate:
    """A container's endpoint on a network, about to be made (once networks exist)."""

    container_id: str
    env: list[str]
    endpoint: dict[str, Any]  # change it in place


@dataclass(frozen=True)
class ImagePulled:
    """An image a pull stored."""

    reference: str  # as asked, fully qualified (docker.io/library/busybox:latest)
    id: str  # the image ID (its config's digest)
    digest: str  # the manifest's digest
    snapshotter: str
    config: Mapping[str, Any]  # the image's config (OCI image config)


@dataclass
class VolumeCreate:
    """A docker volume create, as the client sent it (not the volumes containers make
    for themselves)."""

    config: dict[str, Any]  # Docker's VolumeCreateBody; change it in place


@dataclass
class CriContainerCreate:
    """A CRI CreateContainer, as Docker's create body (once the CRI server exists)."""

    config: dict[str, Any]  # change it in place
    request: Any  # the CRI request itself (runtime.v1 CreateContainerRequest)


@dataclass
class ApiExtension:
    """The gateway's app, as it is made: a plugin adds routes or middleware to it
    (a route serves both /path and /v1.NN/path)."""

    app: falcon.App
    calls: Calls  # the actors' methods, typed: what the gateway's own routes call
    config: DaemonConfig

    def resource(self, path: str) -> Any | None:
        """The resource serving `path` now (to wrap it: add_route the wrapper on the same
        path, and it replaces the one found)."""
        found = self.app._router.find(path)
        return found[0] if found else None


# -- spec helpers for pre_start ---------------------------------------------------


def set_env(spec: dict[str, Any], name: str, value: str) -> None:
    """Set one variable of the spec's process environment (replacing its value)."""
    process = spec.setdefault("process", {})
    env = [entry for entry in process.get("env") or [] if entry.partition("=")[0] != name]
    process["env"] = [*env, f"{name}={value}"]


def add_hook(spec: dict[str, Any], stage: str, path: str, args: Sequence[str] | None = None,
             env: Sequence[str] | None = None, timeout: int | None = None) -> None:
    """Add an OCI hook (stage: prestart, createRuntime, createContainer, startContainer,
    poststart, poststop), replacing one of the same path and arguments."""
    hook: dict[str, Any] = {"path": path, "args": list(args or [path])}
    if env:
        hook["env"] = list(env)
    if timeout is not None:
        hook["timeout"] = timeout
    hooks = spec.setdefault("hooks", {}).setdefault(stage, [])
    hooks[:] = [h for h in hooks if (h.get("path"), h.get("args")) != (path, hook["args"])]
    hooks.append(hook)


# -- the registry -------------------------------------------------------------------


@dataclass(frozen=True)
class Plugin:
    name: str  # the entry point's name
    target: object  # what implements the hooks

    def hook(self, hook: str) -> Callable[..., Any] | None:
        found = getattr(self.target, hook, None)
        return found if callable(found) else None


@dataclass(frozen=True)
class Plugins:
    """The plugins of this process, and one typed call per hook."""

    plugins: tuple[Plugin, ...] = ()
    _hooked: dict[str, tuple[Plugin, ...]] = field(default_factory=dict, init=False,
                                                   compare=False, repr=False)

    def __post_init__(self) -> None:
        for hook in HOOKS:
            self._hooked[hook] = tuple(p for p in self.plugins if p.hook(hook) is not None)

    def has(self, hook: str) -> bool:
        """Some plugin has this hook (callers skip the work it needs otherwise)."""
        return bool(self._hooked[hook])

    def _call(self, hook: str, *args: Any) -> None:
        for plugin in self._hooked[hook]:
            _call_one(plugin, hook, *args)

    def _rewrite(self, hook: str, request: Any, part: str = "config") -> Any:
        """Call a hook that may change or replace `request.<part>`, which must stay a
        JSON object; what it is after the last plugin."""
        for plugin in self._hooked[hook]:
            _call_one(plugin, hook, request)
            if not isinstance(getattr(request, part), dict):
                raise PouchError("internal", f'plugin "{plugin.name}": {hook} left a {part} '
                                             "that is not an object")
        return getattr(request, part)

    def pre_create(self, request: ContainerCreate) -> dict[str, Any]:
        """The create body once every plugin had it (checked after this)."""
        return self._rewrite("pre_create", request)

    def pre_start(self, request: ContainerStart) -> dict[str, Any]:
        """The spec once every plugin had it."""
        return self._rewrite("pre_start", request, "spec")

    def pre_create_endpoint(self, request: EndpointCreate) -> dict[str, Any]:
        return self._rewrite("pre_create_endpoint", request, "endpoint")

    def pre_update(self, request: ContainerUpdate) -> dict[str, Any]:
        """The update body once every plugin had it (checked after this)."""
        return self._rewrite("pre_update", request)

    def post_update(self, updated: ContainerUpdated) -> None:
        self._call("post_update", updated)

    def post_pull(self, image: ImagePulled) -> None:
        self._call("post_pull", image)

    def pre_volume_create(self, request: VolumeCreate) -> dict[str, Any]:
        return self._rewrite("pre_volume_create", request)

    def cri_pre_create_container(self, request: CriContainerCreate) -> dict[str, Any]:
        return self._rewrite("cri_pre_create_container", request)

    def daemon_pre_start(self, config: DaemonConfig) -> None:
        """Errors: the first hook's that fails (pouchd does not start then)."""
        self._call("daemon_pre_start", config)

    def daemon_pre_stop(self, config: DaemonConfig) -> None:
        """Every plugin's, whatever the others do: pouchd stops anyway, so a failure is
        logged, not raised."""
        for plugin in self._hooked["daemon_pre_stop"]:
            try:
                _call_one(plugin, "daemon_pre_stop", config)
            except PouchError as exc:
                log.error("%s", exc.message)

    def update_api(self, api: ApiExtension) -> None:
        """Every plugin's. One that fails is logged and the API served without the rest
        of its changes: a gateway that cannot start serves nothing at all."""
        for plugin in self._hooked["update_api"]:
            try:
                _call_one(plugin, "update_api", api)
            except PouchError as exc:
                log.error("%s", exc.message)


def _call_one(plugin: Plugin, hook: str, *args: Any) -> None:
    """Run one plugin's hook; what it raises becomes a PouchError naming the plugin."""
    run = plugin.hook(hook)
    if run is None:
        return
    try:
        run(*args)
    except PouchError as exc:
        raise PouchError(exc.code, f'plugin "{plugin.name}": {hook}: {exc.message}') from None
    except (Exception, SystemExit) as exc:
        log.exception('plugin "%s": %s failed', plugin.name, hook)
        raise PouchError("internal", f'plugin "{plugin.name}": {hook} failed: '
                                     f"{type(exc).__name__}: {exc}") from None


# -- discovery ----------------------------------------------------------------------


def discover(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> Plugins:
    """The plugins the entry points name (default: the group's, installed); one that
    does not load is logged and skipped."""
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=GROUP)
    found: dict[str, Plugin] = {}
    for entry in sorted(entry_points, key=lambda e: e.name):
        if entry.name in found:
            continue  # as importlib: the first distribution on the path wins
        try:
            target = entry.load()
            if inspect.isclass(target):
                target = target()
        except Exception as exc:
            log.warning('skipping plugin "%s" (%s): %s: %s', entry.name, entry.value,
                        type(exc).__name__, exc)
            continue
        plugin = Plugin(entry.name, target)
        hooks = [hook for hook in HOOKS if plugin.hook(hook) is not None]
        if not hooks:
            log.warning('skipping plugin "%s" (%s): it has none of the hooks %s',
                        entry.name, entry.value, ", ".join(HOOKS))
            continue
        log.info('plugin "%s" (%s): %s', entry.name, entry.value, ", ".join(hooks))
        found[entry.name] = plugin
    return Plugins(tuple(found.values()))


_lock = threading.Lock()
_loaded: tuple[int, Plugins] | None = None


def loaded() -> Plugins:
    """This process's plugins, discovered at the first call (a forked child discovers
    its own: objects a plugin made may not survive a fork)."""
    global _loaded
    with _lock:
        if _loaded is None or _loaded[0] != os.getpid():
            _loaded = (os.getpid(), discover())
        return _loaded[1]

