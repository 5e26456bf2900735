"""The CRI streaming server: where Exec, Attach and PortForward URLs point.

Kubelet asks the runtime for a URL (`mint`), then proxies its client's
connection to it; crictl connects to it itself. The URL's token is single-use
and expires a minute after it was minted unused, as kubelet's own request
cache has it. The server runs as threads in the CRI actor's process: one
accept thread and one thread per connection ("one socket, one thread"), plus
one pump per backend stream. It owns no broker socket: it calls the container
actor through the thread-safe `Calls` it is given, and takes exec and attach
streams from it by hand-off, like the gateway (`pouch.proto.handoff`), over a
socket pair whose other end it relays into the client's channels.

What it speaks, as kubelet's streaming server does:

- SPDY/3.1 (`Upgrade: SPDY/3.1`; `pouch.actors.cri.spdy`), client-go's
  default. Exec and attach (`X-Stream-Protocol-Version`: `v4.channel.k8s.io`
  down to `channel.k8s.io`): the client opens one stream per channel, named by
  its `streamType` header (error, stdin, stdout, stderr, resize); port-forward
  (`portforward.k8s.io`): per connection an error and a data stream, with
  headers `port` and `requestID`.
- WebSocket (wsproto). Exec and attach with `v5.channel.k8s.io` down to
  `channel.k8s.io` and `base64.channel.k8s.io`: each message starts with its
  channel (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5's 255 closes a
  channel); port-forward with `v4.channel.k8s.io` (per `port` query value a
  data and an error channel, each opened by the port as 2 little-endian
  bytes), and `SPDY/3.1+portforward.k8s.io`, SPDY port-forward carried in the
  WebSocket's binary messages.

The error channel carries the outcome: from v4 on, a metav1.Status whose
`details.causes` holds the exit code (reason `ExitCode`) when it is not 0;
before v4, the error's text, nothing on success. Resize messages are JSON
`{"Width": .., "Height": ..}`.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import functools
import json
import logging
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from pouch.actors.cri import spdy
from pouch.actors.netns import in_netns
from pouch.proto import stdstream
from pouch.proto.envelope import PouchError, invalid
from pouch.proto.handoff import hand_over
from pouch.proto.stream import RAW_STREAM, StreamSpec
from pouch.proto.stubs import Calls, Handoffs

log = logging.getLogger("pouch.cri.stream")

TOKEN_TTL = 60.0            # s: an unused URL expires (kubelet's cache)
STREAM_CREATION = 30.0      # s: how long the expected SPDY streams may take to come
TICK = 0.5                  # s: how often a blocked read looks at the connection's state
LINGER = 5.0                # s: how long a finished connection waits for its client to close
EXIT_CODE_WAIT = 2.0        # s: how long an exec's exit code may lag behind its stream
HANDOFF_WAIT = 10.0         # s: how long a hand-off waits for a restarting container actor
READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024

KINDS = ("exec", "attach", "portforward")
SPDY_UPGRADE = "SPDY/3.1"
REMOTECOMMAND_SPDY = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                      "channel.k8s.io")
REMOTECOMMAND_WS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
                    "v2.channel.k8s.io", "channel.k8s.io", "v4.base64.channel.k8s.io",
                    "v3.base64.channel.k8s.io", "v2.base64.channel.k8s.io",
                    "base64.channel.k8s.io")
PORTFORWARD_SPDY = ("portforward.k8s.io",)
PORTFORWARD_TUNNEL = "SPDY/3.1+portforward.k8s.io"
PORTFORWARD_WS = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
                  "base64.channel.k8s.io")

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CHANNELS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR,
            "resize": RESIZE}
WS_CLOSE_CHANNEL = 255


# ---- tokens --------------------------------------------------------------------------

@dataclass(frozen=True)
class Pending:
    kind: str
    request: dict[str, Any]
    expires: float


class Tokens:
    """Minted URLs' requests: each taken once, gone a TOKEN_TTL after minting."""

    def __init__(self, ttl: float = TOKEN_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}

    def add(self, kind: str, request: dict[str, Any]) -> str:
        token = secrets.token_urlsafe(12)
        now = self._clock()
        with self._lock:
            self._pending = {k: p for k, p in self._pending.items() if p.expires > now}
            self._pending[token] = Pending(kind, request, now + self.ttl)
        return token

    def take(self, token: str) -> Pending | None:
        with self._lock:
            pending = self._pending.pop(token, None)
        if pending is None or pending.expires <= self._clock():
            return None
        return pending


