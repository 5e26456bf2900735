"""The gateway's gunicorn worker: gthread, but a connection takes a thread only
once its request has arrived.

gunicorn's gthread gives every new connection to a thread at once, which
waits up to 5 s for a first byte and then as long as the client takes to send
the rest of its head and body: 16 idle connections held every thread, 500 or
40 unterminated chunked bodies froze the API. Here the worker's event loop
reads each request itself, without blocking, until its head and body have
arrived (only the head when the client waits for `100 Continue`; the first
GATHER_LIMIT bytes of a larger request); then a thread parses and serves it
from the bytes already read. An idle client, one that sends a byte a second,
one that never ends its chunked body, costs a buffer and a descriptor, not a
thread. The limits (README, "Gateway limits"):

- a client has `keepalive` seconds (gunicorn.conf.py), from connecting or
  from the first byte of its next request on a kept-alive connection, to send
  that much; else the connection is closed. A kept-alive connection idle for
  `keepalive` seconds is closed, as gunicorn does;
- the rest of a larger request is read by its thread, and each read must bring
  data within `keepalive` seconds (ClientStalled);
- beyond `worker_connections` open connections, a new one is closed at once
  (rather than left in the listen backlog to time out).

TLS connections (pouchd's --tls/--tlsverify, on its tcp:// addresses only) keep
gthread's way: their handshake and head are read by a thread, each read bounded
as above.

Per request, the less Python and the fewer thread wake-ups the better
(bench/request_floor.py): a plain /_ping is answered by the event loop itself
(pouch.gateway.canned); a plain request skips gunicorn's parser and response
(pouch.gateway.plain), and its thread serves the client's next plain request
if it comes within LINGER_MS; a thread is woken alone for its job
(pouch.gateway.threads); and a thread whose answer keeps the connection alive
puts it back in the poller itself.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from gunicorn import http
from gunicorn.http.body import LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.http.message import Request
from gunicorn.http.unreader import SocketUnreader, Unreader
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

from pouch.actors import plugins  # self-contained: it imports nothing of the actors
from pouch.gateway import hijack, plain
from pouch.gateway.canned import CannedPing
from pouch.gateway.threads import HandOff

# Enough for any head Docker's clients send and a JSON body; a larger body
# (an image archive) comes at the pace of a client that is sending it.
GATHER_LIMIT = 64 * 1024
READ_SIZE = 64 * 1024
# How long a worker whose master died accepts at most while no new master's worker does.
ORPHAN_ACCEPTS = 10.0
# A thread's answer after which it put the connection back in the poller itself.
_KEPT = object()
# How long a request thread that answered a plain request waits for the client's next
# one on the same connection (milliseconds): a client that sends its requests in a row
# (the docker CLI's /_ping then its command; docker-py) is served without a turn of
# the event loop and a thread wake-up per request.
LINGER_MS = 2


class ClientStalled(NoMoreData):
    """A client sent nothing for `keepalive` seconds in the middle of a request."""

    def __str__(self) -> str:
        return "the client sent nothing in time"


class _Starved(Exception):
    """The bytes gathered so far end before the request does."""


class _Gathered(Unreader):
    """What the event loop read so far, as gunicorn's parser reads a socket."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data: bytes | None = data

    def chunk(self, size_hint: int | None = None) -> bytes:
        if self.data is None:
            raise _Starved
        data, self.data = self.data, None
        return data


