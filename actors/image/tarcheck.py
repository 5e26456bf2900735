"""Whether a layer's tar members stay inside the root file system they make.

containerd's diff service, which applies every layer, clamps a path that
escapes into the root; dockerd refuses such a layer ("breakout"), and so does
pouch, loudly and before anything is stored. As dockerd's archive unpacking:

- a member named by an absolute path, or whose cleaned path climbs above
  the root through ``..``, is refused;
- so is a hard link to such a path (where dockerd re-roots an absolute name or
  hard link target, pouch refuses it: no tar writer makes one by default);
- a symlink whose relative target, joined to the member's directory, climbs
  above the root is refused; an absolute target (``bin/sh -> /bin/busybox``)
  is read inside the container's root, so it is normal and allowed;
- device files, fifos and the rest are allowed.

Only headers are read, front to back, so a layer is checked in the same pass
that hashes or stores it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import tarfile
import zlib
from contextlib import ExitStack
from typing import IO, Final

from pouch.proto.envelope import invalid

# Stream-mode tarfile reads its source this many bytes at a time, and skips member
# data in blocks of this size. Not larger: tarfile copies what is left of its buffer
# for every header it reads; not smaller: every block is a few Python calls.
_TAR_BUFFER: Final = 64 << 10


def escapes(path: str) -> bool:
    """Whether `path`, inside a tree, is absolute or climbs above the tree's root."""
    if path.startswith("/"):
        return True
    clean = posixpath.normpath(path)
    return clean == ".." or clean.startswith("../")


def check_layer_member(info: tarfile.TarInfo, where: str) -> None:
    """Refuse a member of a layer's tar that reaches outside the root file system.
    `where` names the layer in the message. Errors: invalid."""
    if escapes(info.name):
        raise invalid(f'{where} member "{info.name}" escapes the root file system')
    if info.islnk() and escapes(info.linkname):
        raise invalid(f'{where} member "{info.name}" is a hard link to "{info.linkname}", '
                      "outside the root file system")
    if info.issym() and not info.linkname.startswith("/"):
        target = posixpath.join(posixpath.dirname(posixpath.normpath(info.name)), info.linkname)
        if escapes(target):
            raise invalid(f'{where} member "{info.name}" is a symlink to "{info.linkname}", '
                          "outside the root file system")


def check_layer(stream: io.BufferedIOBase, where: str, gzipped: bool = False) -> None:
    """Read a layer's tar (gzip'd or not) from `stream`, front to back up to its
    end-of-archive blocks, and refuse it at its first member that escapes the root.
    Reads may stop before the stream's end: the caller drains it if it needs every
    byte. Errors: invalid, naming `where`, also for a stream that is not a tar; an
    error of a HashingReader's own source is raised as it is."""
    try:
        with ExitStack() as stack:
            # gzip.GzipFile, not tarfile's "r|gz": a layer may be several gzip members
            # one after the other, which Go's gzip reader (containerd's) reads as one.
            source = (stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb"))
                      if gzipped else stream)
            tar = stack.enter_context(tarfile.open(fileobj=source, mode="r|",
                                                   bufsize=_TAR_BUFFER))
            while (info := tar.next()) is not None:
                check_layer_member(info, where)
                # A stream-mode TarFile keeps every header it read (some 500 bytes
                # each, and a layer may have hundreds of thousands): none is wanted again.
                tar.members.clear()  # type: ignore[attr-defined]
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(stream, HashingReader) and stream.failure is not None:
            # What the layer is read from failed, not the layer: the caller's to tell.
            raise stream.failure from None
        raise invalid(f"{where} is not a tar archive: {exc}") from None


class HashingReader(io.BufferedIOBase):
    """A stream's bytes, read once, with their sha256 and count kept on the way, so
    that one pass both checks a layer and hashes it. `failure` keeps an error of the
    underlying stream itself, to tell it from the layer's own."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._hash = hashlib.sha256()
        self._pending = b""
        self.size = 0
        self.failure: BaseException | None = None

    @property
    def digest(self) -> str:
        """"sha256:<hex>" of the bytes read so far."""
        return "sha256:" + self._hash.hexdigest()

    def readable(self) -> bool:
        return True

    def head(self, size: int) -> bytes:
        """The first `size` bytes (fewer if the stream is shorter), read again by read()."""
        while len(self._pending) < size:
            chunk = self._fill(size - len(self._pending))
            if not chunk:
                break
            self._pending += chunk
        return self._pending[:size]

    def read(self, size: int | None = -1, /) -> bytes:
        if self._pending:
            wanted = len(self._pending) if size is None or size < 0 else size
            data, self._pending = self._pending[:wanted], self._pending[wanted:]
            return data
        return self._fill(size)

    def drain(self, chunk: int = 1 << 20) -> None:
        """Read what is left, so that the digest and size cover every byte."""
        self._pending = b""
        while self._fill(chunk):
            pass

    def _fill(self, size: int | None) -> bytes:
        try:
            data = self._raw.read(-1 if size is None else size)
        except BaseException as exc:
            self.failure = exc
            raise
        self._hash.update(data)
        self.size += len(data)
        return data
