"""ContainerStats: one of Docker's stats documents, read from the container actor as the
gateway would (a handed-over connection: one end of a socketpair), then told in CRI's
terms."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2 as cri

from pouch.actors.cri import translate as tr
from pouch.proto.envelope import PouchError
from pouch.proto.handoff import hand_over
from pouch.proto.stream import StreamSpec

READ_TIMEOUT = 10.0


def docker_stats(handoff_dir: Path, container: str) -> dict[str, Any]:
    """One stats document (one_shot: no second read a second later). Errors: not_found,
    conflict, timeout."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        link = hand_over(handoff_dir, "container", "stats",
                         {"id": container, "stream": False, "one_shot": True},
                         StreamSpec("chunked", "application/json"), theirs.fileno())
        theirs.close()
        try:
            mine.settimeout(READ_TIMEOUT)
            data = bytearray()
            try:
                while chunk := mine.recv(65536):
                    data += chunk
            except TimeoutError:
                raise PouchError("timeout", f"no stats of {container}") from None
        finally:
            link.close()
    finally:
        mine.close()
        theirs.close()
    return parse_response(bytes(data))


def parse_response(data: bytes) -> dict[str, Any]:
    """The JSON body of a chunked HTTP response."""
    _head, _, rest = data.partition(b"\r\n\r\n")
    body = bytearray()
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2:]
    text = bytes(body).strip()
    value = json.loads(text.splitlines()[0]) if text else {}
    return value if isinstance(value, dict) else {}


def container_stats(doc: Mapping[str, Any], stats: Mapping[str, Any],
                    now: int | None = None) -> cri.ContainerStats:
    """Docker's stats of a container (its inspect document) as CRI's."""
    labels = (doc.get("Config") or {}).get("Labels") or {}
    stamp = now if now is not None else time.time_ns()
    out = cri.ContainerStats(attributes=cri.ContainerAttributes(
        id=doc["Id"], metadata=tr.container_metadata(labels), labels=tr.cri_labels(labels),
        annotations=tr.cri_annotations(labels)))
    cpu = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
    out.cpu.timestamp = stamp
    out.cpu.usage_core_nano_seconds.value = int(cpu.get("total_usage") or 0)
    memory = stats.get("memory_stats") or {}
    details = memory.get("stats") or {}
    usage = int(memory.get("usage") or 0)
    inactive = int(details.get("inactive_file") or details.get("total_inactive_file") or 0)
    out.memory.timestamp = stamp
    out.memory.usage_bytes.value = usage
    out.memory.working_set_bytes.value = max(usage - inactive, 0)
    out.memory.rss_bytes.value = int(details.get("anon") or details.get("rss") or 0)
    out.memory.page_faults.value = int(details.get("pgfault") or 0)
    out.memory.major_page_faults.value = int(details.get("pgmajfault") or 0)
    limit = int((doc.get("HostConfig") or {}).get("Memory") or 0)
    if limit:
        out.memory.available_bytes.value = max(limit - out.memory.working_set_bytes.value, 0)
    out.writable_layer.timestamp = stamp
    out.writable_layer.fs_id.mountpoint = str(
        ((doc.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir") or "")
    if "SizeRw" in doc:
        # What a kubelet counts against the pod's ephemeral storage.
        out.writable_layer.used_bytes.value = int(doc["SizeRw"] or 0)
    return out
