"""`docker import`: a root file system tarball becomes a one-layer image.

The tarball (plain or gzip'd) is stored as the layer blob as it came; containerd's diff
service unpacks it and says its uncompressed digest, which is the layer's diff ID. Only
its tar headers are read here, in the pass that hashes it and before anything is
stored: a member that escapes the root file system is refused (see tarcheck).
`changes` are Dockerfile instructions applied to the new image's config, as dockerd
takes them (pouch.actors.builder.metadata.apply_changes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pouch.actors.builder.metadata import apply_changes
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import Descriptor
from pouch.actors.image.dockersave import MEDIA_TYPE_TAR, MEDIA_TYPE_TAR_GZIP
from pouch.actors.image.store import (
    CONFIG_MEDIA_TYPE,
    GC_REF_CONFIG,
    GC_REF_LAYER,
    MANIFEST_MEDIA_TYPE,
    ImportedImage,
    link_config,
    register,
    unpack_layer,
)
from pouch.actors.image.tarcheck import HashingReader, check_layer
from pouch.proto.docker import SNAPSHOTTER
from pouch.proto.envelope import PouchError, invalid

_CHUNK: Final = 1 << 20


def import_rootfs(ctrd: Containerd, tarball: Path, changes: Sequence[str], message: str,
                  names: list[str],
                  snapshotter: str = SNAPSHOTTER) -> tuple[ImportedImage, dict[str, Any]]:
    """Make an image of one layer from a root file system tarball: it, and its config.
    Errors: invalid."""
    container_config = apply_changes(changes, {})
    digest, size, head = _describe(tarball)
    media_type = MEDIA_TYPE_TAR_GZIP if head.startswith(b"\x1f\x8b") else MEDIA_TYPE_TAR
    layer: Descriptor = {"media_type": media_type, "digest": digest, "size": size}
    with ctrd.leases.hold() as lease:
        with tarball.open("rb") as stream:
            ctrd.content.write(f"pouch-import-{digest}", stream, size, digest, lease=lease)
        try:
            diff_id = unpack_layer(ctrd, layer, "", snapshotter, lease)
        except PouchError as exc:
            if exc.code != "invalid":
                raise
            raise invalid(f"the root file system archive is not a tar: {exc.message}") from None
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        # The body is the only source taken (fromSrc=-), so dockerd's "Imported from <src>".
        comment = message or "Imported from -"
        image_config = {
            "architecture": "amd64", "os": "linux", "created": now, "comment": comment,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": now, "created_by": "", "comment": comment}],
        }
        config = json.dumps(image_config, separators=(",", ":")).encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        ctrd.content.write(f"pouch-import-{config_digest}", config, len(config), config_digest,
                           lease=lease)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": media_type, "digest": digest, "size": size}],
        }, separators=(",", ":")).encode()
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        labels = {GC_REF_CONFIG: config_digest, GC_REF_LAYER.format(index=0): digest}
        ctrd.content.write(f"pouch-import-{manifest_digest}", manifest, len(manifest),
                           manifest_digest, labels, lease=lease)
        link_config(ctrd, config_digest, diff_id, snapshotter)
        register(ctrd, config_digest, names, {"media_type": MANIFEST_MEDIA_TYPE,
                                              "digest": manifest_digest,
                                              "size": len(manifest)})
        used = ctrd.snapshots.usage(diff_id, snapshotter=snapshotter)[0]
    return ImportedImage(config_digest, manifest_digest, diff_id, used, names), image_config


def _describe(path: Path) -> tuple[str, int, bytes]:
    """The tarball's digest, size and first bytes, in one read that also refuses a
    member escaping the root. Errors: invalid."""
    with path.open("rb") as stream:
        reader = HashingReader(stream)
        head = reader.head(8)
        if not head:
            raise invalid("the root file system archive is empty")
        check_layer(reader, "the root file system archive", gzipped=head.startswith(b"\x1f\x8b"))
        reader.drain(_CHUNK)
    return reader.digest, reader.size, head

