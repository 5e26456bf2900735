"""Handing a client connection to an actor: the gateway's side of long streams.

A long stream (attach, wait, logs -f) must not hold a gunicorn thread for its
whole life, so the gateway passes the client's socket to the actor that
produces the stream, over a SOCK_SEQPACKET unix socket per service
(`<exec-root>/handoff/<service>.sock`, SCM_RIGHTS). One message carries the
descriptor and `{method, args, stream, resumed_at, began_at}`, `stream`
describing the response (`pouch.proto.stream.StreamSpec`) and `resumed_at` (Unix
seconds) saying, when not 0, that this continues a stream an actor's death cut
then, which was first handed over at `began_at`.
The actor answers with one reply body in the broker's shape: ok once it has
taken the connection, or an error the gateway turns into an HTTP status while
it still owns the connection. After an ok the gateway writes the response's
head (unless it is out already: a stream taken up again), then says `go`; the
actor writes nothing before that. So the side that survives an actor's death
always knows whether the head is out: had the actor written it, a kill between
the head and the notice saying so would leave the restarted actor to guess, and
a wrong guess gives the client a body without a head, or two heads.

After an ok the link stays open for the stream's life, and the actor sends
notices on it (`LinkWatch`): `started` as the response begins (with whether
it is multiplexed and whether a restarted actor could take the stream up from
there), `resumable` once it could if it could not at first (only ever for a
method declared resumable), `done` once the stream is over. A link that ends
without `done` means the actor died.

A gateway process keeps watch over the links of the streams it handed over (its
keeper, `pouch.gateway.hijack`), and says so in the hand-off (`kept`). Each
keeper binds a datagram socket, `<handoff dir>/gateway.<pid>.sock`, on which it
takes streams to keep from others (`pass_to_keeper`): the client's connection
and a link as descriptors (SCM_RIGHTS), and one message saying what the keeper
needs to take the stream up. A gateway process that exits passes its streams
on so; the actor does it for a kept stream whose link's gateway end closed
without a word, its process killed.
"""

from __future__ import annotations

import array
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pouch.proto import envelope as env
from pouch.proto.envelope import PouchError
from pouch.proto.stream import StreamSpec

MAX_MESSAGE = 64 * 1024
CONNECT_RETRY = 0.1  # how often to look again for an actor that is not listening yet
GO = env.pack({"go": True})
GO_WITHIN = 10.0  # a gateway that took this long to write a head is not coming back
KEEPER_GLOB = "gateway.*.sock"


def socket_path(handoff_dir: Path, service: str) -> Path:
    return handoff_dir / f"{service}.sock"


def keeper_path(handoff_dir: Path, pid: int) -> Path:
    """Where the keeper of gateway process `pid` takes streams passed to it."""
    return handoff_dir / f"gateway.{pid}.sock"


@dataclass(frozen=True)
class PassedStream:
    """What a keeper is told of a stream passed to it, to take it up should its actor
    die: the hand-off (`service`, `method`, `args`, `stream`), when it was first handed
    over and last taken up, and what the actor told of it so far."""

    service: str
    method: str
    args: dict[str, Any]
    stream: StreamSpec
    began_at: float
    resumed_at: float = 0.0
    started: bool = False
    multiplexed: bool = False
    resumable: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"service": self.service, "method": self.method, "args": self.args,
                "stream": self.stream.to_wire(), "began_at": self.began_at,
                "resumed_at": self.resumed_at, "started": self.started,
                "multiplexed": self.multiplexed, "resumable": self.resumable}

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> PassedStream:
        """Raises KeyError, TypeError, ValueError or PouchError if `body` is not one."""
        return cls(str(body["service"]), str(body["method"]), dict(body["args"]),
                   StreamSpec.from_wire(body["stream"]), float(body["began_at"]),
                   float(body["resumed_at"]), bool(body["started"]),
                   bool(body["multiplexed"]), bool(body["resumable"]))


def pass_to_keeper(handoff_dir: Path, passed: PassedStream, conn: int, link: int
                   ) -> int | None:
    """Give a stream to some gateway process's keeper: the client's connection `conn`,
    the `link` on which its actor's notices come, and what `passed` says of it. The pid
    of the gateway process it went to, None if no gateway process keeps any."""
    message = env.pack(passed.to_wire())
    fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [conn, link]))]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
        for path in handoff_dir.glob(KEEPER_GLOB):
            try:
                out.sendmsg([message], fds, socket.MSG_DONTWAIT, str(path))
                return int(path.name.split(".")[1])
            except ConnectionRefusedError:  # its process died
                path.unlink(missing_ok=True)
            except OSError:
                continue
    return None


