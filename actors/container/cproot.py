"""The root `docker cp` reads and writes: the container's files with its volumes and
bind mounts at their destinations, as dockerd's cp sees them (it mounts the
container's volumes into its root for the copy, running or not); `docker export`
reads the layers alone (`fsview.View`), as dockerd's does.

- A running container: its processes' root (`/proc/<pid>/root`), which holds its
  mounts already.
- Otherwise: a view of its snapshot (`fsview.View`) with each volume and bind mount
  bound at its destination inside the view. The destination is resolved inside the
  view (a symlink in the container never leads out) and the bind is made onto the
  descriptor of the folder or file found (each component opened with O_NOFOLLOW), so a
  path swapped meanwhile fails the copy, never lands a mount outside; a missing mount
  point is made only in a writable view (as dockerd makes it in the container's layer),
  else that mount is left out. The binds go with the view's unmount (lazy: the whole
  tree).

Either way the devices of those mounts are the ones a copy descends into (see
`archive.TarWriter`): /proc, /sys, /dev and --tmpfs are not the container's files.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pouch.actors import mountpoints
from pouch.actors.container import fsview
from pouch.actors.container.spec.mounts import Planned
from pouch.actors.mountpoints import MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT
from pouch.proto.envelope import PouchError, invalid

log = logging.getLogger("pouch.container")


@dataclass(frozen=True)
class Bind:
    """A volume or bind mount of the container: host `source` at `destination`."""

    source: str
    destination: str
    readonly: bool


# The files every container has bound from its folder (dockerd's network mounts), and
# the inspect document's field naming each on the host.
NETWORK_FILES = (("/etc/resolv.conf", "ResolvConfPath"), ("/etc/hostname", "HostnamePath"),
                 ("/etc/hosts", "HostsPath"))


def binds_of(planned: Iterable[Planned], record: Mapping[str, Any],
             moved: Mapping[str, str] | None = None) -> list[Bind]:
    """The volumes and binds among a container's mounts, parents before what lies in
    them, then its network files (unless a mount of its own is there), as dockerd's
    setupMounts lists them; `moved`: destinations whose volume lies elsewhere now
    (`mounts.mount_all`)."""
    moved = moved or {}
    found = sorted((Bind(moved.get(m.destination, m.source), m.destination, not m.rw)
                    for m in planned if m.type in ("volume", "bind") and m.source),
                   key=lambda b: len(fsview.components(b.destination)))
    taken = {b.destination for b in found}
    readonly = bool((record.get("HostConfig") or {}).get("ReadonlyRootfs"))
    found += [Bind(str(record[key]), dest, readonly) for dest, key in NETWORK_FILES
              if dest not in taken and record.get(key) and os.path.isfile(str(record[key]))]
    return found


@dataclass(frozen=True)
class Root:
    """A descriptor on the root, and the devices a copy from it descends into."""

    fd: int
    devices: frozenset[int]


@contextlib.contextmanager
def cp_root(cid: str, pid: int, mounts: Callable[[], list[dict[str, Any]]], base: Path,
            writable: bool, binds: list[Bind]) -> Iterator[Root]:
    """The container's root for docker cp: its processes' while it runs (`pid`), else a
    view of its snapshot (`mounts`) with `binds` in place, writable if asked. Errors:
    conflict (the container's files cannot be reached), internal (a mount failed)."""
    if pid:
        with fsview.container_root(cid, pid, mounts, base, writable) as fd:
            yield Root(fd, _devices(fd, binds))
        return
    if not writable and binds:
        with fsview.View(mounts(), base, readonly=True) as view, \
                fsview.opened_root(view.path) as fd:
            lookup = fsview.fd_lookup(fd)
            missing = [b for b in binds if _missing(lookup, b)]
        if missing:  # made in the container's layer first, as dockerd makes them
            with fsview.View(mounts(), base, readonly=False) as view, \
                    fsview.opened_root(view.path) as fd:
                lookup = fsview.fd_lookup(fd)
                for bind in missing:
                    with _mounting(bind):
                        _make_mount_point(fd, lookup, bind)
    with fsview.View(mounts(), base, readonly=not writable) as view, \
            fsview.opened_root(view.path) as fd:
        for bind in binds:
            with _mounting(bind):
                bind_at(fd, bind, readonly=not writable, create=writable)
        yield Root(fd, _devices(fd, binds))


@contextlib.contextmanager
def _mounting(bind: Bind) -> Iterator[None]:
    """An OSError of mounting `bind` as the copy's error."""
    try:
        yield
    except OSError as exc:
        raise PouchError("internal", f"mounting {bind.destination} for the copy: "
                                     f"{exc}") from None


def _missing(lookup: fsview.Lookup, bind: Bind) -> bool:
    try:
        return bool(fsview.walk(lookup, bind.destination).rest)
    except OSError:
        return False  # not a folder on the way: the bind fails and says so


def _make_mount_point(root_fd: int, lookup: fsview.Lookup, bind: Bind) -> None:
    walked = fsview.walk(lookup, bind.destination)
    if walked.rest:
        os.close(_mount_point(root_fd, walked, stat.S_ISDIR(os.stat(bind.source).st_mode)))


def _devices(root_fd: int, binds: list[Bind]) -> frozenset[int]:
    devices = {os.fstat(root_fd).st_dev}
    lookup = fsview.fd_lookup(root_fd)
    for bind in binds:
        with contextlib.suppress(OSError):
            fd = fsview.open_dir(root_fd, fsview.resolve(lookup, bind.destination))
            try:
                devices.add(os.fstat(fd).st_dev)
            finally:
                os.close(fd)
    return frozenset(devices)


def bind_at(root_fd: int, bind: Bind, readonly: bool, create: bool) -> bool:
    """Bind `bind.source` at its destination inside the root (private, read-only if
    either asks); whether it was (False: the mount point is missing and not `create`d).
    Errors: OSError (the source is gone, a symlink swapped in, a mount refused)."""
    is_dir = stat.S_ISDIR(os.stat(bind.source).st_mode)
    lookup = fsview.fd_lookup(root_fd)
    walked = fsview.walk(lookup, bind.destination)
    if walked.rest and not create:
        return False
    target = _mount_point(root_fd, walked, is_dir)
    try:
        mountpoints.mount(bind.source, f"/proc/self/fd/{target}", None, MS_BIND | MS_REC)
    finally:
        os.close(target)
    # The descriptor named what lies under the new mount: the mount itself is reached
    # by a walk again (nothing followed).
    parts = walked.resolved + walked.rest
    parent = fsview.open_dir(root_fd, parts[:-1])
    try:
        top = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        where = f"/proc/self/fd/{top}"
        mountpoints.mount("", where, None, MS_PRIVATE | MS_REC)
        if readonly or bind.readonly:
            mountpoints.mount("", where, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    finally:
        os.close(top)
    return True


def _mount_point(root_fd: int, walked: fsview.Walked, is_dir: bool) -> int:
    """An O_PATH descriptor on the folder or file to mount on, what is missing of it
    made (folders 0755, a file empty, as runc makes mount points), nothing followed."""
    if walked.rest:
        parent_parts, names = walked.resolved, list(walked.rest)
    elif walked.resolved:
        parent_parts, names = walked.resolved[:-1], [walked.resolved[-1]]
    else:
        raise OSError(errno.EBUSY, "a mount on the container's root", "/")
    parent = fsview.open_dir(root_fd, parent_parts)
    try:
        for i, name in enumerate(names):
            last = i == len(names) - 1
            if walked.rest:
                if not last or is_dir:
                    os.mkdir(name, 0o755, dir_fd=parent)
                else:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY |
                                     os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent))
            if not last:
                child = os.open(name, fsview.DIR_FLAGS, dir_fd=parent)
                os.close(parent)
                parent = child
                continue
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            kind = stat.S_IFMT(os.fstat(fd).st_mode)
            if kind != (stat.S_IFDIR if is_dir else stat.S_IFREG):
                os.close(fd)
                raise OSError(errno.ENOTDIR if is_dir else errno.EISDIR,
                              "not the kind of file its source is", name)
            return fd
        raise AssertionError("unreachable")
    finally:
        os.close(parent)


def check_writable(path: str, planned: Iterable[Planned], readonly_rootfs: bool) -> None:
    """dockerd's rule for docker cp into a container: a path in a volume or bind mount
    needs that mount writable; any other path, a writable root. Errors: invalid, in
    dockerd's words."""
    absolute = "/" + "/".join(fsview.components(posixpath.normpath("/" + path)))
    holders = [m for m in planned if m.type in ("volume", "bind")
               and (absolute == m.destination or
                    absolute.startswith(m.destination.rstrip("/") + "/"))]
    if holders:
        deepest = max(holders, key=lambda m: len(fsview.components(m.destination)))
        if not deepest.rw:
            raise invalid("mounted volume is marked read-only")
    elif readonly_rootfs:
        raise invalid("container rootfs is marked read-only")