def checked_request(kind: str, request: dict[str, Any]) -> dict[str, Any]:
    """The request a URL stands for, validated as kubelet validates it."""
    if kind not in KINDS:
        raise invalid(f"no streaming kind {kind!r} (one of {', '.join(KINDS)})")
    cid = request.get("container_id")
    if not isinstance(cid, str) or not cid:
        raise invalid("a streaming request needs its container_id")
    if kind == "portforward":
        ports = [int(p) for p in request.get("ports") or []]
        if any(not 0 < p < 65536 for p in ports):
            raise invalid(f"invalid port in {ports}")
        return {"container_id": cid, "netns": str(request.get("netns") or ""), "ports": ports}
    opts = {name: bool(request.get(name)) for name in ("tty", "stdin", "stdout", "stderr")}
    if not (opts["stdin"] or opts["stdout"] or opts["stderr"]):
        raise invalid("one of stdin, stdout, and stderr must be set")
    if opts["tty"] and opts["stderr"]:
        opts["stderr"] = False  # a terminal has one output: stderr is part of stdout
    if kind == "exec":
        cmd = request.get("cmd")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
            raise invalid("exec needs a command (a list of strings)")
        return {"container_id": cid, "cmd": cmd, **opts}
    return {"container_id": cid, **opts}


# ---- the server ----------------------------------------------------------------------

class StreamServer:
    """The HTTP server behind CRI streaming URLs."""

    def __init__(self, calls: Calls, *, handoff_dir: Path, address: str = "127.0.0.1",
                 port: int = 10010, token_ttl: float = TOKEN_TTL) -> None:
        self.calls = calls
        self.handoff_dir = handoff_dir
        self.address = address or "0.0.0.0"  # none given: every address
        self.port = port
        self.tokens = Tokens(token_ttl)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._thread = threading.Thread(target=self._serve, name="cri-stream", daemon=True)
        self._stopping = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The base of minted URLs: where the server listens, loopback when it listens
        on every address (kubelet, on this node, proxies its clients to it)."""
        address = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(
            self.address, self.address)
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{self.port}"

    def start(self) -> Callable[[], None]:
        """Bind and serve; a callable that stops the server."""
        self._sock.bind((self.address, self.port))
        self.port = self._sock.getsockname()[1]
        self._sock.listen(64)
        self._thread.start()
        return self.stop

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def mint(self, kind: str, request: dict[str, Any]) -> str:
        """A single-use URL for `request` (see checked_request); raises PouchError(invalid)."""
        token = self.tokens.add(kind, checked_request(kind, request))
        return f"{self.url}/{kind}/{token}"

    def _serve(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopping:
                    return
                continue
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn,), name="cri-stream-conn",
                             daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            Handler(self, conn).run()
        except Exception:
            log.exception("a streaming connection failed")
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()


# ---- HTTP ----------------------------------------------------------------------------

@dataclass
class HttpRequest:
    method: str
    target: str
    headers: dict[str, list[str]]
    raw: bytes  # the head as read, for wsproto

    def header(self, name: str) -> str:
        return ", ".join(self.headers.get(name.lower(), []))

    def tokens(self, name: str) -> list[str]:
        return [t.strip() for t in self.header(name).split(",") if t.strip()]


def read_head(sock: socket.socket) -> tuple[HttpRequest, bytes]:
    """The request's head, and the bytes read past it. ValueError if it is not HTTP."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ValueError("the client closed before its request was complete")
        buf += chunk
        if len(buf) > MAX_HEAD:
            raise ValueError("request head too large")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.1 request: {lines[0]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return HttpRequest(parts[0], parts[1], headers, head + b"\r\n\r\n"), rest


def respond(sock: socket.socket, status: str, body: str = "",
            headers: dict[str, str] | None = None) -> None:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    data = body.encode()
    with contextlib.suppress(OSError):
        sock.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n{extra}\r\n"
                     .encode() + data)


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The first protocol the client offered that we speak ("" if it offered none)."""
    if not offered:
        return ""
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None


# ---- transports ----------------------------------------------------------------------

class Transport(Protocol):
    """A byte stream to the client: the raw socket, or a WebSocket's binary messages."""

    def recv(self) -> bytes | None:
        """Bytes; b"" once the client has ended; None when nothing came within a TICK."""

    def send(self, data: bytes) -> None: ...

    def end(self) -> None:
        """We send nothing more."""


def recv_within(sock: socket.socket, timeout: float) -> bytes | None:
    """What a blocking socket has within `timeout` s: None if nothing, b"" at its end."""
    try:
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            return None
        return sock.recv(READ_SIZE)
    except (OSError, ValueError):  # reset, or closed under us
        return b""


