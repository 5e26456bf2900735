"""SPDY/3.1 framing, sans-IO: bytes in, events out; frames out as bytes.

What the CRI streaming server speaks to kubelet and client-go (their
`moby/spdystream`): exec, attach and port-forward streams multiplexed on one
upgraded connection. Only the framing layer is here; what the streams mean
(`streamType` headers, the remotecommand protocol) is `pouch.actors.cri.streaming`'s.

Frames (draft-mbelshe-httpbis-spdy-00, version 3, and 3.1's session window):

- control: 1 bit set, 15-bit version (3), 16-bit type, 8-bit flags, 24-bit length;
- data: 1 bit clear, 31-bit stream id, 8-bit flags, 24-bit length.

Name/value header blocks are compressed with zlib primed with the spec's
dictionary, one compression context per direction for the connection's life
(every block ends with a sync flush), as the spec requires: a peer inflates
each block with its one decompressor, so a block compressed in a fresh context
would not inflate.

Flow control: both windows (each stream's, and 3.1's session window) start at
64 KiB. Received data is acknowledged with WINDOW_UPDATE once half a window is
consumed, so a sender that honours windows never stalls. A peer's windows are
honoured once it has shown it keeps them (sent a WINDOW_UPDATE or an initial
window SETTING): spdystream, what kubelet clients use, neither sends nor reads
WINDOW_UPDATE, and holding data back from it would stall every stream past
64 KiB; `Connection.send_window` says how much may go now.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
DEFAULT_WINDOW = 64 * 1024
MAX_FRAME = (1 << 24) - 1
MAX_DATA_CHUNK = 16 * 1024  # what one DATA frame carries at most, as we send them
MAX_HEADER_BLOCK = 1 << 20  # an inflated name/value block larger than this is refused
MAX_STREAM_ID = 0x7FFFFFFF

# Control frame types.
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9
CREDENTIAL = 10

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes.
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7
STREAM_IN_USE = 8
STREAM_ALREADY_CLOSED = 9

# GOAWAY status codes.
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1
GOAWAY_INTERNAL_ERROR = 2

SETTINGS_MAX_CONCURRENT_STREAMS = 4
SETTINGS_INITIAL_WINDOW_SIZE = 7

# The spec's header dictionary (section 2.6.10.1): these names, each with its
# 32-bit big-endian length before it, then the text that follows them.
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


def _dictionary() -> bytes:
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) \
        + _DICTIONARY_TAIL.encode()


DICTIONARY = _dictionary()

Headers = dict[str, list[str]]


class ProtocolError(Exception):
    """The peer broke the framing: the connection cannot go on (a GOAWAY is queued)."""


# ---- events ----------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamOpened:
    stream_id: int
    headers: Headers
    fin: bool            # the peer sends nothing more on it
    unidirectional: bool  # we may send nothing on it
    associated_to: int = 0


@dataclass(frozen=True)
class StreamReplied:
    stream_id: int
    headers: Headers
    fin: bool


@dataclass(frozen=True)
class HeadersReceived:
    stream_id: int
    headers: Headers
    fin: bool


@dataclass(frozen=True)
class DataReceived:
    stream_id: int
    data: bytes
    fin: bool


@dataclass(frozen=True)
class StreamReset:
    stream_id: int
    status: int


@dataclass(frozen=True)
class SettingsReceived:
    settings: dict[int, int]


@dataclass(frozen=True)
class PingReceived:
    ping_id: int
    ours: bool  # the answer to a ping we sent (else it was echoed already)


@dataclass(frozen=True)
class GoAwayReceived:
    last_stream_id: int
    status: int


@dataclass(frozen=True)
class WindowUpdated:
    stream_id: int  # 0: the session's window
    delta: int


Event = (StreamOpened | StreamReplied | HeadersReceived | DataReceived | StreamReset
         | SettingsReceived | PingReceived | GoAwayReceived | WindowUpdated)


# ---- header blocks ---------------------------------------------------------------------

def encode_block(headers: Headers) -> bytes:
    """An uncompressed name/value block: names lowercased, values joined by NUL."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        key = name.lower().encode()
        value = b"\0".join(v.encode() for v in values)
        out += [struct.pack(">I", len(key)), key, struct.pack(">I", len(value)), value]
    return b"".join(out)


