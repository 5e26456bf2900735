"""The image actor: the image index (name -> image), loads, list and inspect.

containerd's image store is the index of record (it persists names and
their manifests); this actor keeps the view Docker's API needs in memory and
rebuilds it from containerd whenever it starts.
"""

from __future__ import annotations

import builtins
import fnmatch
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pouch.actors.containerd.client import Containerd
from pouch.actors.host import ActorBase, ActorContext, Reply
from pouch.actors.image import reference
from pouch.actors.image.dockersave import read_archive
from pouch.actors.image.store import (
    ImportedImage,
    image_rootfs_chain,
    import_image,
    is_untagged_name,
)
from pouch.proto.contract import method
from pouch.proto.docker import SNAPSHOTTER, check_filters, labels_match, resolve_id
from pouch.proto.envelope import PouchError, invalid
from pouch.proto.shapes import ImageInspect, ImagesLoaded, ImageSummary, ResolvedImage

log = logging.getLogger("pouch.image")
SIZE_LABEL = "io.pouch.image.size"


@dataclass
class Image:
    """One image as Docker shows it, with what containers need to run it."""

    id: str                 # sha256:<config digest>
    config: dict[str, Any]  # the image config JSON
    chain_id: str
    size: int
    names: set[str] = field(default_factory=set)  # full references

    def tags(self, default_registry: str) -> list[str]:
        return sorted(reference.familiar_name(n, default_registry) for n in self.names
                      if "@" not in n)

    def digests(self, default_registry: str) -> list[str]:
        return sorted(reference.familiar_name(n, default_registry) for n in self.names
                      if "@" in n)


def _created_unix(created: str) -> int:
    try:
        return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except (ValueError, AttributeError):
        return 0