class RawTransport:
    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        self.sock = sock
        self._rest = rest
        self._lock = threading.Lock()
        sock.settimeout(None)  # blocking: reads wait in select, writes as long as they must

    def recv(self) -> bytes | None:
        if self._rest:
            data, self._rest = self._rest, b""
            return data
        return recv_within(self.sock, TICK)

    def send(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def end(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)


class WebSocket:
    """A server-side WebSocket on a socket: whole messages in, messages out."""

    def __init__(self, sock: socket.socket, ws: WSConnection, rest: bytes) -> None:
        self.sock = sock
        self.ws = ws
        self._lock = threading.Lock()
        self._parts: list[bytes] = []
        self._text: list[str] = []
        self._queue: list[bytes | str] = []
        self.closed = False
        sock.settimeout(None)
        if rest:
            ws.receive_data(rest)

    def recv_message(self) -> bytes | str | None:
        """A message (bytes or text); b"" once closed; None after a quiet TICK."""
        while not self._queue:
            self._drain_events()
            if self._queue:
                break
            if self.closed:
                return b""
            data = recv_within(self.sock, TICK)
            if data is None:
                return None
            self.ws.receive_data(data or None)
            if not data:
                self._drain_events()
                self.closed = True
        return self._queue.pop(0)

    def _drain_events(self) -> None:
        for event in self.ws.events():
            if isinstance(event, BytesMessage):
                self._parts.append(bytes(event.data))
                if event.message_finished:
                    self._queue.append(b"".join(self._parts))
                    self._parts.clear()
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self._queue.append("".join(self._text))
                    self._text.clear()
            elif isinstance(event, Ping):
                self._raw_send(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(Exception):
                    self._raw_send(self.ws.send(event.response()))
                self.closed = True

    def send_message(self, data: bytes | str) -> None:
        with self._lock:
            if self.closed:
                raise OSError("the WebSocket is closed")
            try:
                out = self.ws.send(BytesMessage(data=data) if isinstance(data, bytes)
                                   else TextMessage(data=data))
            except LocalProtocolError as exc:  # we closed it already
                raise OSError(f"the WebSocket is closing: {exc}") from None
            self._send_locked(out)

    def close(self, code: int = 1000) -> None:
        with self._lock:
            if self.closed:
                return
            with contextlib.suppress(Exception):
                self._send_locked(self.ws.send(CloseConnection(code=code)))

    def _raw_send(self, data: bytes) -> None:
        with self._lock:
            self._send_locked(data)

    def _send_locked(self, data: bytes) -> None:
        self.sock.sendall(data)


class TunnelTransport:
    """SPDY carried in a WebSocket's binary messages (`SPDY/3.1+portforward.k8s.io`)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    def recv(self) -> bytes | None:
        message = self.ws.recv_message()
        if isinstance(message, str):
            return message.encode()
        return message

    def send(self, data: bytes) -> None:
        self.ws.send_message(data)

    def end(self) -> None:
        self.ws.close()


# ---- channels: what exec and attach write to ----------------------------------------

def status_of(version: int, exit_code: int | None, error: str | None,
              cmd: list[str]) -> bytes:
    """What the error channel carries at the end: a metav1.Status from v4 on, else the
    error's text (nothing when all went well)."""
    if error is None and exit_code not in (None, 0):
        error = (f"command terminated with non-zero exit code: error executing command "
                 f"{cmd}, exit code {exit_code}")
    if version < 4:
        return error.encode() if error else b""
    if error is None:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    status: dict[str, Any] = {"metadata": {}, "status": "Failure", "message": error}
    if exit_code not in (None, 0):
        status["reason"] = "NonZeroExitCode"
        status["details"] = {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}
    else:
        status["reason"] = "InternalError"
    return json.dumps(status).encode()


def protocol_version(protocol: str) -> int:
    """4 for v4.channel.k8s.io, 1 for channel.k8s.io (or none)."""
    if protocol.startswith("v") and "." in protocol:
        with contextlib.suppress(ValueError):
            return int(protocol[1:protocol.index(".")])
    return 1


class Channels(Protocol):
    def write(self, channel: int, data: bytes) -> None: ...

    def finish(self, status: bytes) -> None:
        """Write the outcome on the error channel, end every channel and the connection."""


class Input(Protocol):
    """Where a client's input goes: the backend of an exec or an attach."""

    def stdin(self, data: bytes) -> None: ...

    def stdin_end(self) -> None: ...

    def resize(self, width: int, height: int) -> None: ...

    def client_gone(self) -> None: ...


class ResizeDecoder:
    """JSON size messages, however they are split across frames."""

    def __init__(self) -> None:
        self._buf = ""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._buf += data.decode("utf-8", "replace")
        sizes: list[tuple[int, int]] = []
        while True:
            self._buf = self._buf.lstrip()
            if not self._buf:
                return sizes
            try:
                obj, end = self._decoder.raw_decode(self._buf)
            except json.JSONDecodeError:
                return sizes
            self._buf = self._buf[end:]
            if isinstance(obj, dict):
                sizes.append((int(obj.get("Width") or 0), int(obj.get("Height") or 0)))


class SpdySession:
    """A SPDY connection driven by threads: the connection's thread reads, any thread
    writes. Frames are made under one lock and written in that order under another,
    so the reading thread never waits behind a client slow to read (it leaves its
    frames to the writer at work); data waits for the peer's window if it keeps one."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.conn = spdy.Connection(client=False)
        self.lock = threading.Condition()
        self.done = False
        self._out: collections.deque[bytes] = collections.deque()
        self._writing = threading.Lock()

    def _queue(self) -> None:
        """Take the frames made so far, in their order (under self.lock)."""
        data = self.conn.data_to_send()
        if data:
            self._out.append(data)

    def flush(self, wait: bool = True) -> None:
        """Write the queued frames. Without `wait`, leave them to a writer at work."""
        while self._out:
            if not self._writing.acquire(blocking=wait):
                return
            try:
                while self._out:
                    self.transport.send(self._out.popleft())
            finally:
                self._writing.release()
            wait = False  # what came meanwhile: ours unless another writer took over

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            result = fn(*args, **kwargs)
            self._queue()
        self.flush()
        return result

    def send_data(self, sid: int, data: bytes) -> bool:
        """Send all of `data` on a stream, waiting for window; False if it closed."""
        while data:
            with self.lock:
                while not self.done and self.conn.send_window(sid) <= 0 \
                        and self.conn.is_open(sid):
                    self.lock.wait(TICK)
                if self.done or not self.conn.is_open(sid):
                    return False
                data = data[self.conn.send_data(sid, data):]
                self._queue()
            self.flush()
        return True

    def events(self) -> list[spdy.Event] | None:
        """The next events (possibly none); None once the client has gone. Raises
        spdy.ProtocolError once its GOAWAY is written."""
        data = self.transport.recv()
        if data is None:
            return []
        if not data:
            return None
        with self.lock:
            try:
                events = self.conn.receive_data(data)
            finally:
                self._queue()
            if any(isinstance(e, spdy.WindowUpdated) for e in events):
                self.lock.notify_all()
        with contextlib.suppress(OSError):
            self.flush(wait=False)
        return events

    def close(self) -> None:
        with self.lock:
            self.done = True
            self.conn.goaway()
            self._queue()
            self.lock.notify_all()
        with contextlib.suppress(OSError):
            self.flush()
        self.transport.end()


class SpdyChannels:
    """Exec and attach over SPDY: the client opens a stream per channel."""

    def __init__(self, session: SpdySession, version: int, opts: dict[str, Any]) -> None:
        self.session = session
        self.version = version
        self.streams: dict[int, int] = {}  # channel -> stream id
        self.by_stream: dict[int, int] = {}
        expected = {ERROR}
        if opts["stdin"]:
            expected.add(STDIN)
        if opts["stdout"]:
            expected.add(STDOUT)
        if opts["stderr"] and not opts["tty"]:
            expected.add(STDERR)
        if opts["tty"] and version >= 3:
            expected.add(RESIZE)
        self.expected = expected
        self._resize = ResizeDecoder()
        self.finished = False

    def on_opened(self, event: spdy.StreamOpened) -> None:
        kind = (event.headers.get("streamtype") or [""])[0]
        channel = CHANNELS.get(kind)
        if channel is None or channel in self.streams:
            self.session.call(self.session.conn.rst_stream, event.stream_id,
                              spdy.PROTOCOL_ERROR)
            return
        self.session.call(self.session.conn.syn_reply, event.stream_id, {})
        self.streams[channel] = event.stream_id
        self.by_stream[event.stream_id] = channel

    @property
    def ready(self) -> bool:
        return self.expected <= set(self.streams)

    def on_data(self, event: spdy.DataReceived, target: Input) -> None:
        channel = self.by_stream.get(event.stream_id)
        if channel == STDIN:
            if event.data:
                target.stdin(event.data)
            if event.fin:
                target.stdin_end()
        elif channel == RESIZE:
            for width, height in self._resize.feed(event.data):
                target.resize(width, height)

    def write(self, channel: int, data: bytes) -> None:
        sid = self.streams.get(channel)
        if sid is not None and data:
            self.session.send_data(sid, data)

    def finish(self, status: bytes) -> None:
        if self.finished:
            return
        self.finished = True
        conn = self.session.conn
        with contextlib.suppress(OSError):
            if status and ERROR in self.streams:
                self.session.send_data(self.streams[ERROR], status)
            for sid in self.streams.values():
                if conn.is_open(sid):
                    self.session.call(conn.end_stream, sid)
        self.session.close()


class WsChannels:
    """Exec and attach over a WebSocket: one byte of channel before each message."""

    def __init__(self, ws: WebSocket, protocol: str, opts: dict[str, Any]) -> None:
        self.ws = ws
        self.version = protocol_version(protocol)
        self.base64 = "base64" in protocol
        self.opts = opts
        self._resize = ResizeDecoder()
        self.finished = False

    def open(self) -> None:
        """Tell the client the streams are ready: an empty message on the first
        channel it reads."""
        first = STDOUT if self.opts["stdout"] else STDERR if self.opts["stderr"] else ERROR
        self._send(first, b"")

    def _send(self, channel: int, data: bytes) -> None:
        if self.base64:
            self.ws.send_message(chr(ord("0") + channel) + base64.b64encode(data).decode())
        else:
            self.ws.send_message(bytes([channel]) + data)

    def on_message(self, message: bytes | str, target: Input) -> None:
        if isinstance(message, str):
            if not message:
                return
            channel, data = ord(message[0]) - ord("0"), base64.b64decode(message[1:])
        else:
            if not message:
                return
            channel, data = message[0], message[1:]
        if channel == STDIN and data:
            target.stdin(data)
        elif channel == RESIZE:
            for width, height in self._resize.feed(data):
                target.resize(width, height)
        elif channel == WS_CLOSE_CHANNEL and self.version >= 5 and data[:1] == bytes([STDIN]):
            target.stdin_end()

    def write(self, channel: int, data: bytes) -> None:
        if data:
            with contextlib.suppress(OSError):
                self._send(channel, data)

    def finish(self, status: bytes) -> None:
        if self.finished:
            return
        self.finished = True
        with contextlib.suppress(OSError):
            if status:
                self._send(ERROR, status)
        self.ws.close()


# ---- exec and attach backends -------------------------------------------------------

class _SocketHandOver:
    """The stubs' HandOver for a socket of ours: the actor answers on it as `spec` says."""

    def __init__(self, handoff_dir: Path, spec: StreamSpec) -> None:
        self.handoff_dir = handoff_dir
        self.spec = spec
        self.links: list[socket.socket] = []

    def hand_over(self, conn: Any, service: str, method: str, args: dict[str, Any]) -> None:
        self.links.append(hand_over(self.handoff_dir, service, method, args, self.spec,
                                    conn.fileno(), wait_for_actor=HANDOFF_WAIT))


class ContainerStream:
    """An exec's or an attach's stream from the container actor, relayed to channels."""

    def __init__(self, server: StreamServer, kind: str, request: dict[str, Any],
                 channels: Channels, version: int) -> None:
        self.server = server
        self.kind = kind
        self.request = request
        self.channels = channels
        self.version = version
        self.exec_id = ""
        self.tty = bool(request["tty"])
        self._ours: socket.socket | None = None
        self._handover = _SocketHandOver(server.handoff_dir, StreamSpec("upgrade", RAW_STREAM))
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        """Create and start the exec (or attach); PouchError if refused."""
        calls, cid = self.server.calls, self.request["container_id"]
        handoffs = Handoffs(self._handover)
        ours, theirs = socket.socketpair()
        try:
            if self.kind == "exec":
                created = calls.container.exec_create(id=cid, config={
                    "Cmd": self.request["cmd"], "Tty": self.tty,
                    "AttachStdin": self.request["stdin"],
                    "AttachStdout": self.request["stdout"],
                    "AttachStderr": self.request["stderr"]})
                self.exec_id = created["Id"]
                handoffs.container.exec_start(theirs, id=self.exec_id, tty=self.tty)
            else:
                self.tty = bool(calls.container.inspect(id=cid)["Config"].get("Tty"))
                handoffs.container.attach(theirs, id=cid, stream=True,
                                          stdin=self.request["stdin"],
                                          stdout=self.request["stdout"],
                                          stderr=self.request["stderr"])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._ours = ours
        self._pump = threading.Thread(target=self._relay_out, name="cri-stream-pump",
                                      daemon=True)
        self._pump.start()

    def _relay_out(self) -> None:
        assert self._ours is not None
        error: str | None = None
        buf = b""
        head_done = False
        try:
            while True:
                data = self._ours.recv(READ_SIZE)
                if not data:
                    break
                if not head_done:
                    buf += data
                    if b"\r\n\r\n" not in buf:
                        continue
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    head_done = True
                    data, buf = buf, b""
                if self.tty:
                    self.channels.write(STDOUT, data)
                    continue
                frames, buf = stdstream.parse(buf + data)
                for stream, payload in frames:
                    if stream == stdstream.SYSTEM_ERROR:
                        error = payload.decode("utf-8", "replace").strip()
                    else:
                        self.channels.write(STDERR if stream == stdstream.STDERR else STDOUT,
                                            payload)
        except OSError as exc:
            error = error or f"the stream broke: {exc}"
        exit_code: int | None = None
        if self.kind == "exec" and error is None:
            try:
                exit_code = self._exit_code()
            except PouchError as exc:
                error = exc.message
            if exit_code is None and error is None:
                error = "the command's exit code is unknown"
        self.close_backend()
        self.channels.finish(status_of(self.version, exit_code, error,
                                       self.request.get("cmd") or []))

    def _exit_code(self) -> int | None:
        """The exec's exit code: known as its stream ends, though inspect may lag a little."""
        deadline = time.monotonic() + EXIT_CODE_WAIT
        while True:
            code = self.server.calls.container.exec_inspect(id=self.exec_id)["ExitCode"]
            if code is not None or time.monotonic() >= deadline:
                return code
            time.sleep(0.01)

    def close_backend(self) -> None:
        if self._ours is not None:
            with contextlib.suppress(OSError):
                self._ours.shutdown(socket.SHUT_RDWR)
        for link in self._handover.links:
            link.close()
        self._handover.links.clear()

    # Input
    def stdin(self, data: bytes) -> None:
        if self._ours is not None and self.request["stdin"]:
            with contextlib.suppress(OSError):
                self._ours.sendall(data)

    def stdin_end(self) -> None:
        # A terminal's input ending is not an end of file for the process (as with
        # containerd's CRI): the container actor would end a terminal's stream there.
        if self._ours is not None and not self.tty:
            with contextlib.suppress(OSError):
                self._ours.shutdown(socket.SHUT_WR)

    def resize(self, width: int, height: int) -> None:
        if not (self.tty and width > 0 and height > 0):
            return
        calls = self.server.calls
        try:
            if self.kind == "exec":
                calls.container.exec_resize(id=self.exec_id, height=height, width=width)
            else:
                calls.container.resize(id=self.request["container_id"], height=height,
                                       width=width)
        except PouchError as exc:
            log.debug("resize failed: %s", exc.message)

    def client_gone(self) -> None:
        self.close_backend()

    def wait(self, timeout: float) -> None:
        if self._pump is not None:
            self._pump.join(timeout)


# ---- port-forward -------------------------------------------------------------------

def connect_in_netns(netns: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:`port` inside the network namespace at `netns`,
    made there by a thread of its own (pouch.actors.netns)."""
    conn = in_netns(netns, lambda: socket.create_connection(("127.0.0.1", port),
                                                            timeout=timeout))
    conn.settimeout(None)
    return conn


def netns_of(server: StreamServer, request: dict[str, Any]) -> str:
    if request.get("netns"):
        return str(request["netns"])
    state = server.calls.container.inspect(id=request["container_id"])["State"]
    pid = int(state.get("Pid") or 0)
    if not state.get("Running") or pid <= 0:
        raise PouchError("conflict", f"container {request['container_id']} is not running")
    return f"/proc/{pid}/ns/net"


@dataclass(eq=False)
class Forward:
    """One forwarded connection: a client's data channel and a TCP connection."""

    port: int
    to_client: Callable[[bytes], bool]       # False once the client's side is gone
    client_end: Callable[[], None]           # the remote ended: end the client's data
    report: Callable[[str], None]            # an error for the client's error channel
    remote: socket.socket | None = None
    pending: bytearray = field(default_factory=bytearray)
    client_done: bool = False
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, netns: str, on_done: Callable[[Forward], None]) -> None:
        threading.Thread(target=self._run, args=(netns, on_done), name="cri-portforward",
                         daemon=True).start()

    def _run(self, netns: str, on_done: Callable[[Forward], None]) -> None:
        try:
            remote = connect_in_netns(netns, self.port)
        except OSError as exc:
            self.failed = True
            self.report(f"error forwarding port {self.port}: {exc}")
            self.client_end()
            on_done(self)
            return
        with self.lock:
            self.remote = remote
            with contextlib.suppress(OSError):
                if self.pending:
                    remote.sendall(self.pending)
                self.pending.clear()
                if self.client_done:
                    remote.shutdown(socket.SHUT_WR)
        try:
            while True:
                data = remote.recv(READ_SIZE)
                if not data or not self.to_client(data):
                    break
        except OSError as exc:
            self.report(f"error forwarding port {self.port}: {exc}")
        self.client_end()
        remote.close()
        on_done(self)

    def from_client(self, data: bytes) -> None:
        with self.lock:
            if self.remote is None:
                self.pending += data
                return
            remote = self.remote
        with contextlib.suppress(OSError):
            remote.sendall(data)

    def client_closed(self) -> None:
        with self.lock:
            self.client_done = True
            remote = self.remote
        if remote is not None:
            with contextlib.suppress(OSError):
                remote.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        with self.lock:
            remote = self.remote
        if remote is not None:
            with contextlib.suppress(OSError):
                remote.shutdown(socket.SHUT_RDWR)


def _nothing() -> None:
    pass


def _report(send: Callable[[int, bytes], bool], channel: int, message: str) -> None:
    send(channel, message.encode())


# ---- one connection ----------------------------------------------------------------

class Handler:
    """One client connection, from its request to its end."""

    def __init__(self, server: StreamServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock

    def run(self) -> None:
        self.sock.settimeout(STREAM_CREATION)  # a client that never says what it wants
        try:
            req, rest = read_head(self.sock)
        except (ValueError, OSError) as exc:
            respond(self.sock, "400 Bad Request", f"{exc}\n")
            return
        path = urlsplit(req.target).path.strip("/").split("/")
        if len(path) != 2 or path[0] not in KINDS:
            respond(self.sock, "404 Not Found", "no such streaming URL\n")
            return
        pending = self.server.tokens.take(path[1])
        if pending is None or pending.kind != path[0]:
            respond(self.sock, "404 Not Found", "unknown or expired streaming URL\n")
            return
        upgrade = req.header("upgrade").lower()
        if upgrade == "websocket":
            self._websocket(req, rest, pending)
        elif upgrade == SPDY_UPGRADE.lower():
            self._spdy(req, rest, pending)
        else:
            respond(self.sock, "400 Bad Request",
                    "upgrade to SPDY/3.1 or websocket is required\n")

    # -- SPDY --

    def _spdy(self, req: HttpRequest, rest: bytes, pending: Pending) -> None:
        supported = PORTFORWARD_SPDY if pending.kind == "portforward" else REMOTECOMMAND_SPDY
        offered = req.tokens("x-stream-protocol-version")
        protocol = negotiate(offered, supported)
        if protocol is None:
            respond(self.sock, "403 Forbidden",
                    f"unable to upgrade: no protocol in {offered} is one of {list(supported)}\n",
                    {"X-Accepted-Stream-Protocol-Versions": ", ".join(supported)})
            return
        head = ("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                f"Upgrade: {SPDY_UPGRADE}\r\n")
        if protocol:
            head += f"X-Stream-Protocol-Version: {protocol}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        session = SpdySession(RawTransport(self.sock, rest))
        if pending.kind == "portforward":
            self._spdy_portforward(session, pending.request)
        else:
            self._spdy_remotecommand(session, protocol_version(protocol), pending)

    def _spdy_remotecommand(self, session: SpdySession, version: int, pending: Pending) -> None:
        channels = SpdyChannels(session, version, pending.request)
        backend = ContainerStream(self.server, pending.kind, pending.request, channels, version)
        started = False
        early: list[spdy.DataReceived] = []  # input before every stream was there
        deadline = time.monotonic() + STREAM_CREATION
        linger_until = 0.0
        try:
            while True:
                try:
                    events = session.events()
                except spdy.ProtocolError as exc:
                    log.info("SPDY client broke the protocol: %s", exc)
                    with contextlib.suppress(OSError):
                        session.flush()
                    break
                if events is None:
                    break
                for event in events:
                    if isinstance(event, spdy.StreamOpened):
                        channels.on_opened(event)
                    elif isinstance(event, spdy.DataReceived):
                        if started:
                            channels.on_data(event, backend)
                        else:
                            early.append(event)
                    elif isinstance(event, spdy.GoAwayReceived):
                        linger_until = linger_until or time.monotonic() + LINGER
                if not started and channels.ready:
                    started = True
                    try:
                        backend.start()
                    except PouchError as exc:
                        channels.finish(status_of(version, None, exc.message, []))
                    for event in early:
                        channels.on_data(event, backend)
                    early.clear()
                if not started and time.monotonic() > deadline:
                    log.info("SPDY client did not open its streams in time")
                    break
                if channels.finished:
                    linger_until = linger_until or time.monotonic() + LINGER
                if linger_until and time.monotonic() > linger_until:
                    break
        finally:
            backend.client_gone()
            session.close()

    def _spdy_portforward(self, session: SpdySession, request: dict[str, Any]) -> None:
        try:
            netns = netns_of(self.server, request)
        except PouchError as exc:
            log.info("port-forward refused: %s", exc.message)
            session.close()
            return
        pairs: dict[str, dict[str, int]] = {}
        forwards: dict[int, Forward] = {}  # data stream id -> its forward
        done = threading.Event()
        live: set[Forward] = set()

        def finished(fwd: Forward, error_sid: int) -> None:
            live.discard(fwd)
            with contextlib.suppress(OSError):
                if session.conn.is_open(error_sid):
                    session.call(session.conn.end_stream, error_sid)

        try:
            while not done.is_set():
                try:
                    events = session.events()
                except spdy.ProtocolError as exc:
                    log.info("SPDY client broke the protocol: %s", exc)
                    break
                if events is None:
                    break
                for event in events:
                    if isinstance(event, spdy.StreamOpened):
                        self._pf_opened(session, event, pairs, forwards, live, netns, finished)
                    elif isinstance(event, spdy.DataReceived):
                        fwd = forwards.get(event.stream_id)
                        if fwd is not None:
                            if event.data:
                                fwd.from_client(event.data)
                            if event.fin:
                                fwd.client_closed()
                    elif isinstance(event, spdy.StreamReset):
                        fwd = forwards.get(event.stream_id)
                        if fwd is not None:
                            fwd.abort()
                    elif isinstance(event, spdy.GoAwayReceived):
                        done.set()
        finally:
            for fwd in list(live):
                fwd.abort()
            session.close()

    def _pf_opened(self, session: SpdySession, event: spdy.StreamOpened,
                   pairs: dict[str, dict[str, int]], forwards: dict[int, Forward],
                   live: set[Forward], netns: str,
                   finished: Callable[[Forward, int], None]) -> None:
        headers = event.headers
        kind = (headers.get("streamtype") or [""])[0]
        port_text = (headers.get("port") or [""])[0]
        request_id = (headers.get("requestid") or [""])[0]
        if kind not in ("data", "error") or not port_text.isdigit():
            session.call(session.conn.rst_stream, event.stream_id, spdy.PROTOCOL_ERROR)
            return
        if not request_id:  # clients before requestID: the error stream comes just before
            request_id = str(event.stream_id if kind == "error" else event.stream_id - 2)
        session.call(session.conn.syn_reply, event.stream_id, {})
        pair = pairs.setdefault(request_id, {})
        pair[kind] = event.stream_id
        if "data" not in pair or "error" not in pair:
            return
        del pairs[request_id]
        data_sid, error_sid = pair["data"], pair["error"]
        port = int(port_text)

        def report(message: str) -> None:
            with contextlib.suppress(OSError):
                session.send_data(error_sid, message.encode())

        def end_data() -> None:
            with contextlib.suppress(OSError):
                if session.conn.is_open(data_sid):
                    session.call(session.conn.end_stream, data_sid)

        fwd = Forward(port, lambda data: session.send_data(data_sid, data), end_data, report)
        forwards[data_sid] = fwd
        live.add(fwd)
        fwd.start(netns, lambda f: finished(f, error_sid))

    # -- WebSocket --

    def _websocket(self, req: HttpRequest, rest: bytes, pending: Pending) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(req.raw)
        request = next((e for e in ws.events() if isinstance(e, Request)), None)
        if request is None:
            respond(self.sock, "400 Bad Request", "not a WebSocket handshake\n")
            return
        offered = list(request.subprotocols)
        if pending.kind == "portforward":
            supported: tuple[str, ...] = (PORTFORWARD_TUNNEL, *PORTFORWARD_WS)
        else:
            supported = REMOTECOMMAND_WS
        protocol = negotiate(offered, supported)
        if protocol is None:
            self.sock.sendall(ws.send(RejectConnection(status_code=400)))
            return
        self.sock.sendall(ws.send(AcceptConnection(subprotocol=protocol or None)))
        socket_ws = WebSocket(self.sock, ws, rest)
        if protocol == PORTFORWARD_TUNNEL:
            self._spdy_portforward(SpdySession(TunnelTransport(socket_ws)), pending.request)
        elif pending.kind == "portforward":
            query = parse_qs(urlsplit(req.target).query)
            ports = [int(p) for v in query.get("port", []) for p in v.split(",") if p.isdigit()]
            self._ws_portforward(socket_ws, protocol, ports or pending.request["ports"],
                                 pending.request)
        else:
            self._ws_remotecommand(socket_ws, protocol, pending)

    def _ws_remotecommand(self, ws: WebSocket, protocol: str, pending: Pending) -> None:
        channels = WsChannels(ws, protocol, pending.request)
        version = channels.version
        backend = ContainerStream(self.server, pending.kind, pending.request, channels, version)
        try:
            channels.open()
            backend.start()
        except PouchError as exc:
            channels.finish(status_of(version, None, exc.message, []))
        except OSError:
            return
        linger_until = 0.0
        try:
            while True:
                message = ws.recv_message()
                if message == b"":
                    break
                if message is not None:
                    channels.on_message(message, backend)
                if channels.finished:
                    linger_until = linger_until or time.monotonic() + LINGER
                if linger_until and time.monotonic() > linger_until:
                    break
        finally:
            backend.client_gone()
            backend.wait(LINGER)
            ws.close()

    def _ws_portforward(self, ws: WebSocket, protocol: str, ports: list[int],
                        request: dict[str, Any]) -> None:
        b64 = "base64" in protocol

        def send(channel: int, data: bytes) -> bool:
            try:
                if b64:
                    ws.send_message(chr(ord("0") + channel) + base64.b64encode(data).decode())
                else:
                    ws.send_message(bytes([channel]) + data)
                return True
            except OSError:
                return False

        if not ports:
            ws.close(1008)
            return
        try:
            netns = netns_of(self.server, request)
        except PouchError as exc:
            send(1, exc.message.encode())
            ws.close()
            return
        remaining = threading.Semaphore(0)
        forwards: list[Forward] = []
        for i, port in enumerate(ports):
            data_ch, error_ch = 2 * i, 2 * i + 1
            prefix = struct.pack("<H", port)
            send(data_ch, prefix)
            send(error_ch, prefix)
            forwards.append(Forward(port, functools.partial(send, data_ch), _nothing,
                                    functools.partial(_report, send, error_ch)))
        for fwd in forwards:
            fwd.start(netns, lambda _f: remaining.release())
        finished = 0
        try:
            while finished < len(forwards):
                message = ws.recv_message()
                if message == b"":
                    break
                while remaining.acquire(blocking=False):
                    finished += 1
                if not message:
                    continue
                if isinstance(message, str):
                    channel, data = ord(message[0]) - ord("0"), base64.b64decode(message[1:])
                else:
                    channel, data = message[0], message[1:]
                if channel % 2 == 0 and channel // 2 < len(forwards) and data:
                    forwards[channel // 2].from_client(data)
        finally:
            for fwd in forwards:
                fwd.abort()
            ws.close()
