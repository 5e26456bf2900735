"""A container's root seen from the host, and paths resolved inside it.

Where the root comes from:
- a running (or paused) container: `/proc/<pid>/root`, the root its processes see,
  with the mounts they see (/etc/hosts, later volumes), as dockerd's copy sees them;
- otherwise, and for an export (the layers alone, as dockerd exports them): the
  snapshot's mounts mounted again in a private folder (`View`); a read-only view
  stacks the writable layer on top of the image's as one more lower layer, which
  overlayfs allows while the container's own mount uses it. A view is unmounted
  however its user ends, and `forget_views` drops what a killed actor left.

No path is opened through the host's resolution: `resolve` walks a path inside the
root as if the root were `/` (symlinks, absolute or relative, and `..` never leave
it), and files are then opened from the root's descriptor one component at a time
with O_NOFOLLOW (`open_dir`), so a container that swaps a folder for a symlink
meanwhile makes a copy fail, never reach outside. Users: `pouch.actors.container.archive`
(docker cp, export) and the worker.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pouch.actors import mountpoints
from pouch.actors.mountpoints import MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT
from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.container")

MAX_LINKS = 40  # the kernel's limit on symlinks followed in one lookup
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Kind = Literal["dir", "link", "other", "missing"]


# -- resolving a path inside a root (pure: the file system is a lookup) ---------


@dataclass(frozen=True)
class Node:
    """What a root holds at a path, the last component not followed."""

    kind: Kind
    target: str = ""  # a symlink's target


Lookup = Callable[[tuple[str, ...]], Node]


@dataclass(frozen=True)
class Walked:
    """How far a path resolved: `resolved` (no symlink in it), then `rest`, the
    components from the first missing one on (empty when the whole path exists)."""

    resolved: tuple[str, ...]
    rest: tuple[str, ...]


def components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def walk(lookup: Lookup, path: str, follow_last: bool = True) -> Walked:
    """Resolve `path` inside the root, as if the root were `/`: `..` at the root stays
    there, an absolute symlink starts again from the root. The last component is
    followed only if `follow_last`. Raises NotADirectoryError when a component on the
    way is not a directory, OSError(ELOOP) past MAX_LINKS symlinks."""
    pending = components(path)
    done: list[str] = []
    links = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        here = (*done, name)
        node = lookup(here)
        if node.kind == "missing":
            return Walked(tuple(done), (name, *pending))
        if node.kind == "link" and (pending or follow_last):
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            if node.target.startswith("/"):
                done = []
            pending = components(node.target) + pending
            continue
        if pending and node.kind != "dir":
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", "/" + "/".join(here))
        done = list(here)
    return Walked(tuple(done), ())


def resolve(lookup: Lookup, path: str, follow_last: bool = True) -> tuple[str, ...]:
    """The components `path` names inside the root; its last one may be missing.
    Raises FileNotFoundError when a folder on the way is missing (and as `walk`)."""
    walked = walk(lookup, path, follow_last)
    if len(walked.rest) > 1:
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
    return walked.resolved + walked.rest


@dataclass(frozen=True)
class Target:
    """A path asked for, as dockerd reads it (archive.PreserveTrailingDotOrSeparator):
    the last component is followed only when the path ends in `/` or `/.`; archive
    entries are named after `name`."""

    absolute: str  # cleaned, from the root
    name: str
    follow_last: bool


def target(path: str) -> Target:
    absolute = "/" + posixpath.normpath("/" + path).lstrip("/")
    trailing_dot = path.endswith("/.") or path == "."
    trailing_sep = path.endswith("/")
    name = "." if trailing_dot and absolute != "/" else posixpath.basename(absolute) or "/"
    return Target(absolute, name, trailing_dot or trailing_sep)


# -- the root on the host ------------------------------------------------------


def fd_lookup(root_fd: int) -> Lookup:
    """A Lookup on the tree under `root_fd`, never following a symlink on the way."""

    def lookup(parts: tuple[str, ...]) -> Node:
        try:
            parent = open_dir(root_fd, parts[:-1])
        except (FileNotFoundError, NotADirectoryError):
            return Node("missing")
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return Node("missing")
        finally:
            os.close(parent)
        if stat.S_ISLNK(st.st_mode):
            return Node("link", read_link(root_fd, parts))
        return Node("dir" if stat.S_ISDIR(st.st_mode) else "other")

    return lookup


def open_dir(root_fd: int, parts: Iterable[str]) -> int:
    """A new descriptor on the folder `parts` under `root_fd`, each step refusing a
    symlink (ELOOP) or a non-folder (ENOTDIR)."""
    fd = os.dup(root_fd)
    try:
        for name in parts:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_link(root_fd: int, parts: tuple[str, ...]) -> str:
    parent = open_dir(root_fd, parts[:-1])
    try:
        return os.readlink(parts[-1], dir_fd=parent)
    finally:
        os.close(parent)


@contextlib.contextmanager
def opened_root(path: str) -> Iterator[int]:
    """A descriptor on a root folder (`/proc/<pid>/root`, a view's mount point)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise PouchError("conflict", f"the container's files cannot be reached: "
                                     f"{exc.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)


# -- views: a snapshot's mounts mounted again, in a private folder --------------


def overlay_options(options: list[str], readonly: bool) -> str:
    """An overlay mount's options; read-only: the writable layer becomes the top lower
    layer (no upperdir, no workdir), which needs no exclusive use of it."""
    if not readonly:
        return ",".join(options)
    keyed = dict(o.split("=", 1) for o in options if "=" in o)
    rest = [o for o in options if "=" not in o and o not in ("rw", "ro")]
    lowers = [keyed["upperdir"]] if keyed.get("upperdir") else []
    lowers += [keyed["lowerdir"]] if keyed.get("lowerdir") else []
    kept = [f"{k}={v}" for k, v in keyed.items()
            if k not in ("upperdir", "workdir", "lowerdir", "index", "uuid")]
    return ",".join([f"lowerdir={':'.join(lowers)}", *kept, *rest])


class View:
    """A snapshot's mounts, mounted at a fresh folder under `base`; close() unmounts
    and removes the folder (also on a failed mount)."""

    def __init__(self, mounts: list[dict[str, Any]], base: Path, readonly: bool) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix="view-", dir=base)
        self._mounted = False
        try:
            for mount in mounts:
                self._mount_one(mount, readonly)
            mountpoints.mount("", self.path, None, MS_PRIVATE)
        except OSError as exc:
            self.close()
            raise PouchError("internal", f"mounting the container's files: {exc}") from None

    def _mount_one(self, mount: dict[str, Any], readonly: bool) -> None:
        kind, options = mount.get("type", ""), list(mount.get("options") or [])
        if kind == "overlay":
            lower_only = readonly or not any(o.startswith("upperdir=") for o in options)
            mountpoints.mount("overlay", self.path, "overlay", MS_RDONLY if lower_only else 0,
                              overlay_options(options, readonly))
            self._mounted = True
        elif kind in ("bind", "rbind") or "bind" in options or "rbind" in options:
            mountpoints.mount(mount["source"], self.path, None, MS_BIND | MS_REC)
            self._mounted = True
            if readonly or "ro" in options:
                mountpoints.mount("", self.path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        else:
            raise OSError(errno.EINVAL, f"a {kind or 'typeless'} root file system")

    def close(self) -> None:
        if self._mounted:
            try:
                mountpoints.unmount(self.path)
                self._mounted = False
            except OSError as exc:
                log.error("%s", exc)
                return  # never remove what is still mounted
        with contextlib.suppress(OSError):
            os.rmdir(self.path)

    def __enter__(self) -> View:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def forget_views(base: Path) -> None:
    """Unmount and remove the views a killed actor left under `base`."""
    if not base.is_dir():
        return
    for entry in base.iterdir():
        if entry.name.startswith("view-"):
            try:
                mountpoints.unmount(entry)
                entry.rmdir()
                log.warning("dropped the leftover view %s", entry)
            except OSError as exc:
                log.error("dropping the leftover view %s: %s", entry, exc)


@contextlib.contextmanager
def container_root(cid: str, pid: int, mounts: Callable[[], list[dict[str, Any]]],
                   base: Path, writable: bool) -> Iterator[int]:
    """A descriptor on the container's root: its processes' root while it runs (`pid`),
    else a view of its snapshot (`mounts`), writable if asked."""
    if pid:
        with opened_root(f"/proc/{pid}/root") as fd:
            # Opened first, then checked: a pid the container's exit freed and another
            # process took since is in another cgroup (the copy fails, never strays).
            try:
                ours = cid in Path(f"/proc/{pid}/cgroup").read_text()
            except OSError:
                ours = False
            if not ours:
                raise PouchError("conflict", f"Container {cid} is not running any more")
            yield fd
        return
    with View(mounts(), base, readonly=not writable) as view, opened_root(view.path) as fd:
        yield fd
