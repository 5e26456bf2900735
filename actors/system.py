"""The system actor: version and info, gathered from the other actors; the events
service (a bounded history, then live events); every process's metrics."""

from __future__ import annotations

import logging
import os
import platform
import socket
import subprocess
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pouch.actors.contract import method
from pouch.actors.host import ActorBase, ActorContext, Reply
from pouch.broker.client import Client
from pouch.broker.filters import matches
from pouch.proto.envelope import PouchError, invalid

if TYPE_CHECKING:
    from pouch.actors.containerd.client import Containerd

log = logging.getLogger("pouch.system")
HISTORY = 1000  # events kept for `since`
EVENT_FILTERS = ("container", "daemon", "event", "image", "label", "network", "plugin",
                 "scope", "type", "volume")


@dataclass(frozen=True)
class Seen:
    event: dict[str, Any]


@dataclass
class Listener:
    reply: Reply
    filters: dict[str, list[str]]
    until: float

VERSION = "0.1.0"
API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "i686": "386"}


def _runc_version() -> str:
    try:
        out = subprocess.run(["runc", "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.rpartition(" ")[2]


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class SystemActor(ActorBase):
    service = "system"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self._ctrd: Containerd | None = None  # made on first use: grpc costs ~9 MiB
        self._engine_id = self._load_engine_id()
        self._runc = _runc_version()
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._listeners: list[Listener] = []
        self._stopping = threading.Event()

    def on_start(self) -> None:
        threading.Thread(target=self._collect_events, name="events", daemon=True).start()

    def on_stop(self) -> None:
        self._stopping.set()
        for listener in self._listeners:
            listener.reply.send(None)
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
        while not self._stopping.is_set():
            client = Client(self.ctx.config.broker_endpoint)
            try:
                with client.subscribe({}) as events:
                    for event in events:
                        me.tell(Seen(event))
            except PouchError as exc:
                log.debug("event subscription ended (%s); subscribing again", exc.message)
            finally:
                client.close()
            self._stopping.wait(0.1)

    def on_message(self, message: Any) -> Any:
        if isinstance(message, Seen):
            self._history.append(message.event)
            self._fan_out(message.event)
        return None

    def _fan_out(self, event: dict[str, Any]) -> None:
        now = time.time()
        keep = []
        for listener in self._listeners:
            if listener.until and listener.until <= now:
                listener.reply.send(None)
                continue
            if matches(event, listener.filters) and not listener.reply.more(event):
                continue  # the caller is gone
            if not listener.reply.cancelled:
                keep.append(listener)
        self._listeners = keep

    def _end_listeners(self) -> None:
        self._fan_out({"Type": "", "Action": "", "time": time.time()})

    @method(idempotent=True, stream=True)
    def events(self, reply: Reply, since: float = 0.0, until: float = 0.0,
               filters: dict[str, list[str]] | None = None) -> None:
        """Events in Docker's shape: those kept since `since` (Unix seconds), then live
        ones until `until` (0: until the caller cancels). Errors: invalid (filters)."""
        filters = filters or {}
        for key in filters:
            if key not in EVENT_FILTERS:
                raise invalid(f"invalid filter '{key}'")
        if until and since and until < since:
            raise invalid("since must not be after until")
        for event in list(self._history):
            when = event.get("timeNano", 0) / 1e9
            if (since and when < since) or (until and when > until):
                continue
            if matches(event, filters):
                reply.more(event)
        if until and until <= time.time():
            reply.send(None)
            return
        self._listeners.append(Listener(reply, filters, until))
        if until:
            timer = threading.Timer(until - time.time(), self.actor_ref.proxy().end_listeners)
            timer.daemon = True
            timer.start()

    def end_listeners(self) -> None:
        """Finish the live streams whose `until` has come (a timer calls this)."""
        self._end_listeners()

    # -- metrics -------------------------------------------------------------

    @method(idempotent=True)
    def all_metrics(self, reply: Reply) -> None:
        """The metrics of every live actor process, merged, in Prometheus's text format."""
        reply.run_in_thread(self._all_metrics, self.ctx.metrics.snapshot())

    def _all_metrics(self, own: list[dict[str, Any]]) -> str:
        from pouch.actors.exposition import render  # prometheus_client: this process only

        snapshots = [own]
        calls = self.ctx.calls
        try:
            services = calls.call("broker", "services", timeout=2.0)
        except PouchError:
            services = {}
        for name, status in services.items():
            if name == self.service or not status.get("workers"):
                continue
            try:
                snapshots.append(calls.call(name, "metrics", timeout=2.0))
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

    @method(idempotent=True)
    def version(self, reply: Reply) -> None:
        """The engine's version and its components' (containerd, runc), as /version shows."""
        reply.run_in_thread(self._version)

    def _version(self) -> dict[str, Any]:
        try:
            containerd = self._containerd().version(timeout=2)
        except PouchError:
            containerd = "unavailable"
        uname = platform.uname()
        arch = GO_ARCH.get(uname.machine, uname.machine)
        return {
            "Platform": {"Name": "pouch"},
            "Components": [
                {"Name": "Engine", "Version": VERSION, "Details": {
                    "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                    "Arch": arch, "KernelVersion": uname.release, "Experimental": "false",
                    "GitCommit": "", "GoVersion": f"python{platform.python_version()}"}},
                {"Name": "containerd", "Version": containerd, "Details": {}},
                {"Name": "runc", "Version": self._runc, "Details": {}},
            ],
            "Version": VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "", "GoVersion": f"python{platform.python_version()}", "Os": "linux",
            "Arch": arch, "KernelVersion": uname.release, "BuildTime": "",
        }

    @method(idempotent=True)
    def info(self, reply: Reply) -> None:
        """System-wide information, as /info shows; degraded actors are named in Warnings."""
        reply.run_in_thread(self._info)

    def _info(self) -> dict[str, Any]:
        calls = self.ctx.calls
        warnings: list[str] = []
        counts = self._ask(calls, "container", "counts", {}, warnings) or {}
        images = self._ask(calls, "image", "count", {}, warnings) or 0
        status = self._ask(calls, "supervisor", "status", {}, warnings) or {}
        degraded = list(status.get("degraded") or [])
        warnings += [f"WARNING: the {name} actor is down" for name in degraded]
        uname = platform.uname()
        cfg = self.ctx.config
        return {
            "ID": self._engine_id, "Name": socket.gethostname(),
            "Containers": counts.get("total", 0), "ContainersRunning": counts.get("running", 0),
            "ContainersPaused": counts.get("paused", 0),
            "ContainersStopped": counts.get("stopped", 0), "Images": images,
            "Driver": "overlayfs", "DriverStatus": [], "DockerRootDir": str(cfg.home_dir),
            "ServerVersion": VERSION, "OperatingSystem": _os_name(), "OSType": "linux",
            "OSVersion": "", "Architecture": uname.machine, "KernelVersion": uname.release,
            "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(),
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1",
            "DefaultRuntime": "runc", "Runtimes": {"runc": {"path": "runc"}},
            "LoggingDriver": "json-file", "Plugins": {
                "Volume": ["local"], "Network": ["host", "null"],
                "Authorization": None, "Log": ["json-file"]},
            "IndexServerAddress": f"https://index.{cfg.default_registry}/v1/",
            "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"]},
            "SecurityOptions": [], "Labels": [], "Debug": cfg.debug,
            "ExperimentalBuild": False, "LiveRestoreEnabled": True, "Isolation": "",
            "InitBinary": "", "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""},
            "HttpProxy": os.environ.get("HTTP_PROXY", ""),
            "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
            "NoProxy": os.environ.get("NO_PROXY", ""),
            "Degraded": degraded, "Warnings": warnings,
        }

    @staticmethod
    def _ask(calls: Any, service: str, name: str, args: dict[str, Any],
             warnings: list[str]) -> Any:
        try:
            return calls.call(service, name, args, timeout=2.0)
        except PouchError as exc:
            warnings.append(f"WARNING: {service}: {exc.message}")
            return None
