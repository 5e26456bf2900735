"""Read `docker save` archives into plain records, without unpacking them.

Two layouts exist and both carry a ``manifest.json``:

- classic (dockerd before 25): ``<hex>.json`` configs and ``<id>/layer.tar``
  layers, where a layer shared by two images may be a symlink to another's;
- OCI (dockerd 25+): ``oci-layout``, ``index.json`` and content-addressed
  ``blobs/sha256/<hex>`` files, which ``manifest.json`` points into.

Layers are plain tar or compressed; the compression is read from the first
bytes, never from a name. A whole archive may itself be gzip'd (as
``docker save | gzip`` makes it); that works, though reading from a plain
tar is faster because members are then read in place.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import posixpath
import re
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from pouch.proto.envelope import invalid

MEDIA_TYPE_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

_MAGIC_TYPES = (
    (b"\x1f\x8b", MEDIA_TYPE_TAR_GZIP),
    (b"\x28\xb5\x2f\xfd", MEDIA_TYPE_TAR_ZSTD),
)
# Compressions that docker knows but containerd cannot apply as layers.
_UNSUPPORTED_MAGIC = ((b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_JSON_LIMIT = 32 << 20
_CHUNK = 1 << 20
_LINK_HOPS = 16
_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")
_BLOB_PATH_RE = re.compile(r"(?:^|/)blobs/sha256/([a-f0-9]{64})$")


@dataclass(frozen=True)
class SavedLayer:
    member: str  # path inside the archive (links already followed)
    size: int  # bytes of the blob as stored in the archive
    digest: str  # "sha256:<hex>" of the blob as stored (compressed if gzip)
    diff_id: str  # "sha256:<hex>" of the uncompressed tar, from rootfs.diff_ids
    media_type: str  # MEDIA_TYPE_TAR, MEDIA_TYPE_TAR_GZIP or MEDIA_TYPE_TAR_ZSTD


@dataclass(frozen=True)
class SavedImage:
    config: bytes  # the image config JSON exactly as stored: its sha256 is the image ID
    config_digest: str  # "sha256:<hex>"
    repo_tags: list[str]  # as written in manifest.json; empty for an untagged image
    layers: list[SavedLayer]


@dataclass(frozen=True)
class _Blob:
    size: int
    digest: str
    media_type: str


def read_archive(path: Path) -> list[SavedImage]:
    """Describe every image in a docker-save archive. Errors: invalid.

    Each distinct layer blob is read once, to compute its digest.
    """
    with _open_tar(path) as tar:
        members = _index(tar)
        entries = [_read_entry(tar, members, raw) for raw in _manifest_entries(tar, members)]
        layer_names = {name for entry in entries for name in entry.layers}
        # In archive order, so that a disk (or a gzip stream) is read front to back.
        blobs = {
            name: _describe_blob(tar, name, members[name])
            for name in sorted(layer_names, key=lambda n: members[n].offset_data)
        }
    return [_saved_image(entry, blobs) for entry in entries]


def open_member(path: Path, member: str) -> BinaryIO:
    """A readable stream of one file in the archive; the caller closes it. Errors: invalid."""
    with _tar_errors(path), ExitStack() as stack:
        tar = stack.enter_context(tarfile.open(path, "r:*"))
        members = _index(tar)
        inner = tar.extractfile(members[_resolve(members, member)])
        if inner is None:
            raise invalid(f"{member} in {path.name} is not a regular file")
        # From here the stream owns the archive and closes it.
        stack.pop_all()
        return io.BufferedReader(_MemberStream(path, tar, inner), buffer_size=_CHUNK)


class _MemberStream(io.RawIOBase):
    """One member's bytes; closing it closes the archive it was opened from."""

    def __init__(self, path: Path, tar: tarfile.TarFile, inner: IO[bytes]) -> None:
        super().__init__()
        self._path = path
        self._tar = tar
        self._inner = inner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # A truncated or corrupt archive shows only once its bytes are read.
        with _tar_errors(self._path):
            data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                self._tar.close()
        super().close()


@contextmanager
def _tar_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise invalid(f"{path.name} is not a readable tar archive: {exc}") from exc
    except OSError as exc:
        # gzip and bz2 report corrupt data as OSError; missing files stay OSErrors.
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise invalid(f"{path.name} is not a readable tar archive: {exc}") from exc


@contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    with _tar_errors(path), tarfile.open(path, "r:*") as tar:
        yield tar


