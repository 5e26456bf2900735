"""A thin typed client for containerd's gRPC API (containerd 1.6).

One `Containerd` object holds one gRPC channel to the daemon's unix socket.
gRPC channels are thread-safe, so the object may be shared by every thread
(and pykka actor) of a process. Every call is scoped to the object's
containerd namespace, takes a `timeout` in seconds (None: no deadline) and
raises `PouchError` with containerd's own message; `_error` is the one place
where gRPC status codes become pouch error codes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final, NamedTuple, TypedDict

import grpc
from google.protobuf import any_pb2, empty_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message

import pouch.proto.containerd.api.events.container_pb2 as container_events
import pouch.proto.containerd.api.events.content_pb2 as content_events
import pouch.proto.containerd.api.events.image_pb2 as image_events
import pouch.proto.containerd.api.events.namespace_pb2 as namespace_events
import pouch.proto.containerd.api.events.snapshot_pb2 as snapshot_events
import pouch.proto.containerd.api.events.task_pb2 as task_events
from pouch.proto.containerd.api.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pouch.proto.containerd.api.services.content.v1 import content_pb2, content_pb2_grpc
from pouch.proto.containerd.api.services.diff.v1 import diff_pb2, diff_pb2_grpc
from pouch.proto.containerd.api.services.events.v1 import events_pb2, events_pb2_grpc
from pouch.proto.containerd.api.services.images.v1 import images_pb2, images_pb2_grpc
from pouch.proto.containerd.api.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pouch.proto.containerd.api.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from pouch.proto.containerd.api.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from pouch.proto.containerd.api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pouch.proto.containerd.api.services.version.v1 import version_pb2_grpc
from pouch.proto.containerd.api.types import descriptor_pb2, mount_pb2
from pouch.proto.containerd.api.types.task import task_pb2
from pouch.proto.envelope import ErrorCode, PouchError, invalid

DEFAULT_TIMEOUT: Final = 30.0
# Moving or unpacking a whole layer takes longer than a metadata call.
STREAM_TIMEOUT: Final = 600.0
DEFAULT_SNAPSHOTTER: Final = "overlayfs"
DEFAULT_RUNTIME: Final = "io.containerd.runc.v2"
SPEC_TYPE_URL: Final = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
GC_EXPIRE_LABEL: Final = "containerd.io/gc.expire"
LEASE_OWNER_LABEL: Final = "io.pouch.lease-owner"
CHUNK_SIZE: Final = 1024 * 1024
MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024

_CODES: Final[dict[grpc.StatusCode, ErrorCode]] = {
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.ALREADY_EXISTS: "conflict",
    grpc.StatusCode.FAILED_PRECONDITION: "conflict",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
}

_SNAPSHOT_KINDS: Final = {
    snapshots_pb2.VIEW: "view",
    snapshots_pb2.ACTIVE: "active",
    snapshots_pb2.COMMITTED: "committed",
}


class Mount(TypedDict):
    type: str
    source: str
    options: list[str]


class Descriptor(TypedDict):
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ImageRecord:
    name: str
    target: Descriptor
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    parent: str
    kind: str  # "active", "committed" or "view"
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    image: str
    labels: dict[str, str]
    snapshotter: str
    snapshot_key: str
    runtime: str
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class TaskState(NamedTuple):
    pid: int
    status: str  # "CREATED", "RUNNING", "STOPPED", "PAUSED", "PAUSING" or "UNKNOWN"
    exit_status: int


class Exit(NamedTuple):
    exit_status: int
    exited_at: str  # RFC 3339 with nanoseconds, as Docker shows FinishedAt


@dataclass(frozen=True)
class Event:
    topic: str  # e.g. "/tasks/exit"
    namespace: str
    timestamp: timestamp_pb2.Timestamp
    payload: Message  # e.g. a TaskExit; the raw Any when the type is unknown


# containerd names an event's type by its bare protobuf name in the Any's
# type_url ("containerd.events.TaskExit", no "host/" part), which
# Any.Unpack/Is do not accept; so events are decoded through this table.
def _event_table() -> dict[str, type[Message]]:
    table: dict[str, type[Message]] = {}
    modules = (
        container_events,
        content_events,
        image_events,
        namespace_events,
        snapshot_events,
        task_events,
    )
    for module in modules:
        for name, message in module.DESCRIPTOR.message_types_by_name.items():
            table[message.full_name] = getattr(module, name)
    return table


EVENT_TYPES: Final = _event_table()


def decode_event(event: any_pb2.Any) -> Message:
    """The message inside an event envelope's Any, or the Any itself if unknown."""
    name = event.type_url.rsplit("/", 1)[-1]
    message_type = EVENT_TYPES.get(name)
    if message_type is None:
        return event
    payload = message_type()
    payload.ParseFromString(event.value)
    return payload


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime (microseconds); Go's zero time becomes year 1."""
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def rfc3339(ts: timestamp_pb2.Timestamp) -> str:
    """Go's RFC3339Nano, as Docker prints times: trailing zeros of the fraction dropped."""
    moment = _EPOCH + timedelta(seconds=ts.seconds)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    fraction = f"{ts.nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _mount_message(mount: Mapping[str, Any]) -> Any:
    return mount_pb2.Mount(
        type=mount["type"],
        source=mount["source"],
        target=mount.get("target", ""),
        options=list(mount.get("options", [])),
    )


