"""The json-file log driver's format, as dockerd writes it:

    {"log":"hi\\n","stream":"stdout","time":"2026-11-28T03:46:17.420217237Z"}

one object per line of output. A line longer than MAX_LINE is split, the
parts without their newline, as Docker does.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pouch.actors.timefmt import parse_rfc3339, rfc3339_nano

MAX_LINE = 16 * 1024


@dataclass(frozen=True)
class Entry:
    stream: str   # "stdout" or "stderr"
    data: bytes   # the line, with its newline when it had one
    time: str     # RFC 3339 with nanoseconds

    def encode(self) -> bytes:
        record = {"log": self.data.decode("utf-8", "replace"), "stream": self.stream,
                  "time": self.time}
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"


class LogWriter:
    """Turns chunks of output into entries and appends them to the log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held open for the container's life
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def write(self, stream: str, chunk: bytes) -> list[Entry]:
        buf = self._partial[stream]
        buf += chunk
        entries: list[Entry] = []
        now = rfc3339_nano()
        while True:
            newline = buf.find(b"\n", 0, MAX_LINE)
            if newline >= 0:
                cut = newline + 1
            elif len(buf) >= MAX_LINE:
                cut = MAX_LINE
            else:
                break
            entries.append(Entry(stream, bytes(buf[:cut]), now))
            del buf[:cut]
        self._append(entries)
        return entries

    def flush(self, stream: str) -> list[Entry]:
        """What is left of a stream that ended without a final newline."""
        buf = self._partial[stream]
        if not buf:
            return []
        entries = [Entry(stream, bytes(buf), rfc3339_nano())]
        buf.clear()
        self._append(entries)
        return entries

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()

    def _append(self, entries: list[Entry]) -> None:
        if entries:
            self._file.write(b"".join(e.encode() for e in entries))


def read_entries(log: Path | BinaryIO, start: int = 0,
                 end: int | None = None) -> Iterator[Entry]:
    """Entries of a log between two byte offsets. Given an open file (which it leaves
    open), it reads on even after the container's removal unlinked the file."""
    if isinstance(log, Path):
        try:
            with open(log, "rb") as f:
                yield from read_entries(f, start, end)
        except FileNotFoundError:
            pass
        return
    log.seek(start)
    remaining = None if end is None else end - start
    for raw in log:
        if remaining is not None:
            if remaining <= 0:
                break
            remaining -= len(raw)
        try:
            record = json.loads(raw)
            yield Entry(record["stream"], record["log"].encode(), record["time"])
        except (ValueError, KeyError):
            continue  # a torn last line of a crashed writer


@dataclass(frozen=True)
class Selection:
    """Which entries `docker logs` shows."""

    stdout: bool = True
    stderr: bool = True
    since: float = 0.0
    until: float = 0.0
    tail: int = -1  # -1: all

    def wants(self, entry: Entry) -> bool:
        if not (self.stdout if entry.stream == "stdout" else self.stderr):
            return False
        if self.since or self.until:
            when = parse_rfc3339(entry.time)
            if self.since and when < self.since:
                return False
            if self.until and when > self.until:
                return False
        return True

    def pick(self, entries: Iterator[Entry]) -> Iterable[Entry]:
        """As Docker's json-file reader: the last `tail` lines of the log, then the filters."""
        if self.tail >= 0:
            entries = iter(deque(entries, maxlen=self.tail) if self.tail else ())
        return (e for e in entries if self.wants(e))  # lazily: a log can outgrow memory
