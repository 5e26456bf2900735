"""The container actor: the index of containers (names, IDs) and the door to each
container's own worker actor.

List and inspect are answered here, from copies each worker sends after every
change; everything that changes a container runs on its worker. At start the
actor restores every container from the meta store, reconciles it with
containerd (live restore), and cleans what containerd holds for us that the
meta store does not know; it sweeps again every SWEEP_EVERY s (what a start or a
create cut by a crash left behind: shims above all), and once more at a clean stop.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pykka

from pouch.actors.backoff import Backoff
from pouch.actors.container import record as rec
from pouch.actors.container.iohub import IOHub
from pouch.actors.container.meta import MetaStore
from pouch.actors.container.sweep import Sweeper
from pouch.actors.container.tombs import Graveyard
from pouch.actors.container.worker import OWNER_LABEL, ContainerWorker, WorkerEnv
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import rfc3339
from pouch.actors.host import ActorBase, ActorContext, Job, Reply
from pouch.proto.contract import method
from pouch.proto.docker import (
    check_filters,
    check_name,
    labels_match,
    pattern_matches,
    resolve_id,
)
from pouch.proto.envelope import PouchError, conflict, invalid, not_found
from pouch.proto.limits import MAX_SECONDS, Bounds
from pouch.proto.shapes import ContainerCounts, ContainerCreated, ContainerInspect, ContainerSummary
from pouch.proto.stream import StreamSession

log = logging.getLogger("pouch.container")
RESUBSCRIBE = Backoff(first=0.2, cap=2.0)  # containerd's event stream broke: subscribe again
# The first sweep after a restore waits for what a dead actor's calls still do in
# containerd (a task create runs on after its caller died); then one every so often.
SWEEP_FIRST = 5.0
SWEEP_EVERY = 30.0


# A terminal's rows or columns, as a tty's winsize holds them.
TERMINAL_SIZE = Bounds(0, 65535)
# How many lines of the log: all, or a count that fits 64 bits (negative: all, as dockerd).
LOG_TAIL = Bounds(pattern=r"all|-?[0-9]{1,18}")


@dataclass(frozen=True)
class TaskExit:
    cid: str
    pid: int
    status: int
    exited_at: str


@dataclass(frozen=True)
class Updated:
    record: dict[str, Any]


@dataclass(frozen=True)
class Removed:
    cid: str
    name: str
    tomb: dict[str, Any] | None


@dataclass(frozen=True)
class EventsResumed:
    """containerd's event stream broke and is back: exits may have been missed."""


@dataclass(frozen=True)
class Swept:
    """A sweep found tasks or shims of these containers: their workers judge them."""

    ids: frozenset[str]


