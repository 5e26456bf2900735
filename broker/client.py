"""The client library every caller uses: the gateway, actors calling each other, tests.

A `Client` owns one DEALER socket and is used by one thread at a time; a
`ClientPool` lends clients to threads, so a socket only moves between
threads under the pool's lock (a full memory barrier, as ZeroMQ requires).

Idempotent calls, and those done once per token (sent again with the same token),
are retried across an actor or broker restart until their deadline; the others
fail with `unavailable` saying the outcome is unknown. Which methods are which is
read from the contract the actor declared. Given the folder of the actors' direct
sockets (a local client), a client sends those calls straight to the actor
(`pouch.broker.direct`), and through the broker whenever that path cannot answer.
Callers name methods through the typed stubs of `pouch.proto.stubs`
(`Calls(pool).container.inspect(id=...)`), which both classes here serve.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from pouch.broker import direct, wire
from pouch.proto import envelope as env
from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.client")

DEFAULT_TIMEOUT = 30.0
RETRY_PAUSE = 0.05
CONTRACT_WAIT = 1.0    # how long a new stream waits to learn whether it is resumable
RESUME_WITHIN = 60.0   # how long a resumable stream waits for its actor to come back
REMOTE_SEND_WAIT = 2.0  # s: how long a send to a tcp:// broker waits for a connection
_LOST = object()  # the broker connection dropped while waiting
# `timeout` not given: the client's own default. None: no deadline at all.
DEFAULT: Any = object()


@dataclass(frozen=True)
class CurveKeys:
    """A remote client's CURVE keys and the broker's public key (pouch.broker.curve)."""

    public: bytes
    secret: bytes
    server: bytes

    @classmethod
    def load(cls, client_secret_file: Path, server_public_file: Path) -> CurveKeys:
        """From the files zmq.auth.create_certificates writes."""
        public, secret = zmq.auth.load_certificate(client_secret_file)
        server, _ = zmq.auth.load_certificate(server_public_file)
        if secret is None:
            raise ValueError(f"{client_secret_file} holds no secret key")
        return cls(public, secret, server)


class Client:
    def __init__(self, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT,
                 context: zmq.Context | None = None, curve: CurveKeys | None = None,
                 direct_dir: Path | None = None) -> None:
        """`curve`: the keys to reach the broker's tcp:// endpoint (`--zmq-listen`);
        `direct_dir`: where the actors' direct sockets are, for a local client."""
        self.endpoint = endpoint
        self.timeout = timeout
        self._direct_dir = direct_dir
        self._links: dict[str, socket.socket] = {}  # by service
        ctx = context or zmq.Context.instance()
        self._sock = ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if not endpoint.startswith("ipc://"):
            # A remote broker that refuses our handshake leaves the socket no connection,
            # and a send with none waits for one: fail it instead.
            self._sock.setsockopt(zmq.SNDTIMEO, int(REMOTE_SEND_WAIT * 1000))
        if curve is not None:
            self._sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server)
            self._sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
            self._sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
        self._sock.setsockopt(zmq.RECONNECT_IVL, 50)
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        # A broker that dies takes our in-flight requests with it; its disconnect
        # is how we learn that at once instead of at the deadline.
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._sock.connect(endpoint)
        self._wake = wire.Wakeup((self._sock, self._monitor))
        self._ids = itertools.count(int.from_bytes(os.urandom(3), "big"))
        self._contracts: dict[str, dict[str, Any]] = {}
        # The open streams' replies that came while another request's were awaited, by
        # request ID: a stream's items arrive whenever its actor sends them.
        self._early: dict[int, deque[dict[str, Any]]] = {}

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
        self._sock.disable_monitor()
        self._monitor.close(linger=0)
        self._sock.close(linger=0)

    # -- calls ---------------------------------------------------------------

    def call(self, service: str, method: str, args: dict[str, Any] | None = None,
             timeout: float | None = DEFAULT) -> Any:
        """Send one request and return its result, or raise PouchError."""
        args = args or {}
        deadline = self._deadline(timeout)
        body = self._call_direct(service, method, args, deadline)
        while True:
            if body is None:  # the broker's way
                rid = self._send_request(service, method, args, deadline)
                body = self._await(rid, deadline)
            if body is None:
                self._send_cancel(service, rid)
                raise PouchError("timeout", f"{service}.{method} did not answer in time")
            if body is _LOST:
                error: dict[str, Any] = {"code": "unavailable", "retry": True, "message":
                                         f"the broker went away while handling {service}.{method}"
                                         " (the outcome is unknown)"}
            elif body["ok"]:
                return body.get("result")
            else:
                error = body["error"]
            if not (error.get("retry") and self._idempotent(service, method, deadline)):
                raise PouchError.from_wire(error)
            if deadline and time.time() + RETRY_PAUSE >= deadline:
                raise PouchError.from_wire(error)
            time.sleep(RETRY_PAUSE)
            body = None

    def stream(self, service: str, method: str, args: dict[str, Any] | None = None,
               timeout: float | None = None) -> Stream:
        """Start a streaming request; iterate the result, close() to cancel it. A stream
        its actor declared resumable goes on across the actor's restart (see Resumed)."""
        deadline = self._deadline(timeout)
        declared = self._declared(service, method, time.time() + CONTRACT_WAIT)
        resumable = declared.get("resumable")
        args = args or {}
        rid = self._send_request(service, method, args, deadline)
        self._early[rid] = deque()
        return Stream(self, service, rid, deadline, Resumed(method, args, resumable)
                      if isinstance(resumable, dict) else None)

    def subscribe(self, fields: dict[str, list[str]] | None = None) -> Stream:
        """Receive events published from now on whose fields (paths such as `Type` or
        `Actor.Attributes.name`) hold one of the values given."""
        rid = next(self._ids)
        self._send([env.CLIENT, env.SUB, b"", env.pack({"id": rid, "fields": fields or {}})])
        self._early[rid] = deque()
        return Stream(self, "", rid, 0.0)

    # -- internals -----------------------------------------------------------

    def _call_direct(self, service: str, method: str, args: dict[str, Any],
                     deadline: float) -> Any:
        """The reply body of a call that may be sent again (idempotent, or done once per
        token), made on the actor's direct socket; None where the broker must take the
        call (see pouch.broker.direct)."""
        if self._direct_dir is None or service == "broker":
            return None
        # One quick ask at most: an actor that is down has told the broker no contract,
        # and the broker's way says at once why the call cannot be served.
        declared = self._declared(service, method, time.time() + CONTRACT_WAIT, once=True)
        if not (declared.get("idempotent") or declared.get("once")) \
                or declared.get("stream") or declared.get("handoff"):
            return None
        link = self._links.get(service)
        if link is None:
            link = direct.connect(direct.socket_path(self._direct_dir, service))
            if link is None:
                return None  # its actor is not listening (it restarts): the broker waits
            self._links[service] = link
        rid = next(self._ids)
        wait = deadline - time.time() if deadline else None
        if wait is not None and wait <= 0:
            raise PouchError("timeout", f"{service}.{method} did not answer in time")
        try:
            body = env.unpack(direct.exchange(
                link, env.request(rid, method, args, deadline), wait))
        except TimeoutError:
            self._drop_link(service)
            raise PouchError("timeout", f"{service}.{method} did not answer in time") from None
        except (OSError, ValueError, direct.BadFrame):
            self._drop_link(service)
            return None  # the actor died midway: the call may be sent again, so it is
        if not isinstance(body, dict) or body.get("id") != rid:
            self._drop_link(service)
            return None
        return body

    def _drop_link(self, service: str) -> None:
        link = self._links.pop(service, None)
        if link is not None:
            link.close()

    def _deadline(self, timeout: float | None) -> float:
        wait = self.timeout if timeout is DEFAULT else timeout
        return 0.0 if wait is None else time.time() + wait

    def _send_request(self, service: str, method: str, args: dict[str, Any],
                      deadline: float) -> int:
        self._forget_old_disconnects()
        rid = next(self._ids)
        self._send([env.CLIENT, env.REQ, service.encode(),
                    env.request(rid, method, args, deadline)])
        return rid

    def _send(self, frames: list[bytes]) -> None:
        try:
            wire.send(self._sock, frames)
        except zmq.Again:
            raise PouchError("unavailable", f"no connection to the broker at {self.endpoint}"
                             " (is this client's CURVE key one it accepts?)") from None

    def _forget_old_disconnects(self) -> None:
        # A disconnect noticed before this request was sent cannot have lost it.
        while wire.readable(self._monitor):
            self._monitor.recv_multipart()  # which event does not matter: one kind is watched
        # The monitor's ZMQ_FD is true from here on: it is touched only to drain it.

    def _send_cancel(self, service: str, rid: int) -> None:
        self._send([env.CLIENT, env.CANCEL, service.encode(), env.pack(rid)])

    def _await(self, rid: int, deadline: float) -> Any:
        """The reply body for `rid`; None at the deadline (0: none); _LOST on disconnect."""
        early = self._early.get(rid)
        if early:
            return early.popleft()
        # The socket was sent on (see wire.Wakeup); the monitor was drained to its end.
        ready: Collection[zmq.Socket] = (self._sock,)
        while True:
            if self._sock in ready:
                while wire.readable(self._sock):
                    frames = wire.recv(self._sock, wire.NOBLOCK)
                    if len(frames) == 4 and frames[1] == env.REP:
                        body = env.unpack(frames[3])
                        if body.get("id") == rid:
                            return body
                        kept = self._early.get(body.get("id"))
                        if kept is not None:
                            kept.append(body)  # an open stream's, for its next __next__
                    # Anything else answers a request we already gave up on.
            if self._monitor in ready and wire.readable(self._monitor):
                self._forget_old_disconnects()
                return _LOST
            if deadline:
                left = deadline - time.time()
                if left <= 0:
                    return None
                ready = self._wake.wait(max(1, int(left * 1000)))
            else:
                ready = self._wake.wait(-1)

    def _idempotent(self, service: str, method: str, deadline: float) -> bool:
        """Safe to send again: idempotent, or done once per call (its token goes again)."""
        declared = self._declared(service, method, deadline or time.time() + self.timeout)
        return bool(declared.get("idempotent") or declared.get("once"))

    def _declared(self, service: str, method: str, until: float,
                  once: bool = False) -> dict[str, Any]:
        """What the service declared of `method`, asked of the broker once per service
        until it knows, or until `until` ({} then); `once`: one ask at most."""
        contract = self._contracts.get(service)
        while contract is None and time.time() < until:
            try:
                contract = self.call("broker", "contract", {"service": service},
                                     timeout=max(0.05, min(1.0, until - time.time())))
                self._contracts[service] = contract
            except PouchError:
                if once:
                    break
                # A restarted broker knows it once the actor says READY again.
                time.sleep(RETRY_PAUSE)
        return dict((contract or {}).get(method) or {})


