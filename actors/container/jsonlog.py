"""The json-file log driver's format, as dockerd writes it:

    {"log":"hi\\n","stream":"stdout","time":"2026-11-28T03:46:17.420217237Z"}

one object per line of output. A line longer than MAX_LINE is split, the
parts without their newline, as Docker does.

With `max-size`, the file is rotated before an entry that would start past
that size: json.log becomes json.log.1, json.log.1 becomes json.log.2, ...,
keeping `max-file` files in all (with one, the file starts over). Readers see
the rotated files, oldest first, then the current one (:class:`LogView`).
The `none` driver keeps nothing: the entries are made (live followers get
them) but never written.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pouch.actors.timefmt import parse_rfc3339, rfc3339_nano
from pouch.proto.envelope import invalid

MAX_LINE = 16 * 1024
DRIVERS = ("json-file", "none", "cri")
# Options json-file takes in dockerd, and those pouch honours; the others are refused.
_JSON_FILE_OPTIONS = frozenset(("max-file", "max-size", "compress", "labels", "labels-regex",
                                "env", "env-regex", "tag"))
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?")


@dataclass(frozen=True)
class LogConfig:
    """A container's log driver and its options, as pouch applies them."""

    driver: str = "json-file"
    max_size: int = 0  # bytes; 0: the file grows without bound
    max_file: int = 1  # how many files in all, the current one included
    # The CRI's driver: json-file, and the same lines in the CRI's log format at this
    # path (the pod's log_directory/log_path): `<RFC 3339 nano> <stream> <P|F> <content>`.
    cri_path: str = ""

    @property
    def keeps(self) -> bool:
        """Whether the log is kept, so that `docker logs` can read it."""
        return self.driver != "none"


def recorded_log_config(raw: Any) -> dict[str, Any]:
    """HostConfig.LogConfig as inspect shows it: the driver named, its options as given."""
    raw = raw if isinstance(raw, dict) else {}
    return {"Type": raw.get("Type") or "json-file", "Config": dict(raw.get("Config") or {})}


def log_config(raw: Any) -> LogConfig:
    """Parse HostConfig.LogConfig as dockerd validates it.
    Errors: invalid, naming the driver or the option at fault."""
    if raw is None:
        return LogConfig()
    if not isinstance(raw, dict):
        raise invalid("invalid field HostConfig.LogConfig: must be an object")
    driver = raw.get("Type") or "json-file"
    options = raw.get("Config") or {}
    if not isinstance(driver, str) or not isinstance(options, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
        raise invalid("invalid field HostConfig.LogConfig: Type is a string and Config a map "
                      "of strings")
    if driver not in DRIVERS:
        raise invalid(f"invalid field HostConfig.LogConfig.Type: logger: no log driver named "
                      f"'{driver}' is registered (pouch has json-file and none)")
    if driver == "none":
        return LogConfig(driver="none")  # dockerd ignores the options of none
    if driver == "cri":
        path = options.get("path", "")
        if not path.startswith("/") or set(options) - {"path"}:
            raise invalid("invalid field HostConfig.LogConfig.Config: the cri driver takes "
                          "one option, path, absolute")
        return LogConfig(driver="cri", cri_path=path)
    mode = options.get("mode", "")
    if mode not in ("", "blocking"):
        if mode == "non-blocking":
            raise invalid("invalid field HostConfig.LogConfig.Config: mode non-blocking is not "
                          "supported yet (the log is written as the output comes)")
        raise invalid(f"invalid field HostConfig.LogConfig.Config: logger: logging mode not "
                      f"supported: {mode}")
    if "max-buffer-size" in options:
        raise invalid("invalid field HostConfig.LogConfig.Config: logger: max-buffer-size option "
                      "is only supported with 'mode=non-blocking'")
    for key in options:
        if key == "mode":
            continue
        if key not in _JSON_FILE_OPTIONS:
            raise invalid(f"invalid field HostConfig.LogConfig.Config: unknown log opt '{key}' "
                          "for json-file log driver")
    return _json_file_options(options)


def _json_file_options(options: Mapping[str, str]) -> LogConfig:
    where = "invalid field HostConfig.LogConfig.Config"
    max_size = 0
    if "max-size" in options:
        max_size = parse_size(options["max-size"], f"{where} max-size")
        if max_size <= 0:
            raise invalid(f"{where} max-size: max-size must be a positive number")
    max_file = 1
    if "max-file" in options:
        try:
            max_file = int(options["max-file"])
        except ValueError:
            raise invalid(f"{where} max-file: strconv.Atoi: parsing "
                          f"{options['max-file']!r}: invalid syntax") from None
        if max_file < 1:
            raise invalid(f"{where} max-file: max-file cannot be less than 1")
    compress = options.get("compress", "false").lower()
    if compress not in ("true", "false", "1", "0", "t", "f"):
        raise invalid(f"{where} compress: {options['compress']!r} is not a boolean")
    if compress in ("true", "1", "t"):
        if max_file == 1 or not max_size:
            raise invalid(f"{where} compress: compress cannot be true when max-file is less "
                          "than 2 or max-size is not set")
        raise invalid(f"{where} compress: not supported yet (rotated files are kept as "
                      "they are); leave it out")
    for key in ("labels", "labels-regex", "env", "env-regex"):
        if options.get(key):
            raise invalid(f"{where} {key}: not supported yet (entries carry no attributes); "
                          "leave it out")
    # "tag" is taken: json-file does not use it (dockerd's neither).
    return LogConfig(max_size=max_size, max_file=max_file if max_size else 1)


def parse_size(text: str, where: str) -> int:
    """go-units' FromHumanSize: decimal units, "10m" is 10,000,000 bytes."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise invalid(f"{where}: invalid size: '{text}'")
    number, unit = match.groups()
    try:
        value = float(number)
    except ValueError:
        raise invalid(f"{where}: invalid size: '{text}'") from None
    return int(value * _UNITS[(unit or "").lower()])


def rotated_path(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def rotated_files(path: Path) -> list[Path]:
    """The rotated files of a log that exist, oldest first (json.log.N ... json.log.1)."""
    found = []
    n = 1
    while rotated_path(path, n).exists():
        found.append(rotated_path(path, n))
        n += 1
    return found[::-1]


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
    """Turns chunks of output into entries and appends them to the log file, rotating
    it as its LogConfig says."""

    def __init__(self, path: Path, config: LogConfig | None = None) -> None:
        self.path = path
        self.config = config or LogConfig()
        self._file: BinaryIO | None = None
        if self.config.keeps:
            self._file = _open_log(path)
        self._cri: BinaryIO | None = None
        self.reopen_cri()
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
        self._append(entries, ended=True)
        return entries

    def reopen_cri(self) -> None:
        """(Re)open the CRI log at its path: after a log rotator moved it away."""
        if not self.config.cri_path:
            return
        if self._cri is not None:
            self._cri.close()
        path = Path(self.config.cri_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._cri = _open_log(path)

    def size(self) -> int:
        return self._file.tell() if self._file is not None else 0

    def file_id(self) -> tuple[int, int] | None:
        """Which file is the current one (see LogView.catch_up)."""
        if self._file is None:
            return None
        st = os.fstat(self._file.fileno())
        return st.st_dev, st.st_ino

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._cri is not None:
            self._cri.close()

    def _append(self, entries: list[Entry], ended: bool = False) -> None:
        if self._cri is not None and entries:
            self._cri.write(b"".join(cri_line(e, ended) for e in entries))
        if self._file is None or not entries:
            return
        if not self.config.max_size:
            self._file.write(b"".join(e.encode() for e in entries))
            return
        for entry in entries:  # as dockerd: the size is checked before each entry
            if self._file.tell() >= self.config.max_size:
                self._rotate()
            self._file.write(entry.encode())

    def _rotate(self) -> None:
        assert self._file is not None
        if self.config.max_file < 2:
            self._file.truncate(0)
            self._file.seek(0)
            return
        for n in range(self.config.max_file - 1, 1, -1):
            try:
                os.replace(rotated_path(self.path, n - 1), rotated_path(self.path, n))
            except FileNotFoundError:
                continue
        os.replace(self.path, rotated_path(self.path, 1))
        self._file.close()
        self._file = _open_log(self.path)


def cri_line(entry: Entry, ended: bool = False) -> bytes:
    """An entry in the CRI's log format: F for a whole line (or the last part of a stream
    that ended without a newline), P for a part of a longer one."""
    full = ended or entry.data.endswith(b"\n")
    content = entry.data[:-1] if entry.data.endswith(b"\n") else entry.data
    return b"%s %s %s %s\n" % (entry.time.encode(), entry.stream.encode(),
                                b"F" if full else b"P", content)


def _open_log(path: Path) -> BinaryIO:
    """The log, for appending, held open for the container's life (0640, as dockerd's)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    return os.fdopen(fd, "ab", buffering=0)


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