def decode_block(block: bytes) -> Headers:
    """Parse an uncompressed name/value block; ProtocolError if it is malformed."""
    def take(at: int) -> tuple[bytes, int]:
        if at + 4 > len(block):
            raise ProtocolError("truncated name/value block")
        (size,) = struct.unpack_from(">I", block, at)
        end = at + 4 + size
        if end > len(block):
            raise ProtocolError("truncated name/value block")
        return block[at + 4:end], end

    if len(block) < 4:
        raise ProtocolError("truncated name/value block")
    (count,) = struct.unpack_from(">I", block, 0)
    at = 4
    headers: Headers = {}
    for _ in range(count):
        name, at = take(at)
        value, at = take(at)
        if not name:
            raise ProtocolError("empty header name")
        key = name.decode("latin-1")
        if key != key.lower():
            raise ProtocolError(f"header name not lower case: {key!r}")
        if key in headers:
            raise ProtocolError(f"duplicate header name: {key!r}")
        headers[key] = [v.decode("utf-8", "replace") for v in value.split(b"\0")]
    if at != len(block):
        raise ProtocolError("trailing bytes after the name/value block")
    return headers


class _Compressor:
    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                   zlib.Z_DEFAULT_STRATEGY, zdict=DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(encode_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class _Decompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise ProtocolError(f"header block does not inflate: {exc}") from None
        if self._z.unconsumed_tail:
            raise ProtocolError("header block too large")
        return decode_block(block)


# ---- the connection --------------------------------------------------------------------

@dataclass
class _Stream:
    local_open: bool = True   # we may still send
    remote_open: bool = True  # the peer may still send
    send_window: int = DEFAULT_WINDOW
    recv_window: int = DEFAULT_WINDOW
    unacked: int = 0          # consumed, not yet given back in a WINDOW_UPDATE


@dataclass
class Connection:
    """One side of a SPDY/3.1 session. `client`: whether we open odd-numbered streams."""

    client: bool = False
    _buffer: bytearray = field(default_factory=bytearray)
    _out: bytearray = field(default_factory=bytearray)
    _streams: dict[int, _Stream] = field(default_factory=dict)
    _compress: _Compressor = field(default_factory=_Compressor)
    _decompress: _Decompressor = field(default_factory=_Decompressor)
    _next_stream: int = 0
    _next_ping: int = 0
    _last_remote: int = 0
    _initial_send_window: int = DEFAULT_WINDOW
    session_send_window: int = DEFAULT_WINDOW
    _session_unacked: int = 0
    peer_flow_control: bool = False  # the peer keeps windows: honour its own
    goaway_sent: bool = False
    goaway_received: bool = False

    def __post_init__(self) -> None:
        self._next_stream = 1 if self.client else 2
        self._next_ping = 1 if self.client else 2

    # -- input --

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer; the events of the frames they complete.
        A frame split across reads waits for its rest. Raises ProtocolError (and
        queues a GOAWAY) if the peer broke the framing."""
        self._buffer += data
        events: list[Event] = []
        while len(self._buffer) >= 8:
            (length,) = struct.unpack_from(">I", self._buffer, 4)
            length &= 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            head = bytes(self._buffer[:8])
            payload = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            try:
                self._frame(head, payload, events)
            except ProtocolError:
                self.goaway(GOAWAY_PROTOCOL_ERROR)
                raise
        return events

    def _frame(self, head: bytes, payload: bytes, events: list[Event]) -> None:
        first, flags = struct.unpack_from(">I", head)[0], head[4]
        if first & 0x80000000:
            version = (first >> 16) & 0x7FFF
            kind = first & 0xFFFF
            if version != VERSION:
                raise ProtocolError(f"unsupported SPDY version {version}")
            self._control(kind, flags, payload, events)
        else:
            self._data(first & MAX_STREAM_ID, flags, payload, events)

    def _control(self, kind: int, flags: int, p: bytes, events: list[Event]) -> None:
        if kind == SYN_STREAM:
            self._need(p, 10, "SYN_STREAM")
            sid, assoc = (struct.unpack_from(">I", p, 0)[0] & MAX_STREAM_ID,
                          struct.unpack_from(">I", p, 4)[0] & MAX_STREAM_ID)
            headers = self._decompress.decompress(p[10:])  # always: keeps the context in step
            if sid == 0 or sid % 2 == (1 if self.client else 0):
                raise ProtocolError(f"SYN_STREAM with a stream id the peer may not use: {sid}")
            if sid <= self._last_remote:
                self.rst_stream(sid, PROTOCOL_ERROR)
                return
            self._last_remote = sid
            if self.goaway_sent:
                self.rst_stream(sid, REFUSED_STREAM)
                return
            fin, uni = bool(flags & FLAG_FIN), bool(flags & FLAG_UNIDIRECTIONAL)
            self._streams[sid] = _Stream(local_open=not uni, remote_open=not fin,
                                         send_window=self._initial_send_window)
            events.append(StreamOpened(sid, headers, fin, uni, assoc))
        elif kind in (SYN_REPLY, HEADERS):
            self._need(p, 4, "SYN_REPLY" if kind == SYN_REPLY else "HEADERS")
            sid = struct.unpack_from(">I", p, 0)[0] & MAX_STREAM_ID
            headers = self._decompress.decompress(p[4:])
            stream = self._streams.get(sid)
            if stream is None or not stream.remote_open:
                self.rst_stream(sid, INVALID_STREAM if stream is None else STREAM_ALREADY_CLOSED)
                return
            fin = bool(flags & FLAG_FIN)
            if fin:
                stream.remote_open = False
                self._forget(sid)
            events.append(StreamReplied(sid, headers, fin) if kind == SYN_REPLY
                          else HeadersReceived(sid, headers, fin))
        elif kind == RST_STREAM:
            self._exactly(p, 8, "RST_STREAM")
            sid, status = struct.unpack(">II", p)
            sid &= MAX_STREAM_ID
            self._streams.pop(sid, None)
            events.append(StreamReset(sid, status))
        elif kind == SETTINGS:
            self._need(p, 4, "SETTINGS")
            (count,) = struct.unpack_from(">I", p, 0)
            if len(p) != 4 + 8 * count:
                raise ProtocolError("SETTINGS length does not match its entries")
            settings: dict[int, int] = {}
            for i in range(count):
                id_flags, value = struct.unpack_from(">II", p, 4 + 8 * i)
                settings[id_flags & 0xFFFFFF] = value
            if SETTINGS_INITIAL_WINDOW_SIZE in settings:
                self._set_initial_window(settings[SETTINGS_INITIAL_WINDOW_SIZE])
            events.append(SettingsReceived(settings))
        elif kind == PING:
            self._exactly(p, 4, "PING")
            (ping_id,) = struct.unpack(">I", p)
            ours = ping_id % 2 == (1 if self.client else 0)
            if not ours:
                self._control_frame(PING, 0, p)
            events.append(PingReceived(ping_id, ours))
        elif kind == GOAWAY:
            self._exactly(p, 8, "GOAWAY")
            last, status = struct.unpack(">II", p)
            self.goaway_received = True
            events.append(GoAwayReceived(last & MAX_STREAM_ID, status))
        elif kind == WINDOW_UPDATE:
            self._exactly(p, 8, "WINDOW_UPDATE")
            sid, delta = struct.unpack(">II", p)
            sid, delta = sid & MAX_STREAM_ID, delta & 0x7FFFFFFF
            if delta == 0:
                raise ProtocolError("WINDOW_UPDATE with a delta of 0")
            self.peer_flow_control = True
            if sid == 0:
                self.session_send_window += delta
            elif sid in self._streams:
                self._streams[sid].send_window += delta
                if self._streams[sid].send_window > MAX_STREAM_ID:
                    self.rst_stream(sid, FLOW_CONTROL_ERROR)
                    return
            events.append(WindowUpdated(sid, delta))
        # CREDENTIAL and unknown control frames are ignored, as the spec says.

    def _data(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if sid == 0:
            raise ProtocolError("DATA frame on stream 0")
        stream = self._streams.get(sid)
        if stream is None or not stream.remote_open:
            self.rst_stream(sid, INVALID_STREAM if stream is None else STREAM_ALREADY_CLOSED)
            return
        # Accounted, never enforced: spdystream sends past windows it does not track.
        stream.recv_window -= len(payload)
        self._consumed(sid, stream, len(payload))
        fin = bool(flags & FLAG_FIN)
        if fin:
            stream.remote_open = False
            self._forget(sid)
        events.append(DataReceived(sid, payload, fin))

    def _consumed(self, sid: int, stream: _Stream, size: int) -> None:
        stream.unacked += size
        self._session_unacked += size
        if stream.remote_open and stream.unacked >= DEFAULT_WINDOW // 2:
            self._window_update(sid, stream.unacked)
            stream.recv_window += stream.unacked
            stream.unacked = 0
        if self._session_unacked >= DEFAULT_WINDOW // 2:
            self._window_update(0, self._session_unacked)
            self._session_unacked = 0

    def _set_initial_window(self, value: int) -> None:
        if value > MAX_STREAM_ID:
            raise ProtocolError("initial window size out of range")
        self.peer_flow_control = True
        delta = value - self._initial_send_window
        self._initial_send_window = value
        for stream in self._streams.values():
            stream.send_window += delta

    @staticmethod
    def _need(p: bytes, size: int, what: str) -> None:
        if len(p) < size:
            raise ProtocolError(f"{what} too short ({len(p)} bytes)")

    @staticmethod
    def _exactly(p: bytes, size: int, what: str) -> None:
        if len(p) != size:
            raise ProtocolError(f"{what} must be {size} bytes, not {len(p)}")

    def _forget(self, sid: int) -> None:
        stream = self._streams.get(sid)
        if stream is not None and not stream.local_open and not stream.remote_open:
            del self._streams[sid]

    # -- output --

    def data_to_send(self) -> bytes:
        """The frames queued since the last call, to write to the peer."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _control_frame(self, kind: int, flags: int, payload: bytes) -> None:
        if len(payload) > MAX_FRAME:
            raise ValueError("control frame too large")
        self._out += struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload))
        self._out += payload

    def syn_stream(self, headers: Headers, *, fin: bool = False,
                   unidirectional: bool = False, priority: int = 0) -> int:
        """Open a stream of ours; its id."""
        sid = self._next_stream
        if sid > MAX_STREAM_ID:
            raise ProtocolError("stream ids exhausted")
        self._next_stream += 2
        self._streams[sid] = _Stream(local_open=not fin, remote_open=not unidirectional,
                                     send_window=self._initial_send_window)
        flags = (FLAG_FIN if fin else 0) | (FLAG_UNIDIRECTIONAL if unidirectional else 0)
        body = struct.pack(">IIBB", sid, 0, (priority & 7) << 5, 0)
        self._control_frame(SYN_STREAM, flags, body + self._compress.compress(headers))
        return sid

    def syn_reply(self, stream_id: int, headers: Headers | None = None, *,
                  fin: bool = False) -> None:
        """Accept a stream the peer opened."""
        self._control_frame(SYN_REPLY, FLAG_FIN if fin else 0,
                            struct.pack(">I", stream_id) + self._compress.compress(headers or {}))
        if fin:
            self._close_local(stream_id)

    def headers(self, stream_id: int, headers: Headers, *, fin: bool = False) -> None:
        self._control_frame(HEADERS, FLAG_FIN if fin else 0,
                            struct.pack(">I", stream_id) + self._compress.compress(headers))
        if fin:
            self._close_local(stream_id)

    def send_window(self, stream_id: int) -> int:
        """How many bytes of data may go on the stream now (unbounded for a peer that
        does not keep windows; 0 for a stream that is closed to us)."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open:
            return 0
        if not self.peer_flow_control:
            return MAX_STREAM_ID
        return max(0, min(stream.send_window, self.session_send_window))

    def assume_no_flow_control(self) -> None:
        """Stop honouring the peer's windows (a peer that never gave any back)."""
        self.peer_flow_control = False

    def send_data(self, stream_id: int, data: bytes, *, fin: bool = False) -> int:
        """Queue DATA frames of up to `send_window` bytes of `data`; how many went (the
        rest waits for a WINDOW_UPDATE). `fin` applies once all of `data` went."""
        allowed = min(len(data), self.send_window(stream_id))
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open:
            raise ValueError(f"stream {stream_id} is not open for sending")
        at = 0
        while True:
            chunk = data[at:at + min(MAX_DATA_CHUNK, allowed - at)]
            at += len(chunk)
            last = fin and at == len(data)
            if chunk or last:
                self._out += struct.pack(">II", stream_id,
                                         ((FLAG_FIN if last else 0) << 24) | len(chunk))
                self._out += chunk
            if at >= allowed:
                break
        stream.send_window -= at
        self.session_send_window -= at
        if fin and at == len(data):
            self._close_local(stream_id)
        return at

    def end_stream(self, stream_id: int) -> None:
        """Half-close: an empty DATA frame with FIN."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.local_open:
            self._out += struct.pack(">II", stream_id, FLAG_FIN << 24)
            self._close_local(stream_id)

    def _close_local(self, sid: int) -> None:
        stream = self._streams.get(sid)
        if stream is not None:
            stream.local_open = False
            self._forget(sid)

    def rst_stream(self, stream_id: int, status: int = CANCEL) -> None:
        self._streams.pop(stream_id, None)
        self._control_frame(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def settings(self, settings: dict[int, int]) -> None:
        body = struct.pack(">I", len(settings)) + b"".join(
            struct.pack(">II", key & 0xFFFFFF, value) for key, value in settings.items())
        self._control_frame(SETTINGS, 0, body)

    def ping(self) -> int:
        ping_id = self._next_ping
        self._next_ping += 2
        self._control_frame(PING, 0, struct.pack(">I", ping_id))
        return ping_id

    def goaway(self, status: int = GOAWAY_OK) -> None:
        if not self.goaway_sent:
            self.goaway_sent = True
            self._control_frame(GOAWAY, 0, struct.pack(">II", self._last_remote, status))

    def _window_update(self, stream_id: int, delta: int) -> None:
        self._control_frame(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams
