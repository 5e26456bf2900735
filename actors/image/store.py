"""Put an image read from a `docker save` archive into containerd.

containerd keeps an image as blobs (manifest, config, layers), unpacked
snapshots and a name pointing at the manifest. Its garbage collector keeps
only what a name, a lease or a label leads to, so every link is a label:

    image name -> manifest --gc.ref.content.config--> config --gc.ref.snapshot.<sn>--> top snapshot
                          --gc.ref.content.l.<i>--> layer i           (a snapshot keeps its parents)

Everything is made under one lease, so nothing is collected half-imported.

An untagged image has no name to keep it alive, so it is registered under
its ID (`sha256:<config hex>`): no user can give that name, since Docker reads
it as an image ID, and it is dropped once the image has a real name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import Descriptor
from pouch.actors.image.dockersave import SavedImage, open_member
from pouch.proto.docker import SNAPSHOTTER
from pouch.proto.envelope import PouchError, invalid

MANIFEST_MEDIA_TYPE: Final = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE: Final = "application/vnd.oci.image.config.v1+json"
GC_REF_CONFIG: Final = "containerd.io/gc.ref.content.config"
GC_REF_LAYER: Final = "containerd.io/gc.ref.content.l.{index}"
GC_REF_SNAPSHOT: Final = "containerd.io/gc.ref.snapshot.{snapshotter}"
# On an image's config blob: the ID of the image it was made on here. dockerd keeps
# this apart from the config too, so that it never travels with the image.
PARENT_LABEL: Final = "io.pouch.image.parent"
_ID_NAME: Final = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ImportedImage:
    id: str  # the config digest, Docker's image ID
    manifest_digest: str
    chain_id: str  # the top snapshot's name; "" for an image without layers
    size: int  # bytes the unpacked layers take on disk, as `docker images` shows
    names: list[str]  # the names asked for; empty for an untagged image
    parent: str = ""  # the ID of the image it was made on here (commit, build step)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain ID of every layer: each names a layer together with all below it."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            joined = f"{chains[-1]} {diff_id}".encode()
            chains.append("sha256:" + hashlib.sha256(joined).hexdigest())
    return chains


def diff_ids(config: dict[str, Any]) -> list[str]:
    rootfs = config.get("rootfs")
    layers = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(layers, list) or not all(isinstance(item, str) for item in layers):
        raise invalid("image config has no rootfs.diff_ids")
    return layers


def image_rootfs_chain(config: dict[str, Any]) -> str:
    """The chain ID of an image's top layer ("" when it has none), from its config."""
    chains = chain_ids(diff_ids(config))
    return chains[-1] if chains else ""


def untagged_name(config_digest: str) -> str:
    """The containerd name that keeps an image without a name alive."""
    return config_digest


def is_untagged_name(name: str) -> bool:
    return _ID_NAME.fullmatch(name) is not None


class Layer(Protocol):
    """A layer blob of an image, wherever it came from (an archive, a registry)."""

    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def media_type(self) -> str: ...
    @property
    def diff_id(self) -> str: ...


def _layer_descriptor(layer: Layer) -> Descriptor:
    return {"media_type": layer.media_type, "digest": layer.digest, "size": layer.size}


def _manifest(image: SavedImage) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": image.config_digest,
            "size": len(image.config),
        },
        "layers": [
            {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
            for layer in image.layers
        ],
    }
    # Fixed key order and spacing: the same image always gets the same manifest digest.
    return json.dumps(manifest, separators=(",", ":")).encode()


def _check_layers(image: SavedImage, config: dict[str, Any]) -> list[str]:
    layers = diff_ids(config)
    listed = [layer.diff_id for layer in image.layers]
    if layers != listed:
        raise invalid(
            f"image {image.config_digest}: its config lists layers {layers} "
            f"but the archive holds {listed}"
        )
    return layers


def _write_layers(ctrd: Containerd, archive: Path, image: SavedImage, lease: str) -> None:
    for layer in image.layers:
        # Writing a blob that is already stored costs one round trip and puts it under the lease.
        with open_member(archive, layer.member) as stream:
            ctrd.content.write(
                f"pouch-import-{layer.digest}", stream, layer.size, layer.digest, lease=lease
            )


def unpack_layer(
    ctrd: Containerd,
    layer: Descriptor,
    parent: str,
    snapshotter: str,
    lease: str,
    diff_id: str = "",
    chain_id: str = "",
) -> str:
    """Unpack a stored layer blob onto `parent` with containerd's diff service and commit
    the snapshot as `chain_id`; the layer's diff ID. Without `diff_id` (an import: no
    config says it yet) the one containerd finds is taken, and names a first layer's
    snapshot. Errors: invalid, for a diff ID other than the one expected."""
    key = f"extract-{secrets.token_hex(8)}"
    mounts = ctrd.snapshots.prepare(key, parent, snapshotter=snapshotter, lease=lease)
    try:
        try:
            applied = ctrd.diff.apply(layer, mounts)["digest"]
        except PouchError as err:
            raise invalid(f"layer {layer['digest']} does not unpack: {err.message}") from None
        if diff_id and applied != diff_id:
            raise invalid(
                f"layer {layer['digest']} unpacks to {applied}, "
                f"but the image config says {diff_id}"
            )
        chain_id = chain_id or applied
        try:
            ctrd.snapshots.commit(chain_id, key, snapshotter=snapshotter, lease=lease)
        except PouchError as err:
            # Another import of the same layers may have committed it first: theirs is as good.
            if err.code != "conflict":
                raise
            if ctrd.snapshots.stat(chain_id, snapshotter=snapshotter) is None:
                raise
            ctrd.snapshots.remove(key, snapshotter=snapshotter)
    except BaseException:
        # Gone already, or else left to the lease: the first error is the one to tell.
        with contextlib.suppress(PouchError):
            ctrd.snapshots.remove(key, snapshotter=snapshotter)
        raise
    return applied


