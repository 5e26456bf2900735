"""A shareable container's /dev/shm: a tmpfs on the host, in the container's folder.

A container's own /dev/shm is a tmpfs runc mounts inside the container's mount
namespace, where no other container can reach it (the kernel refuses to bind a
mount of another namespace). So, as dockerd's ShmPath, a container started with
`--ipc shareable` gets its tmpfs mounted on the host, at `mounts/shm` in its
folder, and bound in as its /dev/shm; a container joining its IPC namespace
binds the same folder. Mounted at each start, unmounted when the container exits
or goes (as dockerd's, what /dev/shm held does not outlive the run).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pouch.actors import mountpoints
from pouch.actors.mountpoints import MS_NODEV, MS_NOEXEC, MS_NOSUID


def path_of(folder: Path) -> Path:
    """Where the shareable /dev/shm of the container whose folder is `folder` lives."""
    return folder / "mounts" / "shm"


def mount(path: Path, size: int) -> None:
    """Mount the tmpfs at `path`, unless it is mounted already (a start after a restore).
    Errors: OSError."""
    if os.path.ismount(path):
        return
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mountpoints.mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      f"mode=1777,size={size}")


def release(path: Path) -> None:
    """Unmount the tmpfs at `path` (lazily: a container that joined may still use it)
    and remove its folder. Nothing there: nothing to do."""
    mountpoints.unmount(path)
    with contextlib.suppress(FileNotFoundError, OSError):
        path.rmdir()
        path.parent.rmdir()
