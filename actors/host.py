"""The actor host: the runtime of every actor process.

The main thread owns the DEALER socket to the broker: it registers the
service with its contract, heartbeats, and hands each request to the
service's pykka actor. Work runs in pykka actors; their answers come back to
the socket's thread through the outbox, a queue whose eventfd the socket
thread polls beside the socket, so no socket is ever touched by two threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pykka
import zmq

from pouch.actors.contract import Declaration, collect, method
from pouch.actors.faults import Faults
from pouch.actors.metrics import ActorMetrics
from pouch.actors.sdnotify import notify, start_watchdog
from pouch.broker.client import ClientPool
from pouch.broker.router import HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS
from pouch.proto import envelope as env
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.host")


class Reply:
    """Where one request's answer goes. Thread-safe; the first final answer wins."""

    def __init__(self, deliver: Callable[[bytes, bool, int], None], rid: int, what: str,
                 on_done: Callable[[str | None], None] | None = None) -> None:
        """`on_done(error code or None)` is called once, with the final answer."""
        self._deliver = deliver
        self.rid = rid
        self.what = what
        self._on_done = on_done
        self.cancelled = threading.Event()
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
            if self._done or self.cancelled.is_set():
                return False
            self._deliver(env.ok_reply(self.rid, item, more=True), False, self.rid)
            return True

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Answer with what fn returns, or with the error it raises."""
        try:
            result = fn(*args, **kwargs)
        except PouchError as exc:
            self.fail(exc)
        except Exception as exc:
            log.exception("%s failed", self.what)
            self.fail(PouchError("internal", f"{self.what}: {type(exc).__name__}: {exc}"))
        else:
            self.send(result)

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
    """A request on its way to the actor that serves it."""

    decl: Declaration
    args: dict[str, Any]
    reply: Reply


@dataclass
class ActorContext:
    """What an actor gets from its host."""

    service: str
    config: DaemonConfig
    calls: ClientPool
    publish: Callable[[dict[str, Any]], None]
    metrics: ActorMetrics
    faults: Faults


def invoke(target: object, call: Call) -> None:
    """Run a declared handler and route its outcome to the reply."""
    handler = getattr(target, call.decl.attr)
    if call.decl.deferred:
        try:
            handler(reply=call.reply, **call.args)
        except PouchError as exc:
            call.reply.fail(exc)
        except Exception as exc:
            log.exception("%s failed", call.reply.what)
            call.reply.fail(PouchError("internal", f"{call.reply.what}: {exc}"))
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

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Call):
            invoke(self, message)
            return None
        if message is READY_PROBE:
            return True  # on_start (restore) is done: messages are handled after it
        return self.on_message(message)

    def on_message(self, message: Any) -> Any:
        log.warning("%s: unexpected message %r", self.service, message)
        return None

    @method(idempotent=True)
    def metrics(self) -> str:
        """This actor process's metrics, in Prometheus's text format."""
        return self.ctx.metrics.exposition()

    @method(idempotent=False)
    def debug_fault(self, point: str, action: str = "crash", once: bool = True) -> None:
        """Arm a fault (crash or hang) at a named point; pouchd --debug only. Errors: invalid."""
        if not self.ctx.faults.enabled:
            raise env.invalid("fault injection needs pouchd --debug")
        try:
            self.ctx.faults.arm(point, action, once)
        except ValueError as exc:
            raise env.invalid(str(exc)) from None

    def publish(self, etype: str, action: str, actor_id: str,
                attributes: dict[str, str] | None = None) -> None:
        """Publish one event in Docker's shape."""
        now = time.time_ns()
        self.ctx.publish({
            "Type": etype, "Action": action, "scope": "local",
            "Actor": {"ID": actor_id, "Attributes": attributes or {}},
            "time": now // 1_000_000_000, "timeNano": now,
        })


