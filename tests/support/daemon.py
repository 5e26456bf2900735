"""A real pouchd for tests: its own home, exec root and socket, and nothing left behind.

The daemon runs with HTTP(S)_PROXY at a closed loopback port, so anything
that would reach out to a registry fails at once instead of leaving the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pouch.tests.support import netclean
from pouch.tests.support.containerd import (
    mounts_under,
    require_containerd,
    shims_of,
    unmount_all,
    wait_gone,
)
from pouch.tests.support.procs import cmdline, in_cgroups_named, pids
from pouch.tests.support.tools import require

CLOSED_PROXY = "http://127.0.0.1:9"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class DockerError(Exception):
    def __init__(self, args: list[str], code: int, stdout: str, stderr: str) -> None:
        super().__init__(f"docker {' '.join(args)} exited {code}: {stderr.strip()}")
        self.code = code
        self.stdout = stdout
        self.stderr = stderr


@contextlib.contextmanager
def running(tarball: Path, daemon: PouchDaemon | None = None) -> Iterator[PouchDaemon]:
    """A started pouchd with the image of `tarball` loaded; stopped (and cleaned) after."""
    daemon = daemon or PouchDaemon()
    try:
        daemon.start()
        daemon.docker("load", "-i", str(tarball))
        yield daemon
    finally:
        daemon.stop()


class PouchDaemon:
    """One pouchd process tree under a temporary folder."""

    def __init__(self, base: Path | None = None, *, debug: bool = True,
                 extra_args: list[str] | None = None) -> None:
        # Short: unix socket paths must fit in 108 bytes.
        self.base = base or Path(tempfile.mkdtemp(prefix="pd-", dir="/tmp"))
        self.home = self.base / "home"
        self.run_dir = self.base / "run"
        self.socket = self.base / "pouchd.sock"
        self.log_path = self.base / "pouchd.log"
        self.docker_config = self.base / "docker-config"
        self.debug = debug
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        # A default bridge and iptables chains of its own (see netclean); the subnet is
        # chosen free when the daemon first starts.
        self.bridge = netclean.tag_for(self.base)
        self.bip = ""

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "pouch.actors.supervisor.main",
                "--home-dir", str(self.home), "--exec-root-dir", str(self.run_dir),
                "--listen", self.host, "--config-file", "",
                *self.network_args(), *self.extra_args]
        return [*args, "--debug"] if self.debug else args

    def network_args(self) -> list[str]:
        if not self.bip:
            self.bip = netclean.free_bip()
        netclean.SESSION_TAGS.add(self.bridge)
        return ["--bridge-name", self.bridge, "--bip", self.bip]

    def env(self) -> dict[str, str]:
        return {**os.environ, "HTTP_PROXY": CLOSED_PROXY, "HTTPS_PROXY": CLOSED_PROXY,
                "http_proxy": CLOSED_PROXY, "https_proxy": CLOSED_PROXY, "NO_PROXY": "",
                "PYTHONUNBUFFERED": "1"}

    def start(self) -> PouchDaemon:
        require_containerd()
        self.docker_config.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(self.argv(), env=self.env(), stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pouchd exited {self.proc.returncode}:\n{self.log_tail()}")
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"pouchd did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(self.socket))
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: pouch\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pid_of(self, name: str) -> int:
        return int((self.run_dir / f"{name}.pid").read_text().strip())

    def docker(self, *args: str, input: str | None = None, check: bool = True,
               timeout: float = 60) -> str:
        """Run the docker CLI against this daemon; its stdout, stripped."""
        result = self.docker_result(*args, input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise DockerError(list(args), result.returncode, result.stdout, result.stderr)
        return result.stdout.strip()

    def docker_result(self, *args: str, input: str | None = None,
                      timeout: float = 60) -> subprocess.CompletedProcess[str]:
        docker = require("docker", "docker.io")
        return subprocess.run([docker, *args], input=input, capture_output=True, text=True,
                              env=self.cli_env(), timeout=timeout)

    def cli_env(self) -> dict[str, str]:
        """The environment in which the docker CLI talks to this daemon."""
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.docker_config)}

    def inspect(self, name: str) -> dict[str, Any]:
        return json.loads(self.docker("inspect", name))[0]

    def stop(self) -> None:
        """SIGTERM, as a user would; then make sure nothing of ours is left."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.cleanup()

    def leftovers(self) -> list[int]:
        """Pids of processes that still name this daemon's folder (shims aside)."""
        mine = str(self.base)
        shims = shims_of(self.containerd_socket)
        return [pid for pid in pids()
                if pid not in shims and any(mine in arg for arg in cmdline(pid))]

    def cleanup(self) -> None:
        # Containers outlive pouchd by design, and their processes outlive a killed shim.
        containers = {folder.name for folder in (self.home / "containers").glob("*")}
        killed = (self.leftovers() + shims_of(self.containerd_socket)
                  + (in_cgroups_named(containers) if containers else []))
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(killed, STOP_TIMEOUT)  # a dead shim no longer holds the mounts
        unmount_all(self.base)
        netclean.remove(self.base, self.bridge)  # reads the daemon's store: before rmtree
        shutil.rmtree(self.base, ignore_errors=True)

    def mounts(self) -> list[Path]:
        return mounts_under(self.base)

