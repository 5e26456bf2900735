"""A real containerd for tests: its own root, state and socket, and nothing left behind.

    with run_containerd(Path("/tmp/pc-x")) as ctrd:
        client = ctrd.client()

On exit every task it ran is killed, its shims and the daemon are ended by
pid, whatever is still mounted under its dirs is unmounted, and the dirs are
deleted.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pouch.actors import mountpoints
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.config import render_config, write_config
from pouch.proto.envelope import PouchError
from pouch.tests.support.procs import alive, cmdline, pids
from pouch.tests.support.tools import require, require_file

CONTAINERD: Final = Path("/usr/bin/containerd")
SHIM: Final = "containerd-shim-runc-v2"
RUNC: Final = Path("/usr/sbin/runc")
# The runc shim keeps runc's state here whatever containerd's state dir is.
RUNC_ROOT: Final = Path("/run/containerd/runc")
TASKS_DIR: Final = "io.containerd.runtime.v2.task"
# sun_path holds 108 bytes with its NUL; containerd adds ".ttrpc" to the address.
SOCKET_PATH_MAX: Final = 100
START_TIMEOUT: Final = 10.0
STOP_GRACE: Final = 5.0


def require_containerd() -> None:
    """Fail the calling test where containerd, its runc shim or runc is not installed."""
    require_file(CONTAINERD, "containerd")
    require(SHIM, "containerd")
    # containerd is given a PATH with /usr/sbin, where Debian puts runc; ours may lack it.
    if shutil.which("runc") is None:
        require_file(RUNC, "runc")


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait for the processes to end; those still alive at `timeout`."""
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if alive(pid)]
        if pids:
            time.sleep(0.05)
    return pids


def shims_of(address: Path) -> list[int]:
    """Pids of the runc shims that serve the containerd listening on `address`."""
    found = []
    for pid in pids():
        argv = cmdline(pid)
        if not argv or Path(argv[0]).name != SHIM:
            continue
        for flag, value in itertools.pairwise(argv):
            if flag in ("-address", "--address") and value == str(address):
                found.append(pid)
                break
    return found


def mounts_under(base: Path) -> list[Path]:
    """Mount points at or below `base`, deepest first."""
    return sorted(mountpoints.mounted_under(base.resolve()),
                  key=lambda point: len(point.parts), reverse=True)


def unmount_all(base: Path) -> None:
    for _ in range(3):  # a mount may hide another on the same point
        points = mounts_under(base)
        if not points:
            return
        for point in points:
            done = subprocess.run(["umount", str(point)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


@dataclass
class ContainerdHandle:
    base: Path
    address: Path
    log: Path
    process: subprocess.Popen[bytes]
    _clients: list[Containerd] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def root(self) -> Path:
        return self.base / "root"

    def client(self, namespace: str = "pouch") -> Containerd:
        """A client of this containerd, closed when the containerd is stopped."""
        client = Containerd(self.address, namespace)
        self._clients.append(client)
        return client

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ContainerdProcess:
    """Start, restart and stop one containerd whose files all live under `base`."""

    def __init__(self, base: Path) -> None:
        self.base = base.resolve()
        self._socket_dir: Path | None = None
        address = self.base / "containerd.sock"
        if len(str(address)) + len(".ttrpc") > SOCKET_PATH_MAX:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp"))
            address = self._socket_dir / "c.sock"
        self.address = address
        self.config = self.base / "config.toml"
        self.handle: ContainerdHandle | None = None

    def start(self) -> ContainerdHandle:
        require_containerd()
        self.base.mkdir(parents=True, exist_ok=True)
        text = render_config(
            root=self.base / "root", state=self.base / "state", address=self.address
        )
        write_config(self.config, text)
        log = self.base / "containerd.log"
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [str(CONTAINERD), "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        previous = self.handle
        self.handle = ContainerdHandle(self.base, self.address, log, process)
        if previous is not None:
            self.handle._clients.extend(previous._clients)
        self._wait_answering(self.handle)
        return self.handle

    def _wait_answering(self, handle: ContainerdHandle) -> None:
        probe = Containerd(handle.address, "pouch")
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if handle.process.poll() is not None:
                    raise RuntimeError(
                        f"containerd exited with {handle.process.returncode}:\n{handle.log_tail()}"
                    )
                try:
                    probe.version(timeout=0.5)
                    return
                except PouchError:
                    if time.monotonic() >= deadline:
                        self.stop()
                        raise RuntimeError(
                            f"containerd did not answer within {START_TIMEOUT:g}s:\n"
                            f"{handle.log_tail()}"
                        ) from None
                time.sleep(0.05)
        finally:
            probe.close()

    def restart(self) -> ContainerdHandle:
        """Stop the daemon only (its shims and tasks live on, as in production) and start it."""
        if self.handle is not None:
            self._stop_daemon(self.handle)
        return self.start()

    def stop(self) -> None:
        """End everything this containerd started, unmount, and delete `base`."""
        handle = self.handle
        try:
            if handle is not None:
                if handle.process.poll() is None:
                    self._end_tasks_gracefully(handle)
                self._force_end_tasks()
                self._end_shims()
                self._stop_daemon(handle)
                for client in handle._clients:
                    client.close()
        finally:
            self.handle = None
            unmount_all(self.base)
            shutil.rmtree(self.base, ignore_errors=True)
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _task_dirs(self) -> list[tuple[str, str, Path]]:
        tasks = self.base / "state" / TASKS_DIR
        if not tasks.is_dir():
            return []
        return [
            (namespace.name, bundle.name, bundle)
            for namespace in tasks.iterdir()
            if namespace.is_dir()
            for bundle in namespace.iterdir()
            if bundle.is_dir()
        ]

    def _end_tasks_gracefully(self, handle: ContainerdHandle) -> None:
        for namespace in {namespace for namespace, _, _ in self._task_dirs()}:
            with Containerd(handle.address, namespace) as client:
                tasks = {}
                with contextlib.suppress(PouchError):
                    tasks = client.tasks.list(timeout=5)
                for container_id, task in tasks.items():
                    with contextlib.suppress(PouchError):
                        if task.status != "STOPPED":
                            client.tasks.kill(container_id, signal.SIGKILL, all=True, timeout=5)
                            client.tasks.wait(container_id, timeout=10)
                        client.tasks.delete(container_id, timeout=10)

    def _force_end_tasks(self) -> None:
        # Left over when the graceful way failed: runc itself kills and forgets them.
        for namespace, container_id, _ in self._task_dirs():
            subprocess.run(
                ["runc", "--root", str(RUNC_ROOT / namespace), "delete", "--force", container_id],
                capture_output=True,
                check=False,
                timeout=30,
            )

    def _end_shims(self) -> None:
        shims = shims_of(self.address)
        for pid in shims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(shims, STOP_GRACE)
        # A killed shim leaves its socket behind; the bundle says where it is.
        for _, _, bundle in self._task_dirs():
            with contextlib.suppress(OSError):
                socket = (bundle / "address").read_text().strip().removeprefix("unix://")
                if socket.startswith("/run/containerd/s/"):
                    Path(socket).unlink(missing_ok=True)

    def _stop_daemon(self, handle: ContainerdHandle) -> None:
        process = handle.process
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_GRACE)


@contextlib.contextmanager
def run_containerd(base: Path) -> Iterator[ContainerdHandle]:
    """A containerd under `base`, answering when yielded; everything is gone after."""
    process = ContainerdProcess(base)
    try:
        yield process.start()
    finally:
        process.stop()
