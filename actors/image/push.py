"""Push: an image's blobs and manifest from containerd to a registry, saying how it goes
in Docker's progress messages.

A layer the registry has already is skipped, one it has in another repository is
mounted from there (no upload), the others are uploaded a few at a time; the manifest
goes last, so a push cut halfway leaves the tag as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import Descriptor
from pouch.actors.image.pull import Progress, parse_manifest, progress_message, short_id
from pouch.actors.image.registry import Registry
from pouch.proto.shapes import PullProgress

PARALLEL_UPLOADS: Final = 3
PROGRESS_EVERY: Final = 0.1  # seconds between two "Pushing" messages of one layer


class Push:
    """One push of one image to one repository."""

    def __init__(self, ctrd: Containerd, registry: Registry, say: Progress) -> None:
        self._ctrd = ctrd
        self._registry = registry
        self.say = say

    def run(self, target: Descriptor, tag: str, mount_from: list[str]) -> str:
        """Push the image whose manifest is `target` as `tag`; the manifest's digest.
        `mount_from`: repositories of the same registry that may hold its layers."""
        manifest = self._ctrd.content.read(target["digest"])
        config, layers = parse_manifest(target["media_type"], target["digest"], manifest)
        for layer in layers:
            self.say(progress_message("Preparing", short_id(layer["digest"])))
        with ThreadPoolExecutor(PARALLEL_UPLOADS, thread_name_prefix="push-layer") as pool:
            for future in [pool.submit(self._layer, layer, mount_from) for layer in layers]:
                future.result()  # the first failure ends the push
        if not self._registry.blob_exists(config["digest"]):
            self._registry.push_blob(config, self._ctrd.content.read_stream(config["digest"]))
        return self._registry.put_manifest(tag, target["media_type"], manifest)

    def _layer(self, layer: Descriptor, mount_from: list[str]) -> None:
        layer_id = short_id(layer["digest"])
        if self._registry.blob_exists(layer["digest"]):
            self.say(progress_message("Layer already exists", layer_id))
            return
        for repository in mount_from:
            if self._registry.mount_blob(layer["digest"], repository):
                self.say(progress_message(f"Mounted from {repository}", layer_id))
                return
        self._registry.push_blob(layer, self._counted(layer, layer_id))
        self.say(progress_message("Pushed", layer_id))

    def _counted(self, layer: Descriptor, layer_id: str) -> Iterator[bytes]:
        sent, last = 0, 0.0
        for chunk in self._ctrd.content.read_stream(layer["digest"]):
            yield chunk
            sent += len(chunk)
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY or sent == layer["size"]:
                last = now
                self.say(progress_message("Pushing", layer_id, sent, layer["size"]))


def pushed_message(tag: str, digest: str, size: int) -> PullProgress:
    """The line the CLI prints at the end: `<tag>: digest: sha256:... size: N`."""
    return {"status": f"{tag}: digest: {digest} size: {size}"}

