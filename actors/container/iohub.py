"""The IO hub: one thread that moves every container's output where it goes.

containerd's shim writes a container's stdout and stderr into FIFOs; the hub
reads them, appends each line to the container's json-file log, and writes
the bytes to every attached client connection (handed over by the gateway,
framed by its stream session) and the log lines to every `logs -f` follower.
Input from an attached client goes to the container's stdin FIFO. One
selector, one thread: it owns every descriptor involved, and other threads
ask it for things through a queue.

FIFO trap: a FIFO read with no writer gives end-of-file at once. Before the
shim has opened its ends, the hub holds a writer of its own (a placeholder),
dropped once the task exists; from then on end-of-file means the shim is
done. After an actor restart, reopening the FIFOs picks the stream up where it
was: the pipe kept what came meanwhile, held open by the shim while its process
runs, and after that by pouchd's pipe keeper (pouch.actors.pipekeeper), which
holds a reader of each container's output until the hub has read it to its end.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pouch.actors.container.detach import EscapeScanner
from pouch.actors.container.jsonlog import Entry, LogConfig, LogView, LogWriter, Selection
from pouch.actors.pipekeeper import PipeHolder
from pouch.proto.stream import StreamSession

log = logging.getLogger("pouch.iohub")
T = TypeVar("T")

READ_SIZE = 64 * 1024
RESTORE_READS = 64        # READ_SIZE each: beyond the largest pipe a process may make
PAUSE_ABOVE = 1 << 20     # a consumer this far behind stops the container's output...
RESUME_BELOW = 256 << 10  # ...until it is this close again
LINGER = 5.0              # how long a closed connection waits for its client's FIN
CALL_TIMEOUT = 30.0       # s: how long a caller waits for the hub's thread


@dataclass(eq=False)
class Consumer:
    """A client connection that receives a container's output, framed by its session."""

    session: StreamSession
    stdout: bool = True
    stderr: bool = True
    lines: bool = False        # log entries (logs -f) rather than raw bytes (attach)
    timestamps: bool = False
    stdin: bool = False        # what it sends goes to the container's stdin
    tty: bool = False          # the container has a terminal: the input ending ends the attach
    escape: EscapeScanner | None = None  # watches the input for the detach keys
    on_detach: Callable[[], None] | None = None  # told once the client typed them
    selection: Selection | None = None
    out: bytearray = field(default_factory=bytearray)
    reading: bool = True
    closing: bool = False      # close once `out` is flushed
    linger_until: float = 0.0  # set once our side is shut: waiting for the client's
    streams: Streams | None = None

    @property
    def conn(self) -> socket.socket:
        return self.session.conn

    def wants(self, stream: str) -> bool:
        return self.stdout if stream == "stdout" else self.stderr

    def end(self) -> None:
        """Nothing more comes: close once what is queued is sent."""
        if not self.closing:
            self.out += self.session.trailer()
        self.closing = True

    def line(self, entry: Entry) -> bytes:
        """A log entry's bytes as this client asked for them."""
        return entry.time.encode() + b" " + entry.data if self.timestamps else entry.data

    def encode_entry(self, entry: Entry) -> bytes:
        return self.session.encode(entry.stream, self.line(entry))


@dataclass(eq=False)
class Streams:
    """One container's FIFOs, log and consumers, while its task runs."""

    cid: str
    stdin_once: bool = False
    log: LogWriter | None = None
    fifos: dict[int, str] = field(default_factory=dict)   # fd -> "stdout" | "stderr"
    placeholders: list[int] = field(default_factory=list)
    stdin_fd: int | None = None
    stdin_buf: bytearray = field(default_factory=bytearray)  # may fill before the task starts
    stdin_eof: bool = False  # an attached client has closed its input
    task_ready: bool = False  # the shim holds the FIFOs (a FIFO nobody holds loses its data)
    consumers: list[Consumer] = field(default_factory=list)
    drained: threading.Event = field(default_factory=threading.Event)
    opened: bool = False
    paused: bool = False
    held: bool = False  # read from writers_ready() on (an exec's)


def fifo_paths(fifo_dir: Path) -> dict[str, Path]:
    return {name: fifo_dir / name for name in ("stdin", "stdout", "stderr")}