class ContainerActor(ActorBase):
    service = "container"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self._ctrd = Containerd(cfg.containerd_socket, lease_owner=self.service)
        self._hub = IOHub(close_stdin=self._close_stdin)
        self._meta = MetaStore(cfg.home_dir / "containers")
        self._sweeper = Sweeper(self._ctrd, self._meta, OWNER_LABEL)
        self._records: dict[str, dict[str, Any]] = {}
        self._workers: dict[str, pykka.ActorRef[ContainerWorker]] = {}
        self._names: dict[str, str] = {}  # name (no slash) -> ID; reserved during create
        self._tokens: dict[str, str] = {}  # token of a create or start done -> container ID
        self._tombs = Graveyard({})
        self._events_stop = threading.Event()
        me = self.actor_ref
        self._env = WorkerEnv(
            ctrd=self._ctrd, hub=self._hub, meta=self._meta, calls=ctx.calls,
            fifo_root=cfg.exec_root_dir / "fifo", default_registry=cfg.default_registry,
            updated=lambda record: me.tell(Updated(record)),
            removed=lambda cid, name, tomb: me.tell(Removed(cid, name, tomb)),
            publish=lambda action, cid, attrs: self.publish("container", action, cid, attrs),
            faults=ctx.faults)

    # -- life ----------------------------------------------------------------

    def on_start(self) -> None:
        self._ctrd.wait_ready(30)
        self._ctrd.namespaces.ensure()
        for lease in self._ctrd.leases.drop_stale():
            log.warning("dropped lease %s of an interrupted create", lease)
        # Subscribe before restoring, so no exit falls between the two.
        ready = threading.Event()
        threading.Thread(target=self._watch_exits, args=(ready,), name="ctrd-events",
                         daemon=True).start()
        ready.wait(10)
        self._restore()
        threading.Thread(target=self._sweep_every, name="sweep", daemon=True).start()

    def on_stop(self) -> None:
        self._events_stop.set()
        for ref in list(self._workers.values()):
            ref.stop(block=False)
        try:  # a clean stop leaves no shim that serves no task
            self._sweeper.end_taskless_shims()
        except PouchError as exc:
            log.warning("could not sweep shims at stop: %s", exc.message)
        self._hub.stop()
        self._ctrd.close()

    def _restore(self) -> None:
        self.ctx.faults.hit("container.restore")
        self._tombs = Graveyard(self._meta.tombs())
        known = set()
        for record in self._meta.load_all():
            cid = record["Id"]
            known.add(cid)
            self._records[cid] = record
            self._names[record["Name"].lstrip("/")] = cid
            self._tokens.update(dict.fromkeys(rec.tokens(record), cid))
            ref = ContainerWorker.start(self._env, cid, record)
            self._workers[cid] = ref
            ref.proxy().restore()
        try:  # the workers' restores judge their own tasks and shims
            self._sweeper.sweep(known)
        except PouchError as exc:
            log.error("could not reconcile with containerd: %s", exc.message)

    def _sweep_every(self) -> None:
        """On a thread of its own (it reads /proc and waits on containerd)."""
        me = self.actor_ref
        wait = SWEEP_FIRST
        while not self._events_stop.wait(wait):
            wait = SWEEP_EVERY
            self._meta.tombs()  # drops the old ones
            try:
                owned = self._sweeper.sweep()
            except PouchError as exc:
                log.warning("sweeping containerd's leftovers: %s", exc.message)
                continue
            except Exception:
                log.exception("sweeping containerd's leftovers failed")
                continue
            if owned:
                me.tell(Swept(frozenset(owned)))

    def _close_stdin(self, cid: str) -> None:
        try:
            self._ctrd.tasks.close_stdin(cid)
        except PouchError as exc:
            log.warning("closing the stdin of %s: %s", cid, exc.message)

    def _watch_exits(self, ready: threading.Event) -> None:
        """Follow containerd's task exits; after an outage, have every worker check its task."""
        me = self.actor_ref
        lost, failures = False, 0
        while not self._events_stop.is_set():
            try:
                self._ctrd.version(timeout=2)  # containerd answers: a subscription will hold
                stream = self._ctrd.events.subscribe(['topic=="/tasks/exit"'])
                ready.set()
                if lost:
                    log.info("containerd events are back; checking every container's task")
                    me.tell(EventsResumed())
                lost, failures = False, 0
                for event in stream:
                    exit_ = event.payload
                    if exit_.container_id == exit_.id:  # the init process, not an exec
                        me.tell(TaskExit(exit_.container_id, exit_.pid, exit_.exit_status,
                                         rfc3339(exit_.exited_at)))
            except PouchError as exc:
                if not lost and not self._events_stop.is_set():
                    log.warning("containerd events lost (%s); subscribing again", exc.message)
                lost = True
            except Exception:
                log.exception("containerd events failed; subscribing again")
                lost = True
            failures += 1
            self._events_stop.wait(RESUBSCRIBE.delay(failures))

    def on_message(self, message: Any) -> Any:
        if isinstance(message, Updated):
            record = message.record
            self._tokens.update(dict.fromkeys(rec.tokens(record), record["Id"]))
            record.pop(rec.PRIVATE, None)
            if record["Id"] in self._workers:
                self._records[record["Id"]] = record
        elif isinstance(message, Removed):
            self._tokens = {t: c for t, c in self._tokens.items() if c != message.cid}
            if message.tomb is not None:
                self._tombs.add(message.cid, message.tomb)
            self._records.pop(message.cid, None)
            self._workers.pop(message.cid, None)
            for name, cid in list(self._names.items()):
                if cid == message.cid:
                    del self._names[name]
        elif isinstance(message, TaskExit):
            ref = self._workers.get(message.cid)
            if ref is not None:
                ref.proxy().task_exited(message.pid, message.status, message.exited_at)
        elif isinstance(message, EventsResumed):
            for ref in self._workers.values():
                ref.proxy().check_task()
        elif isinstance(message, Swept):
            for cid in message.ids:
                if (ref := self._workers.get(cid)) is not None:
                    ref.proxy().sweep()
        return None

    # -- lookups -------------------------------------------------------------

    def _resolve(self, ref: str) -> str:
        """A container ID from a full ID, a name (with or without its slash), or a unique
        ID prefix. Errors: not_found, invalid."""
        return resolve_id(ref.lstrip("/"), self._workers, self._names, "container")

    def _tomb_of(self, ref: str) -> dict[str, Any] | None:
        """The tomb of a container no longer here, by full ID or name (the latest)."""
        ref = ref.lstrip("/")
        if ref in self._workers or ref in self._names:
            return None
        return self._tombs.find(ref)

    def on_answer_lost(self, method: str, args: dict[str, Any]) -> None:
        # A create whose caller died never reached anyone who could start the container
        # (docker's `run` saw an error): it is removed, unless somebody started it since.
        cid = self._tokens.get(args.get("token") or "") if method == "create" else None
        if cid is not None and (ref := self._workers.get(cid)) is not None:
            with contextlib.suppress(pykka.ActorDeadError):  # its create failed
                ref.proxy().run(ContainerWorker.unclaimed)  # after the create if it still runs

    def _delegate(self, ref: str, handler: Callable[..., None], reply: Reply,
                  *args: Any) -> None:
        """Run an operation on the container's worker, which answers `reply`."""
        self._workers[self._resolve(ref)].tell(Job(handler, reply, args))

    # -- the contract --------------------------------------------------------

    @method(idempotent=False, once=True, returns=ContainerCreated,
            errors=("invalid", "conflict", "not_found"))
    def create(self, name: str, config: dict[str, Any], reply: Reply, token: str = "") -> None:
        """Create a container from a Docker create body (a random name if `name` is empty)."""
        done = self._tokens.get(token) if token else None
        if done is not None and done not in self._records and done in self._workers:
            # Sent again while the first attempt is still being made.
            self._workers[done].tell(Job(ContainerWorker.answer_create, reply, ()))
            return
        if done not in self._records:
            done = self._tombs.by_token(token)  # made, and removed since
        if done is not None:
            reply.send({"Id": done, "Warnings": []})  # a retry of a create that went through
            return
        warnings = rec.check_config(config)
        if name:
            name = check_name(name, "container")
            if name in self._names:
                raise conflict(f'Conflict. The container name "/{name}" is already in use by '
                               f'container "{self._names[name]}". You have to remove (or '
                               "rename) that container to be able to reuse that name.")
        else:
            name = rec.random_name()
            while name in self._names:
                name = rec.random_name()
        cid = rec.new_id()
        self._names[name] = cid
        if token:
            self._tokens[token] = cid
        ref = ContainerWorker.start(self._env, cid)
        self._workers[cid] = ref
        ref.tell(Job(ContainerWorker.create_container, reply,
                     (name, copy.deepcopy(config), warnings, token)))

    @method(idempotent=True, errors=("invalid",))
    def list(self, all: bool = False, limit: int = -1, size: bool = False,
             filters: dict[str, list[str]] | None = None) -> builtins.list[ContainerSummary]:
        """Container summaries, newest first, as GET /containers/json shows them."""
        filters = check_filters(filters, LIST_FILTERS)
        for status in filters.get("status", []):
            if status not in STATUSES:
                raise invalid(f"invalid filter 'status={status}'")
        every = all or limit > 0 or bool(filters.get("status"))
        rows = [r for r in self._records.values()
                if (every or r["State"]["Running"]) and _passes(r, filters)]
        rows.sort(key=lambda r: r["Created"], reverse=True)
        if limit > 0:
            rows = rows[:limit]
        return [rec.summary(r) for r in rows]

    @method(idempotent=True, errors=("not_found", "invalid"))
    def inspect(self, id: str, size: bool = False) -> ContainerInspect:
        """One container, as GET /containers/{id}/json shows it."""
        cid = self._resolve(id)
        record = self._records.get(cid)
        if record is None:
            raise not_found(f"No such container: {id}")
        return record  # type: ignore[return-value]

    @method(idempotent=True, timeout=2.0)
    def counts(self) -> ContainerCounts:
        """How many containers there are, by state."""
        states = [r["State"] for r in self._records.values()]
        return {"total": len(states),
                "running": sum(1 for s in states if s["Running"] and not s["Paused"]),
                "paused": sum(1 for s in states if s["Paused"]),
                "stopped": sum(1 for s in states if not s["Running"])}

    # Once per token, not idempotent: a start sent again after a lost answer would run a
    # short-lived container a second time; its token tells the worker it ran.
    @method(idempotent=False, once=True, name="start", returns=bool, timeout=60.0,
            errors=("not_found", "conflict", "invalid"))
    def start_(self, id: str, reply: Reply, token: str = "") -> None:
        """Start a container; False if it already ran."""
        if self._tombs.by_token(token):
            reply.send(True)  # a retry of a start that ran, and the container is gone since
            return
        self._delegate(id, ContainerWorker.start_container, reply, token)

    # No deadline of its own: the worker bounds the wait by the stop timeout, then SIGKILL.
    @method(idempotent=True, name="stop", returns=bool, timeout=None,
            errors=("not_found", "invalid"))
    def stop_(self, id: str, reply: Reply,
              timeout: Annotated[int | None, Bounds(high=MAX_SECONDS)] = None) -> None:
        """Stop a container: its stop signal, then SIGKILL after `timeout` s (None: the
        container's StopTimeout, else 10 s; negative: no SIGKILL, as dockerd); False if
        it was not running."""
        self._delegate(id, ContainerWorker.stop_container, reply, timeout)

    @method(idempotent=True, returns=None, errors=("not_found", "conflict", "invalid"))
    def resize(self, id: str, reply: Reply, height: Annotated[int, TERMINAL_SIZE] = 0,
               width: Annotated[int, TERMINAL_SIZE] = 0) -> None:
        """Resize a container's terminal (conflict: it is not running)."""
        self._delegate(id, ContainerWorker.resize_container, reply, height, width)

    @method(idempotent=False, returns=None, errors=("not_found", "conflict", "invalid"))
    def kill(self, id: str, reply: Reply, signal: str = "SIGKILL") -> None:
        """Send a signal to a container's process; for SIGKILL, answer once it has exited."""
        self._delegate(id, ContainerWorker.kill_container, reply, signal)

    @method(idempotent=False, once=True, returns=None, errors=("not_found", "conflict"))
    def remove(self, id: str, reply: Reply, force: bool = False, volumes: bool = False,
               token: str = "") -> None:
        """Remove a container (with force, kill it first)."""
        # Before the name is looked up: it may name a new container by now.
        if self._tombs.by_token(token):
            reply.send(None)  # a retry of a remove that went through
            return
        self._delegate(id, ContainerWorker.remove_container, reply, force, token)

    @method(idempotent=False, returns=None, errors=("not_found",), resumable=True)
    def attach(self, id: str, conn: StreamSession, reply: Reply,
               stream: bool = False, logs: bool = False, stdin: bool = False,
               stdout: bool = False, stderr: bool = False) -> None:
        """Stream a container's output (what was logged, if `logs`; what comes, if `stream`)
        to a handed-over connection, and its stdin from it. Defaults are Docker's: nothing."""
        self._delegate(id, ContainerWorker.attach_container, reply, conn, {
            "stream": stream, "logs": logs, "stdin": stdin,
            "stdout": stdout, "stderr": stderr})

    @method(idempotent=False, returns=None, errors=("not_found", "invalid"), resumable=True)
    def wait(self, id: str, conn: StreamSession, reply: Reply,
             condition: str = "not-running") -> None:
        """Write the exit status to a handed-over connection when the condition holds."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise invalid(f"invalid condition: {condition!r}")
        tomb = self._tomb_of(id) if conn.resumed_at else None
        if tomb is not None:
            # Taken up after this actor restarted, for a container removed meanwhile.
            reply.send(None)
            if conn.start():
                conn.write_json(rec.wait_answer(tomb["ExitCode"], tomb["Error"]))
                conn.end()
            return
        self._delegate(id, ContainerWorker.wait_container, reply, conn, condition)

    @method(idempotent=False, returns=None, errors=("not_found", "invalid"), resumable=True)
    def logs(self, id: str, conn: StreamSession, reply: Reply,
             follow: bool = False, stdout: bool = False, stderr: bool = False,
             timestamps: bool = False, tail: Annotated[str, LOG_TAIL] = "all",
             since: str = "", until: str = "") -> None:
        """Write a container's log to a handed-over connection (choose at least one stream)."""
        if not (stdout or stderr):
            raise invalid("Bad parameters: you must choose at least one stream")
        self._delegate(id, ContainerWorker.logs_container, reply, conn, {
            "follow": follow, "stdout": stdout, "stderr": stderr,
            "timestamps": timestamps, "tail": tail, "since": since, "until": until})


STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
LIST_FILTERS = ("id", "name", "label", "status", "ancestor", "exited")



def _passes(record: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    state = record["State"]
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "id" and not any(record["Id"].startswith(w) for w in wanted):
            return False
        # Docker matches the name filter as a regular expression against "/name".
        if key == "name" and not any(pattern_matches(w, record["Name"]) for w in wanted):
            return False
        if key == "status" and state["Status"] not in wanted:
            return False
        if key == "exited" and (state["Status"] != "exited"
                                or str(state["ExitCode"]) not in wanted):
            return False
        if key == "ancestor" and not any(w in (record["Config"].get("Image"), record["Image"])
                                         for w in wanted):
            return False
        if key == "label" and not labels_match(wanted, record["Config"].get("Labels") or {}):
            return False
    return True
