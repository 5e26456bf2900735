"""containerd's snapshots service: the layered filesystems of images and containers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pouch.actors.containerd.conn import DEFAULT_TIMEOUT, Service
from pouch.actors.containerd.types import Mount, mount_dict, to_datetime
from pouch.proto.containerd.api.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from pouch.proto.docker import SNAPSHOTTER

# A snapshot with this label is a root of containerd's garbage collection: kept, with its
# parents, until removed by name.
GC_ROOT_LABEL: Final = "containerd.io/gc.root"

_SNAPSHOT_KINDS: Final = {
    snapshots_pb2.VIEW: "view",
    snapshots_pb2.ACTIVE: "active",
    snapshots_pb2.COMMITTED: "committed",
}


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    parent: str
    kind: str  # "active", "committed" or "view"
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime


def _snapshot_info(info: Any) -> SnapshotInfo:
    return SnapshotInfo(
        name=info.name,
        parent=info.parent,
        kind=_SNAPSHOT_KINDS.get(info.kind, "unknown"),
        labels=dict(info.labels),
        created_at=to_datetime(info.created_at),
        updated_at=to_datetime(info.updated_at),
    )


class Snapshots(Service):
    """Every call names its snapshotter; overlayfs unless told otherwise."""

    stub = snapshots_pb2_grpc.SnapshotsStub

    def prepare(
        self,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
        *,
        snapshotter: str = SNAPSHOTTER,
        lease: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> list[Mount]:
        """An active (writable) snapshot on top of `parent`; returns how to mount it."""
        request = snapshots_pb2.PrepareSnapshotRequest(
            snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
        )
        response = self._conn.call(self._stub.Prepare, request, timeout, lease)
        return [mount_dict(mount) for mount in response.mounts]

    def view(
        self,
        key: str,
        parent: str,
        labels: Mapping[str, str] | None = None,
        *,
        snapshotter: str = SNAPSHOTTER,
        lease: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> list[Mount]:
        """A read-only snapshot of the committed `parent`; returns how to mount it."""
        request = snapshots_pb2.ViewSnapshotRequest(
            snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
        )
        response = self._conn.call(self._stub.View, request, timeout, lease)
        return [mount_dict(mount) for mount in response.mounts]

    def mounts(
        self,
        key: str,
        *,
        snapshotter: str = SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> list[Mount]:
        request = snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key)
        response = self._conn.call(self._stub.Mounts, request, timeout)
        return [mount_dict(mount) for mount in response.mounts]

    def commit(
        self,
        name: str,
        key: str,
        labels: Mapping[str, str] | None = None,
        *,
        snapshotter: str = SNAPSHOTTER,
        lease: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        """Turn the active snapshot `key` into the committed snapshot `name`."""
        request = snapshots_pb2.CommitSnapshotRequest(
            snapshotter=snapshotter, name=name, key=key, labels=dict(labels or {})
        )
        self._conn.call(self._stub.Commit, request, timeout, lease)

    def remove(
        self,
        key: str,
        *,
        snapshotter: str = SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        request = snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
        self._conn.call(self._stub.Remove, request, timeout, idempotent=True)

    def stat(
        self,
        key: str,
        *,
        snapshotter: str = SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> SnapshotInfo | None:
        request = snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        response = self._conn.find(self._stub.Stat, request, timeout)
        return None if response is None else _snapshot_info(response.info)

    def usage(
        self,
        key: str,
        *,
        snapshotter: str = SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> tuple[int, int]:
        """Disk use of the snapshot's own layer: (bytes, inodes)."""
        request = snapshots_pb2.UsageRequest(snapshotter=snapshotter, key=key)
        response = self._conn.call(self._stub.Usage, request, timeout)
        return int(response.size), int(response.inodes)

    def list(
        self,
        filters: Iterable[str] | None = None,
        *,
        snapshotter: str = SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> list[SnapshotInfo]:
        request = snapshots_pb2.ListSnapshotsRequest(
            snapshotter=snapshotter, filters=list(filters or [])
        )
        return [
            _snapshot_info(info)
            for response in self._conn.stream(self._stub.List, request, timeout)
            for info in response.info
        ]
