"""The build context: unpacking the tar a client sends into a folder, safely and as it
streams; finding COPY's and ADD's sources in it; and the checksum of those sources the
build cache keys on.

Unpacking refuses, naming the member, what could reach out of the folder: absolute
names, `..`, symlinks whose target climbs out of the context, members written through a
symlink, hard links to anything but an earlier member, and device nodes. Modes (setuid
included), mtimes, symlinks and hard links are kept; owners too when running as root
(the CLI and docker-py send uid and gid 0). `dest` should be a fresh folder the caller
made in a place only root can read (the setuid bits are kept), and deletes after a
`ContextError`: what was unpacked until then stays.

.dockerignore: clients apply it before sending (see `ignore`), so `unpack_context`
unpacks every member unless given rules to skip by; the build reads the Dockerfile,
then removes what `IgnoreRules.removed_by_daemon` names, as dockerd does.

A plain context (regular files, folders and fifos, each named once) need not be
unpacked at all: `spool_context` copies the tar into one file as it reads it and
indexes it on the way (`ContextIndex`), and its sources resolve and sum from the index
exactly as from the unpacked folder. Unpacking costs a file creation per member, which
dominates a build whose steps are all cached.

Sources are found as dockerd finds them: a source names a path inside the context (a
leading "/" or "./" is dropped); `..` that leads out of it is refused; symlinks are
followed inside the context as if it were the root (an absolute target or one with too
many `..` stays in it), so no source ever resolves outside it.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, TypeVar

from pouch.actors.builder.ignore import IGNORE_FILE, IgnoreRules, go_clean, has_wildcards
from pouch.actors.gomatch import filepath_match

CHUNK = 1 << 16
HEADER_MAX = 1 << 20  # bytes of a pax or GNU long-name header (Go's archive/tar's limit)
MAX_LINKS = 255  # symlinks followed while resolving one source (moby's maxSymlinkDepth)
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
          (b"\x28\xb5\x2f\xfd", "zstd"))


_Found = TypeVar("_Found")


class ContextError(ValueError):
    """A build context or a source refused, in words naming the member or the path."""


@dataclass(frozen=True)
class ContextInfo:
    compression: str  # "" (a plain tar), "gzip", "bzip2" or "xz"
    members: int  # members unpacked
    skipped: int  # members left out by the ignore rules given
    size: int  # bytes of the (decompressed) tar stream read
    # The cache's sum of each regular file unpacked (see `sources_digest`), taken as
    # it was written: relative name -> the file as it was then, and its sum.
    sums: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)


# -- reading the stream -----------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """The stream with its first bytes (read to sniff the compression) put back."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class _Limited(io.RawIOBase):
    """The decompressed tar, counted; a ContextError past the limit."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner, self._limit, self.count = inner, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        self.count += len(data)
        if self.count > self._limit:
            raise ContextError(f"the build context is larger than its limit of "
                               f"{self._limit} bytes")
        buffer[:len(data)] = data
        return len(data)


def _decompressed(stream: BinaryIO) -> tuple[BinaryIO, str]:
    head = b""
    while len(head) < 6:
        more = stream.read(6 - len(head))
        if not more:
            break
        head += more
    raw: BinaryIO = io.BufferedReader(_Prefixed(head, stream), CHUNK)
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), "")
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), kind  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(raw), kind  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw), kind  # type: ignore[return-value]
    if kind:
        raise ContextError(f"unsupported compression of the build context: {kind}")
    return raw, kind


# -- unpacking ---------------------------------------------------------------------------


class _BoundedInfo(tarfile.TarInfo):
    """A member whose extended headers (read whole into memory) are kept small."""

    _SPECIAL = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in self._SPECIAL and self.size > HEADER_MAX:
            raise ContextError(f"header too large in the build context: {self.name}")
        return super()._proc_member(tar)  # type: ignore[misc]


def _relative(name: str, what: str) -> str:
    """A member's (or link target's) name made relative to the context, or refused."""
    if name.startswith("/"):
        raise ContextError(f"absolute path in the build context: {what}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ContextError(f"path outside the build context: {what}")
    return "/".join(parts)


def _climbs_out(link: str, target: str) -> bool:
    """Whether a relative symlink target, read from the link's folder, leaves the root."""
    depth = link.count("/")  # the link's folder's depth below the root
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _folder(dest: Path, rel: str, member: str, known: set[str],
            make: bool = True) -> Path:
    """The member's parent folder, made if missing; refused if it passes a symlink.
    `known`: folders (relative) seen to be real folders already, not looked at again;
    `_clear` forgets them all when it removes a folder."""
    folder = dest
    parts = rel.split("/")[:-1]
    for index, part in enumerate(parts):
        folder = folder / part
        prefix = "/".join(parts[:index + 1])
        if prefix in known:
            continue
        try:
            info = folder.lstat()
        except FileNotFoundError:
            if not make:
                return folder
            folder.mkdir(mode=0o755)
            known.add(prefix)
            continue
        if stat.S_ISLNK(info.st_mode):
            raise ContextError(f"path through a symlink in the build context: {member}")
        if not stat.S_ISDIR(info.st_mode):
            raise ContextError(f"not a directory in the build context: {member}")
        known.add(prefix)
    return folder


