"""One pykka actor per container: every operation on a container runs here, in
order, while other containers proceed in parallel.

The worker owns the container's record: it changes it, saves it (atomically)
and then tells the container actor, which answers list and inspect from its
copies. Operations that finish later (stop waits for the exit, wait for the
exit or the removal) keep their reply and answer when the task exit arrives.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import signal as signals
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import pykka

from pouch.actors.container import lifecycle as lc
from pouch.actors.container import record as rec
from pouch.actors.container.iohub import Consumer, IOHub
from pouch.actors.container.jsonlog import Selection, read_entries
from pouch.actors.container.meta import MetaStore
from pouch.actors.container.spec.merge import effective_process
from pouch.actors.container.spec.oci import (
    SpecInput,
    build_spec,
    grantable_capabilities,
    nofile_ceiling,
)
from pouch.actors.container.spec.user import resolve_user
from pouch.actors.containerd import shims
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.rootfs import read_rootfs_file
from pouch.actors.faults import Faults
from pouch.actors.host import ObjectActor, Reply
from pouch.actors.timefmt import ZERO_TIME, parse_timestamp, rfc3339_nano
from pouch.proto.envelope import PouchError, conflict, invalid, not_found
from pouch.proto.stream import StreamSession
from pouch.proto.stubs import Calls

log = logging.getLogger("pouch.container")
T = TypeVar("T")

OWNER_LABEL = "io.pouch.container"
CGROUP_PARENT = "/pouch"
DRAIN_TIMEOUT = 5.0
TASK_CREATE_WAIT = 10.0


@dataclass(frozen=True)
class Waiter:
    """A handed-over connection waiting for the container to exit (or go)."""

    session: StreamSession
    condition: str


@dataclass(frozen=True)
class WorkerEnv:
    """What every worker shares: clients, the hub, the store, and its container actor."""

    ctrd: Containerd
    hub: IOHub
    meta: MetaStore
    calls: Calls
    fifo_root: Path
    default_registry: str
    updated: Callable[[dict[str, Any]], None]
    removed: Callable[[str, str, dict[str, Any] | None], None]
    publish: Callable[[str, str, dict[str, str]], None]
    faults: Faults


def unless_gone(step: Callable[[], T]) -> T | None:
    """What `step` returns, or None when what it acts on is gone already (not_found)."""
    try:
        return step()
    except PouchError as exc:
        if exc.code != "not_found":
            raise
        return None


class ContainerWorker(ObjectActor):
    def __init__(self, env: WorkerEnv, cid: str, record: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.env = env
        self.cid = cid
        self.record: dict[str, Any] = record or {}
        self._gone = False
        self._drained: threading.Event | None = None
        self._held: list[tuple[Reply, Any]] = []  # answered when the task exits
        self._remover: Reply | None = None  # answered when the container is gone
        self._wait_conns: list[Waiter] = []
        self._restart_timer: threading.Timer | None = None
        self._created: dict[str, Any] | Exception = PouchError("internal", "no create ran here")

    # -- helpers -------------------------------------------------------------

    @property
    def _state(self) -> dict[str, Any]:
        return self.record["State"]

    @property
    def _name(self) -> str:
        return str(self.record.get("Name", "")).lstrip("/")

    def _save(self) -> None:
        self.env.meta.save(self.record)
        self.env.updated(copy.deepcopy(self.record))

    def _event(self, action: str, **extra: str) -> None:
        attributes = {"name": self._name, "image": self.record["Config"].get("Image", ""),
                      **(self.record["Config"].get("Labels") or {}), **extra}
        self.env.publish(action, self.cid, attributes)

    def _check_alive(self) -> None:
        if self._gone:
            raise not_found(f"No such container: {self.cid}")

    # -- create --------------------------------------------------------------

    def create_container(self, reply: Reply, name: str, body: dict[str, Any],
                         warnings: list[str], token: str) -> None:
        reply.run(self._create_kept, reply, name, body, warnings, token)

    def _create_kept(self, *args: Any) -> dict[str, Any]:
        try:
            self._created = self._create(*args)
        except Exception as exc:
            self._created = exc
            raise
        return self._created

    def answer_create(self, reply: Reply) -> None:
        """A retry of the create that made this worker, sent while that create ran (its
        caller lost the answer to a broker restart): the same answer, now that it is done
        (a worker's jobs run in order)."""
        reply.run(self._created_answer)

    def _created_answer(self) -> dict[str, Any]:
        if isinstance(self._created, Exception):
            raise self._created
        return self._created

    def _create(self, reply: Reply, name: str, body: dict[str, Any],
                warnings: list[str], token: str) -> dict[str, Any]:
        env, cid = self.env, self.cid
        try:
            image = env.calls.image.resolve(name=body["Image"])
        except PouchError as exc:
            self._abandon()
            if exc.code == "not_found":
                raise not_found(f"No such image: {body['Image']}") from None
            raise
        mode = rec.network_mode(body)
        hostname = body.get("Hostname") or cid[:12]
        body = {**body, "Hostname": hostname}
        try:
            process = effective_process(image["config"], body)
            env.meta.create(cid, hostname, mode)
            paths = env.meta.paths(cid)
            labels = {OWNER_LABEL: name}
            with env.ctrd.leases.hold() as lease:
                mounts = env.ctrd.snapshots.prepare(cid, image["chain_id"], labels=labels,
                                                    lease=lease)
                env.faults.hit("container.create.prepared")
                rootfs = [dict(m) for m in mounts]
                user = resolve_user(process.user, read_rootfs_file(rootfs, "etc/passwd"),
                                    read_rootfs_file(rootfs, "etc/group"))
                spec = build_spec(SpecInput(
                    container_id=cid, process=process, user=user, hostname=hostname,
                    network_mode=mode, netns_path=None, hosts_path=paths["hosts"],
                    resolv_conf_path=paths["resolv.conf"], hostname_path=paths["hostname"],
                    cgroup_parent=CGROUP_PARENT, host_config=body.get("HostConfig") or {},
                    labels=dict(body.get("Labels") or {}),
                    grantable_caps=grantable_capabilities(), nofile_ceiling=nofile_ceiling()))
                env.ctrd.containers.create(cid, image["name"], spec, snapshot_key=cid,
                                           labels=labels)
                env.faults.hit("container.create.container_made")
                if reply.cancelled:  # the caller gave up: it was told the create failed
                    raise PouchError("timeout", f"the create of {name} was given up on")
        except BaseException:
            self._undo_create()
            raise
        self.record = rec.new_record(cid, name, body, image, process.args, paths)
        rec.remember_token(self.record, token)
        self._save()
        self.env.faults.hit("container.create.recorded")
        self._event("create")
        return {"Id": cid, "Warnings": warnings}

    def _undo_create(self) -> None:
        for undo in (lambda: self.env.ctrd.containers.delete(self.cid),
                     lambda: self.env.ctrd.snapshots.remove(self.cid)):
            try:
                unless_gone(undo)
            except PouchError as exc:
                log.warning("cleaning up a failed create of %s: %s", self.cid, exc.message)
        self.env.meta.remove(self.cid)
        self._abandon()

    def _abandon(self) -> None:
        self._gone = True
        self.env.removed(self.cid, "", None)
        self.actor_ref.stop(block=False)

    # -- restore (the actor restarted; the container may have run on) --------

    def restore(self) -> None:
        """Reconcile the record with containerd after the actor (or pouchd) restarted."""
        ctrd = self.env.ctrd
        try:
            container = ctrd.containers.get(self.cid)
            task = ctrd.tasks.get(self.cid) if container is not None else None
        except PouchError as exc:
            log.error("restoring %s: %s", self.cid, exc.message)
            self.env.updated(copy.deepcopy(self.record))
            return
        if container is None and not self._life.removal_pending:
            if self._state["Status"] != "dead":
                rec.set_dead(self.record, "its containerd container is gone")
                log.warning("container %s is gone from containerd: marked dead", self.cid)
            self._save()
            return
        if task is not None and task.status == "CREATED":
            # A start interrupted between creating the task and starting it: the process
            # never ran. Drop the task; the start failed, as on_restore decides below.
            self._drop_unstarted_task()
            task = None
        # A start cut by the last actor's death ran if a task (or its exit) is left: a
        # retry of it (the same token) must not run the container again.
        rec.settle_start(self.record, went_through=task is not None or self._state["Running"])
        if task is not None and task.status in ("RUNNING", "PAUSED", "PAUSING"):
            self._open_io(restore=True)
            if not self._state["Running"]:
                rec.set_running(self.record, task.pid, rfc3339_nano())
            self._state["Pid"] = task.pid
            self._restore_as(lc.on_restore_live(self._life), save=True)
            return
        if task is not None:  # stopped while nobody watched
            self._open_io(restore=True)
            self._handle_exit(task.exit_status, "")
            return
        noted = rec.noted_exit(self.record)
        if noted is not None and self._state["Running"]:
            # The last actor deleted the task, then died before it recorded the exit.
            self._record_exit(*noted)
            return
        if self._state["Running"]:
            self._record_exit(255, "", "the task vanished while pouch was not running")
            return
        self._restore_as(lc.on_restore(self._life, self._restart_policy), save=True)

    def _restore_as(self, transition: lc.Transition, save: bool = False) -> None:
        """Record what restore found (saved if it changed), then carry out what the
        lifecycle makes of it."""
        if save or transition.state != self._life:
            self._commit(transition.state)
        else:
            self.env.updated(copy.deepcopy(self.record))
        try:
            self._carry_out_all(transition)
        except PouchError as exc:
            log.warning("restoring %s: %s", self.cid, exc.message)

    def _drop_unstarted_task(self) -> None:
        """Kill and delete a task that was created and never started: containerd then
        shuts its shim down."""
        with contextlib.suppress(PouchError):
            self.env.ctrd.tasks.kill(self.cid, signals.SIGKILL)
        with contextlib.suppress(PouchError):
            self.env.ctrd.tasks.delete(self.cid)
        log.warning("container %s: dropped a task that was never started", self.cid)

    def sweep(self) -> None:
        """The actor's sweep found a task or a shim of this container. Told to this
        worker, it runs between operations, so no start of its own is half-way: a task
        created and never started, or a shim with no task, belongs to a start that was
        cut (by the actor's death, or a deadline) and is ended."""
        if self._gone:
            return
        try:
            task = self.env.ctrd.tasks.get(self.cid)
        except PouchError as exc:
            log.warning("sweeping %s: %s", self.cid, exc.message)
            return
        if task is not None and task.status == "CREATED" and not self._state["Running"]:
            self._drop_unstarted_task()
            task = None
        if task is None:
            self._end_shims()

    def _end_shims(self) -> None:
        """The last resort for shims of this container that containerd lost track of."""
        address, namespace = self.env.ctrd.address, self.env.ctrd.namespace
        for shim in shims.find(address, namespace, (self.cid,)):
            if shims.end(shim, address, namespace):
                log.warning("ended shim %d of container %s: it served no task", shim.pid,
                            self.cid)

    def _open_io(self, restore: bool = False) -> dict[str, str]:
        config = self.record["Config"]
        paths, self._drained = self.env.hub.open(
            self.cid, self.env.fifo_root / self.cid, Path(self.record["LogPath"]),
            tty=bool(config.get("Tty")), stdin=bool(config.get("OpenStdin")),
            stdin_once=bool(config.get("StdinOnce")), restore=restore)
        return paths

    # -- the lifecycle: lifecycle.py decides, the worker carries it out -------

    @property
    def _life(self) -> lc.State:
        return rec.lifecycle(self.record)

    @property
    def _restart_policy(self) -> lc.RestartPolicy:
        return lc.RestartPolicy.of(self.record["HostConfig"])

    def _stop_policy(self) -> lc.StopPolicy:
        return lc.StopPolicy.of(self.record["Config"])

    def _commit(self, life: lc.State) -> None:
        rec.set_lifecycle(self.record, life)
        self._save()

    def _decide(self, decide: Callable[[lc.State], lc.Transition]) -> lc.Transition:
        self._check_alive()
        return decide(self._life)

    def _serve(self, reply: Reply, decide: Callable[[lc.State], lc.Transition],
               removal: bool = False) -> None:
        """Answer a request as the lifecycle decides: at once, or when the exit it waits
        for is recorded; a removal, when the container is gone. Every path answers."""
        ok, transition = reply.attempt(self._decide, decide)
        if not ok:
            return
        if removal:
            self._remover = reply
        elif transition.held:
            self._held.append((reply, transition.result))
        applied, _ = reply.attempt(self._apply, transition, reply)
        if applied and not transition.held:
            reply.send(transition.result)

    def _apply(self, transition: lc.Transition, reply: Reply | None = None) -> None:
        """The transition's state becomes the record's, then its effects follow; if one
        fails (containerd refuses a signal), the state is put back as it was."""
        before = self._life
        if transition.state == before:
            self._carry_out_all(transition, reply)
            return
        self._commit(transition.state)
        try:
            self._carry_out_all(transition, reply)
        except BaseException:
            self._commit(before)
            raise

    def _carry_out_all(self, transition: lc.Transition, reply: Reply | None = None) -> None:
        for effect in transition.effects:
            self._carry_out(effect, reply, transition.result)

    def _carry_out(self, effect: lc.Effect, reply: Reply | None, result: Any) -> None:
        match effect:
            case lc.Signal(signum, every):
                # Gone already: its exit is on the way, and answers what waits for it.
                unless_gone(lambda: self.env.ctrd.tasks.kill(self.cid, signum, all=every))
                self._event("kill", signal=str(signum))
            case lc.KillAfter(seconds):
                self._later(seconds, self._escalate_later, self._state["Pid"])
            case lc.AnswerBy(seconds):
                if reply is not None:
                    self._later(seconds, self._answer_late, reply, result)
            case lc.RestartAfter(seconds):
                self._restart_timer = self._later(seconds, self._tell_self,
                                                  ContainerWorker.restart_by_policy)
            case lc.CancelRestart():
                self._cancel_restart()
            case lc.RemoveUnlessStarted(seconds):
                self._later(seconds, self._tell_self, ContainerWorker.unclaimed)
            case lc.AnswerWaiters():
                held, self._held = self._held, []
                for waiting, answer in held:
                    waiting.send(answer)
                self._answer_waits(("not-running", "next-exit"))
            case lc.Destroy():
                remover, self._remover = self._remover, None
                if remover is not None:
                    remover.run(self._destroy)
                    return
                try:
                    self._destroy()
                except Exception:
                    log.exception("removing %s after its exit", self.cid)

    @staticmethod
    def _later(seconds: float, action: Callable[..., None], *args: Any) -> threading.Timer:
        timer = threading.Timer(seconds, action, args=args)
        timer.daemon = True
        timer.start()
        return timer

    def _answer_late(self, reply: Reply, result: Any) -> None:
        """On a timer's thread (a Reply is thread-safe): the exit did not come in time."""
        if not reply.done:
            log.warning("%s of %s: answered before the exit was recorded", reply.what, self.cid)
            reply.send(result)

    # -- start / stop / kill -------------------------------------------------

    def start_container(self, reply: Reply, token: str) -> None:
        reply.run(self._start, False, token)

    def _start(self, by_policy: bool = False, token: str = "") -> bool:
        if token and token in rec.tokens(self.record):
            return True  # a retry of a start that ran (it may be removed since): True then
        self._check_alive()
        life = self._life
        if not lc.on_start(life):
            return False
        ctrd = self.env.ctrd
        self._cancel_restart()
        try:
            unless_gone(lambda: ctrd.tasks.delete(self.cid))  # a stopped task of an earlier run
            rec.begin_start(self.record, token)
            self._commit(lc.on_starting(life))
            fifos = self._open_io()
            mounts = ctrd.snapshots.mounts(self.cid)
            pid = self._create_task(mounts, fifos)
            self.env.hub.writers_ready(self.cid)
            self.env.faults.hit("container.start.task_created")
            started_at = rfc3339_nano()  # before: a quick process may end before start returns
            self._start_task()
            self.env.faults.hit("container.start.task_started")
        except PouchError as exc:
            self._start_failed(life, exc.message, by_policy)
            raise self._explain_start_error(exc) from None
        except Exception as exc:
            self._start_failed(life, f"{type(exc).__name__}: {exc}", by_policy)
            raise
        rec.set_running(self.record, pid, started_at)
        rec.settle_start(self.record, went_through=True)
        self._commit(lc.on_started(self._life, time.time(), by_policy))
        self._event("start")
        return True

    def _create_task(self, mounts: list[Any], fifos: dict[str, str]) -> int:
        """The task's pid. A start cut by the last actor's death may still be creating its
        task inside containerd (its shim's folder exists), and so may a create on the way
        when containerd died: that task is waited for and dropped, and this one created,
        within TASK_CREATE_WAIT."""
        ctrd, deadline = self.env.ctrd, time.monotonic() + TASK_CREATE_WAIT
        while True:
            try:
                return ctrd.tasks.create(self.cid, mounts, fifos["stdin"], fifos["stdout"],
                                         fifos["stderr"],
                                         terminal=bool(self.record["Config"].get("Tty")))
            except PouchError as exc:
                # "getwd": the bundle folder of the task just dropped went away under the
                # new shim (the same container, the same folder).
                if not ("exists" in exc.message or "getwd" in exc.message
                        or exc.code == "unavailable") or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
            task = ctrd.tasks.get(self.cid)
            if task is not None and task.status == "CREATED":
                self._drop_unstarted_task()

    def _start_task(self) -> None:
        """Start the created task. When containerd died on the way (it comes back with
        its tasks), the task says whether the start was done."""
        ctrd = self.env.ctrd
        try:
            ctrd.tasks.start(self.cid)
        except PouchError as exc:
            if exc.code != "unavailable":
                raise
            task = ctrd.tasks.get(self.cid)
            if task is None:
                raise
            if task.status == "CREATED":
                ctrd.tasks.start(self.cid)

    def _start_failed(self, life: lc.State, message: str, by_policy: bool) -> None:
        with contextlib.suppress(PouchError):
            self.env.ctrd.tasks.delete(self.cid)
        self.env.hub.forget(self.cid)
        code = 127 if ("not found" in message or "no such file" in message) else \
            126 if "permission denied" in message else 128
        transition = lc.on_start_failed(life, self._restart_policy, code, time.time(), by_policy)
        rec.settle_start(self.record, went_through=False)
        rec.set_exited(self.record, code, rfc3339_nano(), message)
        self._commit(transition.state)
        self._carry_out_all(transition)

    @staticmethod
    def _explain_start_error(exc: PouchError) -> PouchError:
        text = exc.message
        if "executable file not found" in text or "no such file or directory" in text \
                or "permission denied" in text:
            return invalid(f"failed to create task for container: {text}")
        return exc

    def stop_container(self, reply: Reply, timeout: int | None) -> None:
        """True once the task has exited (SIGKILL after the grace period); False if it
        was not running."""
        self._serve(reply, lambda life: lc.on_stop(life, self._stop_policy(), timeout))

    def _escalate_later(self, pid: int) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.proxy().escalate(pid)

    def escalate(self, pid: int) -> None:
        """The grace period is over: kill what still runs."""
        if self._state["Running"] and self._state["Pid"] == pid:
            try:
                self.env.ctrd.tasks.kill(self.cid, signals.SIGKILL, all=True)
            except PouchError as exc:
                log.warning("killing %s: %s", self.cid, exc.message)

    def resize_container(self, reply: Reply, height: int, width: int) -> None:
        reply.run(self._resize, height, width)

    def _resize(self, height: int, width: int) -> None:
        self._check_alive()
        if not self._state["Running"]:
            raise conflict(f"Container {self.cid} is not running")
        if not self.record["Config"].get("Tty"):
            return  # as dockerd: no terminal, nothing to resize
        self.env.ctrd.tasks.resize_pty(self.cid, width, height)

    def kill_container(self, reply: Reply, signal: str) -> None:
        """SIGKILL answers once the exit is recorded, as dockerd does."""
        self._serve(reply, lambda life: lc.on_kill(life, self._stop_policy(),
                                                   lc.parse_signal(signal)))

    # -- exit ----------------------------------------------------------------

    def task_exited(self, pid: int, status: int, exited_at: str) -> None:
        """containerd says the init process exited."""
        if self._gone or not self._state["Running"]:
            return
        if pid and self._state["Pid"] and pid != self._state["Pid"]:
            return  # a task this run replaced (a start cut by the last actor's death)
        self._handle_exit(status, exited_at)

    def check_task(self) -> None:
        """After missed events (containerd restarted): does the task still run?"""
        if self._gone or not self._state["Running"]:
            return
        try:
            task = self.env.ctrd.tasks.get(self.cid)
        except PouchError:
            return
        if task is None or task.status == "STOPPED":
            self._handle_exit(task.exit_status if task else 255, "")

    def _handle_exit(self, status: int, exited_at: str) -> None:
        rec.note_exit(self.record, status, exited_at)
        self.env.meta.save(self.record)
        try:
            # Deleting the task makes the shim flush the rest of the output first.
            exit_info = unless_gone(lambda: self.env.ctrd.tasks.delete(self.cid))
            if exit_info is not None:
                status, exited_at = exit_info.exit_status, exit_info.exited_at or exited_at
        except PouchError as exc:
            log.warning("deleting the task of %s: %s", self.cid, exc.message)
        self.env.faults.hit("container.exit.task_deleted")
        if self._drained is not None and not self._drained.wait(DRAIN_TIMEOUT):
            log.warning("output of %s did not end within %.0f s", self.cid, DRAIN_TIMEOUT)
            self.env.hub.forget(self.cid)
        self._drained = None
        self._record_exit(status, exited_at)

    def _record_exit(self, status: int, exited_at: str, error: str = "") -> None:
        transition = lc.on_exit(self._life, self._restart_policy, status, time.time())
        rec.set_exited(self.record, status, exited_at, error)
        self._commit(transition.state)
        self._event("die", exitCode=str(status))
        self._carry_out_all(transition)

    # -- restart policy ------------------------------------------------------

    def _tell_self(self, action: Callable[[ContainerWorker], None]) -> None:
        """From a timer's thread: run `action` on this worker's own thread."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.proxy().run(action)

    def run(self, action: Callable[[ContainerWorker], None]) -> None:
        action(self)

    def unclaimed(self) -> None:
        """Nobody will start this container: a start cut by the last actor's death was
        not sent again in time, or its create's caller died before the answer reached it."""
        if not self._gone:
            self._apply(lc.on_unclaimed(self._life))

    def restart_by_policy(self) -> None:
        """The restart timer fired."""
        if self._gone or not lc.on_restart_due(self._life):
            return
        try:
            self._start(by_policy=True)
            self._event("restart")
        except Exception as exc:  # the failed start is recorded; the policy decided what next
            log.warning("restarting %s: %s", self.cid, exc)

    def _cancel_restart(self) -> None:
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None

    # -- remove --------------------------------------------------------------

    def remove_container(self, reply: Reply, force: bool, token: str) -> None:
        if token and token == rec.removal_token(self.record):  # a retry of this removal
            if self._gone:
                reply.send(None)  # done at restore, before its tomb reached the actor
                return
            if self._life.status is lc.Status.REMOVING:
                self._remover = reply  # answered when it ends
                return
        rec.begin_removal(self.record, token)
        self._serve(reply, lambda life: lc.on_remove(life, force), removal=True)

    def _destroy(self) -> None:
        ctrd = self.env.ctrd
        for step in (lambda: ctrd.tasks.delete(self.cid),
                     lambda: self.env.faults.hit("container.remove.task_deleted"),
                     lambda: ctrd.containers.delete(self.cid),
                     lambda: ctrd.snapshots.remove(self.cid)):
            unless_gone(step)
        self._end_shims()
        self.env.hub.forget(self.cid)
        fifo_dir = self.env.fifo_root / self.cid
        for fifo in fifo_dir.glob("*"):
            fifo.unlink(missing_ok=True)
        if fifo_dir.exists():
            fifo_dir.rmdir()
        tomb = rec.tomb(self.record)
        self.env.meta.bury(self.cid, tomb)  # first: a removal cut after it is done at restore
        self.env.meta.remove(self.cid)
        self._gone = True
        self._answer_waits(("removed", "not-running", "next-exit"))
        self._event("destroy")
        self.env.removed(self.cid, self._name, tomb)
        self.actor_ref.stop(block=False)

    # -- streams handed over by the gateway ----------------------------------

    def _take(self, reply: Reply, session: StreamSession,
              check: Callable[[], Any] | None = None, resumable: bool = False) -> bool:
        """Accept a handed-over connection: answer the gateway (an error while it can
        still shape it), then start the response. False if the connection is done.
        `check` (default: the container is still here) may refuse it;
        `resumable`: a restarted actor could take the stream up from the start."""
        try:
            (check or self._check_alive)()
        except (PouchError, ValueError) as exc:
            # The refusal first: closing the session tells the gateway the stream is over.
            reply.fail(exc if isinstance(exc, PouchError) else invalid(str(exc)))
            session.close()
            return False
        reply.send(None)
        return session.start(multiplexed=not self.record["Config"].get("Tty"),
                             resumable=resumable)

    def wait_container(self, reply: Reply, conn: StreamSession, condition: str) -> None:
        # A container removed meanwhile (its actor has yet to hear) is past every condition.
        if not self._take(reply, conn, lambda: None, resumable=True):
            return
        waiter = Waiter(conn, condition)
        ended = not self._state["Running"] and not self._state.get("Restarting") and (
            condition == "not-running" or self._exited_since(conn.resumed_at))
        if ended or self._gone:
            self._answer(waiter)
            return
        self._wait_conns.append(waiter)

    def _exited_since(self, cut_at: float) -> bool:
        """A wait for the next exit, resumed after this actor restarted: did the exit
        come while no actor was there to see it?"""
        finished = self._state.get("FinishedAt") or ZERO_TIME
        return bool(cut_at) and finished != ZERO_TIME and parse_timestamp(finished) >= cut_at

    def _answer_waits(self, conditions: tuple[str, ...]) -> None:
        keep = []
        for waiter in self._wait_conns:
            if waiter.condition in conditions:
                self._answer(waiter)
            else:
                keep.append(waiter)
        self._wait_conns = keep

    def _answer(self, waiter: Waiter) -> None:
        waiter.session.write_json(rec.wait_answer(self._state["ExitCode"],
                                                  self._state.get("Error") or ""))
        waiter.session.end()

    def attach_container(self, reply: Reply, conn: StreamSession, opts: dict[str, Any]) -> None:
        # Without stdin, an attach that follows live is taken up as a `logs -f` is: the
        # output logged since the cut, then what comes. What a client sent to stdin died
        # with the actor: that attach ends saying so.
        follows = opts["stream"] and not opts["stdin"]
        if not self._take(reply, conn, resumable=follows and not opts["logs"]):
            return
        consumer = Consumer(conn, stdout=opts["stdout"], stderr=opts["stderr"],
                            stdin=opts["stdin"])
        # A created container's output is still to come: attaching waits for its start.
        live = opts["stream"] and self._state["Status"] not in ("exited", "dead")
        if conn.resumed_at or opts["logs"]:
            self._replay(consumer, Selection(opts["stdout"], opts["stderr"], conn.resumed_at),
                         live, resumable=follows)
        elif live:
            self.env.hub.attach(self.cid, consumer)  # this thread serializes starts: no race
        else:
            conn.end()

    def logs_container(self, reply: Reply, conn: StreamSession, opts: dict[str, Any]) -> None:
        window: list[float] = []

        def parse() -> None:
            self._check_alive()
            window.extend(parse_timestamp(opts[key]) if opts[key] else 0.0
                          for key in ("since", "until"))
            window.append(-1 if opts["tail"] in ("all", "") else int(opts["tail"]))

        if not self._take(reply, conn, parse):
            return
        since, until, tail = window
        if conn.resumed_at:
            # Taken up after this actor restarted: what was logged since the cut follows.
            since, tail = max(since, conn.resumed_at), -1
        streams = (opts["stdout"], opts["stderr"])
        consumer = Consumer(conn, stdout=streams[0], stderr=streams[1], lines=True,
                            timestamps=opts["timestamps"],
                            selection=Selection(*streams, since, until))
        self._replay(consumer, Selection(*streams, since, until, int(tail)),
                     opts["follow"] and self._state["Running"])

    def _replay(self, consumer: Consumer, selection: Selection, live: bool,
                resumable: bool = True) -> None:
        """Send the log so far and then, if `live`, what comes; in a thread of its own.
        `resumable`: once it follows live, a restarted actor could take it up."""
        hub, cid, path = self.env.hub, self.cid, Path(self.record["LogPath"])
        # Not started yet: the client waits for the start, unless one happens meanwhile.
        runs_seen = hub.runs(cid) if live and self._state["Status"] == "created" else None
        # Opened now, on this thread: a removal of the container, which this thread also
        # does, unlinks the file but cannot take it from the reader.
        try:
            log_file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed after the replay
        except FileNotFoundError:
            log_file = io.BytesIO()

        def run() -> None:
            session = consumer.session
            try:
                offset = hub.log_offset(cid, path)
                session.settle()
                for entry in selection.pick(read_entries(log_file, 0, offset)):
                    if not session.write(entry.stream, consumer.line(entry)):
                        return
                if live:
                    if resumable:
                        session.may_resume()
                    hub.follow(cid, consumer, log_file, offset, runs_seen)
                    return
                session.end()
            except OSError as exc:
                session.fail(f"Error grabbing logs: {exc}")
            finally:
                log_file.close()

        threading.Thread(target=run, name=f"logs-{cid[:12]}", daemon=True).start()