def unpack_layers(
    ctrd: Containerd,
    layers: Sequence[Layer],
    snapshotter: str,
    lease: str,
    on_layer: Callable[[Layer, bool], None] | None = None,
    on_extract: Callable[[Layer], None] | None = None,
) -> int:
    """Make the snapshot chain of stored layer blobs; returns the bytes its layers take on
    disk. `on_extract(layer)` comes before a layer is unpacked, `on_layer(layer, unpacked)`
    after each layer (False: its snapshot was there)."""
    size = 0
    parent = ""
    for layer, chain_id in zip(layers, chain_ids([x.diff_id for x in layers]), strict=True):
        unpacked = ctrd.snapshots.stat(chain_id, snapshotter=snapshotter) is None
        if unpacked:
            if on_extract is not None:
                on_extract(layer)
            unpack_layer(ctrd, _layer_descriptor(layer), parent, snapshotter, lease,
                         layer.diff_id, chain_id)
        else:
            # Unreferenced snapshots may be collected at any moment: hold this one.
            ctrd.leases.add_resource(lease, chain_id, f"snapshots/{snapshotter}")
        size += ctrd.snapshots.usage(chain_id, snapshotter=snapshotter)[0]
        parent = chain_id
        if on_layer is not None:
            on_layer(layer, unpacked)
    return size


def link_config(ctrd: Containerd, config_digest: str, chain_id: str, snapshotter: str) -> None:
    """Keep an image's unpacked layers: containerd collects a snapshot nothing leads to."""
    if chain_id:
        ctrd.content.update_labels(
            config_digest, {GC_REF_SNAPSHOT.format(snapshotter=snapshotter): chain_id}
        )


def register(ctrd: Containerd, config_digest: str, names: list[str], target: Descriptor) -> None:
    """Point `names` at an image's manifest; an image without names is kept by its ID."""
    id_name = untagged_name(config_digest)
    for name in names:
        ctrd.images.put(name, target)
    if names:
        try:
            ctrd.images.delete(id_name)
        except PouchError as err:
            if err.code != "not_found":
                raise
    elif not ctrd.images.list([f'target.digest=="{target["digest"]}"']):
        ctrd.images.put(id_name, target)


def import_image(
    ctrd: Containerd,
    archive: Path,
    image: SavedImage,
    names: list[str],
    snapshotter: str = SNAPSHOTTER,
) -> ImportedImage:
    """Store, unpack and name one image of a docker-save archive. Errors: invalid.

    `names` are full references ("docker.io/library/busybox:latest"); each
    is pointed at this image, replacing what it named before. Importing an
    image that is already there changes nothing.
    """
    try:
        config = json.loads(image.config)
    except (ValueError, UnicodeDecodeError) as err:
        raise invalid(f"image config {image.config_digest} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise invalid(f"image config {image.config_digest} is not a JSON object")
    chains = chain_ids(_check_layers(image, config))
    chain_id = chains[-1] if chains else ""
    manifest = _manifest(image)
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    manifest_labels = {GC_REF_CONFIG: image.config_digest} | {
        GC_REF_LAYER.format(index=index): layer.digest for index, layer in enumerate(image.layers)
    }

    with ctrd.leases.hold() as lease:
        _write_layers(ctrd, archive, image, lease)
        ctrd.content.write(
            f"pouch-import-{image.config_digest}",
            image.config,
            len(image.config),
            image.config_digest,
            lease=lease,
        )
        ctrd.content.write(
            f"pouch-import-{manifest_digest}",
            manifest,
            len(manifest),
            manifest_digest,
            lease=lease,
        )
        # Set even when the blob was already stored, since its labels may not be ours.
        ctrd.content.update_labels(manifest_digest, manifest_labels)
        size = unpack_layers(ctrd, image.layers, snapshotter, lease)
        link_config(ctrd, image.config_digest, chain_id, snapshotter)
        target: Descriptor = {
            "media_type": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": len(manifest),
        }
        register(ctrd, image.config_digest, list(names), target)

    return ImportedImage(
        id=image.config_digest,
        manifest_digest=manifest_digest,
        chain_id=chain_id,
        size=size,
        names=list(names),
    )


def remove_image(ctrd: Containerd, name: str, sync: bool = False) -> None:
    """Drop one name; what no name, lease or container holds is collected. Errors: not_found."""
    ctrd.images.delete(name, sync=sync)
