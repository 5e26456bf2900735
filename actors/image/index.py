"""The image index: images by ID and by full reference, as Docker's API names them.

containerd's image store is the record (it persists names and the manifests they point
at); the index is the image actor's view of it in memory, rebuilt from containerd when
the actor starts. It does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pouch.actors.image import reference
from pouch.proto.docker import resolve_id
from pouch.proto.envelope import PouchError


def unix_time(stamp: Any) -> int:
    """An image config's RFC 3339 time in Unix seconds; 0 for none or a malformed one."""
    try:
        return int(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


@dataclass
class Image:
    """One image as Docker shows it, with what containers need to run it."""

    id: str                 # sha256:<config digest>
    config: dict[str, Any]  # the image config JSON
    chain_id: str
    size: int
    names: set[str] = field(default_factory=set)  # full references
    # The image it was made on here (a commit's, a build step's), as dockerd records it
    # apart from the config; "" for one pulled, loaded or imported.
    parent: str = ""

    @property
    def created(self) -> int:
        return unix_time(self.config.get("created"))

    @property
    def labels(self) -> dict[str, str]:
        return (self.config.get("config") or {}).get("Labels") or {}

    def tags(self, default_registry: str) -> list[str]:
        return sorted(reference.familiar_name(n, default_registry) for n in self.names
                      if "@" not in n)

    def digests(self, default_registry: str) -> list[str]:
        return sorted(reference.familiar_name(n, default_registry) for n in self.names
                      if "@" in n)


class ImageIndex:
    def __init__(self, default_registry: str) -> None:
        self.registry = default_registry
        self._images: dict[str, Image] = {}  # by ID
        self._names: dict[str, str] = {}     # full reference -> ID

    def __len__(self) -> int:
        return len(self._images)

    def __iter__(self) -> Iterator[Image]:
        return iter(list(self._images.values()))

    def get(self, image_id: str) -> Image | None:
        return self._images.get(image_id)

    def named(self, name: str) -> Image | None:
        """The image a full reference names."""
        image_id = self._names.get(name)
        return self._images.get(image_id) if image_id else None

    def find(self, name: str) -> Image:
        """An image by full ID, reference, or unique ID prefix. Errors: not_found, invalid."""
        by_hex = {image_id.removeprefix("sha256:"): image_id for image_id in self._images}
        try:
            named = self._names.get(reference.parse(name, self.registry).full())
        except PouchError:
            named = None
        names = {name: named.removeprefix("sha256:")} if named else {}
        found = resolve_id(name.removeprefix("sha256:"), by_hex, names, "image")
        return self._images[by_hex[found]]

    def add(self, image_id: str, config: dict[str, Any], chain_id: str, size: int,
            names: list[str], parent: str = "") -> Image:
        """Record an image (or more names of one known), taking each name from the image
        that had it; a size of 0 keeps the one known, as does an empty `parent`."""
        image = self._images.setdefault(image_id, Image(image_id, config, chain_id, size))
        image.parent = parent or image.parent
        image.size = size or image.size
        for name in names:
            previous = self._names.get(name)
            if previous and previous != image_id and previous in self._images:
                self._images[previous].names.discard(name)
            self._names[name] = image_id
            image.names.add(name)
        return image

    def drop(self, image_id: str, names: set[str], deleted: bool) -> None:
        """Forget names, and the image itself if `deleted`."""
        image = self._images.get(image_id)
        for name in names:
            self._names.pop(name, None)
            if image is not None:
                image.names.discard(name)
        if deleted:
            self._images.pop(image_id, None)

    def repository(self, name: str) -> str:
        """The full repository of a full reference: no tag, no digest."""
        return reference.parse(name, self.registry).name

    def familiar(self, name: str) -> str:
        return reference.familiar_name(name, self.registry)

    def tagged(self, repository: str) -> list[tuple[Image, str]]:
        """Every tag of a full repository, with its image, in name order."""
        return [(self._images[image_id], name) for name, image_id in sorted(self._names.items())
                if "@" not in name and self.repository(name) == repository
                and image_id in self._images]

    def single_reference(self, image: Image) -> bool:
        """Whether the image's names are at most one tag, all in one repository: what
        `docker rmi <ID>` drops without force (dockerd's isSingleReference). False for an
        image without names."""
        tags = [name for name in image.names if "@" not in name]
        return len(tags) <= 1 and len({self.repository(name) for name in image.names}) == 1

    def dropped_with(self, image: Image, name: str) -> set[str]:
        """`name`, and the digests of its repository once no tag of it is left, as dockerd."""
        repository = self.repository(name)
        same_repo = {n for n in image.names - {name} if self.repository(n) == repository}
        if any("@" not in n for n in same_repo):
            return {name}  # a tag of the repository is left: its digests stay with it
        return {name} | same_repo

    def mountable_from(self, image: Image, repository: reference.Reference) -> list[str]:
        """The image's other repositories on `repository`'s registry (without the
        registry), which a push there may mount its layers from."""
        return sorted({self.repository(n).partition("/")[2] for n in image.names
                       if self.repository(n) != repository.name
                       and self.repository(n).startswith(repository.registry + "/")})
