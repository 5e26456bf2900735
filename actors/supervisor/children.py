"""The processes pouchd supervises: how each starts, shows it is ready, and stops."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pouch.actors.supervisor.launch import ZYGOTE, Process
from pouch.actors.supervisor.policy import RestartPolicy
from pouch.actors.supervisor.roles import ACTORS
from pouch.actors.supervisor.status import DEGRADED
from pouch.actors.supervisor.zygote import Zygote
from pouch.actors.timefmt import rfc3339_nano
from pouch.broker.client import ClientPool
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError
from pouch.proto.shapes import ChildStatus

log = logging.getLogger("pouch.supervisor")



@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    ready_timeout: float = 15.0
    stop_timeout: float = 3.0
    service: str | None = None   # the broker service it serves, if any
    role: list[str] | None = None  # pouchd's role arguments, if the zygote can fork it


@dataclass
class Child:
    spec: ChildSpec
    proc: Process | None = None
    state: str = "stopped"  # starting, running, backoff, cooling-down, down, stopped
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    restarts: int = 0
    last_exit: str = ""
    started_at: float = 0.0
    retry_at: float = 0.0  # Unix time the cool-down ends, while it cools down

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def degraded(self) -> bool:
        return self.state in DEGRADED

    @property
    def retry_at_text(self) -> str:
        return rfc3339_nano(int(self.retry_at) * 1_000_000_000) if self.retry_at else ""

    def describe(self) -> ChildStatus:
        return {"pid": self.pid, "state": self.state, "restarts": self.restarts,
                "last_exit": self.last_exit, "retry_at": self.retry_at_text}


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def stop_process(proc: Process, timeout: float, name: str) -> None:
    """SIGTERM, then SIGKILL after `timeout`; reaps it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) did not stop within %.0f s: killing it", name, proc.pid, timeout)
        proc.kill()
        proc.wait()


def wait_until(probe: Callable[[], bool], timeout: float, alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            if probe():
                return True
        except (OSError, PouchError):
            pass
        time.sleep(0.02)
    return False


def role_argv(config: DaemonConfig, *role: str) -> list[str]:
    return [sys.executable, "-m", "pouch.actors.supervisor.main", *config.to_args(), *role]


def role_spec(config: DaemonConfig, name: str, ready: Callable[[], bool], *role: str,
              **kwargs: Any) -> ChildSpec:
    """A child running one of pouchd's roles: forked by the zygote, or exec'd without one."""
    return ChildSpec(name, role_argv(config, *role), ready, role=list(role), **kwargs)


def build_specs(config: DaemonConfig, calls: ClientPool, containerd_config: Path,
                containerd_ready: Callable[[], bool],
                zygote: Zygote | None = None) -> list[ChildSpec]:
    """Every child, in start order (the zygote first, if there is one)."""

    def broker_ready() -> bool:
        return calls.call("broker", "ping", timeout=0.5) == "pong"

    def service_ready(name: str) -> Callable[[], bool]:
        def probe() -> bool:
            services = calls.call("broker", "services", timeout=0.5)
            return bool((services.get(name) or {}).get("workers"))
        return probe

    specs = [ChildSpec(ZYGOTE, role_argv(config, ZYGOTE), zygote.ready, stop_timeout=1.0)
             ] if zygote is not None else []
    specs += [
        role_spec(config, "broker", broker_ready, "broker", stop_timeout=2.0),
        ChildSpec("containerd", [config.containerd_path, "--config", str(containerd_config)],
                  containerd_ready, ready_timeout=20.0, stop_timeout=5.0),
    ]
    specs += [role_spec(config, name, service_ready(name), "actor", name, service=name)
              for name in ACTORS if name != "cri" or config.enable_cri]
    specs.append(role_spec(config, "gateway", lambda: all(answers(a) for a in config.listen),
                           "gateway", stop_timeout=4.0))
    return specs


def answers(address: str) -> bool:
    """Whether the gateway serves a --listen address: a connection alone does not tell
    (the supervisor holds the listening socket), an answer to /_ping does."""
    try:
        with _connect(address) as conn:
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: pouch\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def _connect(address: str) -> socket.socket:
    if address.startswith("unix://"):
        conn = socket.socket(socket.AF_UNIX)
        conn.settimeout(0.5)
        try:
            conn.connect(address[len("unix://"):])
        except OSError:
            conn.close()
            raise
        return conn
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    return socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=0.5)


def listening(address: str) -> bool:
    """Whether something accepts connections at a --listen address."""
    if address.startswith("unix://"):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(0.5)
            return s.connect_ex(address[len("unix://"):]) == 0
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=0.5):
        return True


def kill_stale(pidfile: Path, marker: str) -> None:
    """End a process a previous pouchd left behind (it died without stopping it)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if marker.encode() not in cmdline or pid == os.getpid():
        return
    log.warning("ending pid %d (%s), left behind by an earlier pouchd", pid, marker)
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