def _mount_dict(mount: Any) -> Mount:
    return {"type": mount.type, "source": mount.source, "options": list(mount.options)}


def _descriptor_message(descriptor: Mapping[str, Any]) -> Any:
    return descriptor_pb2.Descriptor(
        media_type=descriptor["media_type"],
        digest=descriptor["digest"],
        size=descriptor["size"],
    )


def _descriptor_dict(descriptor: Any) -> Descriptor:
    return {
        "media_type": descriptor.media_type,
        "digest": descriptor.digest,
        "size": descriptor.size,
    }


def _label_mask(labels: Mapping[str, str | None]) -> tuple[dict[str, str], Any]:
    """Labels to set (a None value removes the label) and the field mask naming them."""
    values = {key: value for key, value in labels.items() if value is not None}
    return values, field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])


def _blob_info(info: Any) -> BlobInfo:
    return BlobInfo(
        digest=info.digest,
        size=info.size,
        labels=dict(info.labels),
        created_at=to_datetime(info.created_at),
        updated_at=to_datetime(info.updated_at),
    )


def _image_record(image: Any) -> ImageRecord:
    return ImageRecord(
        name=image.name,
        target=_descriptor_dict(image.target),
        labels=dict(image.labels),
        created_at=to_datetime(image.created_at),
        updated_at=to_datetime(image.updated_at),
    )


def _snapshot_info(info: Any) -> SnapshotInfo:
    return SnapshotInfo(
        name=info.name,
        parent=info.parent,
        kind=_SNAPSHOT_KINDS.get(info.kind, "unknown"),
        labels=dict(info.labels),
        created_at=to_datetime(info.created_at),
        updated_at=to_datetime(info.updated_at),
    )


def _container_record(container: Any) -> ContainerRecord:
    spec = json.loads(container.spec.value) if container.spec.value else {}
    return ContainerRecord(
        id=container.id,
        image=container.image,
        labels=dict(container.labels),
        snapshotter=container.snapshotter,
        snapshot_key=container.snapshot_key,
        runtime=container.runtime.name,
        spec=spec,
        created_at=to_datetime(container.created_at),
        updated_at=to_datetime(container.updated_at),
    )


class EventStream:
    """Events as they happen; `cancel()` (from any thread) ends the iteration."""

    def __init__(self, call: Any, client: Containerd) -> None:
        self._call = call
        self._client = client
        self._cancelled = False

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            envelope = next(self._call)
        except grpc.RpcError as err:
            if self._cancelled or _code(err) == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise self._client._error(err) from err
        return Event(
            topic=envelope.topic,
            namespace=envelope.namespace,
            timestamp=envelope.timestamp,
            payload=decode_event(envelope.event),
        )

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()


