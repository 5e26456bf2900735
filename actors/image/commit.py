"""A new image on top of another: docker commit, and each step of a build.

A container's changes come as a layer blob that containerd's diff service stored
(the container actor's `commit_layer`, under the lease given here); the blob is
unpacked onto the base image's top snapshot, so that the new image's snapshot chain
exists for the containers made from it, and the image gets a config with that
layer's diff ID and a `history` entry, the base's ID as its parent (a label on the
config, see PARENT_LABEL), a manifest, and its names, last. A step that
changes no file (ENV, CMD, ... in a build) makes an image of the base's layers with an
`empty_layer` history entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import Descriptor
from pouch.actors.image.dockersave import MEDIA_TYPE_TAR
from pouch.actors.image.store import (
    CONFIG_MEDIA_TYPE,
    GC_REF_CONFIG,
    GC_REF_LAYER,
    MANIFEST_MEDIA_TYPE,
    PARENT_LABEL,
    ImportedImage,
    chain_ids,
    diff_ids,
    link_config,
    register,
    unpack_layer,
)
from pouch.actors.image.tarcheck import HashingReader, check_layer
from pouch.proto.docker import SNAPSHOTTER


@dataclass(frozen=True)
class Base:
    """The image a new one goes on: its config, its manifest's layers and its ID (none
    for scratch)."""

    config: dict[str, Any]
    layers: list[dict[str, Any]]  # the manifest's layer descriptors, OCI's spelling
    id: str = ""

    @classmethod
    def scratch(cls) -> Base:
        return cls({"architecture": "amd64", "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": []}}, [])


@dataclass(frozen=True)
class Step:
    """How the new image was made, as its history entry tells it."""

    config: dict[str, Any]  # the container config the new image has
    created_by: str
    comment: str = ""
    author: str = ""
    container: str = ""     # the container it was committed from, if any
    container_config: dict[str, Any] | None = None


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def make_image(ctrd: Containerd, lease: str, base: Base, layer: Descriptor | None, step: Step,
               names: list[str]) -> tuple[ImportedImage, dict[str, Any]]:
    """Store the image made of `base`, the uncompressed `layer` blob (None: no layer) and
    `step`, named `names` (none: kept by its ID); it and its config. Everything is made
    under `lease`, so nothing is collected half made."""
    below = list(diff_ids(base.config))
    parent = chain_ids(below)[-1] if below else ""
    layers = list(base.layers)
    created = now()
    if layer is not None:
        diff_id = layer["digest"]  # uncompressed: the blob's digest is the diff ID
        chain = chain_ids([*below, diff_id])[-1]
        if ctrd.snapshots.stat(chain, snapshotter=SNAPSHOTTER) is None:
            unpack_layer(ctrd, layer, parent, SNAPSHOTTER, lease, diff_id, chain)
        else:  # the same changes on the same base, committed before: hold that one
            ctrd.leases.add_resource(lease, chain, f"snapshots/{SNAPSHOTTER}")
        below.append(diff_id)
        layers.append({"mediaType": layer["media_type"], "digest": layer["digest"],
                       "size": layer["size"]})
        parent = chain
    entry: dict[str, Any] = {"created": created, "created_by": step.created_by}
    if step.author:
        entry["author"] = step.author
    if step.comment:
        entry["comment"] = step.comment
    if layer is None:
        entry["empty_layer"] = True
    config: dict[str, Any] = {
        key: value for key, value in base.config.items()
        if key not in ("history", "rootfs", "config", "container", "container_config",
                       "created", "author", "comment")
    }
    config.update({
        "architecture": base.config.get("architecture") or "amd64",
        "os": base.config.get("os") or "linux",
        "created": created, "config": step.config,
        "rootfs": {"type": "layers", "diff_ids": below},
        "history": [*_history(base.config), entry],
    })
    if step.author:
        config["author"] = step.author
    if step.comment:
        config["comment"] = step.comment
    if step.container:
        config["container"] = step.container
    if step.container_config is not None:
        config["container_config"] = step.container_config
    blob = json.dumps(config, separators=(",", ":")).encode()
    config_digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    ctrd.content.write(f"pouch-commit-{config_digest}", blob, len(blob), config_digest,
                       lease=lease)
    if base.id:
        ctrd.content.update_labels(config_digest, {PARENT_LABEL: base.id})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": len(blob)},
        "layers": layers,
    }, separators=(",", ":")).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    labels = {GC_REF_CONFIG: config_digest} | {
        GC_REF_LAYER.format(index=index): item["digest"] for index, item in enumerate(layers)}
    ctrd.content.write(f"pouch-commit-{manifest_digest}", manifest, len(manifest),
                       manifest_digest, labels, lease=lease)
    ctrd.content.update_labels(manifest_digest, labels)
    link_config(ctrd, config_digest, parent, SNAPSHOTTER)
    register(ctrd, config_digest, names, {"media_type": MANIFEST_MEDIA_TYPE,
                                          "digest": manifest_digest, "size": len(manifest)})
    size = sum(ctrd.snapshots.usage(chain, snapshotter=SNAPSHOTTER)[0]
               for chain in chain_ids(below))
    return ImportedImage(config_digest, manifest_digest, parent, size, names, base.id), config


def store_layer(ctrd: Containerd, tarball: Path, lease: str) -> Descriptor:
    """Store an uncompressed layer tar (a build's COPY) as a blob under `lease`. Its
    members are checked as any layer's: none may climb out of the root."""
    with tarball.open("rb") as stream:
        reader = HashingReader(stream)
        check_layer(reader, "the layer", gzipped=False)
        reader.drain(1 << 20)
    with tarball.open("rb") as stream:
        ctrd.content.write(f"pouch-build-{reader.digest}", stream, reader.size, reader.digest,
                           lease=lease)
    return {"media_type": MEDIA_TYPE_TAR, "digest": reader.digest, "size": reader.size}


def _history(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The base's history; one made up per layer for an image that has none."""
    history = config.get("history")
    if isinstance(history, list) and history:
        return list(history)
    return [{"created": config.get("created", "")} for _ in diff_ids(config)]


def _history_key(history: list[Any]) -> str:
    return hashlib.sha256(json.dumps(history, sort_keys=True).encode()).hexdigest()


def parents(configs: dict[str, dict[str, Any]]) -> set[str]:
    """Which of the images (ID -> config) another one was made on (a build step's, a
    commit's base): its history is the start of the other's, which has more. dockerd
    hides those untagged from `docker images` (not from `-a`) and prune keeps them."""
    bases: set[str] = set()
    for config in configs.values():
        history = config.get("history")
        if isinstance(history, list):
            bases.update(_history_key(history[:end]) for end in range(1, len(history)))
    return {image_id for image_id, config in configs.items()
            if isinstance(config.get("history"), list) and config["history"]
            and _history_key(config["history"]) in bases}
