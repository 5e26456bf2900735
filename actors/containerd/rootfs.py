"""Reading a small file out of a snapshot's layers, without mounting them.

A container's ``/etc/passwd`` and ``/etc/group`` decide its user before it
runs, when its root filesystem is no more than containerd's snapshot mounts.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping, Sequence
from typing import Any

from pouch.proto.envelope import PouchError, invalid

_MAX_FILE_BYTES = 8 * 1024 * 1024
_MAX_SYMLINKS = 40  # the kernel's limit on links followed in one lookup
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


class _Miss:
    """What a layer says about a path it does not hold."""

    def __init__(self, stops_lookup: bool) -> None:
        # True when this layer hides the path in every layer below it.
        self.stops_lookup = stops_lookup


_ABSENT = _Miss(stops_lookup=False)
_HIDDEN = _Miss(stops_lookup=True)


def read_rootfs_file(mounts: Sequence[Mapping[str, Any]], path: str) -> str | None:
    """Read a small text file (``etc/passwd``) from the root filesystem that
    containerd's snapshot ``mounts`` describe, as the merged view would show it.

    Overlay layers are searched top-down (upperdir, then each lowerdir in
    order), honouring whiteouts (char device 0/0) and opaque directories.
    Symlinks are followed as inside a chroot: absolute targets and ``..``
    stay within the rootfs. Returns None when the path is absent or is not a
    regular file. Errors: internal (a mount type we cannot read without
    mounting it), invalid (the file is larger than 8 MiB).
    """
    layers = _layers(mounts)
    found = _resolve(layers, _components(path))
    if found is None:
        return None
    layer, comps, st = found
    if not stat.S_ISREG(st.st_mode):
        return None
    parent = _open_dir(layer, comps[:-1])
    if parent is None:
        return None
    try:
        try:
            fd = os.open(
                comps[-1],
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                dir_fd=parent,
            )
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return None  # it changed under us; the merged view no longer has it
            raise
    finally:
        os.close(parent)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise invalid(f"/{'/'.join(comps)} in the container is larger than 8 MiB")
    return data.decode("utf-8", errors="replace")


def _layers(mounts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Layer directories, top-most first. A later mount covers an earlier one."""
    if not mounts:
        raise PouchError("internal", "the container has no root filesystem mounts")
    layers: list[str] = []
    for m in mounts:
        kind = m.get("type")
        options = list(m.get("options") or [])
        if kind == "overlay":
            opts = dict(o.split("=", 1) for o in options if "=" in o)
            upper = [opts["upperdir"]] if opts.get("upperdir") else []
            lowers = [p for p in re.split(r"(?<!\\):", opts.get("lowerdir", "")) if p]
            layers = upper + [p.replace("\\:", ":") for p in lowers] + layers
        elif kind in ("bind", "rbind") or "bind" in options or "rbind" in options:
            layers = [m["source"], *layers]
        else:
            raise PouchError(
                "internal", f"cannot read files from a {kind} root filesystem without mounting it"
            )
    return layers


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def _resolve(layers: list[str], pending: list[str]) -> tuple[str, list[str], os.stat_result] | None:
    """Walk ``pending`` through the merged view, following symlinks chroot-style."""
    resolved: list[str] = []
    found: tuple[str, list[str], os.stat_result] | None = None
    links = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            if resolved:
                resolved.pop()
            found = None
            continue
        comps = [*resolved, name]
        hit = _lookup(layers, comps)
        if hit is None:
            return None
        layer, st = hit
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                return None
            target = _readlink(layer, comps)
            if target is None:
                return None
            if target.startswith("/"):
                resolved = []
            pending = _components(target) + pending
            found = None
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            return None
        resolved = comps
        found = (layer, comps, st)
    return found


def _lookup(layers: list[str], comps: list[str]) -> tuple[str, os.stat_result] | None:
    """The top-most entry for ``comps`` across the layers, as overlayfs finds it."""
    for layer in layers:
        probe = _probe(layer, comps)
        if isinstance(probe, _Miss):
            if probe.stops_lookup:
                return None
            continue
        return layer, probe
    return None


def _probe(layer: str, comps: list[str]) -> os.stat_result | _Miss:
    """What one layer holds at ``comps``, never following a symlink on the way."""
    try:
        fd = os.open(layer, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return _ABSENT
    opaque = False
    try:
        for i, name in enumerate(comps):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return _HIDDEN if opaque else _ABSENT
            if _is_whiteout(st):
                return _HIDDEN
            if i == len(comps) - 1:
                return st
            if not stat.S_ISDIR(st.st_mode):
                # A higher layer made this a directory; a non-directory here
                # ends overlayfs's search, like an opaque directory.
                return _HIDDEN
            try:
                child = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError:
                return _HIDDEN
            os.close(fd)
            fd = child
            opaque = opaque or _is_opaque(fd)
        return _ABSENT  # an empty path names the root, a directory we never read
    finally:
        os.close(fd)


def _open_dir(layer: str, comps: list[str]) -> int | None:
    """An fd on ``layer/comps``, each step refusing symlinks so we stay in the layer."""
    try:
        fd = os.open(layer, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    for name in comps:
        try:
            child = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = child
    return fd


def _readlink(layer: str, comps: list[str]) -> str | None:
    parent = _open_dir(layer, comps[:-1])
    if parent is None:
        return None
    try:
        return os.readlink(comps[-1], dir_fd=parent)
    except OSError:
        return None
    finally:
        os.close(parent)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(fd: int) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(fd, name) == b"y":
                return True
        except OSError:
            continue
    return False
