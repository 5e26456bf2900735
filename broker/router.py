"""The broker: routes requests from clients to live actors, and events to subscribers.

One thread owns the ROUTER socket. It knows frames and service names, not
containers: bodies are decoded only for the request id, method and deadline
it needs to track what is in flight. See `pouch.proto.envelope` for the frames.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import zmq

from pouch.broker import wire
from pouch.broker.service import BrokerService
from pouch.proto import envelope as env
from pouch.proto.contract import collect
from pouch.proto.docker import event
from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.broker")

HEARTBEAT_INTERVAL = 0.25
HEARTBEAT_LIVENESS = 3  # intervals of silence before an actor counts as dead


@dataclass
class InFlight:
    method: str
    deadline: float
    stream: bool = False


@dataclass
class Worker:
    identity: bytes
    service: str
    pid: int
    expiry: float
    inflight: dict[tuple[bytes, int], InFlight] = field(default_factory=dict)


@dataclass
class Queued:
    client: bytes
    rid: int
    method: str
    deadline: float
    body: bytes


@dataclass
class Service:
    name: str
    workers: list[Worker] = field(default_factory=list)
    queue: deque[Queued] = field(default_factory=deque)
    contract: dict[str, Any] = field(default_factory=dict)
    down: str | None = None  # why the supervisor gave up on it, if it did


@dataclass
class Subscription:
    """Events whose fields hold one of the values given, for every field given.

    Fields are paths into the event map (`Type`, `Actor.Attributes.reason`): the
    broker matches values, not meanings; Docker's event filters are the events
    service's (the system actor).
    """

    client: bytes
    rid: int
    fields: dict[str, list[str]]

    def wants(self, event: dict[str, Any]) -> bool:
        for path, values in self.fields.items():
            value: Any = event
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if values and value not in values:
                return False
        return True


BROKER_CONTRACT = collect(BrokerService)


class Broker:
    """Routing table of live actors; nothing persistent."""

    def __init__(self, endpoint: str, *, heartbeat: float = HEARTBEAT_INTERVAL,
                 liveness: int = HEARTBEAT_LIVENESS, context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.heartbeat = heartbeat
        self.liveness = liveness
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._workers: dict[bytes, Worker] = {}
        self._services: dict[str, Service] = {}
        self._subs: dict[tuple[bytes, int], Subscription] = {}
        self._stopping = False
        self._own = BrokerService(self)

    # -- lifecycle -----------------------------------------------------------

    def bind(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # An unroutable reply (its client went away) raises instead of vanishing,
        # so dead subscribers are noticed and dropped.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        if self.endpoint.startswith("ipc://"):
            path = self.endpoint[len("ipc://"):]
            if os.path.exists(path):
                os.unlink(path)  # a stale socket of a broker that died
        sock.bind(self.endpoint)
        if self.endpoint.startswith("ipc://"):
            os.chmod(self.endpoint[len("ipc://"):], 0o660)
        self._sock = sock

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        """Serve until stop() is called from a signal handler."""
        if self._sock is None:
            self.bind()
        sock = self._sock
        assert sock is not None
        # A blocking receive with a timeout, not poll + receive: one system call less
        # per message, and the timeout still wakes the loop for heartbeats.
        sock.setsockopt(zmq.RCVTIMEO, max(1, int(self.heartbeat * 1000)))
        last_turn = time.monotonic()
        next_beat = last_turn + self.heartbeat
        try:
            while not self._stopping:
                with contextlib.suppress(zmq.Again):
                    self._handle(wire.recv(sock))
                now = time.monotonic()
                if now - last_turn > self.window:
                    self._resumed(now - last_turn)
                last_turn = now
                if now >= next_beat:
                    self._beat(now)
                    next_beat = now + self.heartbeat
        finally:
            for worker in list(self._workers.values()):
                self._send(worker.identity, env.ACTOR, env.BYE)
            sock.close(linger=0)
            self._sock = None

    @property
    def window(self) -> float:
        """Seconds of silence after which an actor counts as dead."""
        return self.heartbeat * self.liveness

    def _resumed(self, gap: float) -> None:
        """The loop itself did not turn for `gap` s (the broker was stopped, or starved):
        the actors' silence over that time is the broker's own, so each gets a full
        window again, from now, before it is judged."""
        log.warning("the broker's loop stalled %.1f s; judging no actor for that time", gap)
        expiry = time.monotonic() + self.window
        for worker in self._workers.values():
            worker.expiry = max(worker.expiry, expiry)

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 3:
            return
        sender, header, command, *rest = frames
        try:
            if header == env.CLIENT:
                self._from_client(sender, command, rest)
            elif header == env.ACTOR:
                self._from_actor(sender, command, rest)
        except Exception:  # a malformed message must never take the broker down
            log.exception("dropped a malformed message from %r", sender)

    # -- clients -------------------------------------------------------------

    def _from_client(self, client: bytes, command: bytes, rest: list[bytes]) -> None:
        if command == env.REQ and len(rest) == 2:
            service_name, body = rest[0].decode(), rest[1]
            msg = env.unpack(body)
            rid, method = int(msg["id"]), str(msg["method"])
            deadline = float(msg.get("deadline") or 0)
            if service_name == "broker":
                self._answer_internal(client, rid, method, msg.get("args") or {})
                return
            self._route(Queued(client, rid, method, deadline, body), service_name)
        elif command == env.CANCEL and len(rest) == 2:
            self._cancel(client, rest[0].decode(), int(env.unpack(rest[1])))
        elif command == env.SUB and len(rest) == 2:
            msg = env.unpack(rest[1])
            sub = Subscription(client, int(msg["id"]), dict(msg.get("fields") or {}))
            self._subs[(client, sub.rid)] = sub

    def _route(self, req: Queued, service_name: str) -> None:
        service = self._services.setdefault(service_name, Service(service_name))
        if service.workers:
            self._dispatch(service, req)
        elif service.down:
            self._fail(req.client, service_name, req.rid,
                       env.unavailable(f"the {service_name} actor is down: {service.down}"))
        else:
            service.queue.append(req)

    def _dispatch(self, service: Service, req: Queued) -> None:
        while service.workers:
            worker = min(service.workers, key=lambda w: len(w.inflight))
            if self._send(worker.identity, env.ACTOR, env.REQ, req.client, req.body):
                declared = service.contract.get(req.method) or {}
                worker.inflight[(req.client, req.rid)] = InFlight(
                    req.method, req.deadline, bool(declared.get("stream")))
                return
            # Its connection is gone (the process died): no need to wait for heartbeats.
            self._remove(worker, "its connection is gone", "disconnected")
        self._route(req, service.name)

    def _cancel(self, client: bytes, service_name: str, rid: int) -> None:
        self._subs.pop((client, rid), None)
        service = self._services.get(service_name)
        if service is None:
            return
        service.queue = deque(q for q in service.queue if (q.client, q.rid) != (client, rid))
        for worker in service.workers:
            if worker.inflight.pop((client, rid), None) is not None:
                self._send(worker.identity, env.ACTOR, env.CANCEL, client, env.pack(rid))

    def _fail(self, client: bytes, service: str, rid: int, error: PouchError,
              retry: bool = False) -> None:
        wire: dict[str, Any] = error.to_wire()
        if retry:
            # The request may or may not have run: an idempotent one is safe to resend.
            wire["retry"] = True
        body = env.pack({"id": rid, "ok": False, "error": wire})
        self._send(client, env.CLIENT, env.REP, service.encode(), body)

    # -- actors --------------------------------------------------------------

    def _from_actor(self, identity: bytes, command: bytes, rest: list[bytes]) -> None:
        worker = self._workers.get(identity)
        if command == env.READY and len(rest) == 2:
            self._register(identity, rest[0].decode(), env.unpack(rest[1]))
            return
        if worker is None:
            # Not (or no longer) registered, e.g. after a broker restart: make it say READY again.
            if command != env.BYE:
                self._send(identity, env.ACTOR, env.BYE)
            return
        worker.expiry = time.monotonic() + self.window
        if command == env.REP and len(rest) == 2:
            client, body = rest
            msg = env.unpack(body)
            key = (client, int(msg["id"]))
            if not msg.get("more"):
                worker.inflight.pop(key, None)
            elif key not in worker.inflight:
                return  # a stream item for a cancelled request
            delivered = self._send(client, env.CLIENT, env.REP, worker.service.encode(), body)
            if not delivered and worker.inflight.pop(key, None) is not None:
                self._send(identity, env.ACTOR, env.CANCEL, client, env.pack(key[1]))
        elif command == env.PUB and len(rest) == 2:
            self._publish(rest[1])
        elif command == env.BYE:
            self._remove(worker, "it said goodbye", "goodbye")

    def _register(self, identity: bytes, service_name: str, hello: dict[str, Any]) -> None:
        service = self._services.setdefault(service_name, Service(service_name))
        service.contract = dict(hello.get("methods") or {})
        service.down = None
        expiry = time.monotonic() + self.window
        pid = int(hello.get("pid", 0))
        worker = self._workers.get(identity)
        if worker is not None and worker.service == service_name:
            # Said again (one READY per BYE it got, say): the same actor, nothing lost.
            worker.expiry = expiry
            return
        if worker is not None:
            self._remove(worker, "it registered for another service", "reregistered")
        for former in [w for w in service.workers if pid and w.pid == pid]:
            # The same process on a new connection: the old one is gone, the process is not.
            self._remove(former, "it connected again", "reconnected")
        worker = Worker(identity, service_name, pid, expiry)
        self._workers[identity] = worker
        service.workers.append(worker)
        log.info("%s actor ready (pid %s)", service_name, worker.pid)
        # Each waiting request is routed once: if this actor's connection is gone already
        # (its READY was read after it closed), routing queues the request again, and a
        # loop until the queue is empty would never end (the broker's 18 s wedge).
        now = time.time()
        waiting, service.queue = service.queue, deque()
        for req in waiting:
            if req.deadline and req.deadline <= now:
                self._fail_late(req, service_name)
            else:
                self._route(req, service_name)
        self._publish_daemon("actor-ready", service_name, worker.pid)

    def _remove(self, worker: Worker, why: str, reason: str) -> None:
        """Forget an actor and fail what it was doing; `reason` goes into the actor-lost
        event: "heartbeats" (it may be alive but hung), "goodbye", "exited", "disconnected",
        "reconnected", "reregistered"."""
        self._workers.pop(worker.identity, None)
        service = self._services.get(worker.service)
        if service is not None and worker in service.workers:
            service.workers.remove(worker)
        log.warning("%s actor (pid %s) removed: %s; failing %d request(s) in flight",
                    worker.service, worker.pid, why, len(worker.inflight))
        for (client, rid), flight in worker.inflight.items():
            self._fail(client, worker.service, rid, env.unavailable(
                f"the {worker.service} actor stopped while handling '{flight.method}'"
                " (the outcome is unknown)"), retry=True)
        worker.inflight.clear()
        self._publish_daemon("actor-lost", worker.service, worker.pid, reason)

    def _beat(self, now_mono: float) -> None:
        for worker in list(self._workers.values()):
            if worker.expiry < now_mono:
                self._remove(worker, "missed its heartbeats", "heartbeats")
            elif not self._send(worker.identity, env.ACTOR, env.HEARTBEAT):
                self._remove(worker, "its connection is gone", "disconnected")
        now = time.time()
        for service in self._services.values():
            late = [q for q in service.queue if q.deadline and q.deadline <= now]
            for req in late:
                service.queue.remove(req)
                self._fail_late(req, service.name)
            for worker in service.workers:
                # The client gave up at its deadline: forget the request and tell the actor.
                stale = [key for key, f in worker.inflight.items()
                         if f.deadline and f.deadline + 1.0 <= now and not f.stream]
                for client, rid in stale:
                    del worker.inflight[(client, rid)]
                    self._send(worker.identity, env.ACTOR, env.CANCEL, client, env.pack(rid))

    def _fail_late(self, req: Queued, service_name: str) -> None:
        self._fail(req.client, service_name, req.rid, env.unavailable(
            f"no {service_name} actor is available (waited until the request's deadline)"))

    # -- events --------------------------------------------------------------

    def _publish(self, body: bytes) -> None:
        event = env.unpack(body)
        for key, sub in list(self._subs.items()):
            if sub.wants(event):
                reply = env.pack({"id": sub.rid, "ok": True, "result": event, "more": True})
                if not self._send(sub.client, env.CLIENT, env.REP, b"events", reply):
                    self._subs.pop(key, None)

    def _publish_daemon(self, action: str, service: str, pid: int, reason: str = "") -> None:
        if not self._subs:
            return
        attributes = {"name": service, "pid": str(pid)}
        if reason:
            attributes["reason"] = reason
        self._publish(env.pack(event("daemon", action, service, attributes)))

    # -- the broker's own service --------------------------------------------

    def _answer_internal(self, client: bytes, rid: int, method: str, args: Any) -> None:
        decl = BROKER_CONTRACT.get(method)
        try:
            if decl is None:
                raise env.invalid(f"the broker has no method '{method}'")
            result = getattr(self._own, decl.attr)(**decl.validate("broker", args))
        except PouchError as exc:
            self._fail(client, "broker", rid, exc)
            return
        self._send(client, env.CLIENT, env.REP, b"broker", env.ok_reply(rid, result))

    def describe_services(self) -> dict[str, Any]:
        return {
            name: {"workers": [{"pid": w.pid, "inflight": len(w.inflight)} for w in s.workers],
                   "queued": len(s.queue), "down": s.down}
            for name, s in self._services.items()
        }

    def contract_of(self, service: str) -> dict[str, Any]:
        known = self._services.get(service)
        if known is None or not known.contract:
            raise env.not_found(f"no contract known for service '{service}'")
        return known.contract

    def worker_gone(self, service: str, pid: int) -> bool:
        for worker in list(self._workers.values()):
            if worker.service == service and worker.pid == pid:
                self._remove(worker, "its process exited", "exited")
                return True
        return False

    def mark_down(self, service: str, reason: str | None) -> None:
        entry = self._services.setdefault(service, Service(service))
        entry.down = reason
        if reason:
            while entry.queue:
                req = entry.queue.popleft()
                self._fail(req.client, service, req.rid,
                           env.unavailable(f"the {service} actor is down: {reason}"))

    # -- sending -------------------------------------------------------------

    def _send(self, identity: bytes, *frames: bytes) -> bool:
        assert self._sock is not None
        try:
            wire.send(self._sock, [identity, *frames], wire.NOBLOCK)
            return True
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                raise
            return False