class Resumed:
    """A stream's way across its actor's restart, as the actor declared it
    (`pouch.proto.contract.Resumption`): the request again, from the latest item's
    position less an overlap, and the items of that overlap it had are skipped."""

    def __init__(self, method: str, args: dict[str, Any], declared: dict[str, Any]) -> None:
        self.method = method
        self._args = args
        self._field = str(declared.get("field"))
        self._arg = str(declared.get("arg"))
        self._scale = float(declared.get("scale") or 1.0)
        self._overlap = float(declared.get("overlap") or 0.0)
        self._latest: float | None = None
        self._recent: deque[tuple[float, bytes]] = deque()  # (position, item) in the overlap
        self.cut_at = 0.0  # when the stream was last cut with no item since

    def had(self, item: Any) -> bool:
        """Whether `item` came before the cut; remembers it if not."""
        self.cut_at = 0.0
        if not isinstance(item, dict) or not isinstance(item.get(self._field), int | float):
            return False
        at, packed = item[self._field] * self._scale, env.pack(item)
        if any(seen == packed for _, seen in self._recent):
            return True
        self._latest = at if self._latest is None else max(self._latest, at)
        self._recent.append((at, packed))
        while self._recent and self._recent[0][0] < self._latest - self._overlap:
            self._recent.popleft()
        return False

    def args(self) -> dict[str, Any]:
        """The request's arguments to take the stream up again."""
        if self._latest is None:
            return self._args
        asked = self._args.get(self._arg)
        start = self._latest - self._overlap
        return {**self._args, self._arg: max(start, asked) if isinstance(asked, int | float)
                else start}


