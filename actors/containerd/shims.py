"""containerd's runc shims as processes: the ones serving one containerd and namespace,
and the last resort for one that serves no task.

containerd loses track of a shim when the call that starts it is cut: a caller that
dies while `containerd-shim-runc-v2 start` runs cancels that command after it has
forked the shim's daemon, so the daemon runs on with no task and nobody who will ever
ask it to shut down. containerd's API cannot reach such a shim; only its process (its
command line names containerd's address, the namespace and the task's ID) and its
socket are left to find it by. containerd's removal of the task's bundle folder (the
shim's working directory) may fail while the shim still writes there ("directory not
empty"); left, it fails every later create of that container ("file exists"), so the
bundle goes with the shim.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import select
import shutil
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pouch.actors import mountpoints

log = logging.getLogger("pouch.containerd")

PROC: Final = Path("/proc")
# Where a shim puts its socket, whatever containerd's own state dir is.
SOCKET_ROOT: Final = Path("/run/containerd/s")
# The folder of task bundles (one per task, its rootfs mounted there) in containerd's state.
TASK_BUNDLES: Final = "io.containerd.runtime.v2.task"
TERM_GRACE: Final = 2.0
KILL_WAIT: Final = 2.0
_ACTIONS: Final = ("start", "delete")  # a shim run as a command, not as the daemon
# A container labelled (and annotated, in its spec) with another one's ID shares that
# one's shim, as containerd's CRI groups a pod's containers: the runc shim serves every
# container of the group from the process its first one started, whose ID it names.
GROUP_LABEL: Final = "io.containerd.runc.v2.group"


@dataclass(frozen=True)
class Shim:
    """A shim's daemon process; `started` (clock ticks since boot) tells it from a later
    process that reuses its pid."""

    pid: int
    id: str
    started: int


def _argv(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _started(pid: int) -> int | None:
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]) if fields[0] not in ("Z", "X") else None  # field 22: starttime


def _shim_of(pid: int, address: str, namespace: str) -> Shim | None:
    argv = _argv(pid)
    if not argv or not Path(argv[0]).name.startswith("containerd-shim") \
            or argv[-1] in _ACTIONS:
        return None
    flags = {flag.lstrip("-"): value for flag, value in itertools.pairwise(argv[1:])
             if flag.startswith("-")}
    if flags.get("address") != address or flags.get("namespace") != namespace \
            or not flags.get("id"):
        return None
    started = _started(pid)
    return None if started is None else Shim(pid, flags["id"], started)


def find(address: str, namespace: str, ids: Iterable[str] | None = None) -> list[Shim]:
    """The shim daemons serving the containerd at `address` in `namespace` (only those
    of `ids`, if given)."""
    wanted = None if ids is None else set(ids)
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        shim = _shim_of(int(entry.name), address, namespace)
        if shim is not None and (wanted is None or shim.id in wanted):
            found.append(shim)
    return found


def socket_path(address: str, namespace: str, task_id: str) -> Path:
    """The shim's socket, named as containerd's shim.SocketAddress names it."""
    digest = hashlib.sha256(os.path.join(address, namespace, task_id).encode()).hexdigest()
    return SOCKET_ROOT / digest


def end(shim: Shim, address: str, namespace: str) -> bool:
    """End a shim that serves no task: SIGTERM (it shuts down as containerd would have
    asked it to), SIGKILL after a grace; then its socket. False if it was gone already.
    Only for a shim whose task containerd does not have: the API ends the others."""
    try:
        pidfd = os.pidfd_open(shim.pid)
    except ProcessLookupError:
        return False
    try:
        # Checked after the pidfd holds the process: the pid cannot be reused under us.
        if _shim_of(shim.pid, address, namespace) != shim:
            return False
        bundle = _bundle(shim)
        for signum, wait in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, KILL_WAIT)):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signum)
            if select.select([pidfd], [], [], wait)[0]:  # readable: it has exited
                break
        else:
            log.error("shim %d of task %s did not end after SIGKILL", shim.pid, shim.id)
            return True
    finally:
        os.close(pidfd)
    socket_path(address, namespace, shim.id).unlink(missing_ok=True)
    if bundle is not None:
        remove_bundle(bundle)
    return True


def _bundle(shim: Shim) -> Path | None:
    """The task's bundle folder: the shim's working directory (None if gone)."""
    try:
        cwd = Path(os.readlink(PROC / str(shim.pid) / "cwd"))
    except OSError:
        return None
    return cwd if cwd.name == shim.id and cwd.is_dir() else None


def remove_bundle(bundle: Path) -> None:
    """Remove the bundle of a task containerd does not have: its rootfs unmounted first,
    and never through a mount (that would delete the container's files)."""
    rootfs = bundle / "rootfs"
    try:
        mountpoints.unmount(rootfs, lazy=False)
    except OSError as exc:
        log.error("leaving the bundle %s: %s", bundle, exc)
        return
    if mountpoints.mounted_under(bundle):
        log.error("leaving the bundle %s: something is mounted in it", bundle)
        return
    shutil.rmtree(bundle, ignore_errors=True)
    log.warning("removed the bundle %s its cut create left", bundle)