def request_arrived(cfg: Any, data: bytes) -> bool:
    """Whether `data` holds enough of a request for a thread: its head and body; or
    its head, when the client waits for 100 Continue before the body; or a request
    gunicorn refuses (the thread answers 400)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    # Most requests have no body, or a plain length: said here at a glance. Any other
    # framing (chunked, Expect, anything odd) is gunicorn's own parser's to judge.
    framing = [(name.lower(), value.strip()) for name, _, value in
               (line.partition(b":") for line in data[:end].split(b"\r\n")[1:])
               if name.lower() in _FRAMING]
    if not framing:
        return True
    if len(framing) == 1 and framing[0][0] == b"content-length" and framing[0][1].isdigit():
        return len(data) - end - 4 >= int(framing[0][1])
    return _parsed_whole(cfg, data)


_FRAMING = (b"content-length", b"transfer-encoding", b"expect")


def _parsed_whole(cfg: Any, data: bytes) -> bool:
    try:
        req = Request(cfg, _Gathered(data), ("", 0))
        if any(name == "EXPECT" for name, _ in req.headers):
            return True
        reader = req.body.reader
        if isinstance(reader, LengthReader):
            length = reader.length
            return len(reader.read(length)) == length
        while reader.read(READ_SIZE):
            pass
        return True
    except _Starved:
        return False
    except Exception:
        return True


class PatientUnreader(SocketUnreader):
    """A socket reader that gives up on a client silent for `timeout` seconds, without
    touching the socket's blocking mode (a hijacked connection's actor shares it)."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__(sock)
        self.timeout = timeout

    def chunk(self, size_hint: int | None = None) -> bytes:
        if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            poll = select.poll()  # select() cannot watch descriptors past 1023
            poll.register(self.sock, select.POLLIN)
            if not poll.poll(self.timeout * 1000):
                raise ClientStalled()
        data: bytes = super().chunk(size_hint)
        return data


class Conn(gthread.TConn):
    """A connection with the bytes of its next request the event loop read."""

    initialized: bool  # gthread's

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.received = bytearray()
        # TLS guards the tcp:// addresses; a unix socket's guard is its mode and group.
        self.tls = bool(cfg.is_ssl) and sock.family != socket.AF_UNIX

    def init(self) -> None:
        if self.initialized:
            return
        if self.cfg.is_ssl and not self.tls:
            self.initialized = True  # as gthread's, without wrapping the socket
            self.sock.setblocking(True)
            self.parser = http.get_parser(self.cfg, self.sock, self.client)
        else:
            super().init()
        unreader = getattr(self.parser, "unreader", None)
        if isinstance(unreader, SocketUnreader):  # HTTP/1 (HTTP/2 reads on its own)
            patient = PatientUnreader(self.sock, self.cfg.keepalive)
            patient.unread(unreader.take_buffered())
            self.parser.unreader = patient


