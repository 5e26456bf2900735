"""containerd's content service: blobs (layers, configs, manifests) by digest."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import grpc
from google.protobuf import field_mask_pb2

from pouch.actors.containerd.conn import (
    DEFAULT_TIMEOUT,
    STREAM_TIMEOUT,
    Conn,
    Service,
    status_code,
    status_details,
)
from pouch.actors.containerd.types import to_datetime
from pouch.proto.containerd.api.services.content.v1 import content_pb2, content_pb2_grpc
from pouch.proto.envelope import PouchError, invalid

# Bytes a WRITE request carries: fewer, larger requests cost less CPU on both sides of
# the stream (conn's 16 MiB message limit is well above).
CHUNK_SIZE: Final = 4 * 1024 * 1024
# WRITE requests that may await containerd's answer at once: the next chunk is read
# and sent while containerd stores the one before, instead of one round trip a chunk.
WRITE_AHEAD: Final = 2
READ_WINDOW: Final = 64 * 1024 * 1024

_SERVICE: Final = content_pb2.DESCRIPTOR.services_by_name["Content"]
_WRITE_METHOD: Final = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Write'].name}"
# WriteContentRequest.data's key on the wire: its field number, length-delimited (2).
_DATA_KEY: Final = bytes(
    [content_pb2.WriteContentRequest.DESCRIPTOR.fields_by_name["data"].number << 3 | 2]
)


class Readable(Protocol):
    """What `Content.write` reads a blob from: a binary file, or any such reader."""

    def read(self, size: int, /) -> bytes: ...


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

    def __init__(self, conn: Conn) -> None:
        super().__init__(conn)
        # Write's requests go as the bytes queued (see `_write_once`), not as messages.
        self._write = conn.channel.stream_stream(
            _WRITE_METHOD,
            response_deserializer=content_pb2.WriteContentResponse.FromString,
        )

    def write(
        self,
        ref: str,
        data: bytes | Readable,
        size: int,
        digest: str,
        labels: Mapping[str, str] | None = None,
        *,
        lease: str | None = None,
        timeout: float | None = STREAM_TIMEOUT,
    ) -> None:
        """Store a blob of known size and digest; a blob already stored is a success.

        containerd checks the size and digest of what it got before it stores
        it: bytes that are not the blob's are refused as invalid, naming it.
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
                # containerd reports a ref held by another writer as Unavailable ("locked"),
                # in answer to the first request: nothing was read from `data` yet.
                busy = code == grpc.StatusCode.UNAVAILABLE and "locked" in status_details(err)
                if not busy or (deadline is not None and time.monotonic() >= deadline):
                    raise self._conn.error(err) from err
            # Once the other writer is done, a retry finds the blob stored (or the ref free).
            time.sleep(0.1)

    def _write_once(
        self,
        ref: str,
        data: bytes | Readable,
        size: int,
        digest: str,
        labels: Mapping[str, str] | None,
        lease: str | None,
        timeout: float | None,
    ) -> None:
        # The Write stream sends what is queued here; containerd answers each request
        # in turn, so answers match requests by counting.
        requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

        def feed() -> Iterator[bytes]:
            while (request := requests.get()) is not None:
                yield request

        responses = self._write(feed(), timeout=timeout, metadata=self._conn.metadata(lease))

        def send(data: Sequence[bytes | memoryview] = (), **fields: Any) -> None:
            requests.put(write_request(ref, data, **fields))

        def answer() -> Any:
            try:
                return next(responses)
            except StopIteration:
                raise PouchError(
                    "internal", f"containerd ended the write of {digest} early"
                ) from None

        try:
            send(action=content_pb2.STAT, total=size, expected=digest)
            status = answer()
            # A blob that another namespace already holds shows as fully written.
            if status.offset != size or size == 0:
                _send_chunks(send, answer, data, size, digest)
            # A request at offset 0 makes containerd truncate the upload, commits too.
            send(
                action=content_pb2.COMMIT,
                offset=size,
                total=size,
                expected=digest,
                labels=dict(labels or {}),
            )
            try:
                answer()
            except grpc.RpcError as err:
                # containerd's own check of the size and digest, the one that counts: the
                # bytes are not hashed here too.
                if status_code(err) != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                raise invalid(
                    f"blob {digest} failed verification: {status_details(err)}"
                ) from None
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


def _send_chunks(
    send: Callable[..., None],
    answer: Callable[[], Any],
    data: bytes | Readable,
    size: int,
    digest: str,
) -> None:
    """WRITE the blob's bytes, WRITE_AHEAD requests at most waiting for their answer."""
    # Slices of a memoryview are views: each byte is copied once, into its request.
    whole = memoryview(data) if isinstance(data, bytes) else data
    offset = 0
    waiting = 0
    while offset < size:
        end = min(offset + CHUNK_SIZE, size)
        # A reader may hand over less than asked (a download, its chunks as they come):
        # what it hands over is gathered into requests of CHUNK_SIZE.
        pieces: list[bytes | memoryview] = []
        got = offset
        while got < end:
            piece = whole[got:end] if isinstance(whole, memoryview) else whole.read(end - got)
            if not piece:
                raise invalid(f"blob {digest} ended after {got} of {size} bytes")
            pieces.append(piece)
            got += len(piece)
        # Offset 0 also restarts an upload that an earlier writer left half done.
        send(pieces, action=content_pb2.WRITE, offset=offset)
        offset = end
        waiting += 1
        if waiting == WRITE_AHEAD:
            answer()
            waiting -= 1
    for _ in range(waiting):
        answer()


def write_request(ref: str, data: Sequence[bytes | memoryview] = (), **fields: Any) -> bytes:
    """A WriteContentRequest, serialized: the bytes protobuf would make of it, with `data`
    (in pieces) its data.

    The data is appended as the last field, in one copy, rather than put in a message
    that is then serialized, which would copy it twice more (measured: a third of the
    writer's CPU).
    """
    head = content_pb2.WriteContentRequest(ref=ref, **fields).SerializeToString()
    length = sum(len(piece) for piece in data)
    # protobuf leaves empty bytes out.
    return b"".join((head, _DATA_KEY, _varint(length), *data)) if length else head


def _varint(value: int) -> bytes:
    """`value` as a protobuf varint: 7 bits a byte, least significant first."""
    encoded = bytearray()
    while value > 0x7F:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)
