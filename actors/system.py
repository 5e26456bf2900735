"""The system actor: version and info, gathered from the other actors; the events
service (a bounded history, then live events); every process's metrics."""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import shutil
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pouch.actors import hostinfo, hostlabels, settings
from pouch.actors.container.spec.host import INIT_BINARY
from pouch.actors.host import ActorBase, ActorContext, Reply
from pouch.actors.network.store import BUILTIN_DRIVERS
from pouch.actors.timefmt import parse_timestamp, rfc3339_nano
from pouch.broker.client import follow
from pouch.proto.config import DaemonConfig
from pouch.proto.contract import Resumption, method
from pouch.proto.docker import (
    API_VERSION,
    EVENT_FILTERS,
    MIN_API_VERSION,
    SNAPSHOTTER,
    check_filters,
    event_matches,
)
from pouch.proto.envelope import PouchError, invalid
from pouch.proto.shapes import DiskUsage, Event, MetricFamilies, SystemInfo, VersionInfo
from pouch.proto.stream import StreamSession

if TYPE_CHECKING:
    from pouch.actors.containerd.client import Containerd

log = logging.getLogger("pouch.system")
T = TypeVar("T")
HISTORY = 1000  # events kept for `since`
RESUME_OVERLAP = 1.0  # s: how far apart in time events from several actors may arrive


@dataclass(frozen=True)
class Seen:
    event: dict[str, Any]


@dataclass
class Listener:
    """A live events stream: over the broker (`events`) or a handed-over HTTP
    connection (`watch`, GET /events); `emit` is False once its caller is gone."""

    filters: dict[str, list[str]]
    emit: Callable[[dict[str, Any]], bool]
    end: Callable[[], None]
    gone: Callable[[], bool]


@dataclass(frozen=True)
class Ended:
    """A live stream's `until` has come."""

    listener: Listener


VERSION = "0.1.0"
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "i686": "386"}