def _normalize(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _index(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    # A later entry for the same name replaces an earlier one, as when extracting.
    return {_normalize(info.name): info for info in tar.getmembers()}


def _resolve(members: dict[str, tarfile.TarInfo], name: str) -> str:
    """The member name of the regular file that `name` denotes, following links."""
    current = _normalize(name)
    for _ in range(_LINK_HOPS):
        info = members.get(current)
        if info is None:
            if current == _normalize(name):
                raise invalid(f"{name} is not in the archive")
            raise invalid(f"{name} links to {current}, which is not in the archive")
        if info.issym():
            target = info.linkname
            base = "" if target.startswith("/") else posixpath.dirname(current)
            current = _normalize(posixpath.join(base, target))
        elif info.islnk():
            current = _normalize(info.linkname)
        elif info.isreg():
            return current
        else:
            raise invalid(f"{name} in the archive is not a regular file")
    raise invalid(f"{name} in the archive is a chain of links too long to follow")


def _read_json(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> Any:
    info = members[_resolve(members, name)]
    if info.size > _JSON_LIMIT:
        raise invalid(f"{name} is too large ({info.size} bytes) to be image metadata")
    raw = _read_bytes(tar, info)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"{name} is not valid JSON: {exc}") from exc


def _read_bytes(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    stream = tar.extractfile(info)
    if stream is None:
        raise invalid(f"{info.name} in the archive is not a regular file")
    with stream:
        return stream.read()


def _manifest_entries(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]
) -> list[dict[str, Any]]:
    if "manifest.json" not in members:
        if "repositories" in members:
            raise invalid(
                "manifest.json is missing: archives from docker before 1.10 are not supported"
            )
        raise invalid("manifest.json is missing: this is not a docker save archive")
    entries = _read_json(tar, members, "manifest.json")
    if not isinstance(entries, list):
        raise invalid("manifest.json is not a list of images")
    for number, entry in enumerate(entries):
        where = f"manifest.json entry {number}"
        if not isinstance(entry, dict):
            raise invalid(f"{where} is not an object")
        if not isinstance(entry.get("Config"), str) or not entry["Config"]:
            raise invalid(f"{where} has no Config")
        layers = entry.get("Layers")
        if not isinstance(layers, list) or not all(isinstance(x, str) and x for x in layers):
            raise invalid(f"{where} has no list of Layers")
        tags = entry.get("RepoTags")
        if tags is not None and (
            not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)
        ):
            raise invalid(f"{where} has RepoTags that are not a list of names")
    return entries


@dataclass(frozen=True)
class _Entry:
    config_name: str
    config: bytes
    diff_ids: list[str]
    layers: list[str]  # resolved member names, one per diff id
    repo_tags: list[str]


def _read_entry(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], raw: dict[str, Any]
) -> _Entry:
    name = raw["Config"]
    info = members[_resolve(members, name)]
    if info.size > _JSON_LIMIT:
        raise invalid(f"image config {name} is too large ({info.size} bytes)")
    config = _read_bytes(tar, info)
    named = _BLOB_PATH_RE.search(_normalize(name))
    if named and hashlib.sha256(config).hexdigest() != named.group(1):
        raise invalid(f"image config {name} does not match its digest")
    diff_ids = _diff_ids(config, name)
    layers = [_resolve(members, layer) for layer in raw["Layers"]]
    if len(layers) != len(diff_ids):
        raise invalid(
            f"image config {name} lists {len(diff_ids)} layers in rootfs.diff_ids "
            f"but manifest.json names {len(layers)}"
        )
    return _Entry(name, config, diff_ids, layers, list(raw.get("RepoTags") or []))


def _saved_image(entry: _Entry, blobs: dict[str, _Blob]) -> SavedImage:
    layers = []
    for name, diff_id in zip(entry.layers, entry.diff_ids, strict=True):
        blob = blobs[name]
        # An uncompressed layer's digest is its diff id, so this check is free.
        if blob.media_type == MEDIA_TYPE_TAR and blob.digest != diff_id:
            raise invalid(
                f"layer {name} has digest {blob.digest} but image config "
                f"{entry.config_name} says {diff_id}"
            )
        layers.append(SavedLayer(name, blob.size, blob.digest, diff_id, blob.media_type))
    config_digest = "sha256:" + hashlib.sha256(entry.config).hexdigest()
    return SavedImage(entry.config, config_digest, entry.repo_tags, layers)


def _diff_ids(config: bytes, name: str) -> list[str]:
    try:
        parsed = json.loads(config)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"image config {name} is not valid JSON: {exc}") from exc
    rootfs = parsed.get("rootfs") if isinstance(parsed, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise invalid(f"image config {name} has no rootfs.diff_ids")
    for diff_id in diff_ids:
        if not isinstance(diff_id, str) or not _SHA256_RE.fullmatch(diff_id):
            raise invalid(f"image config {name} has a malformed diff id {diff_id!r}")
    return diff_ids


def _describe_blob(tar: tarfile.TarFile, name: str, info: tarfile.TarInfo) -> _Blob:
    stream = tar.extractfile(info)
    if stream is None:
        raise invalid(f"layer {name} is not a regular file")
    digest = hashlib.sha256()
    size = 0
    head = b""
    with stream:
        while chunk := stream.read(_CHUNK):
            if size == 0:
                head = chunk[:8]
            digest.update(chunk)
            size += len(chunk)
    hexdigest = digest.hexdigest()
    named = _BLOB_PATH_RE.search(name)
    if named and hexdigest != named.group(1):
        raise invalid(f"layer {name} does not match its digest")
    return _Blob(size, "sha256:" + hexdigest, _media_type(name, head))


def _media_type(name: str, head: bytes) -> str:
    for magic, kind in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            raise invalid(f"layer {name} is compressed with {kind}, which is not supported")
    for magic, media_type in _MAGIC_TYPES:
        if head.startswith(magic):
            return media_type
    return MEDIA_TYPE_TAR
