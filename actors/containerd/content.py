"""containerd's content service: blobs (layers, configs, manifests) by digest."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Final

import grpc
from google.protobuf import field_mask_pb2

from pouch.actors.containerd.conn import (
    DEFAULT_TIMEOUT,
    STREAM_TIMEOUT,
    Service,
    status_code,
    status_details,
)
from pouch.actors.containerd.types import to_datetime
from pouch.proto.containerd.api.services.content.v1 import content_pb2, content_pb2_grpc
from pouch.proto.envelope import PouchError, invalid

CHUNK_SIZE: Final = 1024 * 1024
READ_WINDOW: Final = 64 * CHUNK_SIZE


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime


def _blob_info(info: Any) -> BlobInfo:
    return BlobInfo(
        digest=info.digest,
        size=info.size,
        labels=dict(info.labels),
        created_at=to_datetime(info.created_at),
        updated_at=to_datetime(info.updated_at),
    )


class Content(Service):
    stub = content_pb2_grpc.ContentStub

    def write(
        self,
        ref: str,
        data: bytes | BinaryIO,
        size: int,
        digest: str,
        labels: Mapping[str, str] | None = None,
        *,
        lease: str | None = None,
        timeout: float | None = STREAM_TIMEOUT,
    ) -> None:
        """Store a blob of known size and digest; a blob already stored is a success.

        `ref` names the upload; two writers of one ref exclude each other, so
        a writer that finds the ref busy waits for the other to finish.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self._write_once(ref, data, size, digest, labels, lease, remaining)
                return
            except PouchError:
                # What was sent so far is of no use: drop it rather than leave it for GC.
                with contextlib.suppress(grpc.RpcError):
                    self._stub.Abort(
                        content_pb2.AbortRequest(ref=ref),
                        timeout=DEFAULT_TIMEOUT,
                        metadata=self._conn.metadata(),
                    )
                raise
            except grpc.RpcError as err:
                code = status_code(err)
                # Also how a blob already stored answers; it is then held by the lease too.
                if code == grpc.StatusCode.ALREADY_EXISTS:
                    return
                # containerd reports a ref held by another writer as Unavailable ("locked").
                busy = code == grpc.StatusCode.UNAVAILABLE and "locked" in status_details(err)
                if not busy or (deadline is not None and time.monotonic() >= deadline):
                    raise self._conn.error(err) from err
            # Once the other writer is done, a retry finds the blob stored (or the ref free).
            time.sleep(0.1)
            if not isinstance(data, bytes):
                data.seek(0)

    def _write_once(
        self,
        ref: str,
        data: bytes | BinaryIO,
        size: int,
        digest: str,
        labels: Mapping[str, str] | None,
        lease: str | None,
        timeout: float | None,
    ) -> None:
        # containerd answers each request of the Write stream in turn, so the
        # requests are fed one at a time, each after the previous answer.
        requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def feed() -> Iterator[Any]:
            while (request := requests.get()) is not None:
                yield request

        responses = self._stub.Write(feed(), timeout=timeout, metadata=self._conn.metadata(lease))

        def exchange(**fields: Any) -> Any:
            requests.put(content_pb2.WriteContentRequest(ref=ref, **fields))
            try:
                return next(responses)
            except StopIteration:
                raise PouchError(
                    "internal", f"containerd ended the write of {digest} early"
                ) from None

        try:
            status = exchange(action=content_pb2.STAT, total=size, expected=digest)
            # A blob that another namespace already holds shows as fully written.
            if status.offset != size or size == 0:
                _send_chunks(exchange, data, size, digest)
            # A request at offset 0 makes containerd truncate the upload, commits too.
            exchange(
                action=content_pb2.COMMIT,
                offset=size,
                total=size,
                expected=digest,
                labels=dict(labels or {}),
            )
        finally:
            requests.put(None)
            responses.cancel()

    def read(self, digest: str, timeout: float | None = STREAM_TIMEOUT) -> bytes:
        """A whole blob in memory: meant for configs and manifests, not layers."""
        request = content_pb2.ReadContentRequest(digest=digest)
        return b"".join(
            response.data for response in self._conn.stream(self._stub.Read, request, timeout)
        )

    def read_stream(
        self, digest: str, window: int = READ_WINDOW, timeout: float | None = STREAM_TIMEOUT
    ) -> Iterator[bytes]:
        """A blob's bytes in chunks, for layers. Errors: not_found.

        Each Read asks for `window` bytes from where the last one ended, so a slow
        reader of a large blob runs into no deadline: `timeout` bounds one window.
        """
        info = self.info(digest)
        if info is None:
            raise PouchError("not_found", f"content {digest} not found")
        offset = 0
        while offset < info.size:
            request = content_pb2.ReadContentRequest(
                digest=digest, offset=offset, size=min(window, info.size - offset)
            )
            before = offset
            for response in self._conn.stream(self._stub.Read, request, timeout):
                offset += len(response.data)
                yield response.data
            if offset == before:
                raise PouchError(
                    "internal", f"containerd ended {digest} after {offset} of {info.size} bytes"
                )

    def info(self, digest: str, timeout: float | None = DEFAULT_TIMEOUT) -> BlobInfo | None:
        request = content_pb2.InfoRequest(digest=digest)
        response = self._conn.find(self._stub.Info, request, timeout)
        return None if response is None else _blob_info(response.info)

    def update_labels(
        self,
        digest: str,
        labels: Mapping[str, str | None],
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> BlobInfo:
        """Set the given labels (None removes one); other labels stay as they are."""
        values = {key: value for key, value in labels.items() if value is not None}
        request = content_pb2.UpdateRequest(
            info=content_pb2.Info(digest=digest, labels=values),
            update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels]),
        )
        return _blob_info(self._conn.call(self._stub.Update, request, timeout).info)


def _send_chunks(exchange: Any, data: bytes | BinaryIO, size: int, digest: str) -> None:
    hasher = hashlib.sha256()
    offset = 0
    while offset < size:
        if isinstance(data, bytes):
            chunk = data[offset : offset + CHUNK_SIZE]
        else:
            chunk = data.read(min(CHUNK_SIZE, size - offset))
        if not chunk:
            raise invalid(f"blob {digest} ended after {offset} of {size} bytes")
        hasher.update(chunk)
        # Offset 0 also restarts an upload that an earlier writer left half done.
        exchange(action=content_pb2.WRITE, offset=offset, data=chunk)
        offset += len(chunk)
    actual = f"sha256:{hasher.hexdigest()}"
    if actual != digest:
        raise invalid(f"blob digest mismatch: expected {digest}, got {actual}")
