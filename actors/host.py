"""The actor host: the runtime of every actor process.

Each actor process hosts one service actor (a pykka actor) whose thread also
owns the DEALER socket to the broker (see `Host`): it registers the service
with its contract, heartbeats, and runs each request's handler. The same thread
serves local clients' calls that may be sent again (idempotent, or done once per
token) on the direct socket (`pouch.broker.direct`). Longer work runs in other
pykka actors (one per container, say) or threads; their answers come back to the
socket's thread through a queue and an eventfd it polls beside the socket, so no
socket is ever touched by two threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pykka
import zmq

from pouch.actors.faults import Faults
from pouch.actors.metrics import ActorMetrics
from pouch.actors.sdnotify import notify, start_watchdog
from pouch.actors.signalsafe import StopRequest
from pouch.broker import direct, frames, wire
from pouch.broker.client import ClientPool
from pouch.broker.frames import Malformed
from pouch.broker.router import HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS
from pouch.broker.trust import read_token
from pouch.proto import envelope as env
from pouch.proto.config import DaemonConfig
from pouch.proto.contract import Declaration, collect, method
from pouch.proto.docker import event
from pouch.proto.envelope import PouchError
from pouch.proto.shapes import MetricFamilies
from pouch.proto.stubs import Calls

Deliver = Callable[[bytes, bool, int], None]
log = logging.getLogger("pouch.host")

# Our own heartbeat waits this many intervals for the broker's to answer: longer than
# the broker's period, shorter than the window it drops a silent actor after.
ANSWER_SLACK = 1.5


class Reply:
    """Where one request's answer goes. Thread-safe; the first final answer wins."""

    def __init__(self, deliver: Callable[[bytes, bool, int], None], rid: int, what: str,
                 on_done: Callable[[str | None], None] | None = None) -> None:
        """`on_done(error code or None)` is called once, with the final answer."""
        self._deliver = deliver
        self.rid = rid
        self.what = what
        self._on_done = on_done
        self.cancelled = False  # the caller gave up (set from the socket's thread)
        self.once = False  # done once per token: a caller that lost the answer sends it again
        self._lock = threading.Lock()
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def send(self, result: Any = None) -> None:
        self._finish(env.ok_reply(self.rid, result), None)

    def fail(self, error: PouchError) -> None:
        self._finish(env.error_reply(self.rid, error), error.code)

    def more(self, item: Any) -> bool:
        """Send one item of a stream; False once the caller is gone or it has ended."""
        with self._lock:
            if self._done or self.cancelled:
                return False
            self._deliver(env.ok_reply(self.rid, item, more=True), False, self.rid)
            return True

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Answer with what fn returns, or with the error it raises."""
        ok, result = self.attempt(fn, *args, **kwargs)
        if ok:
            self.send(result)

    def attempt(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """Call fn; if it raises, answer with the error. (True, its result) otherwise."""
        try:
            return True, fn(*args, **kwargs)
        except PouchError as exc:
            self.fail(exc)
        except Exception as exc:
            log.exception("%s failed", self.what)
            self.fail(PouchError("internal", f"{self.what}: {type(exc).__name__}: {exc}"))
        return False, None

    def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> None:
        """Answer with what fn returns, computed on a thread of its own: for handlers
        that wait (on other actors, on containerd), since the actor's thread must not."""
        threading.Thread(target=self.run, args=(fn, *args), name=self.what,
                         daemon=True).start()

    def _finish(self, body: bytes, error_code: str | None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            self._deliver(body, True, self.rid)
        if self._on_done is not None:
            self._on_done(error_code)


READY_PROBE = object()


@dataclass(frozen=True)
class Call:
    """A request on its way to the actor that serves it (`again`: a second time, after
    what was in its inbox then)."""

    decl: Declaration
    args: dict[str, Any]
    reply: Reply
    again: bool = False


@dataclass(frozen=True)
class Lost:
    """The answer to a call done once per token reached nobody: its caller died."""

    method: str
    args: dict[str, Any]


@dataclass
class ActorContext:
    """What an actor gets from its host."""

    service: str
    config: DaemonConfig
    pool: ClientPool  # for what the stubs cannot name (a service known only at run time)
    calls: Calls      # the other services' methods, typed
    metrics: ActorMetrics
    faults: Faults


@dataclass(frozen=True)
class Job:
    """A call on an ObjectActor whose handler answers `reply` itself, now or later."""

    handler: Callable[..., None]  # an ObjectActor method taking (reply, *args)
    reply: Reply
    args: tuple[Any, ...] = ()


class ObjectActor(pykka.ThreadingActor):
    """A per-object actor (one per container, say): operations on one object run in
    order on its thread while other objects proceed. Told Jobs, never asked: an
    exception its handler raises answers the job's reply, so no answer is lost
    in a future nobody reads."""

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Job):
            message.reply.attempt(message.handler, self, message.reply, *message.args)
            return None
        return super().on_receive(message)


