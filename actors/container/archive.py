"""docker cp and docker export: a path's stat, archives out of a container's root
and into it, and the whole tree as a stream.

Every entry is opened from its parent's descriptor with O_NOFOLLOW, and every path
asked for or unpacked into is resolved inside the root (`pouch.actors.container.fsview`):
a symlink in the container, even one swapped in during the copy, never leads out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from pouch.actors.container.fsview import (
    DIR_FLAGS,
    MAX_LINKS,
    Lookup,
    Target,
    View,
    components,
    fd_lookup,
    open_dir,
    opened_root,
    resolve,
    target,
    walk,
)
from pouch.actors.timefmt import rfc3339_nano
from pouch.proto.envelope import PouchError, invalid, not_found
from pouch.proto.stream import StreamSession

log = logging.getLogger("pouch.container")

READ_SIZE = 1 << 20

# -- stat (HEAD /archive) --------------------------------------------------------

# Go's os.FileMode type bits, as dockerd's path stat carries them.
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE = 1 << 31, 1 << 27, 1 << 26, 1 << 25
_GO_SOCKET, _GO_SETUID, _GO_SETGID = 1 << 24, 1 << 23, 1 << 22
_GO_CHAR, _GO_STICKY = 1 << 21, 1 << 20


def go_file_mode(mode: int) -> int:
    """A stat mode as Go's os.FileMode: permission bits plus Go's own type bits."""
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFIFO: _GO_PIPE,
            stat.S_IFSOCK: _GO_SOCKET, stat.S_IFBLK: _GO_DEVICE,
            stat.S_IFCHR: _GO_DEVICE | _GO_CHAR}.get(kind, 0)
    if mode & stat.S_ISUID:
        out |= _GO_SETUID
    if mode & stat.S_ISGID:
        out |= _GO_SETGID
    if mode & stat.S_ISVTX:
        out |= _GO_STICKY
    return out


@dataclass(frozen=True)
class Found:
    """A path asked for, found inside the root."""

    parts: tuple[str, ...]
    target: Target
    st: os.stat_result


def find(root_fd: int, path: str, container: str) -> Found:
    """Errors: not_found (as dockerd words it), invalid (a folder on the way is not one)."""
    asked = target(path)
    missing = not_found(f"Could not find the file {path} in container {container}")
    try:
        parts = resolve(fd_lookup(root_fd), asked.absolute, asked.follow_last)
        st = _lstat(root_fd, parts)
    except (FileNotFoundError, NotADirectoryError):
        raise missing from None
    except OSError as exc:
        raise invalid(f"{path}: {exc.strerror}") from None
    if asked.follow_last and not stat.S_ISDIR(st.st_mode):
        raise missing  # "f/" of a file is not there, as the kernel's ENOTDIR says
    return Found(parts, asked, st)


def _lstat(root_fd: int, parts: tuple[str, ...]) -> os.stat_result:
    if not parts:
        return os.fstat(root_fd)
    parent = open_dir(root_fd, parts[:-1])
    try:
        return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def path_stat(root_fd: int, found: Found) -> dict[str, Any]:
    """Docker's ContainerPathStat: a symlink's linkTarget is where it leads, inside."""
    link = ""
    if stat.S_ISLNK(found.st.st_mode):
        with contextlib.suppress(OSError):
            link = "/" + "/".join(resolve(fd_lookup(root_fd), found.target.absolute))
    return {"name": found.target.name, "size": found.st.st_size,
            "mode": go_file_mode(found.st.st_mode),
            "mtime": rfc3339_nano(found.st.st_mtime_ns), "linkTarget": link}


# -- archives out (GET /archive, export) -----------------------------------------


class _Exactly:
    """A file's content as its tar header promised it: `size` bytes, zeros past an end
    that came early (the file shrank while it was copied)."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd, self._left = fd, size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = os.read(self._fd, n) if n else b""
        data += b"\0" * (n - len(data))
        self._left -= len(data)
        return data