def _os_release(key: str, default: str = "") -> str:
    """A field of /etc/os-release (PRETTY_NAME, VERSION_ID), as dockerd's /info reads it."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith(f"{key}="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return default


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _check_bounds(since: float, until: float) -> None:
    if until and since and until < since:
        raise invalid("since must not be after until")


class SystemActor(ActorBase):
    service = "system"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self._ctrd: Containerd | None = None  # made on first use: grpc costs ~9 MiB
        self._engine_id = self._load_engine_id()
        self._runc = hostinfo.runc_version()
        self._commit = hostinfo.source_commit()
        self._init_commit = hostinfo.init_version(INIT_BINARY)  # what --init runs
        self._init_binary = INIT_BINARY if self._init_commit else ""
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._listeners: list[Listener] = []
        self._stopping = threading.Event()
        self._host_labels: list[str] = []  # node_ip, SN: read once, at start
        self._host_labels_read = threading.Event()

    def on_start(self) -> None:
        threading.Thread(target=self._collect_events, name="events", daemon=True).start()
        threading.Thread(target=self._read_host_labels, name="labels", daemon=True).start()

    def _read_host_labels(self) -> None:
        try:
            self._host_labels = hostlabels.system_labels()
        finally:
            self._host_labels_read.set()

    def _labels(self, cfg: DaemonConfig) -> list[str]:
        """--label's labels, then node_ip and SN. An /info asked while they are being
        read (the first seconds only) waits for them, no longer than the commands may
        take; after that, it goes without."""
        self._host_labels_read.wait(2 * hostlabels.TIMEOUT + 0.5)
        return hostlabels.merge(cfg.labels, self._host_labels)

    def on_stop(self) -> None:
        self._stopping.set()
        for listener in self._listeners:
            listener.end()
        if self._ctrd is not None:
            self._ctrd.close()

    def _containerd(self) -> Containerd:
        if self._ctrd is None:
            from pouch.actors.containerd.client import Containerd

            self._ctrd = Containerd(self.ctx.config.containerd_socket)
        return self._ctrd

    # -- events --------------------------------------------------------------

    def _collect_events(self) -> None:
        """Every published event passes through here, into the history and to listeners."""
        me = self.actor_ref
        follow(self.ctx.config.broker_endpoint, {}, lambda event: me.tell(Seen(event)),
               self._stopping)

    def on_message(self, message: Any) -> Any:
        if isinstance(message, Seen):
            self._history.append(message.event)
            self._fan_out(message.event)
        elif isinstance(message, Ended):  # its `until` has come
            message.listener.end()
            self._listeners = [x for x in self._listeners if x is not message.listener]
        return None

    def _fan_out(self, event: dict[str, Any]) -> None:
        keep = []
        for listener in self._listeners:
            if listener.gone():
                continue
            if event_matches(event, listener.filters) and not listener.emit(event):
                continue  # the caller is gone
            keep.append(listener)
        self._listeners = keep

    # A caller whose stream this actor's restart cut asks again from its last event's time.
    @method(idempotent=True, stream=True, returns=Event, errors=("invalid",), timeout=None,
            resumable=Resumption("timeNano", "since", scale=1e-9, overlap=RESUME_OVERLAP))
    def events(self, reply: Reply, since: float = 0.0, until: float = 0.0,
               filters: dict[str, list[str]] | None = None) -> None:
        """Events in Docker's shape: those kept since `since` (Unix seconds), then live
        ones until `until` (0: until the caller cancels)."""
        filters = check_filters(filters, EVENT_FILTERS)
        _check_bounds(since, until)
        self._listen(Listener(filters, reply.more, lambda: reply.send(None),
                              lambda: reply.cancelled or reply.done), since, until)

    # As `events`, resumable: a restarted actor goes on with live events (its history
    # begins with it, so nothing is sent twice).
    @method(idempotent=True, returns=None, errors=("invalid",), resumable=True)
    def watch(self, conn: StreamSession, reply: Reply, since: str = "", until: str = "",
              filters: dict[str, list[str]] | None = None) -> None:
        """Docker's GET /events on a handed-over connection: the events kept since `since`,
        then live ones until `until` (Unix seconds, RFC 3339 or a duration back from now;
        "": no bound), one JSON document each."""
        filters = check_filters(filters, EVENT_FILTERS)
        try:
            begin = max(parse_timestamp(since) if since else 0.0, conn.resumed_at)
            end = parse_timestamp(until) if until else 0.0
        except ValueError as exc:
            raise invalid(str(exc)) from None
        _check_bounds(begin, end)
        listener = Listener(filters, conn.write_json, conn.end,
                            lambda: conn.conn.fileno() < 0)
        reply.send(None)
        if conn.start(resumable=True):
            # As dockerd: with neither bound, live events only.
            self._listen(listener, begin, end, replay=bool(begin or end))

    def _listen(self, listener: Listener, since: float, until: float,
                replay: bool = True) -> None:
        """Replay the history from `since`, then follow live events until `until`."""
        for event in list(self._history) if replay else ():
            when = event.get("timeNano", 0) / 1e9
            if (since and when < since) or (until and when > until):
                continue
            if event_matches(event, listener.filters) and not listener.emit(event):
                return
        if until and until <= time.time():
            listener.end()
            return
        self._listeners.append(listener)
        if until:
            timer = threading.Timer(until - time.time(), self.actor_ref.tell,
                                    args=(Ended(listener),))
            timer.daemon = True
            timer.start()

    # -- metrics -------------------------------------------------------------

    @method(idempotent=True, returns=str)
    def all_metrics(self, reply: Reply) -> None:
        """The metrics of every live actor process, merged, in Prometheus's text format."""
        reply.run_in_thread(self._all_metrics, self.ctx.metrics.snapshot())

    def _all_metrics(self, own: MetricFamilies) -> str:
        from pouch.actors.exposition import render  # prometheus_client: this process only

        snapshots = [own]
        pool = self.ctx.pool  # every live service, named at run time
        try:
            services = self.ctx.calls.broker.services()
        except PouchError:
            services = {}
        for name, status in services.items():
            if name == self.service or not status["workers"]:
                continue
            try:
                snapshots.append(pool.call(name, "metrics", timeout=2.0))
            except PouchError as exc:
                log.debug("no metrics from %s: %s", name, exc.message)
        return render(snapshots)

    def _load_engine_id(self) -> str:
        path = self.ctx.config.home_dir / "engine-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            engine_id = str(uuid.uuid4()).upper()
            tmp = path.with_suffix(".tmp")
            tmp.write_text(engine_id + "\n")
            os.replace(tmp, path)
            return engine_id

    @method(idempotent=True, returns=VersionInfo)
    def version(self, reply: Reply) -> None:
        """The engine's version and its components' (containerd, runc), as /version shows."""
        reply.run_in_thread(self._version)

    def _containerd_version(self) -> tuple[str, str]:
        """containerd's version and commit; ("unavailable", "") while it does not answer."""
        try:
            return self._containerd().revision(timeout=2)
        except PouchError:
            return "unavailable", ""

    def _version(self) -> VersionInfo:
        containerd, revision = self._containerd_version()
        uname = platform.uname()
        arch = GO_ARCH.get(uname.machine, uname.machine)
        python = f"python{platform.python_version()}"
        return {
            "Platform": {"Name": "pouch"},
            "Components": [
                {"Name": "Engine", "Version": VERSION, "Details": {
                    "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                    "Arch": arch, "KernelVersion": uname.release, "Experimental": "false",
                    "GitCommit": self._commit, "GoVersion": python, "BuildTime": ""}},
                {"Name": "containerd", "Version": containerd,
                 "Details": {"GitCommit": revision}},
                {"Name": "runc", "Version": self._runc.version,
                 "Details": {"GitCommit": self._runc.commit}},
            ],
            "Version": VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": self._commit, "GoVersion": python, "Os": "linux",
            "Arch": arch, "KernelVersion": uname.release, "BuildTime": "",
        }

    @method(idempotent=True, returns=DiskUsage, timeout=180.0)
    def disk_usage(self, reply: Reply) -> None:
        """What images, containers and volumes take, as GET /system/df shows it (no
        build cache yet)."""
        reply.run_in_thread(self._disk_usage)

    def _disk_usage(self) -> DiskUsage:
        calls = self.ctx.calls
        images = calls.image.disk_usage()
        containers = calls.container.list(all=True, size=True)
        per_image = Counter(container["ImageID"] for container in containers)
        return {"LayersSize": images["LayersSize"],
                "Images": [{**image, "Containers": per_image[image["Id"]]}
                           for image in images["Images"]],
                "Containers": containers, "Volumes": calls.volume.usage(), "BuildCache": [],
                "BuilderSize": 0}

    @method(idempotent=True, returns=SystemInfo)
    def info(self, reply: Reply) -> None:
        """System-wide information, as /info shows; degraded actors are named in Warnings."""
        reply.run_in_thread(self._info)

    def _info(self) -> SystemInfo:
        calls = self.ctx.calls
        warnings: list[str] = []
        counts = _ask(calls.container.counts, "container", warnings)
        images = _ask(calls.image.count, "image", warnings) or 0
        status = _ask(calls.supervisor.status, "supervisor", warnings)
        degraded = list(status["degraded"]) if status else []
        children = status["children"] if status else {}
        warnings += [f"WARNING: the {name} actor is down" + (
            f" (cooling down; tried again at {retry})"
            if (retry := children[name].get("retry_at")) else "") for name in degraded]
        counts = counts or {"total": 0, "running": 0, "paused": 0, "stopped": 0}
        uname = platform.uname()
        cfg = settings.current(self.ctx.config)
        support = hostinfo.cgroup_support()
        warnings += hostinfo.api_warnings(cfg) + hostinfo.host_warnings(cfg, support)
        _, containerd_commit = self._containerd_version()
        fds, threads = hostinfo.process_load(
            [os.getpid(), *(child["pid"] for child in children.values() if child["pid"])])
        return {
            "ID": self._engine_id, "Name": socket.gethostname(),
            "Containers": counts["total"], "ContainersRunning": counts["running"],
            "ContainersPaused": counts["paused"], "ContainersStopped": counts["stopped"],
            "Images": images,
            "Driver": SNAPSHOTTER, "DriverStatus": [], "DockerRootDir": str(cfg.home_dir),
            "ServerVersion": VERSION, "OperatingSystem": _os_release("PRETTY_NAME", "Linux"),
            "OSType": "linux", "OSVersion": _os_release("VERSION_ID"),
            "Architecture": uname.machine, "KernelVersion": uname.release,
            "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(),
            "CgroupDriver": "cgroupfs", "CgroupVersion": hostinfo.cgroup_version(),
            **support.fields(),
            "IPv4Forwarding": hostinfo.sysctl_on("net.ipv4.ip_forward"),
            "BridgeNfIptables": hostinfo.sysctl_on("net.bridge.bridge-nf-call-iptables"),
            "BridgeNfIp6tables": hostinfo.sysctl_on("net.bridge.bridge-nf-call-ip6tables"),
            # Go's figures, for pouchd's process tree: descriptors, threads.
            "NFd": fds, "NGoroutines": threads, "SystemTime": rfc3339_nano(),
            "NEventsListener": len(self._listeners),
            "DefaultRuntime": "runc",
            "Runtimes": {"runc": {"path": shutil.which("runc") or "runc"}},
            "LoggingDriver": "json-file", "Plugins": {
                "Volume": ["local"], "Network": list(BUILTIN_DRIVERS),
                "Authorization": None, "Log": ["json-file"]},
            "IndexServerAddress": f"https://index.{cfg.default_registry}/v1/",
            "RegistryConfig": _registry_config(cfg),
            "SecurityOptions": hostinfo.security_options(), "Labels": self._labels(cfg),
            "Debug": cfg.debug, "ExperimentalBuild": False, "LiveRestoreEnabled": True,
            "Isolation": "", "Swarm": hostinfo.SWARM_INACTIVE, "ListenAddresses": list(cfg.listen),
            "GenericResources": None,
            "InitBinary": self._init_binary, "InitCommit": {"ID": self._init_commit},
            "ContainerdCommit": {"ID": containerd_commit},
            "RuncCommit": {"ID": self._runc.commit},
            # What pulls go through: the image proxy, else the environment's.
            "HttpProxy": cfg.image_proxy or os.environ.get("HTTP_PROXY", ""),
            "HttpsProxy": cfg.image_proxy or os.environ.get("HTTPS_PROXY", ""),
            "NoProxy": os.environ.get("NO_PROXY", ""),
            "Degraded": degraded, "Warnings": warnings,
        }



def _registry_config(cfg: DaemonConfig) -> dict[str, Any]:
    """Docker's RegistryConfig: insecure registries (CIDRs apart from names) and mirrors."""
    cidrs, names = ["127.0.0.0/8"], []
    for registry in cfg.insecure_registries:
        try:
            cidrs.append(str(ipaddress.ip_network(registry, strict=False)))
        except ValueError:
            names.append(registry)
    return {"InsecureRegistryCIDRs": cidrs, "Mirrors": list(cfg.registry_mirrors),
            "IndexConfigs": {
                cfg.default_registry: {"Name": cfg.default_registry,
                                       "Mirrors": list(cfg.registry_mirrors),
                                       "Secure": True, "Official": True},
                **{name: {"Name": name, "Mirrors": [], "Secure": False, "Official": False}
                   for name in names}}}


def _ask(question: Callable[[], T], service: str, warnings: list[str]) -> T | None:
    """The answer, or None with a warning naming the service that did not give one."""
    try:
        return question()
    except PouchError as exc:
        warnings.append(f"WARNING: {service}: {exc.message}")
        return None