def invoke(target: object, call: Call) -> None:
    """Run a declared handler and route its outcome to the reply."""
    handler = getattr(target, call.decl.attr)
    if call.decl.deferred:
        call.reply.attempt(handler, reply=call.reply, **call.args)  # it answers itself
    else:
        call.reply.run(handler, **call.args)


class ActorBase(pykka.ThreadingActor):
    """A service's actor: its declared methods run on this actor's thread."""

    service: ClassVar[str]
    contract: ClassVar[dict[str, Declaration]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.contract = collect(cls)

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__()
        self.ctx = ctx

    @staticmethod
    def _create_actor_inbox() -> Host:
        return Host()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Call):
            invoke(self, message)
            return None
        if isinstance(message, Lost):
            self.on_answer_lost(message.method, message.args)
            return None
        if message is READY_PROBE:
            return True  # on_start (restore) is done: messages are handled after it
        return self.on_message(message)

    def on_message(self, message: Any) -> Any:
        log.warning("%s: unexpected message %r", self.service, message)
        return None

    def on_answer_lost(self, method: str, args: dict[str, Any]) -> None:
        """The caller of `method` (done once per token) died before its answer reached
        it: nobody will retry the call or learn its outcome. Nothing to do by default."""

    @method(idempotent=True, timeout=2.0)
    def metrics(self) -> MetricFamilies:
        """This actor process's figures (a snapshot: see pouch.actors.metrics)."""
        return self.ctx.metrics.snapshot()

    @method(idempotent=False, errors=("invalid",))
    def debug_fault(self, point: str, action: str = "crash", once: bool = True) -> None:
        """Arm a fault (crash or hang) at a named point; pouchd --debug only."""
        if not self.ctx.faults.enabled:
            raise env.invalid("fault injection needs pouchd --debug")
        try:
            self.ctx.faults.arm(point, action, once)
        except ValueError as exc:
            raise env.invalid(str(exc)) from None

    def publish(self, etype: str, action: str, actor_id: str,
                attributes: dict[str, str] | None = None) -> None:
        """Publish one event in Docker's shape."""
        host_of(self.actor_ref).publish(dict(event(etype, action, actor_id, attributes)))


