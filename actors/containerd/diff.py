"""containerd's diff service: unpacking a layer onto a snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pouch.actors.containerd.conn import STREAM_TIMEOUT, Service
from pouch.actors.containerd.types import (
    Descriptor,
    descriptor_dict,
    descriptor_message,
    mount_message,
)
from pouch.proto.containerd.api.services.diff.v1 import diff_pb2, diff_pb2_grpc


class Diff(Service):
    stub = diff_pb2_grpc.DiffStub

    def apply(
        self,
        descriptor: Mapping[str, Any],
        mounts: Iterable[Mapping[str, Any]],
        timeout: float | None = STREAM_TIMEOUT,
    ) -> Descriptor:
        """Unpack a layer blob (tar, or gzip'd tar) onto mounts; returns the uncompressed one."""
        request = diff_pb2.ApplyRequest(
            diff=descriptor_message(descriptor),
            mounts=[mount_message(mount) for mount in mounts],
        )
        return descriptor_dict(self._conn.call(self._stub.Apply, request, timeout).applied)
