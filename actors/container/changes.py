"""docker diff: a container's writable layer against its image's layers."""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Iterable
from typing import Any

from pouch.proto.envelope import PouchError

MODIFIED, ADDED, DELETED = 0, 1, 2
# dockerd's init layer gives every container an empty /.dockerenv, which programs take
# to mean "in a container": pouch writes it into a new container's writable layer and,
# like the mount points, does not count it as the container's own change.
DOCKERENV = "/.dockerenv"
_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")


def _keyed(mount: dict[str, Any]) -> dict[str, str]:
    """A mount's `key=value` options (an overlay's lowerdir, upperdir, workdir)."""
    return dict(o.split("=", 1) for o in mount.get("options") or [] if "=" in o)


def layers_of(mounts: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The writable layer and the image's layers (top first) of a snapshot's mounts."""
    for mount in mounts:
        options = list(mount.get("options") or [])
        if mount.get("type") == "overlay":
            keyed = _keyed(mount)
            lowers = [p for p in keyed.get("lowerdir", "").split(":") if p]
            return keyed.get("upperdir", ""), lowers
        if mount.get("type") in ("bind", "rbind") or "bind" in options or "rbind" in options:
            return str(mount["source"]), []  # a snapshot with no parent: all of it is new
    raise PouchError("internal", "the container's snapshot is neither overlay nor bind")


def overlay_dirs(mounts: list[dict[str, Any]]) -> dict[str, str]:
    """An overlay snapshot's folders as dockerd's overlay2 shows them in inspect's
    GraphDriver.Data (LowerDir, UpperDir, WorkDir); none for another kind."""
    for mount in mounts:
        if mount.get("type") == "overlay":
            keyed = _keyed(mount)
            return {"LowerDir": keyed.get("lowerdir", ""), "UpperDir": keyed.get("upperdir", ""),
                    "WorkDir": keyed.get("workdir", "")}
    return {}


def changes(upper: str, lowers: list[str], init_paths: frozenset[str] = frozenset()
            ) -> list[dict[str, Any]]:
    """The writable layer's changes against the image's layers, as dockerd's overlay
    driver finds them: [{Path, Kind}], Kind 0 modified, 1 added, 2 deleted, in the
    order of a walk. A whiteout (char device 0/0) is a deletion; an opaque folder
    hides the image's entries beneath it (each a deletion). `init_paths`: what the
    runtime made for the container's mounts (/etc/hosts and its folders), not the
    container's own doing (dockerd keeps them in an init layer below)."""
    found: list[dict[str, Any]] = []
    changed_dirs: set[str] = set()

    def record(path: str, kind: int) -> None:
        parent = posixpath.dirname(path)
        if kind in (ADDED, DELETED) and parent != "/" and parent not in changed_dirs:
            found.append({"Path": parent, "Kind": MODIFIED})
            changed_dirs.add(parent)
        found.append({"Path": path, "Kind": kind})

    def visit(host: str, path: str) -> None:
        try:
            names = sorted(os.listdir(host))
        except OSError:
            return
        for name in names:
            here = posixpath.join(path, name)
            full = os.path.join(host, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                record(here, DELETED)
                continue
            below = _lower_stat(lowers, here)
            opaque = is_dir and _is_opaque(full)
            made_for_mounts = here in init_paths and (is_dir or (
                stat.S_ISREG(st.st_mode) and st.st_size == 0)) and below is None
            if below is None and not made_for_mounts:
                record(here, ADDED)
                if is_dir:
                    changed_dirs.add(here)
            elif below is not None and not made_for_mounts and not (
                    is_dir and stat.S_ISDIR(below.st_mode) and not opaque
                    and (here in init_paths or _same_dir(st, below))):
                record(here, MODIFIED)
                if is_dir:
                    changed_dirs.add(here)
            if opaque and below is not None:
                present = set(names_in(full))
                for hidden in sorted(_lower_names(lowers, here) - present):
                    record(posixpath.join(here, hidden), DELETED)
            if is_dir:
                visit(full, here)

    def names_in(host: str) -> list[str]:
        try:
            return os.listdir(host)
        except OSError:
            return []

    visit(upper, "/")
    return found


def _same_dir(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size == b.st_size and a.st_mode == b.st_mode
            and int(a.st_mtime) == int(b.st_mtime))


def _lower_stat(lowers: list[str], path: str) -> os.stat_result | None:
    for layer in lowers:
        try:
            return os.lstat(os.path.join(layer, path.lstrip("/")))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return None


def _lower_names(lowers: list[str], path: str) -> set[str]:
    names: set[str] = set()
    for layer in lowers:
        with contextlib.suppress(OSError):
            names.update(os.listdir(os.path.join(layer, path.lstrip("/"))))
    return names


def _is_opaque(path: str) -> bool:
    for name in _OPAQUE:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False


def mark_new_layer(mounts: list[dict[str, Any]]) -> None:
    """Write DOCKERENV into a new container's writable layer, unless its image has one
    (or the layer is of a kind this cannot tell: the marker is not worth a failed create)."""
    try:
        upper, lowers = layers_of(mounts)
    except PouchError:
        return
    if _lower_stat(lowers, DOCKERENV) is not None:
        return
    with contextlib.suppress(OSError):
        fd = os.open(os.path.join(upper, DOCKERENV.lstrip("/")),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, 0o755)  # dockerd's mode, whatever the umask
        finally:
            os.close(fd)


def init_paths(spec_mounts: Iterable[dict[str, Any]]) -> frozenset[str]:
    """The container's mount points and the folders above them, and DOCKERENV (see
    `changes`)."""
    paths = {DOCKERENV}
    for mount in spec_mounts:
        path = posixpath.normpath("/" + str(mount.get("destination", "")).lstrip("/"))
        while path != "/":
            paths.add(path)
            path = posixpath.dirname(path)
    return frozenset(paths)


def drop_mount_points(upper: str, lowers: list[str], init_paths: frozenset[str]) -> None:
    """Remove from a stopped container's writable layer what the runtime made only as
    mount points (`init_paths` that the image's layers lack: an empty file, an empty
    folder), so that a commit's layer holds the container's own changes, as dockerd's
    (which keeps them in an init layer below). Deepest first; anything else is kept."""
    for path in sorted(init_paths, key=lambda p: p.count("/"), reverse=True):
        if _lower_stat(lowers, path) is not None:
            continue
        host = os.path.join(upper, path.lstrip("/"))
        try:
            st = os.lstat(host)
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(host)
            elif stat.S_ISDIR(st.st_mode) and not os.listdir(host):
                os.rmdir(host)
        except OSError:
            continue
