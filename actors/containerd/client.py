"""A thin typed client for containerd's gRPC API (containerd 1.6), split by service
as containerd's Go client is: ``ctrd.snapshots.remove(key)``, ``ctrd.tasks.kill(id, sig)``.

One `Containerd` owns one channel (see `conn`) shared by its services; it may
be shared by every thread of a process.
"""

from __future__ import annotations

import time
from pathlib import Path

from google.protobuf import empty_pb2

from pouch.actors.containerd.conn import DEFAULT_TIMEOUT, Conn
from pouch.actors.containerd.containers import Containers
from pouch.actors.containerd.content import Content
from pouch.actors.containerd.diff import Diff
from pouch.actors.containerd.events import Events
from pouch.actors.containerd.images import Images
from pouch.actors.containerd.leases import Leases
from pouch.actors.containerd.namespaces import Namespaces
from pouch.actors.containerd.snapshots import Snapshots
from pouch.actors.containerd.tasks import Tasks
from pouch.proto.containerd.api.services.version.v1 import version_pb2_grpc
from pouch.proto.envelope import PouchError


class Containerd:
    """containerd's services, scoped to one namespace."""

    def __init__(self, address: str | Path, namespace: str = "pouch",
                 lease_owner: str = "") -> None:
        """`lease_owner` labels every lease this client creates (see Leases)."""
        self._conn = Conn(address, namespace)
        self.address = self._conn.address
        self.namespace = namespace
        self.namespaces = Namespaces(self._conn)
        self.content = Content(self._conn)
        self.images = Images(self._conn)
        self.snapshots = Snapshots(self._conn)
        self.diff = Diff(self._conn)
        self.leases = Leases(self._conn, lease_owner)
        self.containers = Containers(self._conn)
        self.tasks = Tasks(self._conn)
        self.events = Events(self._conn)
        self._version = version_pb2_grpc.VersionStub(self._conn.channel)

    def __enter__(self) -> Containerd:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def version(self, timeout: float | None = DEFAULT_TIMEOUT) -> str:
        return str(self._conn.call(self._version.Version, empty_pb2.Empty(), timeout).version)

    def revision(self, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[str, str]:
        """containerd's version and the revision (commit) it was built from."""
        answer = self._conn.call(self._version.Version, empty_pb2.Empty(), timeout)
        return str(answer.version), str(answer.revision)

    def wait_ready(self, timeout: float) -> None:
        """Return once containerd answers; raise timeout if it does not within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                self.version(timeout=max(0.05, min(1.0, remaining)))
                return
            except PouchError as err:
                if err.code not in ("unavailable", "timeout"):
                    raise
                if time.monotonic() >= deadline:
                    raise PouchError(
                        "timeout",
                        f"containerd at {self.address} did not answer within {timeout:g}s: "
                        f"{err.message}",
                    ) from err
            time.sleep(0.05)
