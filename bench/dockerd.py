"""A dockerd 20.10 (Debian's docker.io) of its own for a benchmark, started by hand.

    with dockerd(insecure_registries=[registry.host]) as docker:
        subprocess.run(["docker", "pull", name], env=docker.cli_env())

Everything it writes lives under one temporary folder: data root, exec root,
socket, pid file, trust key, config file, its log and its TMPDIR. It touches no host
firewall (no iptables, no IP forwarding or masquerading) and, unless given
`bridge=True`, no host networking; with it, its containers join a bridge of
the benchmark's own (a free /24 of 100.64.0.0/10, removed afterwards), as with
dockerd's default network, minus the rules. It runs with HTTP(S)_PROXY at a
closed loopback port, so a pull can reach 127.0.0.1 and nothing else. Without
`--containerd` it starts its own containerd under its exec root, unless
/run/containerd/containerd.sock exists, which it would pick up instead: then it
is given a containerd of ours.

On the way out it is stopped by pid (SIGTERM, SIGKILL after a timeout), its
containerd and any shim are ended by pid, whatever is still mounted under the
folder is unmounted and the folder removed. The firewall rules are read before
and after: a difference is reported (`Dockerd.firewall_diff`), never repaired.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from pouch.actors.network import sandbox
from pouch.bench.common import require
from pouch.bench.pouchd import uninterrupted
from pouch.tests.support import netclean
from pouch.tests.support.containerd import (
    ContainerdProcess,
    mounts_under,
    shims_of,
    unmount_all,
    wait_gone,
)
from pouch.tests.support.procs import children_of, cmdline, pids

DOCKERD: Final = Path("/usr/sbin/dockerd")
# Where dockerd 20.10 looks for a system containerd before starting one of its own.
SYSTEM_CONTAINERD: Final = Path("/run/containerd/containerd.sock")
CLOSED_PROXY: Final = "http://127.0.0.1:9"
NO_PROXY: Final = "127.0.0.1,localhost,::1"
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 15.0
PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Dockerd:
    """One dockerd process tree under `base`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data_root = base / "data"
        self.exec_root = base / "run"
        self.socket = base / "docker.sock"
        self.pidfile = base / "dockerd.pid"
        self.log_path = base / "dockerd.log"
        self.docker_config = base / "docker-config"
        self.proc: subprocess.Popen[bytes] | None = None
        self.containerd_pids: list[int] = []  # its managed containerd, once started
        self.own_containerd: ContainerdProcess | None = None  # when a system one is there
        self.firewall_diff: str | None = None  # set on the way out if the rules changed
        self.bridge = ""  # the bridge its containers join ("": none)

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def containerd_socket(self) -> Path:
        if self.own_containerd is not None:
            return self.own_containerd.address
        return self.exec_root / "containerd" / "containerd.sock"

    def cli_env(self) -> dict[str, str]:
        """The environment in which the docker CLI talks to this daemon."""
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.docker_config)}

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], env=self.cli_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def get(self, path: str, timeout: float = 30) -> Any:
        """GET `path` of the Engine API on the socket; the decoded JSON body."""
        raw = _http(self.socket, f"GET {path} HTTP/1.1\r\nHost: docker\r\n"
                    "Connection: close\r\n\r\n", timeout)
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"dockerd GET {path}: {head.splitlines()[:1]}")
        if b"transfer-encoding: chunked" in head.lower():
            body = _unchunk(body)
        return json.loads(body)

    def ping(self) -> bool:
        try:
            raw = _http(self.socket, "GET /_ping HTTP/1.1\r\nHost: docker\r\n"
                        "Connection: close\r\n\r\n", 1.0)
        except OSError:
            return False
        return raw.startswith(b"HTTP/1.1 200")

    def version(self) -> str:
        return str(self.get("/version").get("Version", "?"))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def argv(self, insecure_registries: Sequence[str]) -> list[str]:
        args = [str(DOCKERD),
                "--config-file", str(self.base / "daemon.json"),
                "--data-root", str(self.data_root),
                "--exec-root", str(self.exec_root),
                "-H", self.host,
                "--pidfile", str(self.pidfile),
                "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                "--ip-forward=false", f"--bridge={self.bridge or 'none'}",
                "--storage-driver", "overlay2",
                "--log-level", "warn"]
        for registry in insecure_registries:
            args += ["--insecure-registry", registry]
        if self.own_containerd is not None:
            args += ["--containerd", str(self.own_containerd.address)]
        return args

    def start(self, insecure_registries: Sequence[str]) -> None:
        require(str(DOCKERD))
        _check_closed(CLOSED_PROXY)
        for folder in (self.data_root, self.exec_root, self.docker_config, self.base / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        # Else /etc/docker/key.json would be written (a key of the file, not a flag).
        (self.base / "daemon.json").write_text(json.dumps(
            {"deprecated-key-path": str(self.base / "key.json")}) + "\n")
        if SYSTEM_CONTAINERD.exists():
            # dockerd would use it (and its content and namespaces): give it one of ours.
            self.own_containerd = ContainerdProcess(self.base / "ctrd")
            self.own_containerd.start()
        env = {**os.environ, "PATH": PATH,
               "HTTP_PROXY": CLOSED_PROXY, "HTTPS_PROXY": CLOSED_PROXY,
               "http_proxy": CLOSED_PROXY, "https_proxy": CLOSED_PROXY,
               "NO_PROXY": NO_PROXY, "no_proxy": NO_PROXY,
               # What it writes to the temp folder (its containerd's stack dump, asked
               # for by dockerd at a slow stop) goes with the rest.
               "TMPDIR": str(self.base / "tmp")}
        for name in ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"):
            env.pop(name, None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(insecure_registries), env=env,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"dockerd did not answer /_ping within {START_TIMEOUT:g} s:"
                                   f"\n{self.log_tail()}")
            time.sleep(0.05)
        written = int(self.pidfile.read_text().strip())
        if written != self.proc.pid:
            raise RuntimeError(f"dockerd pid file says {written}, started {self.proc.pid}")
        if self.own_containerd is None:
            # Its managed containerd, started before the API answers: the proof that it
            # did not pick up a system one that appeared meanwhile.
            self.containerd_pids = [pid for pid in children_of(self.proc.pid)
                                    if str(self.base) in " ".join(cmdline(pid))]
            if not self.containerd_pids:
                raise RuntimeError("dockerd started no containerd of its own:\n"
                                   + self.log_tail())

    def leftovers(self) -> list[int]:
        """Pids of processes that still name this daemon's folder, shims included."""
        mine = str(self.base)
        found = {pid for pid in pids() if any(mine in arg for arg in cmdline(pid))}
        return sorted(found | set(shims_of(self.containerd_socket)))

    def stop(self) -> None:
        """SIGTERM dockerd by pid, SIGKILL after a timeout; then end all it left, by pid."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"dockerd {proc.pid} ignored SIGTERM for {STOP_TIMEOUT:g} s: SIGKILL",
                      file=sys.stderr)
                proc.kill()
                proc.wait()
        # dockerd stops its managed containerd itself; after a SIGKILL it could not.
        left = wait_gone(self.containerd_pids, STOP_TIMEOUT)
        left = sorted(set(left) | set(self.leftovers()))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        still = wait_gone(left, STOP_TIMEOUT)
        if still:
            print(f"dockerd: processes {still} outlived SIGKILL", file=sys.stderr)
        if self.own_containerd is not None:
            self.own_containerd.stop()
        unmount_all(self.base)
        if mounts_under(self.base):
            print(f"dockerd: still mounted: {mounts_under(self.base)}", file=sys.stderr)


def _http(path: Path, request: str, timeout: float) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(request.encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _unchunk(body: bytes) -> bytes:
    out = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        body = rest[size + 2:]
    return b"".join(out)


def _check_closed(proxy: str) -> None:
    """The proxy must refuse connections, so that nothing proxied leaves the machine."""
    host, port = proxy.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex((host, int(port))) == 0:
            sys.exit(f"{proxy} accepts connections; it must be closed to serve as a dead proxy")


def firewall() -> str:
    """The iptables and ip6tables rules, without the comments and packet counters."""
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool) is None:
            out.append(f"# {tool} not installed")
            continue
        done = subprocess.run([tool], capture_output=True, text=True, timeout=30, check=False)
        out.append(f"# {tool} exited {done.returncode}")
        out += [re.sub(r"\[\d+:\d+\]", "", line) for line in done.stdout.splitlines()
                if not line.startswith("#")]
    return "\n".join(out)


@contextlib.contextmanager
def dockerd(insecure_registries: Sequence[str] = (), bridge: bool = False) -> Iterator[Dockerd]:
    """A started dockerd answering on its own socket; stopped and removed after."""
    before = firewall()
    daemon = Dockerd(Path(tempfile.mkdtemp(prefix="dkd-", dir="/tmp")))
    try:
        if bridge:
            daemon.bridge = f"pbd{os.getpid() % 0xFFFF:04x}"
            sandbox.ensure_bridge(daemon.bridge, netclean.free_bip())
        daemon.start(insecure_registries)
        yield daemon
    finally:
        with uninterrupted():
            try:
                daemon.stop()
            finally:
                if daemon.bridge:
                    sandbox.remove_bridge(daemon.bridge)
                shutil.rmtree(daemon.base, ignore_errors=True)
                after = firewall()
                if after != before:
                    daemon.firewall_diff = "\n".join(difflib.unified_diff(
                        before.splitlines(), after.splitlines(), "before", "after",
                        lineterm=""))
                    print("WARNING: the firewall rules changed while dockerd ran "
                          "(left as they are):\n" + daemon.firewall_diff, file=sys.stderr)
