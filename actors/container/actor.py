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
import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pykka

from pouch.actors import pipekeeper, plugins
from pouch.actors.backoff import Backoff
from pouch.actors.container import lifecycle as lc
from pouch.actors.container import listing, sizes
from pouch.actors.container import networking as nets
from pouch.actors.container import record as rec
from pouch.actors.container.detach import parse_detach_keys
from pouch.actors.container.exec import GC_EVERY as EXEC_GC_EVERY
from pouch.actors.container.exec import forget_leftovers as forget_exec_leftovers
from pouch.actors.container.fsview import forget_views
from pouch.actors.container.iohub import IOHub
from pouch.actors.container.meta import MetaStore
from pouch.actors.container.replay import after_removal
from pouch.actors.container.sweep import Sweeper
from pouch.actors.container.tombs import Graveyard
from pouch.actors.container.worker import OWNER_LABEL, ContainerWorker, Notice, WorkerEnv
from pouch.actors.containerd import shims
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import rfc3339
from pouch.actors.host import ActorBase, ActorContext, Call, Job, Reply
from pouch.actors.timefmt import parse_rfc3339, parse_timestamp
from pouch.proto.contract import method
from pouch.proto.docker import (
    check_filters,
    check_name,
    labels_match,
    resolve_id,
)
from pouch.proto.envelope import PouchError, conflict, invalid, not_found
from pouch.proto.limits import MAX_SECONDS, Bounds
from pouch.proto.shapes import (
    ContainerChange,
    ContainerCounts,
    ContainerCreated,
    ContainerInspect,
    ContainerLayer,
    ContainersPruned,
    ContainerSummary,
    ContainerTop,
    ContainerUpdated,
    ExecCreated,
    ExecInspect,
    PathStat,
    RuntimeSpec,
)
from pouch.proto.stream import StreamSession

log = logging.getLogger("pouch.container")
RESUBSCRIBE = Backoff(first=0.2, cap=2.0)  # containerd's event stream broke: subscribe again
# The first sweep after a restore waits for what a dead actor's calls still do in
# containerd (a task create runs on after its caller died); then one every so often.
SWEEP_FIRST = 5.0
SWEEP_EVERY = 30.0
# How long a prune waits for one container's removal before it goes on without it.
PRUNE_EACH = 60.0
SIDE_THREADS = 16  # for the calls workers make alongside their own (WorkerEnv.side); made as needed


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
class TaskOOM:
    """The kernel's OOM killer killed a process of the container (its memory limit)."""

    cid: str


@dataclass(frozen=True)
class Updated:
    record: dict[str, Any]


@dataclass(frozen=True)
class Removed:
    cid: str
    name: str
    tomb: dict[str, Any] | None


@dataclass(frozen=True)
class ExecExit:
    cid: str
    exec_id: str
    status: int


@dataclass(frozen=True)
class ExecChanged:
    exec_id: str
    inspect: ExecInspect | None  # None: the exec is gone


