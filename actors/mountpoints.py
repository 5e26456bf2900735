"""mount(2) and umount2(2) through libc, and the mount table: every actor that mounts
(volumes, container views and /dev/shm, network namespaces) goes through here.

Python's standard library has no mount call, and the `mount` command would fork a
process per mount for what one system call does."""

from __future__ import annotations

import ctypes
import errno
import os
import re
from pathlib import Path
from typing import Final

MS_RDONLY: Final = 1
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_REMOUNT: Final = 32
MS_BIND: Final = 4096
MS_REC: Final = 16384
MS_PRIVATE: Final = 1 << 18
MS_SHARED: Final = 1 << 20
MNT_DETACH: Final = 2
MOUNTINFO: Final = Path("/proc/self/mountinfo")
# mountinfo writes a space, tab, newline or backslash in a path as a backslash and three
# octal digits.
_OCTAL: Final = re.compile(r"\\([0-7]{3})")

_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str | Path, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    """Errors: OSError naming the target."""
    if _libc.mount(source.encode(), os.fsencode(target),
                   fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} on {target}: {os.strerror(err)}")


def unmount(target: str | Path, lazy: bool = True) -> bool:
    """Unmount `target` (`lazy`: detached now, gone once nothing uses it); False if
    nothing was mounted there. Errors: OSError (busy, when not lazy)."""
    if _libc.umount2(os.fsencode(target), MNT_DETACH if lazy else 0) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
            return False
        raise OSError(err, f"unmount {target}: {os.strerror(err)}")
    return True


def mount_points(mountinfo: Path = MOUNTINFO) -> list[Path]:
    """Every mount point of this process's mount namespace, in mount order, as
    `mountinfo` lists them (octal escapes decoded)."""
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as table:
        return [Path(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), line.split(" ", 5)[4]))
                for line in table]


def mounted_under(folder: Path) -> list[Path]:
    """The mount points at or below `folder`."""
    return [p for p in mount_points() if p == folder or folder in p.parents]
