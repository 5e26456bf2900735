"""Read `docker save` archives into plain records, without unpacking them.

Three layouts exist; the first two carry a ``manifest.json``:

- classic (dockerd before 25): ``<hex>.json`` configs and ``<id>/layer.tar``
  layers, where a layer shared by two images may be a symlink to another's;
- OCI (dockerd 25+): ``oci-layout``, ``index.json`` and content-addressed
  ``blobs/sha256/<hex>`` files, which ``manifest.json`` points into;
- a plain OCI image layout (``ctr images export --skip-manifest-json``,
  skopeo's ``oci-archive:``, buildkit's ``type=oci``): the same without
  ``manifest.json``, so ``index.json`` is walked instead, taking the
  linux/amd64 manifest of any index, as a pull would, and names come from
  the annotations of ``index.json``'s descriptors.

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
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from pouch.actors.image.tarcheck import HashingReader, check_layer, escapes
from pouch.proto.envelope import PouchError, invalid

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
    """A path inside the archive as its index keys it ("./a//b" is "a/b"). Errors:
    invalid, for one that is absolute or climbs above the archive's root, as
    extracting the archive would."""
    if escapes(name):
        raise invalid(f'"{name}" is outside the archive: absolute or above its root')
    clean = posixpath.normpath(name)
    return "" if clean == "." else clean


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
        if info.issym() or info.islnk():
            # A symlink is relative to its folder, a hard link to the archive's root.
            base = posixpath.dirname(current) if info.issym() else ""
            target = posixpath.join(base, info.linkname)
            if escapes(target):
                raise invalid(
                    f'{current} in the archive links to "{info.linkname}", '
                    "outside the archive: absolute or above its root"
                )
            current = _normalize(target)
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


_IMAGE_MANIFESTS = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
_INDEXES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
# ctr and buildkit nest one index in index.json; more than a few is a crafted archive.
_INDEX_DEPTH = 4
_PLATFORM = "linux/amd64"  # what this daemon runs, and so what a pull would choose
_NAME_ANNOTATION = "io.containerd.image.name"
_REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def _manifest_entries(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]
) -> list[dict[str, Any]]:
    if "manifest.json" not in members:
        if "index.json" in members:
            return _layout_entries(tar, members)
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
    untagged = [entry for entry in entries if not entry.get("RepoTags")]
    if untagged and "index.json" in members:
        # containerd 1.6's `ctr images export` leaves the names out of manifest.json
        # (even with --skip-manifest-json); its index.json has them.
        with suppress(PouchError):
            named = {_normalize(e["Config"]): e["RepoTags"]
                     for e in _layout_entries(tar, members)}
            for entry in untagged:
                entry["RepoTags"] = named.get(_normalize(entry["Config"]), [])
    return entries


def _layout_entries(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]
) -> list[dict[str, Any]]:
    """What manifest.json would list for an OCI image layout, read from its index.json."""
    roots = _descriptors(_read_json(tar, members, "index.json"), "index.json")
    # Each descriptor of index.json is an image of its own, save those for another
    # platform: a layout may list the platforms of one image side by side.
    wanted = [d for d in roots if "platform" not in d or _for_this_platform(d)]
    if not wanted:
        raise invalid(f"index.json has no {_PLATFORM} manifest; it has {_platforms(roots)}")
    entries: dict[str, dict[str, Any]] = {}
    for descriptor in wanted:
        digest, manifest = _image_manifest(tar, members, descriptor, "index.json", 0)
        if digest not in entries:
            entries[digest] = _layout_entry(manifest, digest)
        name = _layout_name(descriptor)
        if name and name not in entries[digest]["RepoTags"]:
            entries[digest]["RepoTags"].append(name)
    return list(entries.values())


def _descriptors(index: Any, where: str) -> list[dict[str, Any]]:
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not all(isinstance(d, dict) for d in manifests):
        raise invalid(f"{where} has no manifests list")
    return manifests


def _image_manifest(
    tar: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    descriptor: dict[str, Any],
    where: str,
    depth: int,
) -> tuple[str, dict[str, Any]]:
    """The image manifest that `descriptor` (named in `where`) leads to, and its digest."""
    digest = _digest(descriptor, where)
    media_type = descriptor.get("mediaType")
    if media_type in _IMAGE_MANIFESTS:
        return digest, _read_manifest_blob(tar, members, descriptor, where)
    if media_type not in _INDEXES:
        raise invalid(f"{where} names {digest} with unknown media type {media_type!r}")
    if depth >= _INDEX_DEPTH:
        raise invalid(f"index {digest} is nested too deep: more than {_INDEX_DEPTH} indexes")
    here = f"index {digest}"
    entries = _descriptors(_read_manifest_blob(tar, members, descriptor, where), here)
    matching = [d for d in entries if _for_this_platform(d)]
    # As with a pull, an entry that does not say its platform is taken only when alone.
    if not matching and len(entries) == 1 and "platform" not in entries[0]:
        matching = entries
    if not matching:
        raise invalid(f"{here} has no {_PLATFORM} manifest; it has {_platforms(entries)}")
    return _image_manifest(tar, members, matching[0], here, depth + 1)


def _for_this_platform(descriptor: dict[str, Any]) -> bool:
    platform = descriptor.get("platform")
    return (
        isinstance(platform, dict)
        and platform.get("os") == "linux"
        and platform.get("architecture") in ("amd64", "x86_64")
    )


def _platforms(descriptors: list[dict[str, Any]]) -> str:
    found = set()
    for descriptor in descriptors:
        platform = descriptor.get("platform")
        if isinstance(platform, dict):
            parts = (platform.get("os"), platform.get("architecture"), platform.get("variant"))
            found.add("/".join(str(part) for part in parts if part))
        else:
            found.add("one with no platform")
    return ", ".join(sorted(found)) or "no manifests at all"


def _digest(descriptor: dict[str, Any], where: str) -> str:
    digest = descriptor.get("digest")
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
        raise invalid(f"{where} names a malformed digest {digest!r}")
    return digest


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _read_manifest_blob(
    tar: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    descriptor: dict[str, Any],
    where: str,
) -> dict[str, Any]:
    """The JSON object of a manifest or index blob, once its size and digest are checked."""
    digest = _digest(descriptor, where)
    size = descriptor.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _JSON_LIMIT:
        raise invalid(f"{where} gives {digest} a size of {size!r}")
    name = _blob_path(digest)
    info = members[_resolve(members, name)]
    if info.size != size:
        raise invalid(f"{name} is {info.size} bytes, but {where} says {size}")
    data = _read_bytes(tar, info)
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise invalid(f"{name} does not match its digest")
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise invalid(f"{name} is not a JSON object")
    return parsed


def _layout_entry(manifest: dict[str, Any], digest: str) -> dict[str, Any]:
    where = f"manifest {digest}"
    config, layers = manifest.get("config"), manifest.get("layers")
    if not isinstance(config, dict):
        raise invalid(f"{where} has no config")
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise invalid(f"{where} has no list of layers")
    return {
        "Config": _blob_path(_digest(config, where)),
        "Layers": [_blob_path(_digest(layer, where)) for layer in layers],
        "RepoTags": [],
    }


def _layout_name(descriptor: dict[str, Any]) -> str | None:
    annotations = descriptor.get("annotations")
    if not isinstance(annotations, dict):
        return None
    name = annotations.get(_NAME_ANNOTATION)
    if isinstance(name, str) and name:
        return name
    ref = annotations.get(_REF_NAME_ANNOTATION)
    # A bare tag lacks the repository this archive does not give: the image loads
    # untagged, as containerd loads it when given no base name.
    if isinstance(ref, str) and (":" in ref or "/" in ref):
        return ref
    return None


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
    """Hash a layer blob and check its tar's members, in one read of it."""
    stream = tar.extractfile(info)
    if stream is None:
        raise invalid(f"layer {name} is not a regular file")
    with stream:
        reader = HashingReader(stream)
        head = reader.head(8)
        media_type = _media_type(name, head)
        # Python before 3.14 reads no zstd, and the zstandard module is not a
        # dependency: a zstd layer goes unwalked, and containerd's diff service
        # clamps any escaping path of it into the root. An empty blob has no
        # members (Go's tar reader, and so containerd, takes it as an empty layer).
        if media_type != MEDIA_TYPE_TAR_ZSTD and head:
            # A broken archive around the layer raises the archive's own error.
            check_layer(reader, f"layer {name}", gzipped=media_type == MEDIA_TYPE_TAR_GZIP)
        reader.drain(_CHUNK)
    named = _BLOB_PATH_RE.search(name)
    if named and reader.digest != "sha256:" + named.group(1):
        raise invalid(f"layer {name} does not match its digest")
    return _Blob(reader.size, reader.digest, media_type)


def _media_type(name: str, head: bytes) -> str:
    for magic, kind in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            raise invalid(f"layer {name} is compressed with {kind}, which is not supported")
    for magic, media_type in _MAGIC_TYPES:
        if head.startswith(magic):
            return media_type
    return MEDIA_TYPE_TAR