def hand_over(handoff_dir: Path, service: str, method: str, args: dict[str, Any],
              spec: StreamSpec, fd: int, *, timeout: float = 30.0, resumed_at: float = 0.0,
              began_at: float = 0.0, head_out: bool = False, kept: bool = False,
              wait_for_actor: float = 0.0) -> socket.socket:
    """Pass `fd` to the service's actor for `method`, which answers on it as `spec`
    says, and write the response's head once it took it (unless `head_out`); the
    link, on which the actor's notices follow (`kept`: by a gateway keeper). Raises
    PouchError if the actor refuses, or if none takes it within `wait_for_actor`
    seconds (it restarts)."""
    path = socket_path(handoff_dir, service)
    until = time.monotonic() + wait_for_actor
    message = env.pack({"method": method, "args": args, "stream": spec.to_wire(),
                        "resumed_at": resumed_at, "began_at": began_at, "kept": kept})
    while True:
        link = _connect(path, service, until)
        try:
            link.settimeout(timeout)
            try:
                link.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          array.array("i", [fd]))])
                data = link.recv(MAX_MESSAGE)
            except TimeoutError:
                raise PouchError("timeout", f"{service}.{method} did not take the "
                                 "connection") from None
            except OSError:
                data = b""  # reset: an actor that was dying as we connected
            if data:
                body = env.unpack(data)
                if not body.get("ok"):
                    raise PouchError.from_wire(body.get("error") or {})
                link.settimeout(None)
                if not head_out:
                    _send_head(fd, spec)
                with contextlib.suppress(OSError):  # it died since: the link's end tells
                    link.send(GO)
                return link
        except BaseException:
            link.close()
            raise
        # It died before it answered, so before it wrote to the client: its successor
        # may take the connection as if nothing happened.
        link.close()
        if time.monotonic() >= until:
            raise env.unavailable(f"the {service} actor went away while taking the connection")
        time.sleep(CONNECT_RETRY)


def _send_head(fd: int, spec: StreamSpec) -> None:
    conn = socket.socket(fileno=fd)
    try:
        # A client gone already: the actor's first write finds out and ends the stream.
        with contextlib.suppress(OSError):
            conn.sendall(spec.head())
    finally:
        conn.detach()


def wait_for_go(link: socket.socket, within: float = GO_WITHIN) -> bool:
    """The actor's side: may the stream begin (the head is out)? False if the gateway
    did not say so in time, or went away."""
    link.settimeout(within)
    try:
        return link.recv(MAX_MESSAGE) == GO
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            link.settimeout(None)


def _connect(path: Path, service: str, until: float) -> socket.socket:
    while True:
        link = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            link.connect(str(path))
            return link
        except OSError:
            link.close()
            if time.monotonic() >= until:
                raise env.unavailable(f"the {service} actor is not running "
                                      f"(nothing listens on {path})") from None
        time.sleep(CONNECT_RETRY)


def receive(link: socket.socket) -> tuple[dict[str, Any], socket.socket | None]:
    """One hand-off message and the connection it carries (None if it carried none)."""
    message, conns = receive_sockets(link, 1)
    return message, (conns[0] if conns else None)


def receive_sockets(sock: socket.socket, wanted: int
                    ) -> tuple[dict[str, Any], list[socket.socket]]:
    """One message and the first `wanted` sockets it carries (SCM_RIGHTS); any more are
    closed. Raises OSError (nothing to read), ValueError (not a message)."""
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(4 * 4))
    conns: list[socket.socket] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            conns += [socket.socket(fileno=fd) for fd in fds]
    for extra in conns[wanted:]:
        extra.close()
    try:
        message = env.unpack(data) if data else {}
    except ValueError:
        for conn in conns[:wanted]:
            conn.close()
        raise
    return message, conns[:wanted]


class LinkWatch:
    """The actor's end of an open link: a `pouch.proto.stream.Watch` that tells the
    gateway how the stream goes. `on_done`: who closes the link once the stream is
    over (else done() does)."""

    def __init__(self, link: socket.socket, resumable: bool) -> None:
        self.link = link
        self.resumable = resumable
        self.told = {"started": False, "multiplexed": False, "resumable": False}
        self.ended = False
        self.lock = threading.Lock()  # a link moves (see moved_to) between notices
        self.on_done: Callable[[], None] | None = None

    def started(self, multiplexed: bool, resumable: bool) -> None:
        self._tell({"started": True, "multiplexed": multiplexed,
                    "resumable": resumable and self.resumable})

    def may_resume(self) -> None:
        if self.resumable:
            self._tell({"resumable": True})

    def done(self) -> None:
        self._tell({"done": True}, end=True)
        (self.on_done or self.link.close)()

    def moved_to(self, link: socket.socket) -> socket.socket:
        """Notices go on `link` from now on (hold `lock`); the link they went on."""
        old, self.link = self.link, link
        return old

    def _tell(self, notice: dict[str, Any], end: bool = False) -> None:
        with self.lock:
            if self.ended:
                return
            self.ended = end
            self.told.update({k: bool(v) for k, v in notice.items() if k in self.told})
            # Never blocks the writer (the IO hub serves every stream on one thread): a
            # notice is tiny and the gateway reads them at once.
            with contextlib.suppress(OSError):
                self.link.send(env.pack(notice), socket.MSG_DONTWAIT)


def read_notice(link: socket.socket) -> dict[str, Any] | None:
    """The next notice on a link the gateway keeps; None once the link has ended."""
    try:
        data = link.recv(MAX_MESSAGE)
    except OSError:
        return None
    return env.unpack(data) if data else None
