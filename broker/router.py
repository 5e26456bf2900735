"""The broker: routes requests from clients to live actors, and events to subscribers.

One thread owns two ROUTER sockets: the client endpoint, where any process
with access sends requests, cancels and subscriptions, and the actors'
endpoint in a private directory (`pouch.broker.trust`), where pouchd's own
processes register, reply, heartbeat, publish, and call what clients may not
(the supervisor's reports, fault points). It knows frames and service names,
not containers: bodies are decoded only for what it checks and tracks (see
`pouch.broker.frames`), and no message, however malformed, stops it.
See `pouch.proto.envelope` for the frames.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import zmq

from pouch.broker import frames, procs, trust, wire
from pouch.broker.frames import Malformed
from pouch.broker.peercheck import DOMAIN, PeerCheck
from pouch.broker.service import BrokerService
from pouch.proto import envelope as env
from pouch.proto.contract import collect
from pouch.proto.docker import event
from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.broker")

HEARTBEAT_INTERVAL = 0.25
HEARTBEAT_LIVENESS = 3  # intervals of silence before an actor counts as dead
# How long a request may wait for an actor when neither its client nor a known
# contract gives a deadline (a service no actor declared yet, or none at all).
QUEUE_WAIT = 30.0
MAX_QUEUED = 1000        # requests waiting for one service's actor
MAX_PER_CLIENT = 256     # requests one client has queued or in flight
MAX_SUBS_PER_CLIENT = 16
MAX_SUBS = 4096
MAX_SERVICES = 64        # names known at once: a client cannot grow the table at will
# A request blamed for its actor's death twice within POISON_WINDOW s is refused.
POISON_KILLS = 2
POISON_WINDOW = 120.0
POISON_REMEMBERED = 1024
# Removal reasons that may be a request's doing: the actor hung, or the supervisor saw it
# end by itself. Not "killed" (by a signal from outside), nor "disconnected" (seen before
# the supervisor said why: under kill -9 chaos that is most deaths, none a request's).
# Even then at most one request is blamed (see Broker._culprit).
DEATHS = ("heartbeats", "exited")
# What only pouchd's own processes may call (on the actors' endpoint).
INTERNAL = {("broker", "mark_down"), ("broker", "worker_gone")}
# What the Docker API serves of the supervisor's: /info, /metrics, /daemon/update.
SUPERVISOR_PUBLIC = ("status", "metrics", "update")


@dataclass(slots=True)
class InFlight:
    method: str
    deadline: float
    body: bytes          # the request, for its fingerprint should the actor die
    stream: bool = False
    once: bool = False   # done once per token: its actor hears when the answer is lost


@dataclass
class Worker:
    identity: bytes
    service: str
    pid: int
    expiry: float
    inflight: dict[tuple[bytes, int], InFlight] = field(default_factory=dict)
    service_frame: bytes = field(init=False)  # what its replies go to clients with

    def __post_init__(self) -> None:
        self.service_frame = self.service.encode()


@dataclass(slots=True)
class Queued:
    client: bytes
    rid: int
    method: str
    deadline: float      # the client's; 0: none given
    body: bytes
    wait_until: float    # when it fails if no actor took it


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
# The broker knows a peer by its socket's mark and the id ZeroMQ gave it there.
PUBLIC, PRIVATE = b"c", b"a"
# Messages read from one socket before looking at the other: the actors' may be
# drained at length, the clients' (which anyone can flood) in short turns, so that
# a flood delays an actor's reply by a few messages' handling, not hundreds.
TURN = {True: 256, False: 32}  # by trust
MAX_MESSAGE = 64 * 1024 * 1024
CLIENT_BACKLOG = 100         # messages from one client waiting to be read


class Broker:
    """Routing table of live actors; nothing persistent."""

    def __init__(self, endpoint: str, actor_endpoint: str | None = None, *,
                 heartbeat: float = HEARTBEAT_INTERVAL, liveness: int = HEARTBEAT_LIVENESS,
                 queue_wait: float = QUEUE_WAIT, tree: int | None = None) -> None:
        """`endpoint` for clients; `actor_endpoint` (default: beside it, in `private/`)
        for pouchd's own processes: those descending from pid `tree` (default: the
        broker's parent, the supervisor)."""
        self.endpoint = endpoint
        self.actor_endpoint = actor_endpoint or trust.private_endpoint(endpoint)
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.queue_wait = queue_wait
        self.tree = tree or os.getppid()
        # A context of its own: libzmq finds the ZAP handler per context, one at most.
        self._ctx = zmq.Context()
        self._peers: PeerCheck | None = None
        self._sock: zmq.Socket | None = None       # clients
        self._private: zmq.Socket | None = None    # actors
        self._token = ""
        self._per_client: Counter[bytes] = Counter()
        self._subs_of: Counter[bytes] = Counter()
        self._kills: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self._poison_until = 0.0  # monotonic time until which some request is poison
        self._workers: dict[bytes, Worker] = {}
        self._services: dict[str, Service] = {}
        self._subs: dict[tuple[bytes, int], Subscription] = {}
        self._stopping = False
        self._own = BrokerService(self)
        # Sockets used since their last ZMQ_EVENTS: they may hold a message their
        # ZMQ_FD does not show (see wire.Wakeup).
        self._unchecked: set[zmq.Socket] = set()

    # -- lifecycle -----------------------------------------------------------

    def bind(self) -> None:
        private = trust.ipc_path(self.actor_endpoint)
        if private is None:
            raise ValueError(f"actors register on an ipc endpoint, not {self.actor_endpoint}")
        trust.make_private_dir(private.parent)
        self._token = trust.write_token(self.actor_endpoint)
        trust.unpredictable_routing_ids()
        # Before the actors' socket exists: no connection is ever let in unchecked.
        self._peers = PeerCheck(self._ctx, self.tree)
        self._peers.start()
        self._private = self._router(self.actor_endpoint, 0o177, 0, DOMAIN)
        # A client sending faster than the broker reads waits, per peer, rather than
        # grow the broker's buffers.
        self._sock = self._router(self.endpoint, 0o117, CLIENT_BACKLOG)

    def _router(self, endpoint: str, mask: int, backlog: int,
                zap_domain: bytes = b"") -> zmq.Socket:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        if zap_domain:
            sock.setsockopt(zmq.ZAP_DOMAIN, zap_domain)
        # An unroutable reply (its client went away) raises instead of vanishing,
        # so dead subscribers are noticed and dropped.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, backlog)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        trust.prepare_ipc(endpoint)
        with trust.umask(mask):  # the socket file has its mode from the moment it exists
            sock.bind(endpoint)
        return sock

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        """Serve until stop() is called from a signal handler."""
        if self._sock is None:
            self.bind()
        sock, private = self._sock, self._private
        assert sock is not None and private is not None
        wake = wire.Wakeup((private, sock))
        wait = max(1, int(self.heartbeat * 1000))
        last_turn = time.monotonic()
        next_beat = last_turn + self.heartbeat
        self._unchecked = {private, sock}
        look: Collection[zmq.Socket] = [private, sock]
        try:
            while not self._stopping:
                # A bounded turn on each socket: a flood on one starves neither the
                # other nor the heartbeats.
                if private in look:
                    self._drain(private, True)
                if sock in look:
                    self._drain(sock, False)
                now = time.monotonic()
                if now - last_turn > self.window:
                    self._resumed(now - last_turn)
                last_turn = now
                if now >= next_beat:
                    self._beat(now)
                    next_beat = now + self.heartbeat
                # Sleep on the sockets' fds only when none may hold a message its fd
                # does not show (see wire.Wakeup).
                look = list(self._unchecked) or wake.wait(wait)
        finally:
            for worker in list(self._workers.values()):
                self._send(worker.identity, env.ACTOR, env.BYE)
            sock.close(linger=0)
            private.close(linger=0)
            self._sock = self._private = None
            if self._peers is not None:
                self._peers.stop()
            self._ctx.term()

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

    def _drain(self, sock: zmq.Socket, trusted: bool) -> None:
        """Handle the messages waiting on `sock`, at most a TURN."""
        for _ in range(TURN[trusted]):
            # ZMQ_EVENTS, not a receive until zmq.Again: no exception per drain.
            if not wire.readable(sock):
                self._unchecked.discard(sock)
                return
            self._handle(wire.recv(sock, wire.NOBLOCK), trusted)
        self._unchecked.add(sock)  # more may wait

    def _handle(self, message: list[bytes], trusted: bool = True) -> None:
        if len(message) < 3:
            return
        sender, header, command, *rest = message
        # The sockets' identities of peers overlap: an actor's is told apart by its endpoint.
        sender = (PRIVATE if trusted else PUBLIC) + sender
        try:
            if header == env.CLIENT:
                self._from_client(sender, command, rest, trusted)
            elif header == env.ACTOR and trusted:
                self._from_actor(sender, command, rest)
        except Malformed as exc:
            log.debug("dropped a malformed message from %r: %s", sender, exc)
        except Exception:  # a message must never take the broker down
            log.exception("dropped a message from %r", sender)

    # -- clients -------------------------------------------------------------

    def _from_client(self, client: bytes, command: bytes, rest: list[bytes],
                     trusted: bool) -> None:
        if command == env.REQ and len(rest) == 2:
            try:
                self._request(client, rest[0], rest[1], trusted)
            except Malformed as exc:
                if exc.rid is not None:
                    self._fail(client, rest[0][:80].decode("ascii", "replace"), exc.rid,
                               env.invalid(str(exc)))
        elif command == env.CANCEL and len(rest) == 2:
            self._cancel(client, rest[0].decode("ascii", "replace"), frames.cancel_id(rest[1]))
        elif command == env.SUB and len(rest) == 2:
            try:
                rid, fields = frames.subscription(rest[1])
            except Malformed as exc:
                if exc.rid is not None:
                    self._fail(client, "events", exc.rid, env.invalid(str(exc)))
                return
            if (client, rid) not in self._subs and (self._subs_of[client] >= MAX_SUBS_PER_CLIENT
                                                    or len(self._subs) >= MAX_SUBS):
                self._fail(client, "events", rid, env.unavailable(
                    f"at most {MAX_SUBS_PER_CLIENT} subscriptions per client, {MAX_SUBS} in all"))
                return
            if (client, rid) not in self._subs:
                self._subs_of[client] += 1
            self._subs[(client, rid)] = Subscription(client, rid, fields)

    def _request(self, client: bytes, service_frame: bytes, body: bytes, trusted: bool) -> None:
        req = frames.request(body)
        try:
            service_name = frames.name(service_frame, "the service")
        except Malformed as exc:
            raise Malformed(str(exc), req.rid) from None
        try:
            if not trusted:
                check_public(service_name, req.method)
            if service_name == "broker":
                self._answer_internal(client, req.rid, req.method, req.args)
                return
            # Hashed only while some request is poison: most of the time none is.
            if self._poison_until and self._poisonous(_fingerprint(service_name, req)):
                raise env.invalid(f"{service_name}.{req.method} with these arguments took "
                                  f"the actor down {POISON_KILLS} times: refused")
            if self._per_client[client] >= MAX_PER_CLIENT:
                raise env.unavailable(f"this client has {MAX_PER_CLIENT} requests in flight")
            service = self._services.get(service_name)
            if service is None and len(self._services) >= MAX_SERVICES:
                raise env.not_found(f"no service '{service_name}'")
            if service is not None and len(service.queue) >= MAX_QUEUED:
                raise env.unavailable(f"{MAX_QUEUED} requests wait for the {service_name} "
                                      "actor already")
        except PouchError as exc:
            self._fail(client, service_name, req.rid, exc)
            return
        self._per_client[client] += 1
        # A request waits for an actor until its deadline, or as long as its method's
        # declaration gives a call, or (no deadline declared, no actor known) queue_wait.
        wait_until = req.deadline or time.time() + (
            self._declared_timeout(service, req.method) or self.queue_wait)
        self._route(Queued(client, req.rid, req.method, req.deadline, body, wait_until),
                    service_name, service)

    @staticmethod
    def _declared_timeout(service: Service | None, method: str) -> float:
        """Seconds the method's declaration gives a call; 0: no deadline, or none declared."""
        declared = service.contract.get(method) if service is not None else None
        return float(declared.get("timeout") or 0) if isinstance(declared, dict) else 0.0

    def _released(self, client: bytes) -> None:
        """One of the client's requests ended (answered, failed, cancelled or forgotten)."""
        left = self._per_client[client] - 1
        if left > 0:
            self._per_client[client] = left
        else:
            self._per_client.pop(client, None)

    def _route(self, req: Queued, service_name: str, service: Service | None = None) -> None:
        """Send `req` to an actor of its service, or queue it; `service`: the entry
        for `service_name`, if the caller has it."""
        if service is None:
            service = self._services.get(service_name)
        if service is None:
            service = self._services[service_name] = Service(service_name)
        if service.workers:
            self._dispatch(service, req)
        elif service.down:
            self._released(req.client)
            self._fail(req.client, service_name, req.rid,
                       env.unavailable(f"the {service_name} actor is down: {service.down}"))
        else:
            service.queue.append(req)

    def _dispatch(self, service: Service, req: Queued) -> None:
        while service.workers:
            workers = service.workers
            worker = workers[0] if len(workers) == 1 else min(
                workers, key=lambda w: len(w.inflight))
            if self._send(worker.identity, env.ACTOR, env.REQ, req.client, req.body):
                declared = service.contract.get(req.method) or {}
                deadline = req.deadline
                if not deadline:
                    timeout = self._declared_timeout(service, req.method)
                    deadline = time.time() + timeout if timeout else 0.0
                key = (req.client, req.rid)
                if key in worker.inflight:  # the client reused an id in flight
                    self._released(req.client)
                worker.inflight[key] = InFlight(req.method, deadline, req.body,
                                                bool(declared.get("stream")),
                                                bool(declared.get("once")))
                return
            # Its connection is gone (the process died): no need to wait for heartbeats.
            self._remove(worker, "its connection is gone", "disconnected")
        self._route(req, service.name)

    def _cancel(self, client: bytes, service_name: str, rid: int) -> None:
        if self._subs.pop((client, rid), None) is not None:
            self._subs_of[client] -= 1
            if self._subs_of[client] <= 0:
                del self._subs_of[client]
        service = self._services.get(service_name)
        if service is None:
            return
        kept = deque(q for q in service.queue if (q.client, q.rid) != (client, rid))
        if len(kept) != len(service.queue):
            self._released(client)
        service.queue = kept
        for worker in service.workers:
            if worker.inflight.pop((client, rid), None) is not None:
                self._released(client)
                self._send(worker.identity, env.ACTOR, env.CANCEL, client, env.pack(rid))

    def _fail(self, client: bytes, service: str, rid: int, error: PouchError,
              retry: bool = False) -> None:
        wire: dict[str, Any] = error.to_wire()
        if retry:
            # The request may or may not have run: an idempotent one is safe to resend.
            wire["retry"] = True
        body = env.pack({"id": rid, "ok": False, "error": wire})
        self._send(client, env.CLIENT, env.REP, service.encode("ascii", "replace"), body)

    # -- actors --------------------------------------------------------------

    def _from_actor(self, identity: bytes, command: bytes, rest: list[bytes]) -> None:
        worker = self._workers.get(identity)
        if command == env.READY and len(rest) == 2:
            self._register(identity, frames.name(rest[0], "the service"), rest[1])
            return
        if worker is None:
            # Not (or no longer) registered, e.g. after a broker restart: make it say READY again.
            if command != env.BYE:
                self._send(identity, env.ACTOR, env.BYE)
            return
        worker.expiry = time.monotonic() + self.window
        if command == env.REP and len(rest) == 2:
            client, body = rest
            rid, more = frames.reply_id(body)
            key = (client, rid)
            request = worker.inflight.get(key)
            if request is None:
                return  # an answer to a request cancelled or forgotten, or to none
            if not more:
                del worker.inflight[key]
                self._released(client)
            if self._send(client, env.CLIENT, env.REP, worker.service_frame, body):
                return
            if more:
                del worker.inflight[key]
                self._released(client)
                self._send(identity, env.ACTOR, env.CANCEL, client, env.pack(key[1]))
            elif request.once:
                self._send(identity, env.ACTOR, env.LOST, client, request.body)
        elif command == env.PUB and len(rest) == 2:
            self._publish(frames.unpack_map(rest[1], "an event"))
        elif command == env.BYE:
            self._remove(worker, "it said goodbye", "goodbye")

    def _register(self, identity: bytes, service_name: str, body: bytes) -> None:
        pid, token, methods = frames.hello(body)
        if token != self._token:
            log.warning("refused a READY for %s from pid %d: not this broker's token",
                        service_name, pid)
            return
        if service_name == "broker":
            raise Malformed("the broker's service is its own")
        service = self._services.setdefault(service_name, Service(service_name))
        service.contract = methods
        service.down = None
        expiry = time.monotonic() + self.window
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
            if req.wait_until and req.wait_until <= now:
                self._fail_late(req, service_name)
            else:
                self._route(req, service_name)
        self._publish_daemon("actor-ready", service_name, worker.pid)

    def _remove(self, worker: Worker, why: str, reason: str) -> None:
        """Forget an actor and fail what it was doing; `reason` goes into the actor-lost
        event: "heartbeats" (it may be alive but hung), "goodbye", "exited", "killed",
        "disconnected", "reconnected", "reregistered"."""
        self._workers.pop(worker.identity, None)
        service = self._services.get(worker.service)
        if service is not None and worker in service.workers:
            service.workers.remove(worker)
        log.warning("%s actor (pid %s) removed: %s; failing %d request(s) in flight",
                    worker.service, worker.pid, why, len(worker.inflight))
        culprit = self._culprit(worker, reason)
        for key, flight in worker.inflight.items():
            client, rid = key
            self._released(client)
            if key == culprit and self._suspect(
                    _fingerprint(worker.service, frames.request(flight.body))):
                log.error("%s.%s took the %s actor down %d times: refused from now on",
                          worker.service, flight.method, worker.service, POISON_KILLS)
                self._fail(client, worker.service, rid, env.invalid(
                    f"this request took the {worker.service} actor down {POISON_KILLS} "
                    "times: it is not tried again"))
                continue
            self._fail(client, worker.service, rid, env.unavailable(
                f"the {worker.service} actor stopped while handling '{flight.method}'"
                " (the outcome is unknown)"), retry=True)
        worker.inflight.clear()
        self._publish_daemon("actor-lost", worker.service, worker.pid, reason)

    @staticmethod
    def _culprit(worker: Worker, reason: str) -> tuple[bytes, int] | None:
        """The one request in flight that may have taken the actor down, if any.

        An actor serves its requests in order on one thread: one that hung it or
        made it exit is the oldest still in flight there (later ones waited behind
        it). Streams are left out: they stay in flight on threads of their own. A
        process found stopped (SIGSTOP, a debugger) went silent by no request's doing.
        """
        if reason not in DEATHS or (reason == "heartbeats" and procs.stopped(worker.pid)):
            return None
        # Dicts keep insertion order: the first is the first dispatched.
        return next((key for key, f in worker.inflight.items() if not f.stream), None)

    def _beat(self, now_mono: float) -> None:
        if self._poison_until < now_mono:
            self._poison_until = 0.0
        for worker in list(self._workers.values()):
            if worker.expiry < now_mono:
                self._remove(worker, "missed its heartbeats", "heartbeats")
            elif not self._send(worker.identity, env.ACTOR, env.HEARTBEAT):
                self._remove(worker, "its connection is gone", "disconnected")
        now = time.time()
        for service in list(self._services.values()):
            if not (service.workers or service.queue or service.contract or service.down):
                del self._services[service.name]  # a name only clients ever asked for
                continue
            if any(q.wait_until <= now for q in service.queue):
                late = [q for q in service.queue if q.wait_until <= now]
                service.queue = deque(q for q in service.queue if q.wait_until > now)
                for req in late:
                    self._fail_late(req, service.name)
            for worker in service.workers:
                # The client gave up at its deadline: forget the request and tell the actor.
                stale = [key for key, f in worker.inflight.items()
                         if f.deadline and f.deadline + 1.0 <= now and not f.stream]
                for client, rid in stale:
                    del worker.inflight[(client, rid)]
                    self._released(client)
                    self._send(worker.identity, env.ACTOR, env.CANCEL, client, env.pack(rid))

    def _fail_late(self, req: Queued, service_name: str) -> None:
        self._released(req.client)
        self._fail(req.client, service_name, req.rid, env.unavailable(
            f"no {service_name} actor is available (waited until the request's deadline)"))

    # -- events --------------------------------------------------------------

    def _publish(self, event: dict[str, Any]) -> None:
        for sub in list(self._subs.values()):
            if sub.wants(event):
                reply = env.pack({"id": sub.rid, "ok": True, "result": event, "more": True})
                if not self._send(sub.client, env.CLIENT, env.REP, b"events", reply):
                    self._cancel(sub.client, "", sub.rid)

    def _publish_daemon(self, action: str, service: str, pid: int, reason: str = "") -> None:
        if not self._subs:
            return
        attributes = {"name": service, "pid": str(pid)}
        if reason:
            attributes["reason"] = reason
        self._publish(dict(event("daemon", action, service, attributes)))

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

    def worker_gone(self, service: str, pid: int, killed: bool = False) -> bool:
        for worker in list(self._workers.values()):
            if worker.service == service and worker.pid == pid:
                if killed:
                    self._remove(worker, "its process was killed", "killed")
                else:
                    self._remove(worker, "its process exited", "exited")
                return True
        return False

    def mark_down(self, service: str, reason: str | None) -> None:
        entry = self._services.setdefault(service, Service(service))
        entry.down = reason
        if reason:
            while entry.queue:
                req = entry.queue.popleft()
                self._released(req.client)
                self._fail(req.client, service, req.rid,
                           env.unavailable(f"the {service} actor is down: {reason}"))

    # -- sending -------------------------------------------------------------

    # -- poison requests ------------------------------------------------------

    def _suspect(self, fingerprint: bytes) -> bool:
        """A request was in flight on an actor that died: whether it is now poison."""
        now = time.monotonic()
        count, since = self._kills.pop(fingerprint, (0, now))
        if now - since > POISON_WINDOW:
            count, since = 0, now
        self._kills[fingerprint] = (count + 1, since)
        while len(self._kills) > POISON_REMEMBERED:
            self._kills.popitem(last=False)
        if count + 1 < POISON_KILLS:
            return False
        self._poison_until = max(self._poison_until, since + POISON_WINDOW)
        return True

    def _poisonous(self, fingerprint: bytes) -> bool:
        count, since = self._kills.get(fingerprint, (0, 0.0))
        return count >= POISON_KILLS and time.monotonic() - since <= POISON_WINDOW

    # -- sending -------------------------------------------------------------

    def _send(self, identity: bytes, *message: bytes) -> bool:
        """Send to a peer named as the broker knows it: its socket's mark, then its id."""
        sock = self._private if identity[:1] == PRIVATE else self._sock
        assert sock is not None
        self._unchecked.add(sock)  # libzmq may take in its wake-up while sending
        try:
            wire.send(sock, [identity[1:], *message], wire.NOBLOCK)
            return True
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                raise
            return False


def check_public(service: str, method: str) -> None:
    """Refuse on the client endpoint what only pouchd's own processes may call."""
    if (service, method) in INTERNAL or method == "debug_fault" \
            or (service == "supervisor" and method not in SUPERVISOR_PUBLIC):
        raise env.invalid(f"{service}.{method} is not served on the client endpoint")


def _fingerprint(service: str, req: frames.Request) -> bytes:
    packed = env.pack([service, req.method, req.args])
    return hashlib.blake2b(packed, digest_size=16).digest()