class IOHub:
    def __init__(self, close_stdin: Callable[[str], None],
                 keeper: PipeHolder | None = None) -> None:
        """`close_stdin(cid)` tells the shim a container's input has ended: the shim
        holds the stdin FIFO open itself, so closing our end alone is not seen.
        `keeper`: where a container's output FIFOs are held while they may hold output
        (pouch.actors.pipekeeper), so that they outlive this process."""
        self._close_task_stdin = close_stdin
        self._keeper = keeper
        self._sel = selectors.DefaultSelector()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._sel.register(self._wake, selectors.EVENT_READ, self._on_wake)
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._streams: dict[str, Streams] = {}
        self._runs: dict[str, int] = {}  # per container: how many times it was opened
        self._lingering: list[Consumer] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="iohub", daemon=True)
        self._thread.start()

    # -- the API, for any thread ---------------------------------------------

    def open(self, cid: str, fifo_dir: Path, log_path: Path | None, *, tty: bool, stdin: bool,
             stdin_once: bool, restore: bool = False, held: bool = False,
             log_config: LogConfig | None = None) -> tuple[dict[str, str], threading.Event]:
        """Start collecting a container's output; the FIFO paths for its task, and an
        event set once all its output has been read (after the task is gone). Its
        clients end on release(), once its exit is recorded, not with the output: a
        client that saw the output end then finds the container stopped, as with
        dockerd. `cid` may name an exec's process instead, whose output is not logged
        (no `log_path`) and whose streams are `held`: read only from writers_ready() on.
        `log_config`: the container's log driver and rotation (json-file, unbounded,
        if None)."""
        return self.open_soon(cid, fifo_dir, log_path, tty=tty, stdin=stdin,
                              stdin_once=stdin_once, restore=restore, held=held,
                              log_config=log_config).result(timeout=CALL_TIMEOUT)

    def open_soon(self, cid: str, fifo_dir: Path, log_path: Path | None, *, tty: bool,
                  stdin: bool, stdin_once: bool, restore: bool = False, held: bool = False,
                  log_config: LogConfig | None = None,
                  ) -> Future[tuple[dict[str, str], threading.Event]]:
        """open(), done by the hub while the caller goes on: its result is open()'s."""
        return self._submit(lambda: self._open(cid, fifo_dir, log_path, tty, stdin,
                                               stdin_once, restore, held, log_config))

    def writers_ready(self, cid: str) -> None:
        """The task exists, so the shim holds the FIFOs: drop our placeholder writers.
        Not waited for: the hub's later jobs find it done."""
        self._submit(lambda: self._drop_placeholders(cid), wait=False)

    def attach(self, cid: str, consumer: Consumer) -> None:
        """Send the container's output to a client from now on."""
        self._call(lambda: self._attach(cid, consumer))

    def log_offset(self, cid: str, log_path: Path) -> int:
        """Where the log ends now: replay up to here, then follow() from here."""
        def offset() -> int:
            streams = self._streams.get(cid)
            if streams is not None and streams.log is not None:
                return streams.log.size()
            try:
                return log_path.stat().st_size
            except FileNotFoundError:
                return 0
        return self._call(offset)

    def open_log(self, cid: str, log_path: Path) -> LogView:
        """The log's files, opened now and ended where the log ends now: replay its
        entries(), then follow() from there. Opened on the hub's thread, which is the
        one that rotates the log: the files and the end agree."""
        def view() -> LogView:
            streams = self._streams.get(cid)
            if streams is not None and streams.log is not None and streams.log.file_id():
                return LogView(log_path, streams.log.size())
            return LogView(log_path)
        return self._call(view)

    def runs(self, cid: str) -> int:
        """How many times the container's output was opened (it started): see follow()."""
        return self._call(lambda: self._runs.get(cid, 0))

    def follow(self, cid: str, consumer: Consumer, log: LogView,
               runs_seen: int | None) -> None:
        """Take over a client that was sent the log up to the view's end: send it what
        was logged since, then the output live while the container runs. If it does not
        run, the client waits for its start when `runs_seen` (see runs()) says it has not
        started since; otherwise the client is done."""
        self._call(lambda: self._follow(cid, consumer, log, runs_seen))

    def forget(self, cid: str) -> None:
        """Drop a container's streams and consumers (it is being removed)."""
        self._call(lambda: self._forget(cid))

    def forget_soon(self, cid: str) -> Future[None]:
        """forget(), done by the hub while the caller goes on."""
        return self._submit(lambda: self._forget(cid))

    def release(self, cid: str, note: bytes = b"") -> None:
        """End a stream whose exit is recorded (see open): its consumers get what is
        queued, then `note` on their stdout (why it ended, if not as it should), then
        the end. Not waited for: the hub's later jobs find it done."""
        self._submit(lambda: self._release(cid, note), wait=False)

    def reopen_cri_log(self, cid: str) -> bool:
        """Reopen a container's CRI log at its path (a rotator moved it); False if its
        output is not open (it does not run)."""
        def reopen() -> bool:
            streams = self._streams.get(cid)
            if streams is None or streams.log is None:
                return False
            streams.log.reopen_cri()
            return True
        return self._call(reopen)

    def stop(self) -> None:
        self._stopping = True
        os.eventfd_write(self._wake, 1)
        self._thread.join(timeout=5)
        if self._keeper is not None:
            self._keeper.close()

    def _call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        return self._submit(fn).result(timeout=CALL_TIMEOUT)

    def _submit(self, fn: Callable[[], T], wait: bool = True) -> Future[T]:
        """Have the hub's thread run `fn`; `wait=False`: nobody waits for the outcome,
        so an error is logged."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
                if not wait:
                    log.error("io hub: %s", exc, exc_info=exc)

        if threading.current_thread() is self._thread:
            run()
        else:
            self._queue.put(run)
            os.eventfd_write(self._wake, 1)
        return future

    # -- the hub's thread ----------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            timeout = None
            if self._lingering:
                timeout = max(0.0, min(c.linger_until for c in self._lingering) - time.monotonic())
            for key, mask in self._sel.select(timeout):
                try:
                    key.data(mask)
                except Exception:
                    log.exception("io hub: handler failed")
            self._expire_lingering()
        for cid in list(self._streams):
            self._finish(cid, forced=True)

    def _on_wake(self, _mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            job()

    def _open(self, cid: str, fifo_dir: Path, log_path: Path | None, tty: bool, stdin: bool,
              stdin_once: bool, restore: bool, held: bool,
              log_config: LogConfig | None = None) -> tuple[dict[str, str], threading.Event]:
        old = self._streams.get(cid)
        if old is not None and old.opened:
            self._finish(cid, forced=True)  # a task that ended unseen: start afresh
            old = None
        streams = old or Streams(cid)
        self._streams[cid] = streams
        self._runs[cid] = self._runs.get(cid, 0) + 1
        streams.stdin_once, streams.opened, streams.held = stdin_once, True, held
        streams.task_ready = restore
        streams.drained.clear()
        fifo_dir.mkdir(parents=True, exist_ok=True)
        paths = fifo_paths(fifo_dir)
        names = ["stdout"] if tty else ["stdout", "stderr"]
        for name in [*names, *(["stdin"] if stdin else [])]:
            _ensure_fifo(paths[name])
        streams.log = LogWriter(log_path, log_config) if log_path is not None else None
        for name in names:
            fd = os.open(paths[name], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            streams.fifos[fd] = name
            if not restore:
                streams.placeholders.append(
                    os.open(paths[name], os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            if not held:
                self._sel.register(fd, selectors.EVENT_READ, self._reader(streams, fd))
        if self._keeper is not None and log_path is not None:
            self._keeper.hold(cid, list(streams.fifos))
        # A held stream's output waits in its FIFOs until writers_ready (its client is
        # attached by then; an exec's output must not reach it before the settle time).
        streams.paused = held
        if stdin:
            # Read-write, so opening never blocks and the shim's reader never sees EOF early.
            streams.stdin_fd = os.open(paths["stdin"], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self._write_stdin(streams)  # what a client sent before the start
        if restore:
            # The shim may have closed its ends already (the process exited while no
            # actor read; the keeper kept what it wrote): a FIFO opened after its last
            # writer left never reports the hang-up, so it is read here to its end
            # (which a pipe with no writer reaches within its capacity; one with a
            # writer reports the rest itself).
            for fd in list(streams.fifos):
                read = self._reader(streams, fd)
                for _ in range(RESTORE_READS):
                    if fd not in streams.fifos or not read(selectors.EVENT_READ):
                        break
        result = {"stdin": str(paths["stdin"]) if stdin else "", "stdout": str(paths["stdout"]),
                  "stderr": "" if tty else str(paths["stderr"])}
        return result, streams.drained

    def _drop_placeholders(self, cid: str) -> None:
        streams = self._streams.get(cid)
        if streams is not None:
            for fd in streams.placeholders:
                os.close(fd)
            streams.placeholders.clear()
            streams.task_ready = True
            self._write_stdin(streams)
            self._apply_backpressure(streams)  # a held stream is read from now on

    def _attach(self, cid: str, consumer: Consumer) -> None:
        streams = self._streams.setdefault(cid, Streams(cid))
        consumer.streams = streams
        streams.consumers.append(consumer)
        self._watch(consumer)

    def _follow(self, cid: str, consumer: Consumer, log: LogView,
                runs_seen: int | None) -> None:
        streams = self._streams.get(cid)
        running = streams is not None and streams.opened and streams.log is not None
        writer = streams.log if running and streams else None
        # On this thread no line is written (nor the log rotated) meanwhile: nothing is
        # lost or sent twice.
        selection = consumer.selection or Selection()
        for entry in log.catch_up(writer.file_id() if writer else None,
                                  writer.size() if writer else None):
            if consumer.wants(entry.stream) and selection.wants(entry):
                consumer.out += consumer.encode_entry(entry)
        if running or (runs_seen is not None and self._runs.get(cid, 0) == runs_seen):
            self._attach(cid, consumer)
        else:
            consumer.end()
            self._watch(consumer)

    def _forget(self, cid: str) -> None:
        self._finish(cid, forced=True)
        self._runs.pop(cid, None)

    def _release(self, cid: str, note: bytes) -> None:
        streams = self._streams.get(cid)
        if streams is not None and note:
            for consumer in streams.consumers:
                consumer.out += consumer.session.encode("stdout", note)
        self._finish(cid)
        if streams is not None and streams.held:
            self._runs.pop(cid, None)

    def _reader(self, streams: Streams, fd: int) -> Callable[[int], bool]:
        """Read what `fd` has now; whether it had some (neither end of file nor none)."""
        def on_readable(_mask: int) -> bool:
            try:
                chunk = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return False
            name, log = streams.fifos[fd], streams.log
            if not chunk:
                self._close_fifo(streams, fd)
                self._deliver(streams, name, b"", log.flush(name) if log else [])
                if not streams.fifos:
                    streams.drained.set()
                return False
            self._deliver(streams, name, chunk, log.write(name, chunk) if log else [])
            return True
        return on_readable

    def _deliver(self, streams: Streams, name: str, chunk: bytes, entries: list[Entry]) -> None:
        for consumer in list(streams.consumers):
            if consumer.closing or not consumer.wants(name):
                continue
            if consumer.lines:
                selection = consumer.selection or Selection()
                for entry in entries:
                    if selection.wants(entry):
                        consumer.out += consumer.encode_entry(entry)
            elif chunk:
                consumer.out += consumer.session.encode(name, chunk)
            self._flush(consumer)
        self._apply_backpressure(streams)

    def _finish(self, cid: str, forced: bool = False) -> None:
        """All output is read (or the container goes away): end its consumers."""
        streams = self._streams.pop(cid, None)
        if streams is None:
            return
        for fd in list(streams.fifos):
            self._close_fifo(streams, fd)
        for fd in streams.placeholders:
            os.close(fd)
        streams.placeholders.clear()
        self._close_stdin(streams)
        if streams.log is not None:
            streams.log.close()
        for consumer in streams.consumers:
            consumer.streams = None
            if forced:
                consumer.out.clear()
            consumer.end()
            self._flush(consumer)
        streams.consumers.clear()
        streams.drained.set()
        if self._keeper is not None and not self._stopping:
            # Not when this process stops: its successor may find output in the pipes.
            self._keeper.release(cid)

    def _close_fifo(self, streams: Streams, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(fd)
        streams.fifos.pop(fd, None)
        os.close(fd)

    def _close_stdin(self, streams: Streams) -> None:
        if streams.stdin_fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(streams.stdin_fd)
            os.close(streams.stdin_fd)
            streams.stdin_fd = None

    # -- consumers -----------------------------------------------------------

    def _watch(self, consumer: Consumer) -> None:
        consumer.conn.setblocking(False)
        self._sel.register(consumer.conn, self._interest(consumer), self._on_conn(consumer))
        self._flush(consumer)

    @staticmethod
    def _interest(consumer: Consumer) -> int:
        mask = selectors.EVENT_READ if consumer.reading or consumer.linger_until else 0
        return mask | (selectors.EVENT_WRITE if consumer.out else 0)

    def _on_conn(self, consumer: Consumer) -> Callable[[int], None]:
        def on_event(mask: int) -> None:
            if mask & selectors.EVENT_READ:
                self._read_from(consumer)
            if mask & selectors.EVENT_WRITE and consumer.conn.fileno() >= 0:
                self._flush(consumer)
        return on_event

    def _read_from(self, consumer: Consumer) -> None:
        try:
            data = consumer.conn.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if consumer.linger_until:
            if not data:
                self._drop(consumer)
            return
        streams = consumer.streams
        if not data:
            # The client closed its sending side: no more input, but it still listens.
            consumer.reading = False
            if consumer.stdin and streams is not None and consumer.tty:
                # As dockerd: a terminal's client leaving (a detach by the CLI, which
                # reads the keys itself) ends its attach; the container's input stays
                # open, and the container runs on.
                consumer.end()
                self._flush(consumer)
                return
            if consumer.stdin and streams is not None:
                streams.stdin_eof = True
                self._write_stdin(streams)
            self._update(consumer)
            return
        if consumer.stdin and streams is not None:
            detached = False
            if consumer.escape is not None:
                data, detached = consumer.escape.feed(data)
            streams.stdin_buf += data
            self._write_stdin(streams)
            if detached:
                self._detach(consumer)

    def _detach(self, consumer: Consumer) -> None:
        """The client typed the detach keys: its attach ends, the container runs on."""
        consumer.reading = False
        consumer.end()
        self._flush(consumer)
        if consumer.on_detach is not None:
            consumer.on_detach()

    def _write_stdin(self, streams: Streams) -> None:
        """Move buffered input into the stdin FIFO (once the task has one)."""
        fd = streams.stdin_fd
        if fd is None:
            return
        if streams.stdin_buf:
            try:
                written = os.write(fd, streams.stdin_buf)
                del streams.stdin_buf[:written]
            except BlockingIOError:
                pass
            except OSError:
                streams.stdin_buf.clear()
        registered = fd in self._sel.get_map()
        if streams.stdin_buf and not registered:
            self._sel.register(fd, selectors.EVENT_WRITE, lambda _m: self._write_stdin(streams))
        elif not streams.stdin_buf:
            if registered:
                self._sel.unregister(fd)
            if streams.stdin_eof and streams.stdin_once and streams.task_ready:
                self._close_stdin(streams)
                # Off this thread: a slow containerd must not stall every stream.
                threading.Thread(target=self._close_task_stdin, args=(streams.cid,),
                                 daemon=True).start()

    def _flush(self, consumer: Consumer) -> None:
        if consumer.conn.fileno() < 0:
            return
        while consumer.out:
            try:
                sent = consumer.conn.send(consumer.out)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    log.warning("io hub: dropping a client: %s", exc)
                self._drop(consumer)
                return
            del consumer.out[:sent]
        if consumer.closing and not consumer.out and not consumer.linger_until:
            self._shut(consumer)
            return
        self._update(consumer)
        if consumer.streams is not None and consumer.streams.paused:
            self._apply_backpressure(consumer.streams)

    def _shut(self, consumer: Consumer) -> None:
        """Our side is done: send FIN, then wait a little for the client's, so that
        closing with unread input does not reset what the client has yet to read."""
        with contextlib.suppress(OSError):
            consumer.conn.shutdown(socket.SHUT_WR)
        consumer.linger_until = time.monotonic() + LINGER
        self._lingering.append(consumer)
        self._update(consumer)

    def _expire_lingering(self) -> None:
        now = time.monotonic()
        for consumer in [c for c in self._lingering if c.linger_until <= now]:
            self._drop(consumer)

    def _update(self, consumer: Consumer) -> None:
        if consumer.conn.fileno() < 0:
            return
        mask = self._interest(consumer)
        registered = consumer.conn in self._sel.get_map()
        if mask and registered:
            self._sel.modify(consumer.conn, mask, self._on_conn(consumer))
        elif mask:
            self._sel.register(consumer.conn, mask, self._on_conn(consumer))
        elif registered:
            self._sel.unregister(consumer.conn)

    def _drop(self, consumer: Consumer) -> None:
        if consumer.conn.fileno() >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(consumer.conn)
            consumer.session.close()
        if consumer in self._lingering:
            self._lingering.remove(consumer)
        streams = consumer.streams
        if streams is not None and consumer in streams.consumers:
            streams.consumers.remove(consumer)
            self._apply_backpressure(streams)

    def _apply_backpressure(self, streams: Streams) -> None:
        behind = max((len(c.out) for c in streams.consumers), default=0)
        if not streams.paused and behind > PAUSE_ABOVE:
            streams.paused = True
            for fd in streams.fifos:
                self._sel.unregister(fd)
        elif streams.paused and behind < RESUME_BELOW:
            streams.paused = False
            for fd in streams.fifos:
                self._sel.register(fd, selectors.EVENT_READ, self._reader(streams, fd))


def _ensure_fifo(path: Path) -> None:
    try:
        if stat.S_ISFIFO(path.lstat().st_mode):
            return
        path.unlink()
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)

