"""Pull: an image from a registry into containerd, saying how it goes in Docker's
progress messages (the CLI draws its bars from them).

Every blob is written under the pull's lease, the layers several at a time; then
containerd's diff service unpacks them in order, and the names are pointed at the
manifest last. A pull that fails or is cancelled names nothing, and once its
lease ends containerd collects what it had stored.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import Descriptor
from pouch.actors.image.registry import IMAGE_MANIFESTS, Registry, Resolved
from pouch.actors.image.store import (
    GC_REF_CONFIG,
    GC_REF_LAYER,
    chain_ids,
    link_config,
    register,
    unpack_layers,
)
from pouch.proto.envelope import invalid
from pouch.proto.shapes import PullProgress

# What containerd's diff service unpacks: Docker's and OCI's tar layers, compressed or not.
LAYER_TYPES: Final = frozenset({
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
})
PARALLEL_LAYERS: Final = 3  # as dockerd's max-concurrent-downloads
PROGRESS_EVERY: Final = 0.1  # seconds between two "Downloading" messages of one layer


class Cancelled(Exception):
    """The client went away: the pull or push stops (a pull's lease takes what it stored)."""


class Progress:
    """Where a pull's or push's messages go, from whichever layer's thread, one at a time."""

    def __init__(self, send: Callable[[PullProgress], bool]) -> None:
        """`send` sends a message; False once the client is gone."""
        self._send = send
        self._lock = threading.Lock()

    def __call__(self, message: PullProgress) -> None:
        with self._lock:
            if not self._send(message):
                raise Cancelled


@dataclass(frozen=True)
class PulledLayer:
    digest: str
    size: int
    media_type: str
    diff_id: str


@dataclass(frozen=True)
class PulledImage:
    id: str                 # the config digest
    config: dict[str, Any]
    chain_id: str
    size: int               # bytes the unpacked layers take
    names: list[str]        # full references now naming it
    digest: str             # what the pulled name resolved to (an index's digest, for one)
    fresh: bool             # False: the name named this image already


class Downloads:
    """Blobs being fetched in this process: a pull that needs one another pull is fetching
    waits for that download instead of making its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, threading.Event] = {}

    def once(self, digest: str, fetch: Callable[[], None], waiting: Callable[[], None]) -> bool:
        """Run `fetch` unless another thread is fetching `digest`: then call `waiting` and
        wait for it. True if `fetch` ran here."""
        with self._lock:
            done = self._active.get(digest)
            if done is None:
                self._active[digest] = threading.Event()
        if done is not None:
            waiting()
            done.wait()
            return False
        try:
            fetch()
        finally:
            with self._lock:
                self._active.pop(digest).set()
        return True


def short_id(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def progress_message(status: str, id: str = "", current: int | None = None,
                     total: int | None = None) -> PullProgress:
    """A status line, or (with `id`) a layer's, with how far it got if `current`."""
    message: PullProgress = {"status": status}
    if id:
        message["id"] = id
        message["progressDetail"] = {} if current is None else {"current": current,
                                                                 "total": total or 0}
    return message


class _Counted(io.RawIOBase):
    """The chunks of a download as a file containerd's writer reads, saying how far it got.

    A read of a whole chunk or more gets the chunk itself: slicing a bytes object whole
    copies nothing, and the writer copies each byte once, into its request."""

    def __init__(self, chunks: Iterator[bytes], on_read: Callable[[int], None]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = b""
        self._on_read = on_read
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        if size < 0:
            size = len(self._pending)
        chunk, self._pending = self._pending[:size], self._pending[size:]
        self.read_bytes += len(chunk)
        self._on_read(self.read_bytes)
        return chunk


class Pull:
    """One pull of one reference."""

    def __init__(self, ctrd: Containerd, registry: Registry, downloads: Downloads,
                 say: Progress, snapshotter: str) -> None:
        self._ctrd = ctrd
        self._registry = registry
        self._downloads = downloads
        self.say = say
        self._snapshotter = snapshotter

    def run(self, resolved: Resolved, names: list[str], current: str | None) -> PulledImage:
        """Store, unpack and name the image `resolved` points at. `current`: the digest of
        the manifest the first name points at now, if any."""
        config_desc, layer_descs = parse_manifest(resolved.media_type, resolved.digest,
                                                  resolved.manifest)
        config_digest = config_desc["digest"]
        with self._ctrd.leases.hold() as lease:
            config_bytes = self._small_blob(config_desc, lease)
            config = _parse_config(config_bytes, config_digest)
            layers = _layers(layer_descs, config)
            chain_id = chain_ids([layer.diff_id for layer in layers])[-1] if layers else ""
            fresh = current != resolved.digest
            size = self._fetch_and_unpack(layers, lease)
            labels = {GC_REF_CONFIG: config_digest} | {
                GC_REF_LAYER.format(index=i): layer.digest for i, layer in enumerate(layers)}
            self._ctrd.content.write(f"pouch-pull-{resolved.digest}", resolved.manifest,
                                     len(resolved.manifest), resolved.digest, labels,
                                     lease=lease)
            self._ctrd.content.update_labels(resolved.digest, labels)
            link_config(self._ctrd, config_digest, chain_id, self._snapshotter)
            target: Descriptor = {"media_type": resolved.media_type, "digest": resolved.digest,
                                  "size": len(resolved.manifest)}
            register(self._ctrd, config_digest, names, target)
        return PulledImage(config_digest, config, chain_id, size, names,
                           resolved.index_digest or resolved.digest, fresh)

    def _small_blob(self, desc: Descriptor, lease: str) -> bytes:
        data = b"".join(self._registry.fetch_blob(desc))
        self._ctrd.content.write(f"pouch-pull-{desc['digest']}", data, len(data),
                                 desc["digest"], lease=lease)
        return data

    def _fetch_and_unpack(self, layers: list[PulledLayer], lease: str) -> int:
        """Download the layers (a few at a time) and unpack each, in order, as soon as it
        is there, as dockerd does; the bytes the snapshots take."""
        with ThreadPoolExecutor(PARALLEL_LAYERS, thread_name_prefix="pull-layer") as pool:
            downloads: dict[str, Future[None]] = {}
            for layer in layers:
                if layer.digest in downloads:
                    continue
                if self._ctrd.content.info(layer.digest) is not None:
                    # Held by this pull's lease from now on, should its last name go meanwhile.
                    self._ctrd.leases.add_resource(lease, layer.digest, "content")
                    self.say(progress_message("Already exists", short_id(layer.digest)))
                else:
                    self.say(progress_message("Pulling fs layer", short_id(layer.digest)))
                    downloads[layer.digest] = pool.submit(self._fetch_layer, layer, lease)

            def extracting(layer: Any) -> None:
                if (download := downloads.get(layer.digest)) is not None:
                    download.result()
                # containerd's diff service says nothing until a layer is done: no bytes
                # to count.
                self.say(progress_message("Extracting", short_id(layer.digest)))

            try:
                size = unpack_layers(self._ctrd, layers, self._snapshotter, lease,
                                     self._unpacked, extracting)
                for download in downloads.values():  # layers whose snapshots were there
                    download.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)  # the lease takes what was stored
                raise
        return size

    def _fetch_layer(self, layer: PulledLayer, lease: str) -> None:
        layer_id = short_id(layer.digest)

        def fetch() -> None:
            last = 0.0

            def progress(count: int) -> None:
                nonlocal last
                now = time.monotonic()
                if now - last >= PROGRESS_EVERY or count == layer.size:
                    last = now
                    self.say(progress_message("Downloading", layer_id, count, layer.size))

            # containerd checks the digest when it commits the blob, and refuses the blob
            # if it is not the one the manifest names: no need to hash the bytes here too.
            chunks = self._registry.fetch_blob(layer_descriptor(layer), verify_digest=False)
            with contextlib.closing(_Counted(iter(chunks), progress)) as stream:
                self._ctrd.content.write(f"pouch-pull-{layer.digest}", stream, layer.size,
                                         layer.digest, lease=lease)
            self.say(progress_message("Verifying Checksum", layer_id))
            self.say(progress_message("Download complete", layer_id))

        def waiting() -> None:
            self.say(progress_message("Waiting", layer_id))

        if not self._downloads.once(layer.digest, fetch, waiting):
            # Another pull fetched it: hold it under this lease, or fetch it after all if
            # that pull failed and its lease let it go.
            if self._ctrd.content.info(layer.digest) is None:
                fetch()
            else:
                self._ctrd.leases.add_resource(lease, layer.digest, "content")
                self.say(progress_message("Download complete", layer_id))

    def _unpacked(self, layer: Any, unpacked: bool) -> None:
        self.say(progress_message("Pull complete", short_id(layer.digest)))


def layer_descriptor(layer: PulledLayer) -> Descriptor:
    return {"media_type": layer.media_type, "digest": layer.digest, "size": layer.size}


def parse_manifest(media_type: str, digest: str,
                   body: bytes) -> tuple[Descriptor, list[Descriptor]]:
    """An image manifest's config and layers. Errors: invalid, naming what is wrong."""
    if media_type not in IMAGE_MANIFESTS:
        raise invalid(f"manifest {digest} has media type {media_type!r}, "
                      "which pouch does not handle")
    try:
        manifest = json.loads(body)
        config = _descriptor(manifest["config"])
        layers = [_descriptor(layer) for layer in manifest["layers"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid(f"manifest {digest} is malformed: {exc}") from None
    for layer in layers:
        if layer["media_type"] not in LAYER_TYPES:
            raise invalid(f"layer {layer['digest']} has media type {layer['media_type']!r}, "
                          "which pouch cannot unpack")
    return config, layers


def _descriptor(value: Any) -> Descriptor:
    digest, size, media_type = value["digest"], value["size"], value.get("mediaType", "")
    if not (isinstance(digest, str) and digest.startswith("sha256:") and len(digest) == 71):
        raise ValueError(f"bad digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"bad size {size!r}")
    return {"media_type": str(media_type), "digest": digest, "size": size}


def _parse_config(data: bytes, digest: str) -> dict[str, Any]:
    try:
        config = json.loads(data)
    except ValueError as exc:
        raise invalid(f"image config {digest} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise invalid(f"image config {digest} is not a JSON object")
    return config


def _layers(descs: list[Descriptor], config: dict[str, Any]) -> list[PulledLayer]:
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(descs) \
            or not all(isinstance(d, str) for d in diff_ids):
        raise invalid(f"the image config lists {diff_ids!r} as its layers' diff IDs, "
                      f"but its manifest has {len(descs)} layers")
    return [PulledLayer(d["digest"], d["size"], d["media_type"], diff_id)
            for d, diff_id in zip(descs, diff_ids, strict=True)]

