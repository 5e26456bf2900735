"""containerd's leases service: what is made under a lease is safe from garbage collection."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from google.protobuf import timestamp_pb2

from pouch.actors.containerd.conn import DEFAULT_TIMEOUT, Conn, Service
from pouch.actors.containerd.types import rfc3339
from pouch.proto.containerd.api.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.containerd")

GC_EXPIRE_LABEL: Final = "containerd.io/gc.expire"
LEASE_OWNER_LABEL: Final = "io.pouch.lease-owner"


class Leases(Service):
    stub = leases_pb2_grpc.LeasesStub

    def __init__(self, conn: Conn, owner: str = "") -> None:
        """`owner` labels every lease made here, so that the leases a crashed owner
        left behind can be found and dropped (drop_stale)."""
        super().__init__(conn)
        self._owner = owner

    def create(
        self,
        expire_seconds: int = 3600,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> str:
        """A lease keeps what is made under it from garbage collection until it ends."""
        expiry = timestamp_pb2.Timestamp()
        expiry.FromDatetime(datetime.now(UTC) + timedelta(seconds=expire_seconds))
        lease_labels = {GC_EXPIRE_LABEL: rfc3339(expiry), **(labels or {})}
        if self._owner:
            lease_labels[LEASE_OWNER_LABEL] = self._owner
        request = leases_pb2.CreateRequest(id=f"pouch-{secrets.token_hex(8)}", labels=lease_labels)
        return str(self._conn.call(self._stub.Create, request, timeout).lease.id)

    def delete(
        self, lease_id: str, sync: bool = False, timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        """End a lease; with sync, containerd also collects garbage before answering."""
        request = leases_pb2.DeleteRequest(id=lease_id, sync=sync)
        self._conn.call(self._stub.Delete, request, timeout)

    def drop_stale(self, timeout: float | None = DEFAULT_TIMEOUT) -> list[str]:
        """Delete the leases of this client's owner: call it before the owner starts work,
        when none of its own can be in use. Returns their ids."""
        if not self._owner:
            return []
        request = leases_pb2.ListRequest(filters=[f'labels."{LEASE_OWNER_LABEL}"=={self._owner}'])
        stale = [lease.id for lease in self._conn.call(self._stub.List, request, timeout).leases]
        for lease_id in stale:
            self.delete(lease_id, timeout=timeout)
        return stale

    def add_resource(
        self,
        lease_id: str,
        resource_id: str,
        resource_type: str,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        """Hold an existing resource under a lease, e.g. ("sha256:…", "content") or
        (a snapshot key, "snapshots/overlayfs")."""
        request = leases_pb2.AddResourceRequest(
            id=lease_id, resource=leases_pb2.Resource(id=resource_id, type=resource_type)
        )
        self._conn.call(self._stub.AddResource, request, timeout)

    @contextlib.contextmanager
    def hold(self, end_later: bool = False) -> Iterator[str]:
        """A lease for the duration of the block, ended when it ends. `end_later`: a
        block that succeeded does not wait for the end, which a thread of its own asks
        for (what was made is held by something else by then; a lease that an owner's
        death leaves is dropped at its next start, and expires anyway)."""
        lease_id = self.create()
        try:
            yield lease_id
        except BaseException:
            # The lease expires by itself: never hide the first error behind this one.
            with contextlib.suppress(PouchError):
                self.delete(lease_id)
            raise
        if end_later:
            threading.Thread(target=self._end_quietly, args=(lease_id,), daemon=True,
                             name="lease-end").start()
        else:
            self.delete(lease_id)

    def _end_quietly(self, lease_id: str) -> None:
        try:
            self.delete(lease_id)
        except PouchError as exc:
            log.warning("ending lease %s: %s", lease_id, exc.message)
