"""containerd's containers service: a container's metadata (spec, snapshot, runtime)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from google.protobuf import any_pb2, field_mask_pb2

from pouch.actors.containerd.conn import DEFAULT_TIMEOUT, Service
from pouch.actors.containerd.types import to_datetime
from pouch.proto.containerd.api.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pouch.proto.docker import SNAPSHOTTER

DEFAULT_RUNTIME: Final = "io.containerd.runc.v2"
SPEC_TYPE_URL: Final = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    image: str
    labels: dict[str, str]
    snapshotter: str
    snapshot_key: str
    runtime: str
    spec_json: bytes
    created_at: datetime
    updated_at: datetime

    @functools.cached_property
    def spec(self) -> dict[str, Any]:
        """The OCI spec, decoded when first asked for: most readers of a container (a
        sweep's list, a create's answer) never look at it."""
        return json.loads(self.spec_json) if self.spec_json else {}


def _container_record(container: Any) -> ContainerRecord:
    return ContainerRecord(
        id=container.id,
        image=container.image,
        labels=dict(container.labels),
        snapshotter=container.snapshotter,
        snapshot_key=container.snapshot_key,
        runtime=container.runtime.name,
        spec_json=container.spec.value,
        created_at=to_datetime(container.created_at),
        updated_at=to_datetime(container.updated_at),
    )


class Containers(Service):
    stub = containers_pb2_grpc.ContainersStub

    def create(
        self,
        container_id: str,
        image: str,
        spec: Mapping[str, Any],
        snapshot_key: str,
        labels: Mapping[str, str] | None = None,
        *,
        snapshotter: str = SNAPSHOTTER,
        runtime: str = DEFAULT_RUNTIME,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ContainerRecord:
        spec_any = any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode())
        container = containers_pb2.Container(
            id=container_id,
            image=image,
            labels=dict(labels or {}),
            runtime=containers_pb2.Container.Runtime(name=runtime),
            spec=spec_any,
            snapshotter=snapshotter,
            snapshot_key=snapshot_key,
        )
        request = containers_pb2.CreateContainerRequest(container=container)
        return _container_record(self._conn.call(self._stub.Create, request, timeout).container)

    def get(
        self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT
    ) -> ContainerRecord | None:
        """The container, or None when containerd has no such container."""
        request = containers_pb2.GetContainerRequest(id=container_id)
        response = self._conn.find(self._stub.Get, request, timeout)
        return None if response is None else _container_record(response.container)

    def list(
        self, filters: Iterable[str] | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> list[ContainerRecord]:
        request = containers_pb2.ListContainersRequest(filters=list(filters or []))
        response = self._conn.call(self._stub.List, request, timeout)
        return [_container_record(container) for container in response.containers]

    def update_spec(self, container_id: str, spec: Mapping[str, Any],
                    timeout: float | None = DEFAULT_TIMEOUT) -> ContainerRecord:
        """Replace the container's OCI spec (what its next task is created from)."""
        container = containers_pb2.Container(
            id=container_id,
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()))
        request = containers_pb2.UpdateContainerRequest(
            container=container, update_mask=field_mask_pb2.FieldMask(paths=["spec"]))
        return _container_record(self._conn.call(self._stub.Update, request, timeout).container)

    def delete(self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        request = containers_pb2.DeleteContainerRequest(id=container_id)
        self._conn.call(self._stub.Delete, request, timeout, idempotent=True)