def _code(err: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(err, "code", None)
    return code() if callable(code) else None


def _details(err: grpc.RpcError) -> str:
    details = getattr(err, "details", None)
    return (details() if callable(details) else None) or str(err)


class Containerd:
    """containerd's services, scoped to one namespace."""

    def __init__(self, address: str | Path, namespace: str = "pouch",
                 lease_owner: str = "") -> None:
        """`lease_owner` labels every lease this client creates, so that the leases a
        crashed owner left behind can be found and dropped (drop_stale_leases)."""
        self.address = str(Path(str(address).removeprefix("unix://")).absolute())
        self.namespace = namespace
        self.lease_owner = lease_owner
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
            # The peer is a local socket: after containerd restarts, come back
            # within a second rather than after gRPC's default backoff of minutes.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        self._channel = grpc.insecure_channel(f"unix://{self.address}", options=options)
        self._version = version_pb2_grpc.VersionStub(self._channel)
        self._namespaces = namespace_pb2_grpc.NamespacesStub(self._channel)
        self._content = content_pb2_grpc.ContentStub(self._channel)
        self._images = images_pb2_grpc.ImagesStub(self._channel)
        self._snapshots = snapshots_pb2_grpc.SnapshotsStub(self._channel)
        self._diff = diff_pb2_grpc.DiffStub(self._channel)
        self._leases = leases_pb2_grpc.LeasesStub(self._channel)
        self._containers = containers_pb2_grpc.ContainersStub(self._channel)
        self._tasks = tasks_pb2_grpc.TasksStub(self._channel)
        self._events = events_pb2_grpc.EventsStub(self._channel)

    def __enter__(self) -> Containerd:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- plumbing ------------------------------------------------------------

    def _error(self, err: grpc.RpcError) -> PouchError:
        code, details = _code(err), _details(err)
        if code == grpc.StatusCode.UNAVAILABLE:
            return PouchError(
                "unavailable", f"containerd is not reachable at {self.address}: {details}"
            )
        return PouchError(_CODES.get(code, "internal") if code else "internal", details)

    def _metadata(self, lease: str | None = None) -> list[tuple[str, str]]:
        metadata = [("containerd-namespace", self.namespace)]
        if lease:
            metadata.append(("containerd-lease", lease))
        return metadata

    def _call(
        self, method: Any, request: Any, timeout: float | None, lease: str | None = None
    ) -> Any:
        try:
            return method(request, timeout=timeout, metadata=self._metadata(lease))
        except grpc.RpcError as err:
            raise self._error(err) from err

    def _find(self, method: Any, request: Any, timeout: float | None) -> Any:
        """A lookup's response, or None when containerd has no such thing."""
        try:
            return self._call(method, request, timeout)
        except PouchError as err:
            if err.code == "not_found":
                return None
            raise

    def _stream(self, method: Any, request: Any, timeout: float | None) -> Iterator[Any]:
        try:
            yield from method(request, timeout=timeout, metadata=self._metadata())
        except grpc.RpcError as err:
            raise self._error(err) from err

    # -- daemon --------------------------------------------------------------

    def version(self, timeout: float | None = DEFAULT_TIMEOUT) -> str:
        return str(self._call(self._version.Version, empty_pb2.Empty(), timeout).version)

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

    def ensure_namespace(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        request = namespace_pb2.CreateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=self.namespace)
        )
        try:
            self._call(self._namespaces.Create, request, timeout)
        except PouchError as err:
            if err.code != "conflict":
                raise

    # -- content -------------------------------------------------------------

    def write_blob(
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
                    self._content.Abort(
                        content_pb2.AbortRequest(ref=ref),
                        timeout=DEFAULT_TIMEOUT,
                        metadata=self._metadata(),
                    )
                raise
            except grpc.RpcError as err:
                code = _code(err)
                # Also how a blob already stored answers; it is then held by the lease too.
                if code == grpc.StatusCode.ALREADY_EXISTS:
                    return
                # containerd reports a ref held by another writer as Unavailable ("locked").
                busy = code == grpc.StatusCode.UNAVAILABLE and "locked" in _details(err)
                if not busy or (deadline is not None and time.monotonic() >= deadline):
                    raise self._error(err) from err
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

        responses = self._content.Write(feed(), timeout=timeout, metadata=self._metadata(lease))

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
                self._send_chunks(exchange, data, size, digest)
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

    def _send_chunks(self, exchange: Any, data: bytes | BinaryIO, size: int, digest: str) -> None:
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

    def read_blob(self, digest: str, timeout: float | None = STREAM_TIMEOUT) -> bytes:
        """A whole blob in memory: meant for configs and manifests, not layers."""
        request = content_pb2.ReadContentRequest(digest=digest)
        return b"".join(
            response.data for response in self._stream(self._content.Read, request, timeout)
        )

    def blob_info(self, digest: str, timeout: float | None = DEFAULT_TIMEOUT) -> BlobInfo | None:
        response = self._find(self._content.Info, content_pb2.InfoRequest(digest=digest), timeout)
        return None if response is None else _blob_info(response.info)

    def update_blob_labels(
        self,
        digest: str,
        labels: Mapping[str, str | None],
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> BlobInfo:
        """Set the given labels (None removes one); other labels stay as they are."""
        values, mask = _label_mask(labels)
        request = content_pb2.UpdateRequest(
            info=content_pb2.Info(digest=digest, labels=values), update_mask=mask
        )
        return _blob_info(self._call(self._content.Update, request, timeout).info)

    def delete_blob(self, digest: str, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self._call(self._content.Delete, content_pb2.DeleteContentRequest(digest=digest), timeout)

    # -- images --------------------------------------------------------------

    def _image_message(
        self, name: str, target: Mapping[str, Any], labels: Mapping[str, str] | None
    ) -> Any:
        return images_pb2.Image(
            name=name, target=_descriptor_message(target), labels=dict(labels or {})
        )

    def create_image(
        self,
        name: str,
        target: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ImageRecord:
        """Register `name` -> target descriptor. Errors: conflict if the name exists."""
        request = images_pb2.CreateImageRequest(image=self._image_message(name, target, labels))
        return _image_record(self._call(self._images.Create, request, timeout).image)

    def update_image(
        self,
        name: str,
        target: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ImageRecord:
        """Replace the target and labels of `name`. Errors: not_found."""
        request = images_pb2.UpdateImageRequest(image=self._image_message(name, target, labels))
        return _image_record(self._call(self._images.Update, request, timeout).image)

    def put_image(
        self,
        name: str,
        target: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ImageRecord:
        """Create `name`, or point it at the new target if it exists."""
        try:
            return self.create_image(name, target, labels, timeout)
        except PouchError as err:
            if err.code != "conflict":
                raise
        return self.update_image(name, target, labels, timeout)

    def get_image(self, name: str, timeout: float | None = DEFAULT_TIMEOUT) -> ImageRecord | None:
        response = self._find(self._images.Get, images_pb2.GetImageRequest(name=name), timeout)
        return None if response is None else _image_record(response.image)

    def list_images(
        self, filters: Iterable[str] | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> list[ImageRecord]:
        request = images_pb2.ListImagesRequest(filters=list(filters or []))
        return [
            _image_record(image) for image in self._call(self._images.List, request, timeout).images
        ]

    def delete_image(
        self, name: str, sync: bool = False, timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        """Unregister `name`; with sync, containerd also collects garbage before answering."""
        request = images_pb2.DeleteImageRequest(name=name, sync=sync)
        self._call(self._images.Delete, request, timeout)

    # -- snapshots -----------------------------------------------------------

    def prepare(
        self,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        lease: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> list[Mount]:
        """An active (writable) snapshot on top of `parent`; returns how to mount it."""
        request = snapshots_pb2.PrepareSnapshotRequest(
            snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
        )
        response = self._call(self._snapshots.Prepare, request, timeout, lease)
        return [_mount_dict(mount) for mount in response.mounts]

    def view(
        self,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        lease: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> list[Mount]:
        """A read-only view of `parent`; returns how to mount it."""
        request = snapshots_pb2.ViewSnapshotRequest(
            snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
        )
        response = self._call(self._snapshots.View, request, timeout, lease)
        return [_mount_dict(mount) for mount in response.mounts]

    def mounts(
        self,
        key: str,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> list[Mount]:
        request = snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key)
        response = self._call(self._snapshots.Mounts, request, timeout)
        return [_mount_dict(mount) for mount in response.mounts]

    def commit(
        self,
        name: str,
        key: str,
        labels: Mapping[str, str] | None = None,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        lease: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        """Turn the active snapshot `key` into the committed snapshot `name`."""
        request = snapshots_pb2.CommitSnapshotRequest(
            snapshotter=snapshotter, name=name, key=key, labels=dict(labels or {})
        )
        self._call(self._snapshots.Commit, request, timeout, lease)

    def remove(
        self,
        key: str,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        request = snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
        self._call(self._snapshots.Remove, request, timeout)

    def stat(
        self,
        key: str,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> SnapshotInfo | None:
        request = snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        response = self._find(self._snapshots.Stat, request, timeout)
        return None if response is None else _snapshot_info(response.info)

    def usage(
        self,
        key: str,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> tuple[int, int]:
        """Disk use of the snapshot's own layer: (bytes, inodes)."""
        request = snapshots_pb2.UsageRequest(snapshotter=snapshotter, key=key)
        response = self._call(self._snapshots.Usage, request, timeout)
        return int(response.size), int(response.inodes)

    def list_snapshots(
        self,
        filters: Iterable[str] | None = None,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> list[SnapshotInfo]:
        request = snapshots_pb2.ListSnapshotsRequest(
            snapshotter=snapshotter, filters=list(filters or [])
        )
        return [
            _snapshot_info(info)
            for response in self._stream(self._snapshots.List, request, timeout)
            for info in response.info
        ]

    # -- diff ----------------------------------------------------------------

    def apply(
        self,
        descriptor: Mapping[str, Any],
        mounts: Iterable[Mapping[str, Any]],
        timeout: float | None = STREAM_TIMEOUT,
    ) -> Descriptor:
        """Unpack a layer blob (tar, or gzip'd tar) onto mounts; returns the uncompressed one."""
        request = diff_pb2.ApplyRequest(
            diff=_descriptor_message(descriptor),
            mounts=[_mount_message(mount) for mount in mounts],
        )
        return _descriptor_dict(self._call(self._diff.Apply, request, timeout).applied)

    # -- leases --------------------------------------------------------------

    def create_lease(
        self,
        expire_seconds: int = 3600,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> str:
        """A lease keeps what is made under it from garbage collection until it ends."""
        expiry = timestamp_pb2.Timestamp()
        expiry.FromDatetime(datetime.now(UTC) + timedelta(seconds=expire_seconds))
        lease_labels = {GC_EXPIRE_LABEL: rfc3339(expiry), **(labels or {})}
        if self.lease_owner:
            lease_labels[LEASE_OWNER_LABEL] = self.lease_owner
        request = leases_pb2.CreateRequest(id=f"pouch-{secrets.token_hex(8)}", labels=lease_labels)
        return str(self._call(self._leases.Create, request, timeout).lease.id)

    def delete_lease(
        self, lease_id: str, sync: bool = False, timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        """End a lease; with sync, containerd also collects garbage before answering."""
        request = leases_pb2.DeleteRequest(id=lease_id, sync=sync)
        self._call(self._leases.Delete, request, timeout)

    def drop_stale_leases(self, timeout: float | None = DEFAULT_TIMEOUT) -> list[str]:
        """Delete the leases of this client's owner: call it before the owner starts work,
        when none of its own can be in use. Returns their ids."""
        if not self.lease_owner:
            return []
        request = leases_pb2.ListRequest(
            filters=[f'labels."{LEASE_OWNER_LABEL}"=={self.lease_owner}'])
        stale = [lease.id for lease in self._call(self._leases.List, request, timeout).leases]
        for lease_id in stale:
            self.delete_lease(lease_id, timeout=timeout)
        return stale

    def add_lease_resource(
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
        self._call(self._leases.AddResource, request, timeout)

    @contextlib.contextmanager
    def lease(
        self, expire_seconds: int = 3600, labels: Mapping[str, str] | None = None
    ) -> Iterator[str]:
        lease_id = self.create_lease(expire_seconds, labels)
        try:
            yield lease_id
        except BaseException:
            # The lease expires by itself: never hide the first error behind this one.
            with contextlib.suppress(PouchError):
                self.delete_lease(lease_id)
            raise
        self.delete_lease(lease_id)

    # -- containers ----------------------------------------------------------

    def create_container(
        self,
        container_id: str,
        image: str,
        spec: Mapping[str, Any],
        snapshot_key: str,
        labels: Mapping[str, str] | None = None,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
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
        return _container_record(self._call(self._containers.Create, request, timeout).container)

    def get_container(
        self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT
    ) -> ContainerRecord | None:
        """The container, or None when containerd has no such container."""
        request = containers_pb2.GetContainerRequest(id=container_id)
        response = self._find(self._containers.Get, request, timeout)
        return None if response is None else _container_record(response.container)

    def list_containers(
        self, filters: Iterable[str] | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> list[ContainerRecord]:
        request = containers_pb2.ListContainersRequest(filters=list(filters or []))
        response = self._call(self._containers.List, request, timeout)
        return [_container_record(container) for container in response.containers]

    def update_container_labels(
        self,
        container_id: str,
        labels: Mapping[str, str | None],
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ContainerRecord:
        """Set the given labels (None removes one); other labels stay as they are."""
        values, mask = _label_mask(labels)
        request = containers_pb2.UpdateContainerRequest(
            container=containers_pb2.Container(id=container_id, labels=values), update_mask=mask
        )
        return _container_record(self._call(self._containers.Update, request, timeout).container)

    def delete_container(self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        request = containers_pb2.DeleteContainerRequest(id=container_id)
        self._call(self._containers.Delete, request, timeout)

    def container_spec(
        self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """Errors: not_found."""
        found = self.get_container(container_id, timeout)
        if found is None:
            raise PouchError("not_found", f"container {container_id!r}: not found")
        return found.spec

    # -- tasks ---------------------------------------------------------------

    def create_task(
        self,
        container_id: str,
        rootfs: Iterable[Mapping[str, Any]],
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> int:
        """Create the container's init process (not started yet); returns its pid.

        stdin/stdout/stderr are FIFO paths (or the shim's file:// and binary://
        URIs). All empty: no IO; but the runc shim fails on an empty stdout or
        stderr when the other is set.
        """
        request = tasks_pb2.CreateTaskRequest(
            container_id=container_id,
            rootfs=[_mount_message(mount) for mount in rootfs],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            terminal=terminal,
        )
        return int(self._call(self._tasks.Create, request, timeout).pid)

    def start_task(
        self, container_id: str, exec_id: str = "", timeout: float | None = DEFAULT_TIMEOUT
    ) -> int:
        request = tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id)
        return int(self._call(self._tasks.Start, request, timeout).pid)

    def kill_task(
        self,
        container_id: str,
        signal: int,
        all: bool = False,
        exec_id: str = "",
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        """Signal the task's process (`all`: every process of the container)."""
        request = tasks_pb2.KillRequest(
            container_id=container_id, exec_id=exec_id, signal=signal, all=all
        )
        self._call(self._tasks.Kill, request, timeout)

    def resize_pty(self, container_id: str, width: int, height: int, exec_id: str = "",
                   timeout: float | None = DEFAULT_TIMEOUT) -> None:
        request = tasks_pb2.ResizePtyRequest(container_id=container_id, exec_id=exec_id,
                                             width=width, height=height)
        self._call(self._tasks.ResizePty, request, timeout)

    def close_stdin(
        self, container_id: str, exec_id: str = "", timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        """Close the process's stdin: the shim holds the FIFO open until told so."""
        request = tasks_pb2.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=True)
        self._call(self._tasks.CloseIO, request, timeout)

    def delete_task(self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT) -> Exit:
        """Delete a stopped task; returns how it exited."""
        request = tasks_pb2.DeleteTaskRequest(container_id=container_id)
        response = self._call(self._tasks.Delete, request, timeout)
        return Exit(int(response.exit_status), rfc3339(response.exited_at))

    def get_task(
        self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT
    ) -> TaskState | None:
        request = tasks_pb2.GetRequest(container_id=container_id)
        response = self._find(self._tasks.Get, request, timeout)
        if response is None:
            return None
        process = response.process
        return TaskState(
            int(process.pid), task_pb2.Status.Name(process.status), process.exit_status
        )

    def list_tasks(self, timeout: float | None = DEFAULT_TIMEOUT) -> dict[str, TaskState]:
        """Every task of the namespace, by container id."""
        response = self._call(self._tasks.List, tasks_pb2.ListTasksRequest(), timeout)
        return {
            process.id: TaskState(
                int(process.pid), task_pb2.Status.Name(process.status), process.exit_status
            )
            for process in response.tasks
        }

    def wait_task(self, container_id: str, exec_id: str = "", timeout: float | None = None) -> Exit:
        """Block until the process exits (no deadline unless `timeout` is given)."""
        request = tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id)
        response = self._call(self._tasks.Wait, request, timeout)
        return Exit(int(response.exit_status), rfc3339(response.exited_at))

    # -- events --------------------------------------------------------------

    def subscribe(
        self, filters: Iterable[str] | None = None, all_namespaces: bool = False
    ) -> EventStream:
        """Events from now on, e.g. filters=['topic=="/tasks/exit"'] (filters are ORed).

        containerd sends every namespace's events; unless `all_namespaces`,
        each filter is narrowed to this client's namespace.
        """
        wanted = list(filters or [])
        if not all_namespaces:
            scope = f'namespace=="{self.namespace}"'
            wanted = [f"{scope},{item}" for item in wanted] if wanted else [scope]
        request = events_pb2.SubscribeRequest(filters=wanted)
        call = self._events.Subscribe(request, metadata=self._metadata())
        return EventStream(call, self)