@dataclass(frozen=True)
class ExecGarbage:
    """Time for the exec GC's pass (pouch.actors.container.exec.collect_garbage)."""


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
        self._hub = IOHub(close_stdin=self._close_stdin,
                          keeper=pipekeeper.PipeHolder(pipekeeper.socket_path(cfg.exec_root_dir)))
        self._meta = MetaStore(cfg.home_dir / "containers")
        self._sweeper = Sweeper(self._ctrd, self._meta, OWNER_LABEL)
        self._records: dict[str, dict[str, Any]] = {}
        self._workers: dict[str, pykka.ActorRef[ContainerWorker]] = {}
        self._names: dict[str, str] = {}  # name (no slash) -> ID; reserved during create
        self._tokens: dict[str, str] = {}  # token of a create or start done -> container ID
        self._tombs = Graveyard({})
        self._serving: Call | None = None  # the call being served (see _delegate)
        self._execs: dict[str, ExecInspect] = {}  # copies from the workers, by exec ID
        self._layer_sizes: sizes.LayerCache = {}  # image layers' sizes, read once
        self._events_stop = threading.Event()
        self._plugins = plugins.loaded()  # discovered here, not on a create's way
        me = self.actor_ref
        self._env = WorkerEnv(
            ctrd=self._ctrd, hub=self._hub, meta=self._meta, calls=ctx.calls,
            fifo_root=cfg.exec_root_dir / "fifo", default_registry=cfg.default_registry,
            updated=lambda record: me.tell(Updated(record)),
            removed=lambda cid, name, tomb: me.tell(Removed(cid, name, tomb)),
            publish=lambda action, cid, attrs: self.publish("container", action, cid, attrs),
            faults=ctx.faults,
            exec_changed=lambda exec_id, copy: me.tell(ExecChanged(exec_id, copy)),
            views=cfg.exec_root_dir / "views", peek=self._peek, image_files={},
            side=ThreadPoolExecutor(SIDE_THREADS, "worker-side"),
            task_root=None if cfg.containerd else (
                cfg.containerd_state_dir / shims.TASK_BUNDLES / self._ctrd.namespace))

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
        forget_exec_leftovers(self._env.fifo_root / "exec")
        forget_views(self._env.views)  # mounted by a copy or an export the last actor ran
        self._restore()
        threading.Thread(target=self._sweep_every, name="sweep", daemon=True).start()
        threading.Thread(target=self._collect_exec_garbage, name="exec-gc", daemon=True).start()

    def on_stop(self) -> None:
        self._events_stop.set()
        for ref in list(self._workers.values()):
            ref.stop(block=False)
        try:  # a clean stop leaves no shim that serves no task
            self._sweeper.end_taskless_shims()
        except PouchError as exc:
            log.warning("could not sweep shims at stop: %s", exc.message)
        self._hub.stop()
        self._env.side.shutdown(wait=False)
        self._ctrd.close()

    def _restore(self) -> None:
        self.ctx.faults.hit("container.restore")
        self._tombs = Graveyard(self._meta.tombs())
        known = set()
        records, interrupted = self._meta.load_all()
        if interrupted:  # off the restore's path: the network actor may be restarting too
            threading.Thread(target=self._release_networks, args=(interrupted,),
                             name="release-networks", daemon=True).start()
        for record in records:
            cid = record["Id"]
            known.add(cid)
            self._records[cid] = record
            self._names[record["Name"].lstrip("/")] = cid
            self._tokens.update(dict.fromkeys(rec.tokens(record), cid))
            ref = ContainerWorker.start(self._env, cid, record)
            self._workers[cid] = ref
            ref.tell(Notice(ContainerWorker.restore))
        try:  # the workers' restores judge their own tasks and shims
            self._sweeper.sweep(known)
        except PouchError as exc:
            log.error("could not reconcile with containerd: %s", exc.message)

    def _release_networks(self, cids: list[str]) -> None:
        """The endpoints of creates a dead actor cut: the network actor keeps an endpoint
        until its container's release, which that create never reached."""
        for cid in cids:
            nets.release(self.ctx.calls, cid, "")

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
            log.debug("swept containerd's leftovers: %d containers to judge", len(owned))
            if owned:
                me.tell(Swept(frozenset(owned)))

    def _collect_exec_garbage(self) -> None:
        """On a thread of its own: the exec GC's clock."""
        while not self._events_stop.wait(EXEC_GC_EVERY):
            self.actor_ref.tell(ExecGarbage())

    def _close_stdin(self, cid: str) -> None:
        """`cid` names a container, or an exec (the hub keys an exec's streams by its ID)."""
        exec_ = self._execs.get(cid)  # from the hub's helper thread: a read, no lock needed
        cid, exec_id = (exec_["ContainerID"], cid) if exec_ is not None else (cid, "")
        try:
            self._ctrd.tasks.close_stdin(cid, exec_id=exec_id)
        except PouchError as exc:
            log.warning("closing the stdin of %s: %s", exec_id or cid, exc.message)

    def _watch_exits(self, ready: threading.Event) -> None:
        """Follow containerd's task exits and OOM kills; after an outage, have every worker
        check its task."""
        me = self.actor_ref
        lost, failures = False, 0
        while not self._events_stop.is_set():
            try:
                self._ctrd.version(timeout=2)  # containerd answers: a subscription will hold
                stream = self._ctrd.events.subscribe(['topic=="/tasks/exit"',
                                                      'topic=="/tasks/oom"'])
                ready.set()
                if lost:
                    log.info("containerd events are back; checking every container's task")
                    me.tell(EventsResumed())
                lost, failures = False, 0
                for event in stream:
                    if event.topic == "/tasks/oom":
                        me.tell(TaskOOM(event.payload.container_id))
                        continue
                    exit_ = event.payload
                    if exit_.container_id == exit_.id:  # the init process, not an exec
                        me.tell(TaskExit(exit_.container_id, exit_.pid, exit_.exit_status,
                                         rfc3339(exit_.exited_at)))
                    else:
                        me.tell(ExecExit(exit_.container_id, exit_.id, exit_.exit_status))
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
                before = self._records.get(record["Id"])
                if before is not None and before["Name"] != record["Name"]:
                    self._renamed(record["Id"], before["Name"], record["Name"])
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
            self._notify(message.cid, ContainerWorker.task_exited, message.pid, message.status,
                         message.exited_at)
        elif isinstance(message, TaskOOM):
            self._notify(message.cid, ContainerWorker.task_oom)
        elif isinstance(message, ExecExit):
            self._notify(message.cid, ContainerWorker.exec_exited, message.exec_id,
                         message.status)
        elif isinstance(message, ExecChanged):
            if message.inspect is None:
                self._execs.pop(message.exec_id, None)
            else:
                self._execs[message.exec_id] = message.inspect
        elif isinstance(message, ExecGarbage):
            for cid in list(self._workers):
                self._notify(cid, ContainerWorker.exec_collect_garbage)
        elif isinstance(message, EventsResumed):
            for cid in list(self._workers):
                self._notify(cid, ContainerWorker.check_task)
        elif isinstance(message, Swept):
            for cid in message.ids:
                self._notify(cid, ContainerWorker.sweep)
        return None

    def _notify(self, cid: str, handler: Callable[..., None], *args: Any) -> None:
        """Have the container's worker run `handler` (none: it is gone, and so is what
        the notice was about)."""
        ref = self._workers.get(cid)
        if ref is not None:
            with contextlib.suppress(pykka.ActorDeadError):  # removed meanwhile
                ref.tell(Notice(handler, args))

    # -- lookups -------------------------------------------------------------

    def _peek(self, cid: str) -> dict[str, Any] | None:
        """From a worker's thread, without a message: the copy of container `cid` (a full
        ID; None for a name or prefix, which only this thread resolves). A copy is
        replaced whole and never changed in place, so the read needs no lock; it is the
        one an inspect sent now would answer, or newer (the inbox is served in order)."""
        return self._records.get(cid)

    def _resolve(self, ref: str) -> str:
        """A container ID from a full ID, a name (with or without its slash), or a unique
        ID prefix. Errors: not_found, invalid."""
        return resolve_id(ref.lstrip("/"), self._workers, self._names, "container")

    def _renamed(self, cid: str, old: str, new: str) -> None:
        """A worker recorded a rename: the old name is free (the new one was reserved)."""
        if self._names.get(old.lstrip("/")) == cid:
            del self._names[old.lstrip("/")]
        self._names[new.lstrip("/")] = cid

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
                ref.tell(Notice(ContainerWorker.unclaimed))  # after the create if it still runs

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Call):
            self._serving = message
        return super().on_receive(message)

    def _delegate(self, ref: str, handler: Callable[..., None], reply: Reply,
                  *args: Any) -> None:
        """Run an operation on the container's worker, which answers `reply`."""
        try:
            self._workers[self._resolve(ref)].tell(Job(handler, reply, args))
        except pykka.ActorDeadError:
            # The worker removed its container and stopped, and its notice is in this
            # inbox already (sent before the stop): the call is served again after it,
            # and finds the container gone (a stream taken up, its tomb).
            call = self._serving
            if call is None or call.reply is not reply or call.again:
                raise not_found(f"No such container: {ref}") from None
            self.actor_ref.tell(dataclasses.replace(call, again=True))

    # -- the contract --------------------------------------------------------

    @method(idempotent=False, once=True, returns=ContainerCreated,
            errors=("invalid", "conflict", "not_found"))
    def create(self, name: str, config: dict[str, Any], reply: Reply, token: str = "",
               platform: str = "") -> None:
        """Create a container from a Docker create body (a random name if `name` is empty);
        with a `platform` (os[/arch[/variant]]), from an image of that platform only."""
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
        # A pre_create plugin may rewrite the body first: the worker checks it after.
        warnings = [] if self._plugins.has("pre_create") else rec.check_config(config)
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
                     (name, copy.deepcopy(config), warnings, token, platform)))

    @method(idempotent=True, returns=builtins.list[ContainerSummary],
            errors=("invalid", "not_found"))
    def list(self, reply: Reply, all: bool = False, limit: int = -1, size: bool = False,
             filters: dict[str, builtins.list[str]] | None = None,
             created_ns: bool = False) -> None:
        """Container summaries, newest first, as GET /containers/json shows them; with
        `size`, each with SizeRw and SizeRootFs (docker ps -s); with `created_ns`, their
        Created in nanoseconds, not seconds (the CRI's precision)."""
        filters = listing.check(filters)
        if filters.get("ancestor"):
            images = self._images_named(filters["ancestor"])
            if not images:  # as dockerd: no image by those names, no container of them
                reply.send([])
                return
            filters = {**filters, "ancestor": images}
        every = all or limit > 0 or bool(filters.get("status"))
        # before/since name containers: those made earlier (later) than every one named.
        bounds = {key: [parse_rfc3339(self._record_of(ref)["Created"])
                        for ref in filters.get(key, [])] for key in ("before", "since")}
        rows = [r for r in self._records.values()
                if (every or r["State"]["Running"]) and listing.passes(r, filters)
                and builtins.all(parse_rfc3339(r["Created"]) < t for t in bounds["before"])
                and builtins.all(parse_rfc3339(r["Created"]) > t for t in bounds["since"])]
        rows.sort(key=lambda r: r["Created"], reverse=True)
        if limit > 0:
            rows = rows[:limit]
        summaries = [rec.summary(r, created_ns) for r in rows]
        if not size:
            reply.send(summaries)
            return
        # Sizes walk the containers' files and ask containerd: not on this thread.
        reply.run_in_thread(sizes.with_list_sizes, self._ctrd.snapshots, summaries,
                            self._layer_sizes)

    def _images_named(self, refs: builtins.list[str]) -> builtins.list[str]:
        """The IDs of the images `refs` name as `docker run` would take them (a tag, its
        short form, an ID or its prefix); a name of no image is left out, as dockerd
        does."""
        ids = []
        for ref in refs:
            with contextlib.suppress(PouchError):
                ids.append(self.ctx.calls.image.resolve(name=ref)["id"])
        return ids

    def _record_of(self, ref: str) -> dict[str, Any]:
        """Errors: not_found, invalid."""
        record = self._records.get(self._resolve(ref))
        if record is None:
            raise not_found(f"No such container: {ref}")
        return record

    @method(idempotent=True, returns=ContainerInspect, errors=("not_found", "invalid"))
    def inspect(self, id: str, reply: Reply, size: bool = False) -> None:
        """One container, as GET /containers/{id}/json shows it; with `size`, with
        SizeRw and SizeRootFs."""
        record = self._record_of(id)
        cid = record["Id"]
        # Its execs not yet ended, as dockerd lists them (from the copies the workers send).
        live = [e["ID"] for e in self._execs.values()
                if e["ContainerID"] == cid and e["ExitCode"] is None]
        document = {**record, "ExecIDs": live or None}
        if not size:
            reply.send(document)
            return
        reply.run_in_thread(sizes.with_inspect_sizes, self._ctrd.snapshots, document,
                            self._layer_sizes)

    @method(idempotent=True, timeout=2.0)
    def counts(self) -> ContainerCounts:
        """How many containers there are, by state."""
        # As dockerd's: by status alone (one about to be restarted counts as stopped).
        statuses = [r["State"]["Status"] for r in self._records.values()]
        running, paused = statuses.count("running"), statuses.count("paused")
        return {"total": len(statuses), "running": running, "paused": paused,
                "stopped": len(statuses) - running - paused}

    @method(idempotent=True, timeout=5.0)
    def known(self, ids: builtins.list[str]) -> builtins.list[str]:
        """Those of `ids` that are containers, made or being made, and not being removed
        (a restarted network actor releases the endpoints of the others)."""
        return [cid for cid in ids if cid in self._workers and (self._records.get(cid) or {})
                .get("State", {}).get("Status") != lc.Status.REMOVING.value]

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
              timeout: Annotated[int | None, Bounds(high=MAX_SECONDS)] = None,
              signal: str = "") -> None:
        """Stop a container: its stop signal (or `signal`, as Engine API 1.42's), then
        SIGKILL after `timeout` s (None: the container's StopTimeout, else 10 s;
        negative: no SIGKILL, as dockerd); False if it was not running."""
        self._delegate(id, ContainerWorker.stop_container, reply, timeout, signal)

    # No deadline of its own, as stop; not idempotent: sent again, it restarts again.
    @method(idempotent=False, returns=None, timeout=None,
            errors=("not_found", "conflict", "invalid"))
    def restart(self, id: str, reply: Reply,
                timeout: Annotated[int | None, Bounds(high=MAX_SECONDS)] = None) -> None:
        """Restart a container: stop it as `stop` does (`timeout` likewise) if it runs,
        then start it; its restart count begins again, as dockerd's."""
        self._delegate(id, ContainerWorker.restart_container, reply, timeout)

    @method(idempotent=True, returns=None, errors=("not_found", "conflict", "invalid"))
    def resize(self, id: str, reply: Reply, height: Annotated[int, TERMINAL_SIZE] = 0,
               width: Annotated[int, TERMINAL_SIZE] = 0) -> None:
        """Resize a container's terminal (conflict: it is not running)."""
        self._delegate(id, ContainerWorker.resize_container, reply, height, width)

    @method(idempotent=True, returns=None, errors=("not_found", "conflict", "invalid"))
    def reopen_log(self, id: str, reply: Reply) -> None:
        """Reopen a running container's CRI log file at its path (the CRI's
        ReopenContainerLog, after a rotator moved it); conflict: it does not run."""
        cid = self._record_of(id)["Id"]
        reply.run_in_thread(self._reopen_log, cid)

    def _reopen_log(self, cid: str) -> None:
        if not self._hub.reopen_cri_log(cid):
            raise conflict(f"container {cid} is not running")

    @method(idempotent=False, returns=None, errors=("not_found", "conflict", "invalid"))
    def kill(self, id: str, reply: Reply, signal: str = "SIGKILL") -> None:
        """Send a signal to a container's process; for SIGKILL, answer once it has exited."""
        self._delegate(id, ContainerWorker.kill_container, reply, signal)

    @method(idempotent=False, returns=None, errors=("not_found", "conflict", "invalid"))
    def pause(self, id: str, reply: Reply) -> None:
        """Freeze a running container's processes (conflict: it does not run, or is
        paused already)."""
        self._delegate(id, ContainerWorker.pause_container, reply)

    @method(idempotent=False, returns=None, errors=("not_found", "conflict", "invalid"))
    def unpause(self, id: str, reply: Reply) -> None:
        """Thaw a paused container (conflict: it is not paused)."""
        self._delegate(id, ContainerWorker.unpause_container, reply)

    @method(idempotent=False, once=True, returns=None, errors=("not_found", "conflict"))
    def remove(self, id: str, reply: Reply, force: bool = False, volumes: bool = False,
               token: str = "") -> None:
        """Remove a container (with force, kill it first)."""
        # Before the name is looked up: it may name a new container by now.
        if self._tombs.by_token(token):
            reply.send(None)  # a retry of a remove that went through
            return
        self._delegate(id, ContainerWorker.remove_container, reply, force, token, volumes)

    @method(idempotent=False, returns=ContainersPruned, timeout=None, errors=("invalid",))
    def prune(self, reply: Reply, filters: dict[str, builtins.list[str]] | None = None) -> None:
        """Remove every container that does not run (docker container prune); filters
        `until` (created before) and `label`, `label!` narrow it."""
        filters = check_filters(filters, ("until", "label", "label!"))
        if len(filters.get("until", [])) > 1:
            raise invalid("more than one until filter specified")
        try:
            until = [parse_timestamp(value) for value in filters.get("until", [])]
        except ValueError as exc:
            raise invalid(f"invalid filter 'until': {exc}") from None
        chosen = [(cid, self._workers[cid]) for cid, record in self._records.items()
                  if cid in self._workers and _prune_passes(record, until, filters)]
        reply.run_in_thread(self._prune, chosen)

    def _prune(self, chosen: builtins.list[tuple[str, pykka.ActorRef[ContainerWorker]]]
               ) -> ContainersPruned:
        """On a thread of its own: each worker judges and removes its container in turn."""
        deleted: builtins.list[str] = []
        reclaimed = 0
        for cid, ref in chosen:
            try:
                size = ref.proxy().prune().get(timeout=PRUNE_EACH)
            except pykka.ActorDeadError:
                continue  # removed meanwhile
            except Exception as exc:
                log.warning("prune kept %s: %s", cid, exc)
                continue
            if size is not None:
                deleted.append(cid)
                reclaimed += size
        self.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    @method(idempotent=False, returns=None, errors=("not_found", "conflict", "invalid"))
    def rename(self, id: str, name: str, reply: Reply) -> None:
        """Give a container another name (with or without its slash); conflict if a
        container has it already."""
        if not name:
            raise invalid("Neither old nor new names may be empty")
        cid = self._resolve(id)
        try:
            new = check_name(name, "container")
        except PouchError as exc:
            raise invalid(f"Error when allocating new name: {exc.message}") from None
        record = self._records.get(cid)
        if record is not None and record["Name"].lstrip("/") == new:
            raise invalid("Renaming a container with the same name as its current name")
        if new in self._names:
            raise conflict(f'Error when allocating new name: Conflict. The container name '
                           f'"/{new}" is already in use by container "{self._names[new]}". '
                           "You have to remove (or rename) that container to be able to "
                           "reuse that name.")
        self._names[new] = cid  # reserved now; the old name is freed once recorded
        self._workers[cid].tell(Job(ContainerWorker.rename_container, reply, (new,)))

    @method(idempotent=True, returns=ContainerUpdated,
            errors=("not_found", "conflict", "invalid"))
    def update(self, id: str, config: dict[str, Any], reply: Reply) -> None:
        """Change a container's restart policy and cgroup limits (docker update: Docker's
        UpdateConfig); limits reach the running task and the container's later starts."""
        self._delegate(id, ContainerWorker.update_container, reply, copy.deepcopy(config))

    @method(idempotent=False, returns=None, timeout=60.0,
            errors=("not_found", "invalid", "conflict", "forbidden"))
    def connect_network(self, id: str, network: str, reply: Reply,
                        aliases: builtins.list[str] | None = None, ip: str = "",
                        links: builtins.list[str] | None = None) -> None:
        """Connect a container to one more network (docker network connect), with
        `aliases`, a static `ip` and `links` ("name[:alias]", on a user network: aliases
        of other containers there that only this one knows); conflict if it is connected
        already."""
        self._delegate(id, ContainerWorker.connect_network, reply, network, aliases or [], ip,
                       links or [])

    @method(idempotent=False, returns=None, errors=("not_found", "invalid"))
    def disconnect_network(self, id: str, network: str, reply: Reply,
                           force: bool = False) -> None:
        """Disconnect a container from a network (docker network disconnect)."""
        self._delegate(id, ContainerWorker.disconnect_network, reply, network)

    @method(idempotent=False, returns=None, errors=("not_found", "invalid"), resumable=True)
    def attach(self, id: str, conn: StreamSession, reply: Reply,
               stream: bool = False, logs: bool = False, stdin: bool = False,
               stdout: bool = False, stderr: bool = False, detach_keys: str = "") -> None:
        """Stream a container's output (what was logged, if `logs`; what comes, if `stream`)
        to a handed-over connection, and its stdin from it. Defaults are Docker's: nothing.
        With a terminal, typing `detach_keys` (Docker's form, "" for ctrl-p,ctrl-q) ends
        the attach and leaves the container running."""
        opts = {"stream": stream, "logs": logs, "stdin": stdin, "stdout": stdout,
                "stderr": stderr, "detach_keys": parse_detach_keys(detach_keys)}
        if not self._taken_up_after_removal(id, conn, reply, "attach", opts):
            self._delegate(id, ContainerWorker.attach_container, reply, conn, opts)

    @method(idempotent=False, returns=None, errors=("not_found", "invalid"), resumable=True)
    def wait(self, id: str, conn: StreamSession, reply: Reply,
             condition: str = "not-running") -> None:
        """Write the exit status to a handed-over connection when the condition holds."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise invalid(f"invalid condition: {condition!r}")
        if not self._taken_up_after_removal(id, conn, reply, "wait", {}):
            self._delegate(id, ContainerWorker.wait_container, reply, conn, condition)

    @method(idempotent=False, returns=None, errors=("not_found", "invalid"), resumable=True)
    def logs(self, id: str, conn: StreamSession, reply: Reply,
             follow: bool = False, stdout: bool = False, stderr: bool = False,
             timestamps: bool = False, tail: Annotated[str, LOG_TAIL] = "all",
             since: str = "", until: str = "") -> None:
        """Write a container's log to a handed-over connection (choose at least one stream)."""
        if not (stdout or stderr):
            raise invalid("Bad parameters: you must choose at least one stream")
        opts = {"follow": follow, "stdout": stdout, "stderr": stderr,
                "timestamps": timestamps, "tail": tail, "since": since, "until": until}
        if not self._taken_up_after_removal(id, conn, reply, "logs", opts):
            self._delegate(id, ContainerWorker.logs_container, reply, conn, opts)

    def _taken_up_after_removal(self, ref: str, conn: StreamSession, reply: Reply,
                                method: str, opts: dict[str, Any]) -> bool:
        """A stream handed over again after this actor restarted, for a container removed
        meanwhile: answered from its tomb (see replay.after_removal)."""
        tomb = self._tomb_of(ref) if conn.began_at else None
        if tomb is not None:
            after_removal(tomb, conn, reply, method, opts)
        return tomb is not None

    # -- observation and files (pouch.actors.container.observe, .archive, .changes) --

    @method(idempotent=True, returns=ContainerTop, errors=("not_found", "conflict", "invalid"))
    def top(self, id: str, reply: Reply, ps_args: str = "") -> None:
        """The container's processes as the host's `ps` lists them with `ps_args` ("":
        -ef), docker top (conflict: it does not run; invalid: ps refused the arguments)."""
        self._delegate(id, ContainerWorker.top_container, reply, ps_args)

    @method(idempotent=False, returns=None, errors=("not_found", "conflict"), resumable=True)
    def stats(self, id: str, conn: StreamSession, reply: Reply, stream: bool = True,
              one_shot: bool = False) -> None:
        """Docker's stats JSON of a container on a handed-over connection: one a second
        while `stream`, else one, read a second after a first so that its precpu_stats
        are filled (at once with `one_shot`). A container that does not run reads zeros."""
        self._delegate(id, ContainerWorker.stats_container, reply, conn, stream, one_shot)

    @method(idempotent=True, returns=builtins.list[ContainerChange] | None, timeout=120.0,
            errors=("not_found",))
    def changes(self, id: str, reply: Reply) -> None:
        """What the container changed in its files against its image, docker diff (null:
        nothing)."""
        self._delegate(id, ContainerWorker.changes_container, reply)

    @method(idempotent=True, returns=RuntimeSpec, errors=("not_found",))
    def runtime_spec(self, id: str, reply: Reply) -> None:
        """The OCI runtime spec containerd holds for the container, which its next task
        runs (what crictl inspect shows)."""
        self._delegate(id, ContainerWorker.runtime_spec_container, reply)

    @method(idempotent=True, returns=ContainerLayer, timeout=600.0,
            errors=("not_found", "invalid"))
    def commit_layer(self, id: str, lease: str, reply: Reply, pause: bool = True) -> None:
        """Store the container's changes against its image as a layer blob, under the
        caller's containerd `lease` (docker commit, a build step); frozen meanwhile if
        `pause` and it runs."""
        self._delegate(id, ContainerWorker.commit_layer_container, reply, pause, lease)

    @method(idempotent=True, returns=PathStat, errors=("not_found", "conflict", "invalid"))
    def archive_stat(self, id: str, path: str, reply: Reply) -> None:
        """A path in the container, symlinks resolved inside it (HEAD .../archive)."""
        self._delegate(id, ContainerWorker.archive_stat_container, reply, path, id)

    @method(idempotent=True, returns=PathStat, timeout=600.0,
            errors=("not_found", "conflict", "invalid"))
    def archive_get(self, id: str, path: str, spool: str, reply: Reply) -> None:
        """Write the tar of a path in the container (docker cp out of it) to `spool`, a
        file its caller made in the daemon's tmp folder; the path's stat."""
        self._delegate(id, ContainerWorker.archive_get_container, reply, path,
                       self._spool(spool), id)

    @method(idempotent=True, returns=None, timeout=600.0,
            errors=("not_found", "conflict", "invalid"))
    def archive_put(self, id: str, path: str, spool: str, reply: Reply,
                    no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
        """Unpack the tar in `spool` (a file in the daemon's tmp folder) into the folder
        `path` of the container (docker cp into it), running or not. The tar's owners
        are kept unless `copy_uid_gid` (the container's user's then)."""
        self._delegate(id, ContainerWorker.archive_put_container, reply, path,
                       self._spool(spool), id, no_overwrite_dir_non_dir, copy_uid_gid)

    @method(idempotent=False, returns=None, errors=("not_found", "conflict"))
    def export(self, id: str, conn: StreamSession, reply: Reply) -> None:
        """The container's whole file system (its image's and its own layers) as a tar
        stream on a handed-over connection, docker export."""
        self._delegate(id, ContainerWorker.export_container, reply, conn)

    def _spool(self, path: str) -> str:
        """A spool file of this daemon's (never a file elsewhere). Errors: invalid."""
        spool = Path(path)
        if spool.parent != self.ctx.config.home_dir / "tmp" or spool.is_symlink() \
                or not spool.is_file():
            raise invalid(f"not a spool file of this daemon: {path}")
        return path

    # -- exec (pouch.actors.container.exec): run by the container's worker ------

    def _exec_worker(self, exec_id: str) -> pykka.ActorRef[ContainerWorker]:
        """The worker of the exec's container. Errors: not_found."""
        exec_ = self._execs.get(exec_id)
        ref = self._workers.get(exec_["ContainerID"]) if exec_ is not None else None
        if ref is None:
            raise not_found(f"No such exec instance: {exec_id}")
        return ref

    # Once per token: the exec's ID is the token's, so a create sent again finds its exec
    # made (or makes it, should the first have died with its actor), never a second one.
    @method(idempotent=False, once=True, returns=ExecCreated,
            errors=("not_found", "conflict", "invalid"))
    def exec_create(self, id: str, config: dict[str, Any], reply: Reply,
                    token: str = "") -> None:
        """Create an exec in a running container from a Docker exec body (Cmd, Env, User,
        WorkingDir, Tty, Privileged, AttachStdin/out/err, DetachKeys); start it next."""
        exec_id = hashlib.sha256(token.encode()).hexdigest() if token else rec.new_id()
        self._delegate(id, ContainerWorker.exec_create, reply, exec_id, config)

    @method(idempotent=False, returns=None, errors=("not_found", "conflict"))
    def exec_start(self, id: str, conn: StreamSession, reply: Reply, tty: bool = False) -> None:
        """Start an exec, its input and output on a handed-over connection (multiplexed
        unless `tty`); the stream ends once the process has exited and its code is known."""
        try:
            ref = self._exec_worker(id)
        except PouchError as exc:
            reply.fail(exc)  # first: closing the session tells the gateway it is over
            conn.close()
            return
        ref.tell(Job(ContainerWorker.exec_start, reply, (conn, id, tty)))

    @method(idempotent=False, returns=None, errors=("not_found", "conflict", "invalid"))
    def exec_start_detached(self, id: str, reply: Reply) -> None:
        """Start an exec that no client attaches to (its output is dropped); answered
        once its process runs."""
        self._exec_worker(id).tell(Job(ContainerWorker.exec_start, reply, (None, id, False)))

    @method(idempotent=True, returns=None, errors=("not_found", "conflict", "invalid"))
    def exec_resize(self, id: str, reply: Reply, height: Annotated[int, TERMINAL_SIZE] = 0,
                    width: Annotated[int, TERMINAL_SIZE] = 0) -> None:
        """Resize a running exec's terminal (nothing to do without one)."""
        self._exec_worker(id).tell(Job(ContainerWorker.exec_resize, reply, (id, height, width)))

    @method(idempotent=True, errors=("not_found",))
    def exec_inspect(self, id: str) -> ExecInspect:
        """One exec, as GET /exec/{id}/json shows it (ExitCode null until it has exited)."""
        exec_ = self._execs.get(id)
        if exec_ is None:
            raise not_found(f"No such exec instance: {id}")
        return exec_


def _prune_passes(record: dict[str, Any], until: list[float],
                  filters: dict[str, list[str]]) -> bool:
    """Whether prune's filters pick a container, as dockerd's do: created no later than
    `until`, every `label` matching, and not every `label!` matching. (Whether it runs
    its worker judges, at the time it is removed.)"""
    labels = record["Config"].get("Labels") or {}
    if until and parse_rfc3339(record["Created"]) > min(until):
        return False
    if not labels_match(filters.get("label", []), labels):
        return False
    return not (filters.get("label!") and labels_match(filters["label!"], labels))