class TarWriter:
    """Writes a tree under a root descriptor as a tar stream, opening every entry from
    its parent's descriptor (never following a symlink)."""

    def __init__(self, out: IO[bytes], one_file_system: bool = False,
                 devices: Iterable[int] = ()) -> None:
        self._tar = tarfile.open(  # noqa: SIM115 - closed by close()
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        self._links: dict[tuple[int, int], str] = {}
        self._one_fs = one_file_system
        self._device = -1
        self._devices = frozenset(devices)  # descended into too (volumes, binds)

    def add(self, root_fd: int, parts: tuple[str, ...], arcname: str) -> None:
        """The entry at `parts` (the root itself when empty) and all below it."""
        self._device = os.fstat(root_fd).st_dev
        if not parts:
            self._add_dir_entries(root_fd, arcname, os.fstat(root_fd))
            return
        parent = open_dir(root_fd, parts[:-1])
        try:
            self._add(parent, parts[-1], arcname)
        finally:
            os.close(parent)

    def close(self) -> None:
        self._tar.close()

    def _add_dir_entries(self, fd: int, arcname: str, st: os.stat_result) -> None:
        if arcname:
            self._tar.addfile(self._info(arcname, st, tarfile.DIRTYPE))
        if self._one_fs and st.st_dev != self._device and st.st_dev not in self._devices:
            return  # a mount inside (/proc, /dev): its folder, not what it holds
        prefix = f"{arcname.rstrip('/')}/" if arcname else ""
        for name in sorted(os.listdir(fd)):
            self._add(fd, name, prefix + name)

    def _add(self, dir_fd: int, name: str, arcname: str) -> None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # gone while we walked (a running container)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            try:
                self._add_dir_entries(fd, arcname, os.fstat(fd))
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            self._add_file(dir_fd, name, arcname, st)
        elif stat.S_ISLNK(mode):
            info = self._info(arcname, st, tarfile.SYMTYPE)
            info.linkname = os.readlink(name, dir_fd=dir_fd)
            self._tar.addfile(info)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info = self._info(arcname, st, tarfile.CHRTYPE if stat.S_ISCHR(mode)
                              else tarfile.BLKTYPE)
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._tar.addfile(info)
        elif stat.S_ISFIFO(mode):
            self._tar.addfile(self._info(arcname, st, tarfile.FIFOTYPE))
        # sockets: a tar cannot hold them (dockerd skips them too)

    def _add_file(self, dir_fd: int, name: str, arcname: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self._links:
            info = self._info(arcname, st, tarfile.LNKTYPE)
            info.linkname = self._links[key]
            self._tar.addfile(info)
            return
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return  # swapped meanwhile
            info = self._info(arcname, st, tarfile.REGTYPE)
            info.size = st.st_size
            with contextlib.suppress(OSError):  # file capabilities travel, as dockerd's
                info.pax_headers = {"SCHILY.xattr.security.capability": os.getxattr(
                    fd, "security.capability").decode("latin-1")}
            self._tar.addfile(info, _Exactly(fd, st.st_size))
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            self._links[key] = arcname

    @staticmethod
    def _info(arcname: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arcname)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime
        info.uname = info.gname = ""
        return info


def write(root_fd: int, found: Found, out: IO[bytes], devices: Iterable[int] = ()) -> None:
    """The tar of what `found` names (docker cp out of a container): its entries are
    named after the path asked for, a symlink at its end kept as one."""
    # A running container's root holds its mounts: /proc, /sys and /dev are not its
    # files (dockerd, reading the layers, never sees what they hold); its volumes and
    # binds (`devices`: see pouch.actors.container.cproot) are.
    writer = TarWriter(out, one_file_system=True, devices=devices)
    try:
        writer.add(root_fd, found.parts, found.target.name)
    except OSError as exc:
        raise PouchError("internal", f"Error archiving {found.target.absolute}: {exc}") from None
    finally:
        writer.close()


def export(root_fd: int, out: IO[bytes]) -> None:
    """The tar of the whole tree (docker export): entries named from the root, no `./`."""
    writer = TarWriter(out, one_file_system=True)
    try:
        writer.add(root_fd, (), "")
    finally:
        writer.close()


# -- archives in (PUT /archive) --------------------------------------------------


@dataclass(frozen=True)
class ExtractOptions:
    no_overwrite_dir_non_dir: bool = False
    owner: tuple[int, int] | None = None  # every entry's owner (copyUIDGID), else the tar's


def extract(root_fd: int, path: str, archive_file: IO[bytes], options: ExtractOptions,
            container: str) -> None:
    """Unpack a tar into the folder `path` of the root (docker cp into a container). The
    destination, its last symlink followed, must be a folder; each member's parent is
    resolved inside the root. Errors: not_found, invalid (a member that climbs out with
    `..`, a folder replaced by a file under no_overwrite_dir_non_dir, a broken tar)."""
    lookup = fd_lookup(root_fd)
    try:
        dest = resolve(lookup, target(path).absolute, follow_last=True)
        st = _lstat(root_fd, dest)
    except (FileNotFoundError, NotADirectoryError):
        raise not_found(f"Could not find the file {path} in container {container}") from None
    except OSError as exc:
        raise invalid(f"{path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise invalid("extraction point is not a directory")
    dest_path = "/" + "/".join(dest)
    dir_times: list[tuple[tuple[str, ...], float]] = []
    try:
        with tarfile.open(fileobj=archive_file, mode="r|*") as tar:
            for member in tar:
                _extract_member(root_fd, lookup, dest_path, tar, member, options, dir_times)
    except tarfile.TarError as exc:
        raise invalid(f"Error processing tar file: {exc}") from None
    except OSError as exc:
        raise invalid(f"Error extracting the archive: {exc.strerror or exc}") from None
    for parts, mtime in reversed(dir_times):  # a folder's time, once its entries are in
        with contextlib.suppress(OSError):
            _set_times(root_fd, parts, mtime, follow=True)


def member_path(name: str) -> str:
    """A member's name, relative to the destination. Errors: invalid (it climbs out)."""
    clean = posixpath.normpath("/" + name).lstrip("/") or "."
    relative = posixpath.normpath(name.lstrip("/") or ".")
    if relative == ".." or relative.startswith("../"):
        raise invalid(f"{name!r} is outside of the destination: refusing to extract it")
    return clean


def _extract_member(root_fd: int, lookup: Lookup, dest: str, tar: tarfile.TarFile,
                    member: tarfile.TarInfo, options: ExtractOptions,
                    dir_times: list[tuple[tuple[str, ...], float]]) -> None:
    rel = member_path(member.name)
    if rel == ".":
        return  # the destination itself: dockerd leaves it as it is
    parent_path, name = posixpath.split(posixpath.join(dest, rel))
    parent = _make_dirs(root_fd, lookup, parent_path)
    pfd = open_dir(root_fd, parent)
    try:
        existing = _stat_or_none(pfd, name)
        if existing is not None:
            is_dir = stat.S_ISDIR(existing.st_mode)
            if options.no_overwrite_dir_non_dir and is_dir and not member.isdir():
                raise invalid(f"cannot overwrite directory {'/'.join(('', *parent, name))!r} "
                              f"with non-directory {member.name!r}")
            if options.no_overwrite_dir_non_dir and not is_dir and member.isdir():
                raise invalid(f"cannot overwrite non-directory "
                              f"{'/'.join(('', *parent, name))!r} with directory "
                              f"{member.name!r}")
            if not (is_dir and member.isdir()):
                _remove(pfd, name, is_dir)
        uid, gid = options.owner or (member.uid, member.gid)
        _create(root_fd, lookup, dest, pfd, name, tar, member, uid, gid)
    finally:
        os.close(pfd)
    if member.isdir():
        dir_times.append(((*parent, name), member.mtime))
    elif not member.islnk():
        _set_times(root_fd, (*parent, name), member.mtime, follow=False)


def _create(root_fd: int, lookup: Lookup, dest: str, pfd: int, name: str,
            tar: tarfile.TarFile, member: tarfile.TarInfo, uid: int, gid: int) -> None:
    mode = member.mode & 0o7777
    if member.isdir():
        if _stat_or_none(pfd, name) is None:
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    elif member.isreg():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            source = tar.extractfile(member)
            while source is not None and (chunk := source.read(READ_SIZE)):
                os.write(fd, chunk)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # after chown, which clears setuid bits
            caps = member.pax_headers.get("SCHILY.xattr.security.capability")
            if caps:
                with contextlib.suppress(OSError):
                    os.setxattr(fd, "security.capability", caps.encode("latin-1"))
        finally:
            os.close(fd)
    elif member.issym():
        os.symlink(member.linkname, name, dir_fd=pfd)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
    elif member.islnk():
        # The link's source, named from the destination, must be inside it too.
        source_rel = member_path(member.linkname)
        src_parent_path, src_name = posixpath.split(posixpath.join(dest, source_rel))
        src_parent = resolve(lookup, src_parent_path, follow_last=True)
        sfd = open_dir(root_fd, src_parent)
        try:
            os.link(src_name, name, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(sfd)
    elif member.ischr() or member.isblk() or member.isfifo():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() \
            else stat.S_IFIFO
        os.mknod(name, kind | mode, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(name, mode, dir_fd=pfd)
    # other kinds (GNU sparse headers aside, which tarfile reads as files): skipped


def _make_dirs(root_fd: int, lookup: Lookup, path: str) -> tuple[str, ...]:
    """The folder `path` inside the root, made (0755, as dockerd) where missing."""
    for _ in range(len(components(path)) + MAX_LINKS + 1):
        walked = walk(lookup, path, follow_last=True)
        if not walked.rest:
            return walked.resolved
        pfd = open_dir(root_fd, walked.resolved)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(walked.rest[0], 0o755, dir_fd=pfd)
        finally:
            os.close(pfd)
    raise invalid(f"cannot make the folder {path}")


def _stat_or_none(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(dir_fd: int, name: str, is_dir: bool) -> None:
    if not is_dir:
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            st = os.stat(child, dir_fd=fd, follow_symlinks=False)
            _remove(fd, child, stat.S_ISDIR(st.st_mode))
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _set_times(root_fd: int, parts: tuple[str, ...], mtime: float, follow: bool) -> None:
    parent = open_dir(root_fd, parts[:-1])
    try:
        if follow:  # a folder: through its own descriptor, never a symlink
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
            try:
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
        else:
            os.utime(parts[-1], (mtime, mtime), dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


# -- the ends of a copy: spool files and a handed-over connection ----------------


@contextlib.contextmanager
def open_spool(path: str, write: bool = False) -> Iterator[IO[bytes]]:
    """A spool file the gateway made (checked by the actor to be in its folder), opened
    without following a symlink."""
    flags = (os.O_WRONLY | os.O_TRUNC) if write else os.O_RDONLY
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "wb" if write else "rb") as file:
        yield file


class ClientGone(Exception):
    """The client of a stream went away."""


class SessionFile:
    """A handed-over connection as a file that a tar is written to."""

    def __init__(self, session: StreamSession) -> None:
        self._session = session

    def write(self, data: bytes) -> int:
        if data and not self._session.write("stdout", bytes(data)):
            raise ClientGone()
        return len(data)

    def flush(self) -> None:
        pass


def export_to(view: View, session: StreamSession) -> None:
    """On a thread of its own: the view's whole tree to the client, then unmounted
    (also when the client leaves halfway or reading fails)."""
    try:
        with view, opened_root(view.path) as root:
            export(root, SessionFile(session))  # type: ignore[arg-type]
    except ClientGone:
        return
    except Exception as exc:
        # Cut without the last chunk: the client sees a broken download, not a short one.
        log.warning("export stopped: %s", exc)
        session.close()
        return
    session.end()

