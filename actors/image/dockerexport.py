"""Write images that containerd holds as a `docker save` archive.

The classic layout, which every `docker load` reads (dockerd's, old and new,
and pouch's own `dockersave`):

    manifest.json          [{"Config": "<hex>.json", "RepoTags": [...], "Layers": [...]}]
    repositories           {"repo": {"tag": "<top layer folder>"}}
    <config hex>.json      the image config, byte for byte: its digest is the image ID
    <layer id>/VERSION     "1.0"
    <layer id>/json        the layer's legacy (v1) description
    <layer id>/layer.tar   the layer, uncompressed

A layer that several images share is written once; the others' `layer.tar`
are symlinks to it, as dockerd writes them. Layers are streamed from the
content store and decompressed on the way, and each one's digest is checked
against the config's diff ID. A tar header tells its file's size, which a
compressed layer only shows once it is decompressed: its header is written
again afterwards, so `out` must be seekable (a file).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import shutil
import subprocess
import tarfile
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import Descriptor
from pouch.actors.image.pull import parse_manifest
from pouch.actors.image.store import chain_ids
from pouch.proto.envelope import PouchError, invalid

_CHUNK: Final = 1 << 20
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_MAGIC_LENGTH: Final = 4
_LEGACY_CREATED: Final = "1970-01-01T00:00:00Z"  # what dockerd gives a layer below the top


@dataclass(frozen=True)
class ImageToSave:
    id: str  # the config digest, "sha256:<hex>"
    manifest: Descriptor  # the manifest its names point at in containerd
    repo_tags: list[str]  # familiar "repo:tag" names to record; empty for none


def write_archive(ctrd: Containerd, images: Sequence[ImageToSave], out: BinaryIO) -> None:
    """Write `images` to `out` (seekable) as one docker-save archive.

    Errors: not_found (a blob is gone), invalid (a blob is not what the image says).
    """
    tar = _TarWriter(out)
    folders: set[str] = set()
    layer_files: dict[str, str] = {}  # diff id -> the member holding its bytes
    entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for image in images:
        config_bytes, layers = _read_image(ctrd, image)
        config = json.loads(config_bytes)
        ids = _legacy_ids(image.id, [diff_id for diff_id, _ in layers])
        members = []
        for index, ((diff_id, descriptor), layer_id) in enumerate(zip(layers, ids, strict=True)):
            member = f"{layer_id}/layer.tar"
            members.append(member)
            if layer_id in folders:
                continue
            folders.add(layer_id)
            parent = ids[index - 1] if index else ""
            top = index == len(layers) - 1
            legacy = _legacy_json(layer_id, parent, config if top else None)
            tar.add_dir(layer_id)
            tar.add_bytes(f"{layer_id}/VERSION", b"1.0")
            tar.add_bytes(f"{layer_id}/json", legacy)
            if diff_id in layer_files:
                tar.add_symlink(member, f"../{layer_files[diff_id]}")
                continue
            digest = tar.add_stream(member, _uncompressed(ctrd, descriptor))
            if digest != diff_id:
                raise invalid(f"layer {descriptor['digest']} of image {image.id} unpacks to "
                              f"{digest}, but its config says {diff_id}")
            layer_files[diff_id] = member
        config_name = image.id.removeprefix("sha256:") + ".json"
        tar.add_bytes(config_name, config_bytes)
        entries.append({"Config": config_name, "RepoTags": image.repo_tags or None,
                        "Layers": members})
        for name in image.repo_tags:
            repo, _, tag = name.rpartition(":")
            if ids:
                repositories.setdefault(repo, {})[tag] = ids[-1]
    tar.add_bytes("manifest.json", json.dumps(entries).encode())
    if repositories:
        tar.add_bytes("repositories", json.dumps(repositories).encode())
    tar.close()


def _read_image(ctrd: Containerd, image: ImageToSave) -> tuple[bytes, list[tuple[str, Descriptor]]]:
    """An image's exact config bytes and its layers as (diff id, blob descriptor)."""
    target = image.manifest
    config_descriptor, layers = parse_manifest(
        target["media_type"], target["digest"], ctrd.content.read(target["digest"]))
    if config_descriptor["digest"] != image.id:
        raise invalid(f"image {image.id}: its manifest {target['digest']} names config "
                      f"{config_descriptor['digest']}")
    config_bytes = ctrd.content.read(image.id)
    if "sha256:" + hashlib.sha256(config_bytes).hexdigest() != image.id:
        raise invalid(f"image config {image.id} does not match its digest")
    try:
        config = json.loads(config_bytes)
        diff_ids = config["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid(f"image config {image.id} has no rootfs.diff_ids: {exc}") from None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers) \
            or not all(isinstance(d, str) for d in diff_ids):
        raise invalid(f"image config {image.id} lists {diff_ids!r} as its layers, "
                      f"but its manifest has {len(layers)}")
    return config_bytes, list(zip(diff_ids, layers, strict=True))


def _legacy_ids(image_id: str, diff_ids: list[str]) -> list[str]:
    """One folder name per layer. A layer's depends on the layers below it (and, for the
    top one, on the image, whose config its `json` carries), so images that share their
    lower layers share those folders."""
    ids: list[str] = []
    for index, chain in enumerate(chain_ids(diff_ids)):
        seed = {"chain": chain, "parent": ids[-1] if ids else ""}
        if index == len(diff_ids) - 1:
            seed["image"] = image_id
        ids.append(hashlib.sha256(json.dumps(seed, sort_keys=True).encode()).hexdigest())
    return ids


def _legacy_json(layer_id: str, parent: str, config: dict[str, Any] | None) -> bytes:
    """A layer's v1 description: loaders read manifest.json instead, older tools read this."""
    if config is None:
        legacy: dict[str, Any] = {"created": _LEGACY_CREATED, "container_config": {}}
    else:
        legacy = {key: value for key, value in config.items()
                  if key not in ("history", "rootfs")}
    legacy["id"] = layer_id
    if parent:
        legacy["parent"] = parent
    return json.dumps(legacy, sort_keys=True).encode()


# -- layers ------------------------------------------------------------------


def _uncompressed(ctrd: Containerd, layer: Descriptor) -> Iterator[bytes]:
    """A layer blob's tar bytes, whatever compression the blob has: told by its first
    bytes, as dockersave does, not by a media type."""
    chunks = ctrd.content.read_stream(layer["digest"])
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= _MAGIC_LENGTH:
            break
    blob = itertools.chain([head], chunks)
    if head.startswith(_GZIP_MAGIC):
        return _gunzip(blob, layer["digest"])
    if head.startswith(_ZSTD_MAGIC):
        return _unzstd(blob, layer["digest"])
    return blob


def _gunzip(blob: Iterator[bytes], digest: str) -> Iterator[bytes]:
    # GzipFile reads archives of several members, as Go's gzip reader does.
    with gzip.GzipFile(fileobj=_ChunkReader(blob), mode="rb") as stream:
        try:
            while chunk := stream.read(_CHUNK):
                yield chunk
        except (OSError, EOFError, zlib.error) as exc:
            raise invalid(f"layer {digest} is not valid gzip: {exc}") from None


def _unzstd(blob: Iterator[bytes], digest: str) -> Iterator[bytes]:
    # Python before 3.14 has no zstd of its own; containerd's hosts have the program.
    program = shutil.which("zstd")
    if program is None:
        raise PouchError("internal", f"layer {digest} is zstd-compressed, and this host "
                         "has no zstd program to decompress it (apt-get install zstd)")
    proc = subprocess.Popen([program, "-d", "-c", "-q"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    failed: list[BaseException] = []

    def feed(stdin: BinaryIO) -> None:
        try:
            with stdin:
                for chunk in blob:
                    stdin.write(chunk)
        except BrokenPipeError:
            pass  # zstd stopped reading: its exit status says why
        except BaseException as exc:
            failed.append(exc)

    feeder = threading.Thread(target=feed, args=(proc.stdin,), name=f"unzstd {digest[:19]}",
                              daemon=True)
    feeder.start()
    finished = False
    try:
        while chunk := proc.stdout.read(_CHUNK):
            yield chunk
        finished = True
    finally:
        if not finished:
            proc.kill()  # the reader left early
        proc.stdout.close()
        feeder.join()
        status = proc.wait()
        error = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
    if failed:
        raise failed[0]
    if status != 0:
        raise invalid(f"layer {digest} is not valid zstd: {error or f'zstd exited {status}'}")


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")  # a view: taking from its front copies nothing

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            self._pending = memoryview(next(self._chunks, b""))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


# -- the tar stream ----------------------------------------------------------


class _TarWriter:
    """Writes tar members one after the other, with headers as GNU tar's (512 bytes
    each, whatever a size; dockerd's archives are read the same way)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def add_dir(self, name: str) -> None:
        self._out.write(self._header(name, tarfile.DIRTYPE, 0o755))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._out.write(self._header(name, tarfile.REGTYPE, 0o644, len(data)))
        self._out.write(data)
        self._pad(len(data))

    def add_symlink(self, name: str, target: str) -> None:
        self._out.write(self._header(name, tarfile.SYMTYPE, 0o777, linkname=target))

    def add_stream(self, name: str, chunks: Iterable[bytes]) -> str:
        """Write a file of yet unknown size; its "sha256:<hex>"."""
        start = self._out.tell()
        placeholder = self._header(name, tarfile.REGTYPE, 0o644, 0)
        self._out.write(placeholder)
        digest = hashlib.sha256()
        size = 0
        for chunk in chunks:
            digest.update(chunk)
            self._out.write(chunk)
            size += len(chunk)
        self._pad(size)
        end = self._out.tell()
        header = self._header(name, tarfile.REGTYPE, 0o644, size)
        if len(header) != len(placeholder):
            raise PouchError("internal", f"the tar header of {name} changed length")
        self._out.seek(start)
        self._out.write(header)
        self._out.seek(end)
        return "sha256:" + digest.hexdigest()

    def close(self) -> None:
        # Two empty blocks end the archive; then, as tar does, the last record is filled.
        self._out.write(tarfile.NUL * 2 * tarfile.BLOCKSIZE)
        self._out.write(tarfile.NUL * (-self._out.tell() % tarfile.RECORDSIZE))
        self._out.flush()

    def _pad(self, size: int) -> None:
        self._out.write(tarfile.NUL * (-size % tarfile.BLOCKSIZE))

    @staticmethod
    def _header(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> bytes:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.size = size
        info.linkname = linkname
        info.uname = info.gname = "root"
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
