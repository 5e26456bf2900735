"""A long stream's response: the HTTP head and Docker's framing, in one place.

Attach, wait and logs (exec, stats, events and pull progress next) answer with
a stream that outlives the request. The gateway describes the response it
wants (`StreamSpec`) and hands the client's socket over with it
(`pouch.proto.handoff`); the actor that produces the stream holds a
`StreamSession` and emits frames into it. Only this module's types write HTTP
(the head of a handed-over stream goes out from the hand-off, `StreamSpec.head`):

- upgrade: `101 UPGRADED` (`Connection: Upgrade`, `Upgrade: tcp`), then raw
  bytes both ways, as the Docker CLI's attach expects;
- chunked: `200 OK` with `Transfer-Encoding: chunked`, each frame one chunk
  and the last chunk at the end, so that a client can tell a stream that
  ended from one cut short by a crash.

Without a TTY a container's output is multiplexed (`pouch.proto.stdstream`);
whether it has one is the actor's to say, when it starts the session.

The gateway keeps watch over every stream it handed over (`pouch.gateway.hijack`):
the session tells it, through a `Watch`, when the response began and when the
stream is over. A stream cut by the actor's death is handed over again to the
restarted actor, as resumed, if its method is resumable (or if it had not begun);
otherwise the gateway ends it with the reason.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pouch.proto import stdstream
from pouch.proto.docker import API_VERSION
from pouch.proto.envelope import invalid

RAW_STREAM = "application/vnd.docker.raw-stream"
JSON = "application/json"
LAST_CHUNK = b"0\r\n\r\n"
# docker-py reads an upgraded stream from the raw socket once its HTTP layer has
# parsed the head, losing whatever arrived together with the head (that layer
# buffered it): data must wait this long after the head. A unix socket cannot
# keep two writes apart (recv joins them), so no socket option replaces the wait.
HEAD_SETTLE = 0.02

Kind = Literal["upgrade", "chunked"]
_API_HEADERS = f"Api-Version: {API_VERSION}\r\nDocker-Experimental: false\r\nOstype: linux\r\n"


@dataclass(frozen=True)
class StreamSpec:
    """What the gateway asks of a stream's response; it travels with the hand-off."""

    kind: Kind
    content_type: str

    def head(self) -> bytes:
        if self.kind == "upgrade":
            return ("HTTP/1.1 101 UPGRADED\r\n"
                    f"Content-Type: {self.content_type}\r\nConnection: Upgrade\r\n"
                    f"Upgrade: tcp\r\n{_API_HEADERS}\r\n").encode()
        return ("HTTP/1.1 200 OK\r\n"
                f"Content-Type: {self.content_type}\r\nTransfer-Encoding: chunked\r\n"
                f"Connection: close\r\n{_API_HEADERS}\r\n").encode()

    def to_wire(self) -> dict[str, str]:
        return {"kind": self.kind, "content_type": self.content_type}

    @classmethod
    def from_wire(cls, data: Any) -> StreamSpec:
        if not isinstance(data, dict) or data.get("kind") not in ("upgrade", "chunked") \
                or not isinstance(data.get("content_type"), str):
            raise invalid(f"a hand-off must describe its stream (kind, content_type): {data!r}")
        return cls(data["kind"], data["content_type"])


class Watch(Protocol):
    """Who hears of a stream's progress: the gateway that handed it over."""

    def started(self, multiplexed: bool, resumable: bool) -> None: ...

    def may_resume(self) -> None: ...

    def done(self) -> None: ...


class StreamSession:
    """A handed-over connection and the response written on it.

    Blocking writers use write(), write_json() and end(); the IO hub, which
    buffers for many clients on one thread, takes encode() and trailer() bytes
    and sends them itself on `conn`. A `resumed_at` session continues a stream
    that an actor's death cut at that time (Unix seconds), as the gateway saw it:
    a little after the death. It was first handed over at `began_at`. `head_out`:
    the head was written already (a handed-over connection's, by the gateway).
    """

    def __init__(self, conn: socket.socket, spec: StreamSpec, *, watch: Watch | None = None,
                 resumed_at: float = 0.0, began_at: float = 0.0,
                 head_out: bool = False) -> None:
        self.conn = conn
        self.spec = spec
        self.resumed_at = resumed_at
        self.began_at = began_at
        self.head_out = head_out
        self.multiplexed = False
        self._watch = watch
        self._settled_at = 0.0

    def start(self, *, multiplexed: bool = False, resumable: bool = False) -> bool:
        """The response begins: the head goes out unless it is out already. False (and
        closed) if the client is gone.
        `multiplexed`: the container has no TTY, so its streams are framed;
        `resumable`: a restarted actor could take it up from the start (see may_resume)."""
        self.multiplexed = multiplexed
        if self._watch is not None:
            self._watch.started(multiplexed, resumable)
        if not self.head_out:
            try:
                self.conn.sendall(self.spec.head())
            except OSError:
                self.close()
                return False
            self.head_out = True
        if self.spec.kind == "upgrade" and not self.resumed_at:
            self._settled_at = time.monotonic() + HEAD_SETTLE
        return True

    def may_resume(self) -> None:
        """From here on, should this actor die, a restarted one can take the stream up
        from the time of the cut (if its method is declared resumable): a wait at once,
        a `logs -f` once it follows live (a replay cut midway cannot tell where it was)."""
        if self._watch is not None:
            self._watch.may_resume()

    def settle(self) -> None:
        """Wait until data may follow the head (see HEAD_SETTLE); a writer about to send
        right after the head calls it on its own thread."""
        delay = self._settled_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def encode(self, stream: str, data: bytes) -> bytes:
        """`data` of a container's `stream` ("stdout", "stderr") as this client receives it."""
        return self._chunk(stdstream.frame(stdstream.STREAMS[stream], data)
                           if self.multiplexed else data)

    def trailer(self) -> bytes:
        """What ends the response before the connection closes."""
        return LAST_CHUNK if self.spec.kind == "chunked" else b""

    def write(self, stream: str, data: bytes) -> bool:
        """Send a frame; False once the client is gone."""
        return self._send(self.encode(stream, data))

    def write_json(self, obj: Any) -> bool:
        """Send one JSON document, a line of its own (wait, and later events and progress)."""
        return self._send(self._chunk(json.dumps(obj).encode() + b"\n"))

    def end(self) -> None:
        """The stream is complete: end the response and close the connection."""
        self._send(self.trailer())
        self.close()

    def fail(self, message: str) -> None:
        """The stream cannot go on: say why in it (as dockerd does, on the system-error
        stream when multiplexed), then end it."""
        data = message.encode() + b"\n"
        self._send(self._chunk(stdstream.frame(stdstream.SYSTEM_ERROR, data)
                               if self.multiplexed else data))
        self.end()

    def close(self) -> None:
        """The stream is over, whether ended or abandoned by its client (not to resume)."""
        self.conn.close()
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.done()

    def _chunk(self, data: bytes) -> bytes:
        if self.spec.kind == "chunked" and data:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def _send(self, data: bytes) -> bool:
        if self.conn.fileno() < 0:
            return False
        with contextlib.suppress(OSError):
            self.conn.sendall(data)
            return True
        self.close()
        return False