def _clear(path: Path, keep_dir: bool, known: set[str],
           sums: dict[str, tuple[tuple[int, ...], str]], rel: str) -> None:
    """Make room for a member: what a later member of the same name replaces."""
    sums.pop(rel, None)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        if not keep_dir:
            known.clear()  # what was a folder may come back as a symlink
            for name in [name for name in sums if name.startswith(rel + "/")]:
                del sums[name]
            shutil.rmtree(path)
    else:
        path.unlink()


def _identity(info: os.stat_result) -> tuple[int, ...]:
    """What tells a file apart from one written later in its place."""
    return (info.st_dev, info.st_ino, info.st_mode, info.st_size, info.st_mtime_ns,
            info.st_ctime_ns)


def _create(path: Path, known: set[str], sums: dict[str, tuple[tuple[int, ...], str]],
            rel: str) -> int:
    """A new regular file's descriptor, open to write; what was there is replaced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except FileExistsError:
        _clear(path, keep_dir=False, known=known, sums=sums, rel=rel)
        return os.open(path, flags, 0o600)


def _write_all(fd: int, source: IO[bytes], digest: hashlib._Hash) -> None:
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]


def _own(path: Path, member: tarfile.TarInfo) -> None:
    if os.geteuid() == 0:
        os.lchown(path, member.uid, member.gid)


@contextlib.contextmanager
def _reading_context() -> Iterator[None]:
    """What reading a context's tar can raise, as the ContextError a build reports."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ContextError("no space left on device for the build context") from None
        raise ContextError(f"invalid build context: {e}") from None
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error) as e:
        raise ContextError(f"invalid build context: {e}") from None


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The tar's members, read as Go's reader reads them: a tar that ends right after its
    last member's data, with neither its padding nor the end-of-archive blocks, is whole
    (the docker CLI sends such a context with `-f -`). Each member's data is read before
    the next is asked for, so the data itself cutting short still fails."""
    while True:
        try:
            member = tar.next()
        except tarfile.ReadError as e:
            if str(e) == "unexpected end of data" and tar.offset > 0:
                return
            raise
        if member is None:
            return
        yield member


def unpack_context(stream: BinaryIO, dest: Path, limit_bytes: int,
                   ignore: IgnoreRules | None = None,
                   keep: Iterable[str] = ()) -> ContextInfo:
    """Unpack a context tar (plain, gzip, bzip2 or xz, told by its first bytes) into the
    folder `dest` as it is read, never holding more than a chunk; a ContextError past
    `limit_bytes` of tar, or at a member it refuses. Given `ignore`, members it excludes
    are skipped, but never .dockerignore or the names in `keep` (the Dockerfile)."""
    tar_stream, compression = _decompressed(stream)
    limited = _Limited(tar_stream, limit_bytes)
    kept = {IGNORE_FILE, *(go_clean(name).lstrip("/") for name in keep)}
    members = skipped = 0
    folders: list[tuple[Path, tarfile.TarInfo]] = []
    known: set[str] = set()
    sums: dict[str, tuple[tuple[int, ...], str]] = {}
    # Whose a new file is as made (no folder passes on its group by a setgid bit while
    # unpacking: folders get their modes last), so that a member owned so needs no chown.
    made = None if dest.stat().st_mode & stat.S_ISGID else (os.geteuid(), os.getegid())
    with _reading_context(), \
            tarfile.open(fileobj=limited, mode="r|", tarinfo=_BoundedInfo) as tar:
        for member in _members(tar):
            rel = _relative(member.name, member.name)
            if rel == "":
                continue  # "./": the context itself
            if ignore is not None and rel not in kept and ignore.excluded(rel):
                skipped += 1
                continue
            path = _unpack_member(tar, member, rel, dest, known, sums, made)
            if member.isdir():
                folders.append((path, member))
            members += 1
        while limited.read(CHUNK):  # the rest: padding, a compressor's trailer
            pass
    # Folders last, deepest first: unpacking into them changed their mtimes.
    for path, member in reversed(folders):
        if not (path.is_dir() and not path.is_symlink()):
            continue  # a later member of the same name replaced it
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))
    return ContextInfo(compression=compression, members=members, skipped=skipped,
                       size=limited.count, sums=sums)


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str,
                   dest: Path, known: set[str],
                   sums: dict[str, tuple[tuple[int, ...], str]],
                   made: tuple[int, int] | None) -> Path:
    name = member.name
    path = _folder(dest, rel, name, known) / rel.rsplit("/", 1)[-1]
    if member.ischr() or member.isblk():
        raise ContextError(f"device node in the build context: {name}")
    if member.isreg():
        source = tar.extractfile(member)
        assert source is not None  # a regular member has content
        fd = _create(path, known, sums, rel)
        try:
            digest = _entry_header(rel, stat.S_IFREG, member.mode & 0o7777, member.size, "")
            _write_all(fd, source, digest)
            if os.geteuid() == 0 and (member.uid, member.gid) != made:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            os.utime(fd, (member.mtime, member.mtime))
            info = os.fstat(fd)
        finally:
            os.close(fd)
        if info.st_size == member.size and stat.S_IMODE(info.st_mode) == member.mode & 0o7777:
            sums[rel] = (_identity(info), digest.hexdigest())  # as _entry_sum would sum it
        return path
    if member.isdir():
        _clear(path, keep_dir=True, known=known, sums=sums, rel=rel)
        if not path.exists():
            path.mkdir(mode=0o700)
        _own(path, member)
        return path
    _clear(path, keep_dir=False, known=known, sums=sums, rel=rel)
    if member.issym():
        if member.linkname.startswith("/") or not _climbs_out(rel, member.linkname):
            os.symlink(member.linkname, path)
        else:
            raise ContextError(f"symlink outside the build context: {name} -> "
                               f"{member.linkname}")
        _own(path, member)
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
        return path
    if member.islnk():
        target_rel = _relative(member.linkname, f"{name} -> {member.linkname}")
        target = _folder(dest, target_rel, name, known, make=False) \
            / target_rel.rsplit("/", 1)[-1]
        if not target_rel or not os.path.lexists(target) or target.is_dir():
            raise ContextError(f"hard link to no earlier member in the build context: "
                               f"{name} -> {member.linkname}")
        os.link(target, path, follow_symlinks=False)
        return path
    if member.isfifo():
        os.mkfifo(path, 0o600)
    else:
        raise ContextError(f"unsupported member type in the build context: {name}")
    _own(path, member)
    os.chmod(path, member.mode & 0o7777)
    os.utime(path, (member.mtime, member.mtime))
    return path


# -- COPY and ADD sources ------------------------------------------------------------------


def _in_scope(context: Path, rel: str) -> Path:
    """The path `rel` names with symlinks followed as if `context` were the root
    (moby's FollowSymlinkInScope): never outside `context`."""
    todo = [part for part in rel.split("/") if part not in ("", ".")]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = context.joinpath(*done, part)
        if not here.is_symlink():
            done.append(part)
            continue
        links += 1
        if links > MAX_LINKS:
            raise ContextError(f"too many links in the build context: {rel}")
        target = os.readlink(here)
        if target.startswith("/"):
            done = []
        todo = [p for p in target.split("/") if p not in ("", ".")] + todo
    return context.joinpath(*done)


def in_scope(context: Path, rel: str) -> Path:
    """The path `rel` names in the unpacked context, symlinks followed inside it (a
    Dockerfile that is a link to /etc/shadow is the context's etc/shadow, if any)."""
    return _in_scope(context, rel)


def _walk(context: Path) -> Iterable[str]:
    """Every path in the context, relative, in filepath.Walk's order (lexical, symlinks
    to folders not entered)."""
    def visit(folder: Path, prefix: str) -> Iterable[str]:
        for name in sorted(os.listdir(folder)):
            rel = prefix + name
            yield rel
            child = folder / name
            if child.is_dir() and not child.is_symlink():
                yield from visit(child, rel + "/")
    return visit(context, "")


def resolve_named(context: Path, patterns: list[str],
                  ignore: IgnoreRules | None = None) -> list[tuple[str, Path]]:
    """COPY's or ADD's sources (expanded already): for each path found, the name it has
    in the context (whose last element names it at the destination) and the path to
    read, symlinks followed inside the context. Wildcards match as Go's filepath.Match
    against every path of the context. Given `ignore`, excluded paths are not found."""
    return _resolve(patterns, ignore, lambda: _walk(context),
                    lambda rel: _existing(context, rel))


def _resolve(patterns: list[str], ignore: IgnoreRules | None,
             walk: Callable[[], Iterable[str]],
             existing: Callable[[str], _Found]) -> list[tuple[str, _Found]]:
    """`resolve_named` over any view of a context: `walk` lists its paths, `existing`
    finds one (or raises `_not_found`)."""
    found: list[tuple[str, _Found]] = []
    for source in patterns:
        rel = source[1:] if source.startswith("/") and len(source) > 1 else source
        rel = rel.removeprefix("./")
        if has_wildcards(rel):
            found += [(name, existing(name)) for name in walk()
                      if filepath_match(rel, name)
                      and not (ignore is not None and ignore.excluded(name))]
            continue
        if not _inside(rel):
            raise ContextError(f"forbidden path outside the build context: {source} ()")
        if ignore is not None and ignore.excluded(rel):
            raise _not_found(rel)
        found.append((go_clean(rel), existing(rel)))
    if not found:
        raise ContextError("no source files were specified")
    return found


def _existing(context: Path, rel: str) -> Path:
    path = _in_scope(context, rel)
    if not os.path.lexists(path):
        raise _not_found(rel)
    return path


def _not_found(rel: str) -> ContextError:
    return ContextError("file not found in build context or excluded by .dockerignore: "
                        f"stat {rel}: file does not exist")


def _inside(rel: str) -> bool:
    cleaned = go_clean(rel)
    return cleaned != ".." and not cleaned.startswith("../")


def resolve_sources(context: Path, patterns: list[str],
                    ignore: IgnoreRules | None = None) -> list[Path]:
    """The paths to read for COPY's or ADD's sources (see `resolve_named`)."""
    return [path for _, path in resolve_named(context, patterns, ignore)]


# -- the cache's checksum -------------------------------------------------------------------


def _entry_header(name: str, kind: int, mode: int, size: int, link: str) -> hashlib._Hash:
    return hashlib.sha256(f"{name}\0{kind:o}\0{mode:o}\0{size}\0{link}\0"
                          .encode("utf-8", "surrogateescape"))


def _entry_sum(path: Path, context: Path,
               sums: dict[str, tuple[tuple[int, ...], str]]) -> str:
    """One file's or folder's sum: its name in the context, type, mode, size, link
    target and content (no owner, no mtime); a regular file's as `unpack_context` took
    it if it is still that very file."""
    info = path.lstat()
    name = path.relative_to(context).as_posix()
    if stat.S_ISREG(info.st_mode):
        known = sums.get(name)
        if known is not None and known[0] == _identity(info):
            return known[1]
    link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
    size = info.st_size if stat.S_ISREG(info.st_mode) else 0
    digest = _entry_header(name, stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                           size, link)
    if stat.S_ISREG(info.st_mode):
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _joined(kind: str, sums: list[str]) -> str:
    return kind + ":" + hashlib.sha256(",".join(sums).encode()).hexdigest()


def multi_digest(sums: list[str]) -> str:
    """Several sources' sums as one, as `sources_digest` joins them (one stays itself)."""
    return sums[0] if len(sums) == 1 else _joined("multi", sums)


def _source_sum(path: Path, context: Path,
                known: dict[str, tuple[tuple[int, ...], str]]) -> str:
    if not path.is_dir() or path.is_symlink():
        return "file:" + _entry_sum(path, context, known)
    sums = [_entry_sum(path, context, known)]
    for root, dirs, files in os.walk(path):
        sums += [_entry_sum(Path(root, name), context, known) for name in dirs + files]
    return _joined("dir", sorted(sums))


def sources_digest(paths: list[Path], context: Path,
                   known: dict[str, tuple[tuple[int, ...], str]] | None = None) -> str:
    """The checksum of COPY's or ADD's sources the cache keys on, shaped as dockerd's
    and shown in history ("COPY file:<hex> in /app"): "file:<hex>" for one file,
    "dir:<hex>" for one folder (its files' sums, sorted), "multi:<hex>" for several.
    `known`: `ContextInfo.sums` of the unpacking, not to read those files again."""
    return multi_digest([_source_sum(path, context, known or {}) for path in paths])


# -- a plain context, kept as its tar ----------------------------------------------------


@dataclass
class Node:
    """A member of a plain context, as `ContextIndex` knows it."""

    kind: int  # stat.S_IFREG, S_IFDIR or S_IFIFO
    mode: int  # permission bits
    mtime: float
    size: int = 0
    offset: int = 0  # where a regular file's content starts in the spool
    digest: str = ""  # a regular file's sum, as `_entry_sum` takes it off the file
    implied: bool = False  # a folder no member named, made for a member inside it


# The unpacked context's own folder is a fresh mkdtemp's: COPY . sums it with this mode.
_ROOT_MODE = 0o700
_IMPLIED_MODE = 0o755  # as `_folder` makes a missing folder (under the usual umask)


class _Tee(io.RawIOBase):
    """The decompressed tar, copied to the spool as it is read (byte for byte, so a
    member's offset in the stream is its offset in the spool)."""

    def __init__(self, inner: io.RawIOBase, out: IO[bytes]) -> None:
        self._inner, self._out = inner, out

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        self._out.write(data)
        buffer[:len(data)] = data
        return len(data)


def spool_context(stream: BinaryIO, spool: Path, limit_bytes: int) -> ContextIndex | None:
    """Copy a context tar (plain, gzip, bzip2 or xz), decompressed, into the new file
    `spool` as it is read, and index it on the way. Its index if the context is plain:
    regular files, folders and fifos, each named once by a clean relative name under
    folders only; else None, and the caller unpacks the spool with `unpack_context`,
    which refuses what it must in words naming the member. A ContextError past
    `limit_bytes` of tar or for a stream that is no tar.

    Why: most contexts are plain, and a build that finds every step in its cache needs
    the Dockerfile and the sums of COPY's sources only; writing a thousand files to
    read them back costs more than all the rest of such a build (a file's creation is
    about a millisecond of kernel time on a busy ext4)."""
    tar_stream, _ = _decompressed(stream)
    nodes: dict[str, Node] = {"": Node(stat.S_IFDIR, _ROOT_MODE, 0.0)}
    plain = True
    with _reading_context(), open(spool, "xb") as out:
        tee = _Tee(_Limited(tar_stream, limit_bytes), out)
        with tarfile.open(fileobj=tee, mode="r|", tarinfo=_BoundedInfo) as tar:
            for member in _members(tar):
                plain = plain and _index_member(tar, member, nodes)
            while tee.read(CHUNK):  # the rest: padding, a compressor's trailer
                pass
    return ContextIndex(spool, nodes) if plain else None


def _index_member(tar: tarfile.TarFile, member: tarfile.TarInfo,
                  nodes: dict[str, Node]) -> bool:
    """Index one member; False if it makes the context other than plain."""
    try:
        rel = _relative(member.name, member.name)
    except ContextError:
        return False
    if rel == "":
        return True  # "./": the context itself
    if not (member.isreg() or member.isdir() or member.isfifo()) or member.issparse():
        return False
    known = nodes.get(rel)
    if known is not None and not (member.isdir() and known.implied):
        return False  # named twice: which one wins is for unpacking to say
    parts = rel.split("/")
    for index in range(1, len(parts)):
        prefix = "/".join(parts[:index])
        parent = nodes.get(prefix)
        if parent is None:
            nodes[prefix] = Node(stat.S_IFDIR, _IMPLIED_MODE, member.mtime, implied=True)
        elif parent.kind != stat.S_IFDIR:
            return False
    mode = member.mode & 0o7777
    if member.isreg():
        source = tar.extractfile(member)
        assert source is not None  # a regular member has content
        digest = _entry_header(rel, stat.S_IFREG, mode, member.size, "")
        while chunk := source.read(CHUNK):
            digest.update(chunk)
        nodes[rel] = Node(stat.S_IFREG, mode, member.mtime, member.size, member.offset_data,
                          digest.hexdigest())
    else:
        nodes[rel] = Node(stat.S_IFDIR if member.isdir() else stat.S_IFIFO, mode,
                          member.mtime)
    return True


class ContextIndex:
    """A plain context as its tar in a spool file and an index of its members. Sources
    resolve and sum as `resolve_named` and `sources_digest` find and sum them in the
    unpacked folder (a plain context has no symlink: no path leads anywhere else), and
    a file is read straight out of the tar."""

    def __init__(self, spool: Path, nodes: dict[str, Node]) -> None:
        self.spool = spool
        self._nodes = nodes
        self._children: dict[str, list[str]] | None = None

    def node(self, rel: str) -> Node:
        return self._nodes[rel]

    def is_file(self, rel: str) -> bool:
        node = self._nodes.get("" if rel == "." else rel)
        return node is not None and node.kind == stat.S_IFREG

    def read(self, rel: str) -> bytes:
        """A regular file's content."""
        node = self._nodes[rel]
        with open(self.spool, "rb") as data:
            data.seek(node.offset)
            return data.read(node.size)

    def children(self, rel: str) -> list[str]:
        """The names in a folder, sorted."""
        if self._children is None:
            found: dict[str, list[str]] = {}
            for name in self._nodes:
                if name:
                    parent, _, base = name.rpartition("/")
                    found.setdefault(parent, []).append(base)
            for names in found.values():
                names.sort()
            self._children = found
        return self._children.get(rel, [])

    def tree(self, rel: str) -> Iterator[tuple[str, str]]:
        """A folder and everything under it as os.walk goes (a folder, its other members
        sorted, then its folders, each in turn): (path in the context, path under
        `rel`, "" for `rel` itself)."""
        prefix = rel + "/" if rel else ""

        def visit(folder: str) -> Iterator[tuple[str, str]]:
            yield folder, folder[len(prefix):] if folder != rel else ""
            names = [f"{folder}/{n}" if folder else n for n in self.children(folder)]
            for name in names:
                if self._nodes[name].kind != stat.S_IFDIR:
                    yield name, name[len(prefix):]
            for name in names:
                if self._nodes[name].kind == stat.S_IFDIR:
                    yield from visit(name)
        return visit(rel)

    def _walk(self) -> Iterator[str]:
        def visit(folder: str) -> Iterator[str]:
            for name in self.children(folder):
                path = f"{folder}/{name}" if folder else name
                yield path
                if self._nodes[path].kind == stat.S_IFDIR:
                    yield from visit(path)
        return visit("")

    def _existing(self, rel: str) -> str:
        done: list[str] = []
        for part in rel.split("/"):
            if part == "..":
                if done:
                    done.pop()
            elif part not in ("", "."):
                done.append(part)
        found = "/".join(done)
        if found not in self._nodes:
            raise _not_found(rel)
        return found

    def resolve_named(self, patterns: list[str],
                      ignore: IgnoreRules | None = None) -> list[tuple[str, str]]:
        """As `resolve_named`: each source's name, and its path in the context ("" for
        the context itself)."""
        return _resolve(patterns, ignore, self._walk, self._existing)

    def _sum(self, rel: str) -> str:
        node = self._nodes[rel]
        if node.kind == stat.S_IFREG:
            return node.digest
        return _entry_header(rel or ".", node.kind, node.mode, 0, "").hexdigest()

    def digest(self, rels: list[str]) -> str:
        """As `sources_digest`, of sources `resolve_named` found."""
        sums = []
        for rel in rels:
            if self._nodes[rel].kind != stat.S_IFDIR:
                sums.append("file:" + self._sum(rel))
                continue
            prefix = rel + "/" if rel else ""
            inner = [self._sum(rel)] + [self._sum(name) for name in self._nodes
                                        if name and name.startswith(prefix)]
            sums.append(_joined("dir", sorted(inner)))
        return sums[0] if len(sums) == 1 else _joined("multi", sums)
