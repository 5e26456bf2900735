"""containerd's diff service: unpacking a layer onto a snapshot, and the layer of a
snapshot's changes."""

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

    def diff(
        self,
        left: Iterable[Mapping[str, Any]],
        right: Iterable[Mapping[str, Any]],
        media_type: str,
        ref: str = "",
        labels: Mapping[str, str] | None = None,
        lease: str | None = None,
        timeout: float | None = STREAM_TIMEOUT,
    ) -> Descriptor:
        """Store the changes of the `right` mounts over the `left` ones as a layer blob of
        `media_type` (under `lease`); returns its descriptor."""
        request = diff_pb2.DiffRequest(
            left=[mount_message(mount) for mount in left],
            right=[mount_message(mount) for mount in right],
            media_type=media_type, ref=ref, labels=dict(labels or {}),
        )
        return descriptor_dict(self._conn.call(self._stub.Diff, request, timeout, lease).diff)
