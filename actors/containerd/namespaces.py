"""containerd's namespaces service: the namespace a client works in."""

from __future__ import annotations

from pouch.actors.containerd.conn import DEFAULT_TIMEOUT, Service
from pouch.proto.containerd.api.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from pouch.proto.envelope import PouchError


class Namespaces(Service):
    stub = namespace_pb2_grpc.NamespacesStub

    def ensure(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Create the client's namespace unless it exists."""
        request = namespace_pb2.CreateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=self._conn.namespace)
        )
        try:
            self._conn.call(self._stub.Create, request, timeout)
        except PouchError as err:
            if err.code != "conflict":
                raise