class Outbox:
    """Frames from any thread to the socket thread, which polls `fd`."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._queue: queue.SimpleQueue[tuple[list[bytes], Any]] = queue.SimpleQueue()

    def put(self, frames: list[bytes], done: Any = None) -> None:
        """Queue frames; `done`, if given, names the request they finish."""
        self._queue.put((frames, done))
        os.eventfd_write(self.fd, 1)

    def wake(self) -> None:
        os.eventfd_write(self.fd, 1)

    def drain(self) -> list[tuple[list[bytes], Any]]:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def close(self) -> None:
        os.close(self.fd)


class Host:
    """Connects one service actor to the broker and keeps it connected."""

    def __init__(self, actor_ref: pykka.ActorRef[Any], service: str,
                 contract: dict[str, Declaration], endpoint: str, *,
                 metrics: ActorMetrics | None = None,
                 context: zmq.Context | None = None,
                 heartbeat: float = HEARTBEAT_INTERVAL, liveness: int = HEARTBEAT_LIVENESS) -> None:
        self.actor_ref = actor_ref
        self.service = service
        self.contract = contract
        self.endpoint = endpoint
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.outbox = Outbox()
        self.metrics = metrics or ActorMetrics(service)
        self._ctx = context or zmq.Context.instance()
        self._stopping = False
        self._inflight: dict[tuple[bytes, int], Reply] = {}

    # -- called from any thread ----------------------------------------------

    def stop(self) -> None:
        self._stopping = True
        self.outbox.wake()

    def publish(self, event: dict[str, Any]) -> None:
        self.outbox.put([env.ACTOR, env.PUB, b"", env.pack(event)])

    def dispatch(self, decl: Declaration, args: Any, reply: Reply) -> None:
        """Validate a request against its declaration and hand it to the actor."""
        try:
            checked = decl.validate(self.service, args)
        except PouchError as exc:
            reply.fail(exc)
            return
        self.actor_ref.tell(Call(decl, checked, reply))

    def dispatch_with_conn(self, decl: Declaration, args: dict[str, Any], conn: Any,
                           reply: Reply) -> None:
        """Hand a validated hand-off request, with its client connection, to the actor."""
        self.actor_ref.tell(Call(decl, {**args, "conn": conn}, reply))

    # -- the socket thread ---------------------------------------------------

    def run(self) -> None:
        """Serve until stop(); reconnect whenever the broker goes silent."""
        try:
            while not self._stopping:
                self._serve_one_connection()
        finally:
            self.outbox.close()

    def _serve_one_connection(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 50)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(self.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self.outbox.fd, zmq.POLLIN)
        self._say_ready(sock)
        broker_expiry = time.monotonic() + self.heartbeat * self.liveness
        next_beat = time.monotonic() + self.heartbeat
        try:
            while not self._stopping:
                if not self.actor_ref.is_alive():
                    raise SystemExit(f"the {self.service} actor stopped")
                wait = max(0.0, next_beat - time.monotonic())
                events = dict(poller.poll(int(wait * 1000)))
                if sock in events:
                    broker_expiry = time.monotonic() + self.heartbeat * self.liveness
                    self._receive(sock)
                if self.outbox.fd in events:
                    for frames, done in self.outbox.drain():
                        if done is not None:
                            self._inflight.pop(done, None)
                        sock.send_multipart(frames)
                now = time.monotonic()
                if now >= next_beat:
                    sock.send_multipart([env.ACTOR, env.HEARTBEAT])
                    next_beat = now + self.heartbeat
                if now > broker_expiry:
                    log.warning("%s: the broker went silent; reconnecting", self.service)
                    self._abandon_inflight()
                    return
            sock.send_multipart([env.ACTOR, env.BYE])
        finally:
            sock.close(linger=0)

    def _say_ready(self, sock: zmq.Socket) -> None:
        methods = {name: d.to_wire() for name, d in self.contract.items()}
        hello = {"pid": os.getpid(), "methods": methods}
        sock.send_multipart([env.ACTOR, env.READY, self.service.encode(), env.pack(hello)])

    def _receive(self, sock: zmq.Socket) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2 or frames[0] != env.ACTOR:
                continue
            command = frames[1]
            if command == env.REQ and len(frames) == 4:
                self._on_request(frames[2], frames[3])
            elif command == env.CANCEL and len(frames) == 4:
                reply = self._inflight.get((frames[2], int(env.unpack(frames[3]))))
                if reply is not None:
                    reply.cancelled.set()
            elif command == env.BYE:
                # The broker does not know us (it restarted): register again.
                self._abandon_inflight()
                self._say_ready(sock)

    def _on_request(self, client: bytes, body: bytes) -> None:
        msg = env.unpack(body)
        rid, name = int(msg["id"]), str(msg.get("method", ""))
        reply = Reply(self._deliverer(client), rid, f"{self.service}.{name}",
                      self.observer(name))
        decl = self.contract.get(name)
        if decl is None:
            reply.fail(env.invalid(f"the {self.service} actor has no method '{name}'"))
            return
        if decl.handoff:
            reply.fail(env.invalid(f"{self.service}.{name} takes a client connection: "
                                   "call it through the hand-off socket"))
            return
        deadline = float(msg.get("deadline") or 0)
        if deadline and deadline <= time.time():
            return  # its caller has given up already
        self._inflight[(client, rid)] = reply
        self.dispatch(decl, msg.get("args") or {}, reply)

    def observer(self, method: str) -> Callable[[str | None], None]:
        """Counts one request (latency from now) once its answer goes out."""
        started = time.perf_counter()

        def done(error_code: str | None) -> None:
            self.metrics.observe(method, time.perf_counter() - started, error_code)
        return done

    def _deliverer(self, client: bytes) -> Callable[[bytes, bool, int], None]:
        def deliver(body: bytes, final: bool, rid: int) -> None:
            self.outbox.put([env.ACTOR, env.REP, client, body], (client, rid) if final else None)
        return deliver

    def _abandon_inflight(self) -> None:
        # The broker that routed these has failed them to their callers already.
        for reply in self._inflight.values():
            reply.cancelled.set()
        self._inflight.clear()


def serve(actor_cls: type[ActorBase], config: DaemonConfig,
          extra: Callable[[Host], Callable[[], None]] | None = None) -> int:
    """Run one actor process until SIGTERM or SIGINT; the exit status of the process.

    `extra`, if given, starts further listeners once the host exists and
    returns a function that stops them.
    """
    service = actor_cls.service
    calls = ClientPool(config.broker_endpoint)
    metrics = ActorMetrics(service)
    host_box: list[Host] = []

    def publish(event: dict[str, Any]) -> None:
        host_box[0].publish(event)

    ref = actor_cls.start(ActorContext(service, config, calls, publish, metrics,
                                       Faults(config.debug)))
    host = Host(ref, service, actor_cls.contract, config.broker_endpoint, metrics=metrics)
    host_box.append(host)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: host.stop())
    write_pid(config.pid_path(service))
    stop_extra = extra(host) if extra else None
    ready = threading.Thread(target=_notify_when_ready, args=(ref,), daemon=True)
    ready.start()
    stopped = threading.Event()
    start_watchdog(lambda: _answers(ref), stopped)
    status = 0
    try:
        host.run()
    except SystemExit as exc:
        log.error("%s", exc)
        status = 1
    finally:
        stopped.set()
        if stop_extra:
            stop_extra()
        pykka.ActorRegistry.stop_all(timeout=5)
        calls.close()
        remove_pid(config.pid_path(service))
    return status


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