class Host:
    """The service actor's inbox, which is also its broker socket.

    pykka lets an actor type bring its own inbox; this one is served by the
    actor's own thread: while the actor waits for its next message, the inbox
    polls the broker socket and an eventfd. A request arriving on the socket
    becomes the actor's next message, and an answer given on the actor's
    thread leaves on the socket at once: no thread hop on the common path.
    Other threads (pykka callers, workers answering later, the hand-off
    listener) queue their messages and frames and write the eventfd.

    Everything a handler does on the actor's thread delays the heartbeats:
    handlers must not block (what waits goes to a worker actor or a thread).
    Heartbeats leave from that thread alone, so an actor whose serving thread
    hangs or dies goes silent and is restarted, whatever its other threads do.
    """

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # deque's append and popleft are atomic: producers and the reader need no lock.
        self._envelopes: deque[Any] = deque()
        self._frames: deque[tuple[list[bytes], Any]] = deque()
        self._owner: int | None = None  # the actor's thread, once it asks for a message
        self._serving: threading.Thread | None = None
        self._serving_known = threading.Event()
        self._inflight: dict[tuple[bytes, int], Reply] = {}
        self._sock: zmq.Socket | None = None
        self._direct: socket.socket | None = None  # the direct socket's listener
        self._links: dict[int, _Link] = {}  # its clients, by descriptor
        self._direct_out: deque[tuple[_Link, bytes, int]] = deque()
        self._poller = zmq.Poller()
        self._stopping = False
        self.actor_ref: pykka.ActorRef[Any] | None = None
        self.service = ""
        self.contract: dict[str, Declaration] = {}
        self.endpoint = ""
        self.metrics = ActorMetrics("")
        self.heartbeat = HEARTBEAT_INTERVAL
        self.liveness = HEARTBEAT_LIVENESS
        self._ctx: zmq.Context | None = None
        self._next_beat = 0.0  # monotonic: when ours leaves, unless the broker's comes first
        self._last_beat = 0.0
        self._broker_expiry = 0.0
        self._broker_silent_since = 0.0  # monotonic; 0: it is not

    def attach(self, actor_ref: pykka.ActorRef[Any], service: str,
               contract: dict[str, Declaration], endpoint: str, *,
               metrics: ActorMetrics | None = None, context: zmq.Context | None = None,
               heartbeat: float = HEARTBEAT_INTERVAL,
               liveness: int = HEARTBEAT_LIVENESS, direct_dir: Path | None = None) -> None:
        """Connect the actor to the broker: from now on its inbox serves requests.
        `direct_dir`: where to listen for direct calls too (pouch.broker.direct)."""
        self.service, self.contract, self.endpoint = service, contract, endpoint
        if direct_dir is not None:
            self._direct = direct.listen(direct.socket_path(direct_dir, service))
        self.metrics = metrics or ActorMetrics(service)
        self.heartbeat, self.liveness = heartbeat, liveness
        self._ctx = context or zmq.Context.instance()
        self.actor_ref = actor_ref  # last: the actor's thread starts serving once it is set
        self._wake()

    # -- pykka's inbox protocol ----------------------------------------------

    def put(self, envelope: Any) -> None:
        self._envelopes.append(envelope)
        if threading.get_ident() != self._owner:
            self._wake()

    def empty(self) -> bool:
        return not self._envelopes

    def get(self) -> Any:
        if self._serving is None:
            self._owner = threading.get_ident()
            self._serving = threading.current_thread()
            self._serving_known.set()
        while True:
            if self._stopping:
                self._leave()  # before anything else: the broker stops routing here
            if self._envelopes:
                return self._envelopes.popleft()
            if self.actor_ref is not None and not self._stopping:
                self._pump()
            else:
                select.select([self.fd], [], [])
                self._read_fd()

    # -- any thread ----------------------------------------------------------

    def wait_ended(self) -> None:
        """Until the actor's thread ends: its actor stopped, or an exception escaped
        pykka's loop (which ends the thread but not the actor's `is_alive`)."""
        self._serving_known.wait()
        assert self._serving is not None
        self._serving.join()

    def stop(self) -> None:
        """Say goodbye to the broker (the actor itself is stopped through pykka)."""
        self._stopping = True
        self._wake()

    def send(self, frames: list[bytes], done: Any = None) -> None:
        """Frames for the broker; `done`, if given, names the request they finish."""
        if threading.get_ident() == self._owner and self._sock is not None:
            self._send_now(frames, done)
        else:
            self._frames.append((frames, done))
            self._wake()

    def publish(self, event: dict[str, Any]) -> None:
        self.send([env.ACTOR, env.PUB, b"", env.pack(event)])

    def dispatch_with_conn(self, decl: Declaration, args: dict[str, Any], conn: Any,
                           reply: Reply) -> None:
        """Hand a validated hand-off request, with its client connection, to the actor."""
        assert self.actor_ref is not None
        self.actor_ref.tell(Call(decl, {**args, "conn": conn}, reply))

    def observer(self, method: str) -> Callable[[str | None], None]:
        """Counts one request in flight from now, and answered (its latency) once its
        answer goes out."""
        started = time.perf_counter()
        self.metrics.begin(method)

        def done(error_code: str | None) -> None:
            self.metrics.observe(method, time.perf_counter() - started, error_code)
        return done

    def _wake(self) -> None:
        os.eventfd_write(self.fd, 1)

    def _read_fd(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)

    # -- the actor's thread --------------------------------------------------

    def _pump(self) -> None:
        """One round: wait for the socket, a wake-up or the next heartbeat, and serve."""
        sock = self._sock or self._connect()
        now = time.monotonic()
        ready = dict(self._poller.poll(max(0, int((self._next_beat - now) * 1000))))
        if self.fd in ready:
            self._read_fd()
            while self._frames:
                self._send_now(*self._frames.popleft())
            while self._direct_out:
                self._send_direct(*self._direct_out.popleft())
        if self._direct is not None and self._direct.fileno() in ready:
            self._accept_direct()
        for fd in ready:
            link = self._links.get(fd) if isinstance(fd, int) else None
            if link is not None:
                self._read_direct(link)
        if sock in ready:
            self._heard_broker()
            self._receive(sock)
        now = time.monotonic()
        if now >= self._next_beat:
            wire.send(sock, [env.ACTOR, env.HEARTBEAT])
            # The broker's next one is answered (_handle): ours leave on the thread's one
            # wake-up a period. This is the fallback while the broker is silent.
            self._last_beat, self._next_beat = now, now + self.heartbeat * ANSWER_SLACK
        if not self._broker_silent_since and now > self._broker_expiry:
            # Nothing to do but wait: the socket reconnects by itself to a broker that
            # restarts (which then says BYE, and we READY), and one that was paused
            # still holds our requests. A new connection would only lose them.
            self._broker_silent_since = now - self.heartbeat * self.liveness
            log.warning("%s: the broker is silent; waiting for it", self.service)

    def _heard_broker(self) -> None:
        now = time.monotonic()
        if self._broker_silent_since:
            log.warning("%s: the broker answers again after %.1f s of silence",
                        self.service, now - self._broker_silent_since)
            self._broker_silent_since = 0.0
        self._broker_expiry = now + self.heartbeat * self.liveness

    def _connect(self) -> zmq.Socket:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(self.endpoint)
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self.fd, zmq.POLLIN)
        for fd in [*([self._direct.fileno()] if self._direct else []), *self._links]:
            self._poller.register(fd, zmq.POLLIN)
        self._sock = sock
        self._say_ready(sock)
        now = time.monotonic()
        self._broker_expiry = now + self.heartbeat * self.liveness
        self._next_beat = now + self.heartbeat
        return sock

    def _disconnect(self) -> None:
        self._abandon_inflight()
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def _leave(self) -> None:
        """Stopping: tell the broker, so it stops routing here at once."""
        self._close_direct()
        if self._sock is not None:
            while self._frames:
                self._send_now(*self._frames.popleft())
            wire.send(self._sock, [env.ACTOR, env.BYE])
            self._disconnect()

    def _send_now(self, frames: list[bytes], done: Any) -> None:
        if done is not None:
            self._inflight.pop(done, None)
        if self._sock is not None:
            wire.send(self._sock, frames)

    def _say_ready(self, sock: zmq.Socket) -> None:
        methods = {name: d.to_wire() for name, d in self.contract.items()}
        # Read at each READY: a broker that restarted wrote a new token.
        hello = {"pid": os.getpid(), "token": read_token(self.endpoint), "methods": methods}
        wire.send(sock, [env.ACTOR, env.READY, self.service.encode(), env.pack(hello)])

    def _receive(self, sock: zmq.Socket) -> None:
        while wire.readable(sock):
            message = wire.recv(sock, wire.NOBLOCK)
            try:
                self._handle(sock, message)
            except Malformed as exc:  # the serving thread must outlive any message
                log.warning("%s: dropped a malformed message: %s", self.service, exc)

    def _handle(self, sock: zmq.Socket, message: list[bytes]) -> None:
        if len(message) < 2 or message[0] != env.ACTOR:
            return
        command = message[1]
        if command == env.REQ and len(message) == 4:
            client = message[2]
            self._on_request(message[3], self._deliverer(client), client)
        elif command == env.CANCEL and len(message) == 4:
            reply = self._inflight.get((message[2], frames.cancel_id(message[3])))
            if reply is not None:
                reply.cancelled = True
        elif command == env.LOST and len(message) == 4:
            msg = frames.request(message[3])
            decl = self.contract.get(msg.method)
            if decl is not None and decl.once and self.actor_ref is not None:
                self.actor_ref.tell(Lost(decl.name, msg.args))
        elif command == env.HEARTBEAT and \
                time.monotonic() >= self._last_beat + self.heartbeat / 2:
            self._next_beat = 0.0  # answered in this turn (unless ours left lately)
        elif command == env.BYE:
            # The broker does not know us (it restarted): register again.
            self._abandon_inflight()
            self._say_ready(sock)

    def _on_request(self, body: bytes, deliver: Deliver, client: bytes | None,
                    link: _Link | None = None) -> None:
        """A request from the broker for `client`, or (None) from the direct `link`."""
        try:
            msg = frames.request(body)
        except Malformed as exc:
            if exc.rid is not None:
                Reply(deliver, exc.rid, self.service).fail(env.invalid(str(exc)))
            return
        rid, name = msg.rid, msg.method
        if msg.deadline and msg.deadline <= time.time():
            return  # its caller has given up already
        reply = Reply(deliver, rid, f"{self.service}.{name}", self.observer(name))
        decl = self.contract.get(name)
        if decl is None:
            reply.fail(env.invalid(f"the {self.service} actor has no method '{name}'"))
            return
        if decl.handoff:
            reply.fail(env.invalid(f"{self.service}.{name} takes a client connection: "
                                   "call it through the hand-off socket"))
            return
        if client is None and (decl.stream or not (decl.idempotent or decl.once)):
            reply.fail(env.invalid(f"{self.service}.{name} is not served on the direct "
                                   "socket (it streams, or is neither idempotent nor done "
                                   "once per token): call it through the broker"))
            return
        try:
            args = decl.validate(self.service, msg.args)
        except PouchError as exc:
            reply.fail(exc)
            return
        reply.once = decl.once
        if client is not None:
            self._inflight[(client, rid)] = reply
        elif link is not None and decl.once:
            link.once[rid] = (reply, Lost(decl.name, args))
        assert self.actor_ref is not None
        self.actor_ref.tell(Call(decl, args, reply))

    def _deliverer(self, client: bytes) -> Deliver:
        def deliver(body: bytes, final: bool, rid: int) -> None:
            self.send([env.ACTOR, env.REP, client, body], (client, rid) if final else None)
        return deliver

    # -- the direct socket (the actor's thread) --------------------------------

    def _accept_direct(self) -> None:
        assert self._direct is not None
        while True:
            try:
                conn, _ = self._direct.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the broker path remains
                log.warning("%s: a direct link was refused: %s", self.service, exc)
                return
            conn.settimeout(direct.SEND_WAIT)  # polled before each read: reads never wait
            link = _Link(conn)
            self._links[conn.fileno()] = link
            self._poller.register(conn.fileno(), zmq.POLLIN)

    def _read_direct(self, link: _Link) -> None:
        try:
            data = link.conn.recv(direct.READ_SIZE)
            bodies = link.reader.feed(data) if data else None
        except (OSError, direct.BadFrame):
            bodies = None
        if bodies is None:
            self._drop_direct(link)
            return
        for body in bodies:
            self._on_request(body, self._direct_deliverer(link), None, link)

    def _direct_deliverer(self, link: _Link) -> Deliver:
        def deliver(body: bytes, final: bool, rid: int) -> None:
            if not final:
                return  # nothing streams on the direct socket
            if threading.get_ident() == self._owner:
                self._send_direct(link, body, rid)
            else:
                self._direct_out.append((link, body, rid))
                self._wake()
        return deliver

    def _send_direct(self, link: _Link, body: bytes, rid: int) -> None:
        once = link.once.pop(rid, None)
        if self._links.get(link.fd) is link:
            try:
                link.conn.sendall(direct.frame(body))
                return
            except OSError:
                self._drop_direct(link)
        # Its client went away: the answer has nowhere to go. As the broker does, the
        # actor hears of a call done once per token whose answer reached nobody.
        if once is not None and self.actor_ref is not None:
            self.actor_ref.tell(once[1])

    def _drop_direct(self, link: _Link) -> None:
        if self._links.pop(link.fd, None) is link:
            with contextlib.suppress(KeyError):
                self._poller.unregister(link.fd)
        link.conn.close()
        # A client drops its link when it gives up on a call (its deadline), as one
        # through the broker sends a cancel then.
        for reply, _lost in link.once.values():
            reply.cancelled = True

    def _close_direct(self) -> None:
        for link in list(self._links.values()):
            self._drop_direct(link)
        if self._direct is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._direct.getsockname())
            self._direct.close()
            self._direct = None

    def _abandon_inflight(self) -> None:
        # The broker that routed these has failed them to their callers already. A call
        # done once per token goes on: its caller sends it again, and the retry gets its
        # outcome; its own answer has nowhere to go (a new broker drops it).
        for reply in self._inflight.values():
            reply.cancelled = reply.cancelled or not reply.once
        self._inflight.clear()