class Stream:
    """The items of a streaming reply, in order; closing it cancels the request."""

    def __init__(self, client: Client, service: str, rid: int, deadline: float,
                 resumed: Resumed | None = None) -> None:
        self._client = client
        self._service = service
        self._rid = rid
        self._deadline = deadline
        self._resumed = resumed
        self._done = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while not self._done:
            body = self._client._await(self._rid, self._deadline)
            if body is None:
                self.close()
                raise PouchError("timeout", "the stream did not finish in time")
            if (body is _LOST or (not body["ok"] and body["error"].get("retry"))) \
                    and self._take_up():
                continue
            if body is _LOST:
                self._end()
                raise env.unavailable("the broker went away during the stream")
            if not body["ok"]:
                self._end()
                raise PouchError.from_wire(body["error"])
            if not body.get("more"):
                self._end()
                if body.get("result") is None:
                    break
            if self._resumed is not None and self._resumed.had(body.get("result")):
                continue
            return body.get("result")
        raise StopIteration

    def _take_up(self) -> bool:
        """The actor (or the broker) went away mid-stream: ask again, if the stream is
        resumable and has not been cut for longer than RESUME_WITHIN without an item."""
        resumed = self._resumed
        if resumed is None:
            return False
        now = time.monotonic()
        resumed.cut_at = resumed.cut_at or now
        left = RESUME_WITHIN - (now - resumed.cut_at)
        if left <= 0:
            return False
        time.sleep(RETRY_PAUSE)
        # Asked again only of a broker that answers: a request sent while there is none
        # waits in the socket for one, and a daemon that stopped for good never answers
        # it (nor says so: its disconnect was reported once, when it went).
        try:
            self._client.call("broker", "ping", {}, timeout=max(left, RETRY_PAUSE))
        except PouchError as error:
            if error.code in ("timeout", "unavailable"):
                return False
        self._client._early.pop(self._rid, None)
        self._rid = self._client._send_request(self._service, resumed.method, resumed.args(),
                                               self._deadline)
        self._client._early[self._rid] = deque()
        return True

    def close(self) -> None:
        if not self._done:
            self._end()
            self._client._send_cancel(self._service, self._rid)

    def _end(self) -> None:
        self._done = True
        self._client._early.pop(self._rid, None)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClientPool:
    """Lends one Client per concurrent caller; sockets are reused, never shared at once."""

    def __init__(self, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT,
                 context: zmq.Context | None = None, direct_dir: Path | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.direct_dir = direct_dir
        self._ctx = context or zmq.Context.instance()
        self._idle: list[Client] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> Client:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Client(self.endpoint, timeout=self.timeout, context=self._ctx,
                      direct_dir=self.direct_dir)

    def release(self, client: Client, broken: bool = False) -> None:
        with self._lock:
            if not broken and not self._closed:
                self._idle.append(client)
                return
        client.close()

    def call(self, service: str, method: str, args: dict[str, Any] | None = None,
             timeout: float | None = DEFAULT) -> Any:
        client = self.acquire()
        try:
            result = client.call(service, method, args, timeout)
        except PouchError:
            self.release(client)
            raise
        except BaseException:
            self.release(client, broken=True)
            raise
        self.release(client)
        return result

    def stream(self, service: str, method: str, args: dict[str, Any] | None = None,
               timeout: float | None = None) -> Generator[Any, None, None]:
        """A streaming request on a lent client, given back when the stream ends or is closed."""
        client = self.acquire()
        broken = True
        try:
            with client.stream(service, method, args, timeout) as items:
                yield from items
                broken = False
        except PouchError:
            broken = False
            raise
        finally:
            self.release(client, broken)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()


def follow(endpoint: str, fields: dict[str, list[str]], on_event: Callable[[dict[str, Any]], None],
           stop: threading.Event) -> None:
    """Hand every published event that matches `fields` (see Client.subscribe) to
    `on_event`, subscribing again whenever the broker goes away, until `stop` is set
    and the next event comes. Blocks: run it on a thread of its own."""
    while not stop.is_set():
        client = Client(endpoint)
        try:
            with client.subscribe(fields) as events:
                for event in events:
                    on_event(event)
                    if stop.is_set():
                        return
        except PouchError as exc:
            log.debug("event subscription ended (%s); subscribing again", exc.message)
        finally:
            client.close()
        stop.wait(RETRY_PAUSE)
