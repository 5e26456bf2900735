"""Values more than one containerd service speaks: mounts, descriptors, times."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict

from google.protobuf import timestamp_pb2

from pouch.proto.containerd.api.types import descriptor_pb2, mount_pb2


class Mount(TypedDict):
    type: str
    source: str
    options: list[str]


class Descriptor(TypedDict):
    media_type: str
    digest: str
    size: int


def mount_message(mount: Mapping[str, Any]) -> Any:
    return mount_pb2.Mount(
        type=mount["type"],
        source=mount["source"],
        target=mount.get("target", ""),
        options=list(mount.get("options", [])),
    )


def mount_dict(mount: Any) -> Mount:
    return {"type": mount.type, "source": mount.source, "options": list(mount.options)}


def descriptor_message(descriptor: Mapping[str, Any]) -> Any:
    return descriptor_pb2.Descriptor(
        media_type=descriptor["media_type"],
        digest=descriptor["digest"],
        size=descriptor["size"],
    )


def descriptor_dict(descriptor: Any) -> Descriptor:
    return {
        "media_type": descriptor.media_type,
        "digest": descriptor.digest,
        "size": descriptor.size,
    }


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