class LogView:
    """A container's log as it was when opened: its rotated files, oldest first, and its
    current file, all open (a rotation or a removal meanwhile takes none of them away),
    and where the current one ended then."""

    def __init__(self, path: Path, end: int | None = None) -> None:
        self.path = path
        self.rotated: list[BinaryIO] = []
        for rotated in rotated_files(path):
            try:
                self.rotated.append(open(rotated, "rb"))  # noqa: SIM115 - closed by close()
            except FileNotFoundError:
                continue
        try:
            self.current: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            self.current = io.BytesIO()
        self.end = end if end is not None else self._size()

    def entries(self) -> Iterator[Entry]:
        """Everything logged up to the view's end, oldest first."""
        for rotated in self.rotated:
            yield from read_entries(rotated)
        yield from read_entries(self.current, 0, self.end)

    def catch_up(self, writer_file: tuple[int, int] | None,
                 end: int | None) -> Iterator[Entry]:
        """What was logged after the view's end, up to `end` of the file the writer writes
        now (`writer_file`, see LogWriter.file_id; None: no writer, read to the end)."""
        mine = self._file_id()
        now = writer_file or _path_id(self.path)
        if now is None or mine == now:
            yield from read_entries(self.current, self.end, end)
            return
        # Rotated since: the rest of the file held here, then the files rotated after it,
        # then the current one.
        if mine is not None:
            yield from read_entries(self.current, self.end)
        rotated = rotated_files(self.path)
        ids = [_path_id(p) for p in rotated]
        newer = rotated[ids.index(mine) + 1:] if mine in ids else rotated
        for path in newer:
            yield from read_entries(path)
        yield from read_entries(self.path, 0, end)

    def close(self) -> None:
        for f in [*self.rotated, self.current]:
            f.close()

    def _size(self) -> int:
        if isinstance(self.current, io.BytesIO):
            return 0
        return os.fstat(self.current.fileno()).st_size

    def _file_id(self) -> tuple[int, int] | None:
        if isinstance(self.current, io.BytesIO):
            return None
        st = os.fstat(self.current.fileno())
        return st.st_dev, st.st_ino


def _path_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


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