class Worker(gthread.ThreadWorker):
    """gthread whose event loop gathers each request before a thread serves it."""

    orphaned_at: float | None = None
    canned: CannedPing | None = None  # /_ping's answer, when the event loop may give it
    plain = False  # whether plain requests skip gunicorn's parse and response (gateway.plain)
    _notified = 0.0

    def set_accept_enabled(self, enabled: bool) -> None:
        # Keep accepting while serving, also when full: accept() closes the excess.
        super().set_accept_enabled(enabled or self.alive)

    def run(self) -> None:
        # Tell the workers of a master that died that this one serves in their stead.
        serving = self._serving_path()
        written = serving.with_name(f"{serving.name}.{os.getpid()}")
        written.write_text(str(self.ppid))
        written.replace(serving)
        # gunicorn's access log and request count see only the requests it parses.
        self.plain = not (self.cfg.accesslog or self.cfg.max_requests)
        # A plugin may wrap /_ping or add middleware that must see every request.
        if self.plain and not plugins.loaded().has("update_api"):
            self.canned = CannedPing.render(self, Conn)
        # Started before any stream: another worker may pass on its streams any time.
        keeper = hijack.keeper(self.app.daemon_config.handoff_dir)
        try:
            super().run()
        finally:
            keeper.leave()

    def get_thread_pool(self) -> Any:
        self._keeping = threading.Lock()  # see _handle_and_keep
        return HandOff(self.cfg.threads)

    def notify(self) -> None:
        # gunicorn calls it at every turn of the loop (several per request), and each
        # is a utime(2) on a file; the master checks it against `timeout` (minutes).
        now = time.monotonic()
        if now - self._notified >= 1.0:
            self._notified = now
            super().notify()

    def is_parent_alive(self) -> bool:
        """Whether to go on accepting. When the master dies, pouchd starts another on
        the same sockets, after a back-off if it died often: this orphan accepts until
        a worker of the new master does (or ORPHAN_ACCEPTS seconds), then serves what
        it took for its grace time. Accepting through that grace would leave what
        arrives at its end to die unanswered with it."""
        if os.getppid() == self.ppid:
            return True
        now = time.monotonic()
        if self.orphaned_at is None:
            self.orphaned_at = now
            self.log.info("gateway master %s gone: serving until a new one does", self.ppid)
        if self._successor_serving() or now - self.orphaned_at > ORPHAN_ACCEPTS:
            self.alive = False  # set_accept_enabled keys on it
            return False
        return True

    def _serving_path(self) -> Path:
        return Path(self.cfg.pidfile).with_suffix(".serving")

    def _successor_serving(self) -> bool:
        try:
            return self._serving_path().read_text() != str(self.ppid)
        except OSError:
            return False

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        if self.nr_conns >= self.worker_connections:
            client_sock.close()
            return
        self.nr_conns += 1
        conn = Conn(self.cfg, client_sock, client_addr, listener.getsockname())
        if conn.tls or negotiation.prior_knowledge_allowed(self.cfg, client_addr):
            self.enqueue_req(conn)  # the thread reads the handshake or preface itself
        else:
            self.gather(conn)

    def enqueue_req(self, conn: Conn) -> None:
        """As gthread's, but a thread whose answer keeps the connection alive puts it
        back in the poller itself, rather than wake the loop to (a pipe, a turn of the
        loop and of the GIL, on every request). Anything else is the loop's, as before."""
        fs = self.tpool.submit(self._handle_and_keep, conn)
        fs.add_done_callback(partial(self._handled, conn))

    def _handle_and_keep(self, conn: Conn) -> Any:
        keep = self.handle(conn)
        if keep is not True or conn.parser.unreader.buf.getvalue():
            return keep  # closing, deferred, or a next request read already: the loop's
        return self._keep(conn)

    def _keep(self, conn: Conn) -> Any:
        """Put a connection whose answer kept it alive back in the poller, from its thread."""
        with self._keeping:
            conn.sock.setblocking(False)
            conn.set_timeout()
            if not self.alive:
                # Stopping, after an answer that said keep-alive: the client may have sent
                # its next request already. The loop answers it (with "Connection: close")
                # within gthread's linger; closing at once dropped it (`docker run` saw
                # EOF on its wait, sent on the connection of its create).
                conn.timeout = min(conn.timeout,
                                   time.monotonic() + gthread.STOP_KEEPALIVE_LINGER)
            # Listed before the poller may report it (on_client_socket_readable removes it).
            self.keepalived_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self.on_client_socket_readable, conn))
        return _KEPT

    def _handled(self, conn: Conn, fs: Any) -> None:
        if fs.cancelled() or fs.exception() is not None or fs.result() is not _KEPT:
            self.method_queue.defer(self.finish_request, conn, fs)

    def _cap_keepalive(self, deadline: float) -> None:
        with self._keeping:  # no thread adds a connection while the loop caps them
            super()._cap_keepalive(deadline)

    def on_client_socket_readable(self, conn: Conn, client: socket.socket) -> None:
        """A kept-alive connection's next request begins."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        if conn.tls:
            self.enqueue_req(conn)
            return
        self.gather(conn)

    def gather(self, conn: Conn) -> None:
        """Read `conn`'s request in the event loop, for `keepalive` seconds at most. A
        request already there (a local client often sends it before it is accepted)
        goes to a thread at once, without a turn of the loop."""
        conn.sock.setblocking(False)
        finish = self.read_request(conn)
        if finish is not None:
            finish()
            return
        # Every deadline is now + keepalive: appended, the deque stays in order for
        # murder_pending, which closes the connections that run out of time.
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self.on_request_bytes, conn))

    def on_request_bytes(self, conn: Conn, client: socket.socket) -> None:
        finish = self.read_request(conn)
        if finish is not None:
            self.poller.unregister(client)
            self.pending_conns.remove(conn)
            finish()

    def read_request(self, conn: Conn) -> Callable[[], None] | None:
        """Read what `conn` sent: what to do with it once it is all there (serve it, or
        close a connection its client left), or None while more is to come."""
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            return partial(self._left, conn)
        conn.received += data
        if len(conn.received) < GATHER_LIMIT and not request_arrived(self.cfg,
                                                                      bytes(conn.received)):
            return None
        return partial(self._serve, conn)

    def _serve(self, conn: Conn) -> None:
        if self.canned is not None and self._answer_canned(conn):
            return
        environ = self._plain_environ(conn, bytes(conn.received)) if self.plain else None
        if environ is not None:
            conn.received.clear()
            fs = self.tpool.submit(self._serve_plain, conn, environ)
            fs.add_done_callback(partial(self._handled, conn))
            return
        conn.init()
        conn.parser.unreader.unread(bytes(conn.received))
        conn.received.clear()
        self.enqueue_req(conn)

    def _serve_plain(self, conn: Conn, environ: dict[str, Any] | None) -> Any:
        """Serve a plain request (pouch.gateway.plain) on a request thread, and those
        that follow it at once on the same connection."""
        conn.sock.setblocking(True)
        while environ is not None:
            environ["gunicorn.socket"] = conn.sock  # for a hand-over (gateway.hijack)
            keep = self.alive and len(self.keepalived_conns) < self.max_keepalived
            try:
                keep = plain.respond(self.wsgi, environ, conn.sock, keep)
            except OSError:
                return False  # the client went, or the connection was handed over
            except plain.AppFailed as failed:
                self.handle_error(None, conn.sock, conn.client, failed.__cause__)
                return False
            if not keep:
                return False
            environ = self._next_plain(conn)
        return self._keep(conn)

    def _next_plain(self, conn: Conn) -> dict[str, Any] | None:
        """The connection's next request if it comes within LINGER_MS, whole and plain,
        while another thread is free for other clients; else None, and whatever came
        stays in the socket for the event loop."""
        if not (self.alive and self.tpool.idle()):
            return None
        poll = select.poll()
        poll.register(conn.sock, select.POLLIN)
        if not poll.poll(LINGER_MS):
            return None
        try:
            data = conn.sock.recv(READ_SIZE, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return None
        environ = self._plain_environ(conn, data) if data else None
        if environ is not None:
            conn.sock.recv(len(data))  # what was peeked: there already
        return environ

    def _plain_environ(self, conn: Conn, data: bytes) -> dict[str, Any] | None:
        return plain.plain_environ(data, conn.server, conn.client,
                                   multiprocess=self.cfg.workers > 1)

    def _answer_canned(self, conn: Conn) -> bool:
        """Answer a plain /_ping from the loop (see pouch.gateway.canned); False if it
        is not one, or if the connection is to close after it (the usual way says so)."""
        assert self.canned is not None
        answer = self.canned.answer(bytes(conn.received))
        if answer is None or not self.alive \
                or len(self.keepalived_conns) >= self.max_keepalived:
            return False
        conn.received.clear()
        try:
            sent = conn.sock.send(answer)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._left(conn)
            return True
        if sent < len(answer):
            # The client has not read what it was sent before: a thread waits for it.
            rest = answer[sent:]
            fs = self.tpool.submit(self._send_rest, conn, rest)
            fs.add_done_callback(
                lambda fut: self.method_queue.defer(self.finish_request, conn, fut))
            return True
        # Kept alive, as finish_request does after a thread's answer.
        conn.set_timeout()
        self.keepalived_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self.on_client_socket_readable, conn))
        return True

    @staticmethod
    def _send_rest(conn: Conn, rest: bytes) -> bool:
        conn.init()  # the parser finish_request looks at
        conn.sock.setblocking(True)  # as a thread writes any answer
        conn.sock.sendall(rest)
        return True

    def _left(self, conn: Conn) -> None:
        self.nr_conns -= 1
        conn.close()
