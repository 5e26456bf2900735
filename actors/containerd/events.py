"""containerd's events service: what happens in the daemon, as it happens."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message

import pouch.proto.containerd.api.events.container_pb2 as container_events
import pouch.proto.containerd.api.events.content_pb2 as content_events
import pouch.proto.containerd.api.events.image_pb2 as image_events
import pouch.proto.containerd.api.events.namespace_pb2 as namespace_events
import pouch.proto.containerd.api.events.snapshot_pb2 as snapshot_events
import pouch.proto.containerd.api.events.task_pb2 as task_events
from pouch.actors.containerd.conn import Conn, Service, status_code
from pouch.proto.containerd.api.services.events.v1 import events_pb2, events_pb2_grpc


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


_EVENT_TYPES: Final = _event_table()


def _decode(event: any_pb2.Any) -> Message:
    """The message inside an event envelope's Any, or the Any itself if unknown."""
    name = event.type_url.rsplit("/", 1)[-1]
    message_type = _EVENT_TYPES.get(name)
    if message_type is None:
        return event
    payload = message_type()
    payload.ParseFromString(event.value)
    return payload


class EventStream:
    """Events as they happen; `cancel()` (from any thread) ends the iteration."""

    def __init__(self, call: Any, conn: Conn) -> None:
        self._call = call
        self._conn = conn
        self._cancelled = False

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            envelope = next(self._call)
        except grpc.RpcError as err:
            if self._cancelled or status_code(err) == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise self._conn.error(err) from err
        return Event(
            topic=envelope.topic,
            namespace=envelope.namespace,
            timestamp=envelope.timestamp,
            payload=_decode(envelope.event),
        )

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()


class Events(Service):
    stub = events_pb2_grpc.EventsStub

    def subscribe(self, filters: Iterable[str] | None = None) -> EventStream:
        """Events from now on, e.g. filters=['topic=="/tasks/exit"'] (filters are ORed).

        containerd sends every namespace's events: each filter is narrowed to
        this client's namespace.
        """
        scope = f'namespace=="{self._conn.namespace}"'
        wanted = [f"{scope},{item}" for item in filters or []] or [scope]
        request = events_pb2.SubscribeRequest(filters=wanted)
        call = self._stub.Subscribe(request, metadata=self._conn.metadata())
        return EventStream(call, self._conn)
