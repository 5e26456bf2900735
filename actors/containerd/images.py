"""containerd's images service: names pointing at a manifest (or index) descriptor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pouch.actors.containerd.conn import DEFAULT_TIMEOUT, Service
from pouch.actors.containerd.types import (
    Descriptor,
    descriptor_dict,
    descriptor_message,
    to_datetime,
)
from pouch.proto.containerd.api.services.images.v1 import images_pb2, images_pb2_grpc
from pouch.proto.envelope import PouchError


@dataclass(frozen=True)
class ImageRecord:
    name: str
    target: Descriptor
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime


def _image_record(image: Any) -> ImageRecord:
    return ImageRecord(
        name=image.name,
        target=descriptor_dict(image.target),
        labels=dict(image.labels),
        created_at=to_datetime(image.created_at),
        updated_at=to_datetime(image.updated_at),
    )


def _image_message(name: str, target: Mapping[str, Any], labels: Mapping[str, str] | None) -> Any:
    return images_pb2.Image(name=name, target=descriptor_message(target), labels=dict(labels or {}))


class Images(Service):
    stub = images_pb2_grpc.ImagesStub

    def put(
        self,
        name: str,
        target: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ImageRecord:
        """Create `name`, or point it at the new target if it exists."""
        request = images_pb2.CreateImageRequest(image=_image_message(name, target, labels))
        try:
            return _image_record(self._conn.call(self._stub.Create, request, timeout).image)
        except PouchError as err:
            if err.code != "conflict":
                raise
        return self.update(name, target, labels, timeout)

    def update(
        self,
        name: str,
        target: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ImageRecord:
        """Replace the target and labels of `name`. Errors: not_found."""
        request = images_pb2.UpdateImageRequest(image=_image_message(name, target, labels))
        return _image_record(self._conn.call(self._stub.Update, request, timeout).image)

    def get(self, name: str, timeout: float | None = DEFAULT_TIMEOUT) -> ImageRecord | None:
        request = images_pb2.GetImageRequest(name=name)
        response = self._conn.find(self._stub.Get, request, timeout)
        return None if response is None else _image_record(response.image)

    def list(
        self, filters: Iterable[str] | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> list[ImageRecord]:
        request = images_pb2.ListImagesRequest(filters=list(filters or []))
        response = self._conn.call(self._stub.List, request, timeout)
        return [_image_record(image) for image in response.images]

    def delete(
        self, name: str, sync: bool = False, timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        """Unregister `name`; with sync, containerd also collects garbage before answering."""
        request = images_pb2.DeleteImageRequest(name=name, sync=sync)
        self._conn.call(self._stub.Delete, request, timeout)
