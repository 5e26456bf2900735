"""The system actor: version and info, gathered from the other actors."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

from pouch.actors.containerd.client import Containerd
from pouch.actors.contract import method
from pouch.actors.host import ActorBase, ActorContext
from pouch.proto.envelope import PouchError

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
        self._ctrd = Containerd(ctx.config.containerd_socket)
        self._engine_id = self._load_engine_id()
        self._runc = _runc_version()

    def on_stop(self) -> None:
        self._ctrd.close()

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
    def version(self) -> dict[str, Any]:
        """The engine's version and its components' (containerd, runc), as /version shows."""
        try:
            containerd = self._ctrd.version(timeout=2)
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
    def info(self) -> dict[str, Any]:
        """System-wide information, as /info shows; degraded actors are named in Warnings."""
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