class ImageActor(ActorBase):
    service = "image"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self._ctrd = Containerd(ctx.config.containerd_socket, lease_owner=self.service)
        self._registry = ctx.config.default_registry
        self._images: dict[str, Image] = {}   # by ID
        self._names: dict[str, str] = {}      # full reference -> ID

    def on_start(self) -> None:
        self._ctrd.wait_ready(30)
        self._ctrd.namespaces.ensure()
        for lease in self._ctrd.leases.drop_stale():
            log.warning("dropped lease %s of an interrupted load", lease)
        self._rebuild()

    def on_stop(self) -> None:
        self._ctrd.close()

    def _rebuild(self) -> None:
        for record in self._ctrd.images.list():
            try:
                manifest = json.loads(self._ctrd.content.read(record.target["digest"]))
                config_digest = manifest["config"]["digest"]
                image = self._images.get(config_digest)
                if image is None:
                    config = json.loads(self._ctrd.content.read(config_digest))
                    image = Image(config_digest, config, image_rootfs_chain(config),
                                  int(record.labels.get(SIZE_LABEL, "0") or 0))
                    self._images[config_digest] = image
                if not is_untagged_name(record.name):
                    image.names.add(record.name)
                    self._names[record.name] = config_digest
            except (PouchError, ValueError, KeyError) as exc:
                log.warning("skipping image %s: %s", record.name, exc)

    # -- lookups -------------------------------------------------------------

    def _find(self, name: str) -> Image:
        """An image by full ID, reference, or unique ID prefix. Errors: not_found, invalid."""
        by_hex = {image_id.removeprefix("sha256:"): image_id for image_id in self._images}
        try:
            named = self._names.get(reference.parse(name, self._registry).full())
        except PouchError:
            named = None
        names = {name: named.removeprefix("sha256:")} if named else {}
        found = resolve_id(name.removeprefix("sha256:"), by_hex, names, "image")
        return self._images[by_hex[found]]

    # -- the contract --------------------------------------------------------

    @method(idempotent=True, returns=ImagesLoaded, errors=("invalid",), timeout=600.0)
    def load(self, path: str, reply: Reply) -> None:
        """Import every image of a docker-save archive at `path`."""
        # A load takes seconds: it runs beside the actor, which keeps answering.
        reply.run_in_thread(self._import_archive, Path(path))

    def _import_archive(self, archive: Path) -> ImagesLoaded:
        if not archive.is_file():
            raise invalid(f"no archive at {archive}")
        names_out: list[str] = []
        untagged: list[str] = []
        for saved in read_archive(archive):
            names = [reference.parse(tag, self._registry).full() for tag in saved.repo_tags]
            imported = import_image(self._ctrd, archive, saved, names, SNAPSHOTTER)
            self.ctx.faults.hit("image.load.unpacked")
            for name in names:
                # Kept on the name, so a restarted actor knows it without walking snapshots.
                record = self._ctrd.images.get(name)
                if record is not None:
                    self._ctrd.images.update(name, record.target,
                                             {**record.labels, SIZE_LABEL: str(imported.size)})
            self.actor_ref.proxy().record_loaded(imported, json.loads(saved.config)).get()
            if names:
                names_out += [reference.familiar_name(n, self._registry) for n in names]
            else:
                untagged.append(imported.id)
        return {"names": names_out, "untagged": untagged}

    def record_loaded(self, imported: ImportedImage, config: dict[str, Any]) -> None:
        """Add a freshly imported image to the index (on the actor's thread)."""
        image = self._images.setdefault(
            imported.id, Image(imported.id, config, imported.chain_id, imported.size))
        image.size = imported.size or image.size
        for name in imported.names:
            previous = self._names.get(name)
            if previous and previous != imported.id and previous in self._images:
                self._images[previous].names.discard(name)
            self._names[name] = imported.id
            image.names.add(name)
        self.publish("image", "load", imported.id)

    @method(idempotent=True, errors=("invalid",))
    def list(self, all: bool = False,
             filters: dict[str, list[str]] | None = None) -> builtins.list[ImageSummary]:
        """Image summaries, as GET /images/json shows them."""
        filters = check_filters(filters, ("reference", "label", "dangling"))
        result: builtins.list[ImageSummary] = []
        for image in self._images.values():
            if not self._passes(image, filters):
                continue
            tags = image.tags(self._registry)
            digests = image.digests(self._registry)
            result.append({
                "Id": image.id, "ParentId": "",
                "RepoTags": tags or ["<none>:<none>"],
                "RepoDigests": digests or ([] if tags else ["<none>@<none>"]),
                "Created": _created_unix(image.config.get("created", "")),
                "Size": image.size, "VirtualSize": image.size, "SharedSize": -1,
                "Labels": (image.config.get("config") or {}).get("Labels") or {},
                "Containers": -1,
            })
        result.sort(key=lambda summary: int(summary["Created"]), reverse=True)
        return result

    def _passes(self, image: Image, filters: dict[str, Any]) -> bool:
        if "dangling" in filters:
            dangling = not image.names
            if any((v == "true") != dangling for v in filters["dangling"]):
                return False
        if "reference" in filters:
            tags = image.tags(self._registry)
            if not any(fnmatch.fnmatch(t, pat) or fnmatch.fnmatch(t.rpartition(":")[0], pat)
                       for t in tags for pat in filters["reference"]):
                return False
        labels = (image.config.get("config") or {}).get("Labels") or {}
        return labels_match(filters.get("label", []), labels)

    @method(idempotent=True, errors=("not_found", "invalid"))
    def inspect(self, name: str) -> ImageInspect:
        """One image, as GET /images/{name}/json shows it."""
        image = self._find(name)
        config = image.config
        return {
            "Id": image.id, "RepoTags": image.tags(self._registry),
            "RepoDigests": image.digests(self._registry),
            "Parent": "", "Comment": config.get("comment", ""),
            "Created": config.get("created", ""), "Container": config.get("container", ""),
            "ContainerConfig": config.get("container_config") or {},
            "DockerVersion": config.get("docker_version", ""),
            "Author": config.get("author", ""), "Config": config.get("config") or {},
            "Architecture": config.get("architecture", ""), "Os": config.get("os", ""),
            "Size": image.size, "VirtualSize": image.size,
            "GraphDriver": {"Name": SNAPSHOTTER, "Data": None},
            "RootFS": {"Type": "layers",
                       "Layers": list((config.get("rootfs") or {}).get("diff_ids") or [])},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }

    @method(idempotent=True, errors=("not_found", "invalid"))
    def resolve(self, name: str) -> ResolvedImage:
        """What a container needs of its image: ID, config, top snapshot."""
        image = self._find(name)
        try:
            full = reference.parse(name, self._registry).full()
        except PouchError:
            full = image.id
        return {"id": image.id, "name": full if full in image.names else image.id,
                "config": image.config.get("config") or {}, "chain_id": image.chain_id,
                "snapshotter": SNAPSHOTTER}

    @method(idempotent=True, timeout=2.0)
    def count(self) -> int:
        """How many images there are."""
        return len(self._images)
