"""The gRPC plumbing every containerd service shares.

One `Conn` holds one gRPC channel to the daemon's unix socket and the
containerd namespace every call is scoped to. gRPC channels are thread-safe,
so a `Conn` may be shared by every thread (and pykka actor) of a process.
Every call takes a `timeout` in seconds (None: no deadline) and raises
`PouchError` with containerd's own message. containerd is pouchd's child and
comes back within a second when it dies, so a call made while it is away
waits for it (RECONNECT_WAIT at most, within its deadline) instead of failing
at once. A call that was on the way when it died may or may not have been done:
a lookup or a delete (`idempotent`) is made again of the successor, as doing it
twice is doing it once (a delete done already finds nothing: not_found, which
its callers take as gone); any other fails.
`Conn.error` is the one place where gRPC status codes become pouch error codes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Final

import grpc

from pouch.proto.envelope import ErrorCode, PouchError

DEFAULT_TIMEOUT: Final = 30.0
# Moving or unpacking a whole layer takes longer than a metadata call.
STREAM_TIMEOUT: Final = 600.0
MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
RECONNECT_WAIT: Final = 5.0
# gRPC's words for a call that never reached containerd: it found no connection, or its
# write found the connection closed by a containerd that had gone (before gRPC noticed).
_NOT_CONNECTED: Final = ("failed to connect to all addresses", "sendmsg: Broken pipe")

_CODES: Final[dict[grpc.StatusCode, ErrorCode]] = {
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.ALREADY_EXISTS: "conflict",
    grpc.StatusCode.FAILED_PRECONDITION: "conflict",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
}


def status_code(err: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(err, "code", None)
    return code() if callable(code) else None


def status_details(err: grpc.RpcError) -> str:
    details = getattr(err, "details", None)
    return (details() if callable(details) else None) or str(err)


class Conn:
    """A channel to containerd and the namespace its calls are scoped to."""

    def __init__(self, address: str | Path, namespace: str) -> None:
        self.address = str(Path(str(address).removeprefix("unix://")).absolute())
        self.namespace = namespace
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
            # The peer is a local socket: after containerd restarts, come back
            # within a second rather than after gRPC's default backoff of minutes.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        self.channel = grpc.insecure_channel(f"unix://{self.address}", options=options)

    def close(self) -> None:
        self.channel.close()

    def error(self, err: grpc.RpcError) -> PouchError:
        code, details = status_code(err), status_details(err)
        if code == grpc.StatusCode.UNAVAILABLE:
            return PouchError(
                "unavailable", f"containerd is not reachable at {self.address}: {details}"
            )
        return PouchError(_CODES.get(code, "internal") if code else "internal", details)

    def metadata(self, lease: str | None = None) -> list[tuple[str, str]]:
        metadata = [("containerd-namespace", self.namespace)]
        if lease:
            metadata.append(("containerd-lease", lease))
        return metadata

    def call(
        self, method: Any, request: Any, timeout: float | None, lease: str | None = None,
        idempotent: bool = False,
    ) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        reconnect_by: float | None = None  # set by the first call that finds containerd away
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return method(request, timeout=left, metadata=self.metadata(lease))
            except grpc.RpcError as err:
                if reconnect_by is None:
                    reconnect_by = time.monotonic() + RECONNECT_WAIT
                    if deadline is not None:
                        reconnect_by = min(reconnect_by, deadline)
                if not self._reconnected(err, reconnect_by, idempotent):
                    raise self.error(err) from err

    def _reconnected(self, err: grpc.RpcError, by: float, idempotent: bool) -> bool:
        """The call found containerd away (or, `idempotent`, lost it on the way): whether
        it is back by `by` (monotonic). The channel may still say ready when the call lost
        containerd just now; the call made again then finds no connection, never reached
        containerd, and waits here once more."""
        details = status_details(err)
        if status_code(err) != grpc.StatusCode.UNAVAILABLE or not (
                idempotent or any(words in details for words in _NOT_CONNECTED)):
            return False
        wait = by - time.monotonic()
        if wait <= 0:
            return False
        try:
            grpc.channel_ready_future(self.channel).result(timeout=wait)
        except grpc.FutureTimeoutError:
            return False
        return True

    def find(self, method: Any, request: Any, timeout: float | None) -> Any:
        """A lookup's response, or None when containerd has no such thing."""
        try:
            return self.call(method, request, timeout, idempotent=True)
        except PouchError as err:
            if err.code == "not_found":
                return None
            raise

    def stream(self, method: Any, request: Any, timeout: float | None) -> Iterator[Any]:
        try:
            yield from method(request, timeout=timeout, metadata=self.metadata())
        except grpc.RpcError as err:
            raise self.error(err) from err


class Service:
    """One of containerd's gRPC services, over a shared `Conn`."""

    stub: ClassVar[type[Any]]  # the generated stub class, made on the shared channel

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._stub = self.stub(conn.channel)