class _Link:
    """A direct client's connection, the bytes of its next request so far, and its calls
    in flight that are done once per token."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.fd = conn.fileno()
        self.reader = direct.Reader()
        # Its calls done once per token that are not answered yet, by request ID.
        self.once: dict[int, tuple[Reply, Lost]] = {}


def serve(actor_cls: type[ActorBase], config: DaemonConfig,
          extra: Callable[[Host], Callable[[], None]] | None = None) -> int:
    """Run one actor process until SIGTERM or SIGINT; the exit status of the process.

    `extra`, if given, starts further listeners once the host exists and
    returns a function that stops them.
    """
    service = actor_cls.service
    write_pid(config.pid_path(service))  # before READY: who reads the event may look it up
    # As a client: what any client may call.
    calls = ClientPool(config.broker_endpoint, direct_dir=config.direct_dir)
    metrics = ActorMetrics(service)
    ref = actor_cls.start(ActorContext(service, config, calls, Calls(calls), metrics,
                                       Faults(config.debug)))
    host = host_of(ref)
    host.attach(ref, service, actor_cls.contract, config.actor_endpoint, metrics=metrics,
                direct_dir=config.direct_dir)
    stop = StopRequest()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.request())
    stop_extra = extra(host) if extra else None
    threading.Thread(target=_notify_when_ready, args=(ref,), daemon=True).start()
    start_watchdog(lambda: _answers(ref), stop.event)
    ended = threading.Event()

    def watch() -> None:
        host.wait_ended()
        ended.set()
        stop.request()

    # Waited for, not polled: an idle process wakes for nothing but its heartbeats.
    threading.Thread(target=watch, name="actor-watch", daemon=True).start()
    status = 0
    try:
        stop.event.wait()
        if ended.is_set():
            log.error("the %s actor stopped", service)
            status = 1
    finally:
        stop.event.set()
        if stop_extra:
            stop_extra()
        host.stop()
        pykka.ActorRegistry.stop_all(timeout=5)
        calls.close()
        remove_pid(config.pid_path(service))
    return status


def host_of(ref: pykka.ActorRef[Any]) -> Host:
    """The Host inbox of a started ActorBase."""
    inbox = ref.actor_inbox
    assert isinstance(inbox, Host)
    return inbox


def _answers(ref: pykka.ActorRef[Any]) -> bool:
    """The actor's thread takes messages (what systemd's watchdog vouches for)."""
    try:
        return bool(ref.ask(READY_PROBE, timeout=2))
    except Exception:
        return False


def _notify_when_ready(ref: pykka.ActorRef[Any]) -> None:
    try:
        ref.ask(READY_PROBE, timeout=300)
    except Exception:
        return
    notify("READY=1")


def write_pid(path: os.PathLike[str] | str, pid: int | None = None) -> None:
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid or os.getpid()}\n")
    os.replace(tmp, path)


def remove_pid(path: os.PathLike[str] | str, any_owner: bool = False) -> None:
    """Remove a pid file, unless (any_owner aside) a newer process owns it now."""
    try:
        with open(path) as f:
            if not any_owner and int(f.read().strip() or 0) != os.getpid():
                return
        os.unlink(path)
    except (FileNotFoundError, ValueError):
        pass
