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
import json
import logging
import signal as signals
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import pykka

from pouch.actors.container import record as rec
from pouch.actors.container.iohub import Consumer, IOHub
from pouch.actors.container.jsonlog import Selection, read_entries
from pouch.actors.container.meta import MetaStore
from pouch.actors.container.spec import (
    SpecInput,
    build_spec,
    effective_process,
    grantable_capabilities,
    nofile_ceiling,
    read_rootfs_file,
    resolve_user,
)
from pouch.actors.containerd.client import Containerd
from pouch.actors.faults import Faults
from pouch.actors.host import Reply
from pouch.actors.timefmt import parse_rfc3339, parse_timestamp, rfc3339_nano
from pouch.broker.client import ClientPool
from pouch.proto.envelope import PouchError, conflict, invalid, not_found
from pouch.proto.handoff import LAST_CHUNK, chunk

log = logging.getLogger("pouch.container")
T = TypeVar("T")

OWNER_LABEL = "io.pouch.container"
CGROUP_PARENT = "/pouch"
DEFAULT_STOP_TIMEOUT = 10
DRAIN_TIMEOUT = 5.0
HEAD_SETTLE = 0.02
RESTART_FIRST = 0.1
RESTART_CAP = 60.0
RESTART_STABLE = 10.0
# The record keeps this private part beside what inspect shows.
PRIVATE = "Pouch"


@dataclass(frozen=True)
class Waiter:
    """A handed-over connection waiting for the container to exit (or go)."""

    conn: socket.socket
    condition: str
    chunked: bool


@dataclass(frozen=True)
class WorkerEnv:
    """What every worker shares: clients, the hub, the store, and its container actor."""

    ctrd: Containerd
    hub: IOHub
    meta: MetaStore
    calls: ClientPool
    fifo_root: Path
    default_registry: str
    updated: Callable[[dict[str, Any]], None]
    removed: Callable[[str, str], None]
    publish: Callable[[str, str, dict[str, str]], None]
    faults: Faults


def parse_signal(value: str | int) -> int:
    """SIGTERM, TERM, 15 -> 15. Errors: invalid."""
    text = str(value).strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < signals.NSIG:
            return number
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        if hasattr(signals.Signals, name):
            return int(signals.Signals[name])
    raise invalid(f"Invalid signal: {value}")


def unless_gone(step: Callable[[], T]) -> T | None:
    """What `step` returns, or None when what it acts on is gone already (not_found)."""
    try:
        return step()
    except PouchError as exc:
        if exc.code != "not_found":
            raise
        return None


class ContainerWorker(pykka.ThreadingActor):
    def __init__(self, env: WorkerEnv, cid: str, record: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.env = env
        self.cid = cid
        self.record: dict[str, Any] = record or {}
        self._gone = False
        self._drained: threading.Event | None = None
        self._stop_waiters: list[Reply] = []
        self._remove_after_exit: Reply | None = None
        self._wait_conns: list[Waiter] = []
        self._restart_timer: threading.Timer | None = None

    # -- helpers -------------------------------------------------------------

    @property
    def _state(self) -> dict[str, Any]:
        return self.record["State"]

    @property
    def _private(self) -> dict[str, Any]:
        return self.record.setdefault(PRIVATE, {})

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
                         warnings: list[str]) -> None:
        reply.run(self._create, name, body, warnings)

    def _create(self, name: str, body: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
        env, cid = self.env, self.cid
        try:
            image = env.calls.call("image", "resolve", {"name": body["Image"]})
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
            with env.ctrd.lease() as lease:
                mounts = env.ctrd.prepare(cid, image["chain_id"], labels=labels, lease=lease)
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
                env.ctrd.create_container(cid, image["name"], spec, snapshot_key=cid,
                                          labels=labels)
        except BaseException:
            self._undo_create()
            raise
        self.record = rec.new_record(cid, name, body, image, process.args, paths)
        self._save()
        self._event("create")
        return {"Id": cid, "Warnings": warnings}

    def _undo_create(self) -> None:
        for undo in (lambda: self.env.ctrd.delete_container(self.cid),
                     lambda: self.env.ctrd.remove(self.cid)):
            try:
                unless_gone(undo)
            except PouchError as exc:
                log.warning("cleaning up a failed create of %s: %s", self.cid, exc.message)
        self.env.meta.remove(self.cid)
        self._abandon()

    def _abandon(self) -> None:
        self._gone = True
        self.env.removed(self.cid, "")
        self.actor_ref.stop(block=False)

    # -- restore (the actor restarted; the container may have run on) --------

    def restore(self) -> None:
        """Reconcile the record with containerd after the actor (or pouchd) restarted."""
        ctrd = self.env.ctrd
        try:
            container = ctrd.get_container(self.cid)
            task = ctrd.get_task(self.cid) if container is not None else None
        except PouchError as exc:
            log.error("restoring %s: %s", self.cid, exc.message)
            self.env.updated(copy.deepcopy(self.record))
            return
        if container is None:
            if self._state["Status"] != "dead":
                rec.set_dead(self.record, "its containerd container is gone")
                log.warning("container %s is gone from containerd: marked dead", self.cid)
            self._save()
            return
        if task is not None and task.status == "CREATED":
            # A start interrupted between creating the task and starting it: the process
            # never ran. Drop the task; the container is as it was before the start.
            with contextlib.suppress(PouchError):
                self.env.ctrd.kill_task(self.cid, signals.SIGKILL)
            with contextlib.suppress(PouchError):
                self.env.ctrd.delete_task(self.cid)
            log.warning("container %s: dropped a task that was never started", self.cid)
            self._save()
            return
        if task is not None and task.status in ("RUNNING", "PAUSED", "PAUSING"):
            self._open_io(restore=True)
            if not self._state["Running"]:
                rec.set_running(self.record, task.pid, rfc3339_nano())
            self._state["Pid"] = task.pid
            self._save()
            return
        if task is not None:  # stopped while nobody watched
            self._open_io(restore=True)
            self._handle_exit(task.exit_status, "")
            return
        if self._state["Running"]:
            rec.set_exited(self.record, 255, "", "the task vanished while pouch was not running")
            self._save()
            self._after_exit()
            return
        self.env.updated(copy.deepcopy(self.record))

    def _open_io(self, restore: bool = False) -> dict[str, str]:
        config = self.record["Config"]
        paths, self._drained = self.env.hub.open(
            self.cid, self.env.fifo_root / self.cid, Path(self.record["LogPath"]),
            tty=bool(config.get("Tty")), stdin=bool(config.get("OpenStdin")),
            stdin_once=bool(config.get("StdinOnce")), restore=restore)
        return paths

    # -- start / stop / kill -------------------------------------------------

    def start_container(self, reply: Reply) -> None:
        reply.run(self._start)

    def _start(self) -> bool:
        self._check_alive()
        state = self._state
        if state["Running"]:
            return False
        if state["Status"] == "dead":
            raise conflict(f"container {self.cid} is dead: {state['Error']}; remove it")
        ctrd = self.env.ctrd
        self._cancel_restart()
        unless_gone(lambda: ctrd.delete_task(self.cid))  # a stopped task of an earlier run
        fifos = self._open_io()
        try:
            mounts = ctrd.mounts(self.cid)
            pid = ctrd.create_task(self.cid, mounts, fifos["stdin"], fifos["stdout"],
                                   fifos["stderr"], terminal=bool(self.record["Config"].get("Tty")))
            self.env.hub.writers_ready(self.cid)
            self.env.faults.hit("container.start.task_created")
            started_at = rfc3339_nano()  # before: a quick process may end before start returns
            ctrd.start_task(self.cid)
        except PouchError as exc:
            self._start_failed(exc)
            raise self._explain_start_error(exc) from None
        self._private["ManuallyStopped"] = False
        rec.set_running(self.record, pid, started_at)
        self._save()
        self._event("start")
        return True

    def _start_failed(self, exc: PouchError) -> None:
        with contextlib.suppress(PouchError):
            self.env.ctrd.delete_task(self.cid)
        self.env.hub.forget(self.cid)
        code = 127 if ("not found" in exc.message or "no such file" in exc.message) else \
            126 if "permission denied" in exc.message else 128
        rec.set_exited(self.record, code, rfc3339_nano(), exc.message)
        self._save()

    @staticmethod
    def _explain_start_error(exc: PouchError) -> PouchError:
        text = exc.message
        if "executable file not found" in text or "no such file or directory" in text \
                or "permission denied" in text:
            return invalid(f"failed to create task for container: {text}")
        return exc

    def stop_container(self, reply: Reply, timeout: int | None) -> None:
        try:
            self._check_alive()
            if not self._state["Running"]:
                self._cancel_restart()
                reply.send(False)
                return
            self._private["ManuallyStopped"] = True
            config = self.record["Config"]
            signum = parse_signal(config.get("StopSignal") or "SIGTERM")
            grace = timeout if timeout is not None else config.get("StopTimeout")
            grace = DEFAULT_STOP_TIMEOUT if grace is None else grace
            self._stop_waiters.append(reply)
            if grace > 0:
                self.env.ctrd.kill_task(self.cid, signum)
            pid = self._state["Pid"]
            timer = threading.Timer(max(0, grace), self._escalate_later, args=(pid,))
            timer.daemon = True
            timer.start()
        except PouchError as exc:
            reply.fail(exc)

    def _escalate_later(self, pid: int) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.proxy().escalate(pid)

    def escalate(self, pid: int) -> None:
        """The grace period is over: kill what still runs."""
        if self._state["Running"] and self._state["Pid"] == pid:
            try:
                self.env.ctrd.kill_task(self.cid, signals.SIGKILL, all=True)
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
        self.env.ctrd.resize_pty(self.cid, width, height)

    def kill_container(self, reply: Reply, signal: str) -> None:
        reply.run(self._kill, signal)

    def _kill(self, signal: str) -> None:
        self._check_alive()
        signum = parse_signal(signal)
        if not self._state["Running"]:
            raise conflict(f"Container {self.cid} is not running")
        if signum == signals.SIGKILL:
            self._private["ManuallyStopped"] = True
        self.env.ctrd.kill_task(self.cid, signum)
        self._event("kill", signal=str(signum))

    # -- exit ----------------------------------------------------------------

    def task_exited(self, status: int, exited_at: str) -> None:
        """containerd says the init process exited."""
        if self._gone or not self._state["Running"]:
            return
        self._handle_exit(status, exited_at)

    def check_task(self) -> None:
        """After missed events (containerd restarted): does the task still run?"""
        if self._gone or not self._state["Running"]:
            return
        try:
            task = self.env.ctrd.get_task(self.cid)
        except PouchError:
            return
        if task is None or task.status == "STOPPED":
            self._handle_exit(task.exit_status if task else 255, "")

    def _handle_exit(self, status: int, exited_at: str) -> None:
        try:
            # Deleting the task makes the shim flush the rest of the output first.
            exit_info = unless_gone(lambda: self.env.ctrd.delete_task(self.cid))
            if exit_info is not None:
                status, exited_at = exit_info.exit_status, exit_info.exited_at or exited_at
        except PouchError as exc:
            log.warning("deleting the task of %s: %s", self.cid, exc.message)
        if self._drained is not None and not self._drained.wait(DRAIN_TIMEOUT):
            log.warning("output of %s did not end within %.0f s", self.cid, DRAIN_TIMEOUT)
            self.env.hub.forget(self.cid)
        self._drained = None
        rec.set_exited(self.record, status, exited_at)
        self._save()
        self._event("die", exitCode=str(status))
        self._after_exit()

    def _after_exit(self) -> None:
        for reply in self._stop_waiters:
            reply.send(True)
        self._stop_waiters.clear()
        self._answer_waits(("not-running", "next-exit"))
        if self._remove_after_exit is not None or self.record["HostConfig"].get("AutoRemove"):
            waiting = self._remove_after_exit
            self._remove_after_exit = None
            self._destroy()
            if waiting is not None:
                waiting.send(None)
            return
        self._maybe_restart()

    # -- restart policy ------------------------------------------------------

    def _maybe_restart(self) -> None:
        policy = self.record["HostConfig"].get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        code = self._state["ExitCode"]
        manual = self._private.get("ManuallyStopped", False)
        if name == "no" or (manual and name in ("always", "unless-stopped")):
            return
        if name == "on-failure":
            limit = policy.get("MaximumRetryCount") or 0
            if code == 0 or (limit and self.record["RestartCount"] >= limit):
                return
        delay = self._private.get("RestartDelay", 0.0)
        ran = self._ran_for()
        delay = RESTART_FIRST if ran > RESTART_STABLE or not delay else min(RESTART_CAP, delay * 2)
        self._private["RestartDelay"] = delay
        self._state.update(Status="restarting", Restarting=True)
        self._save()
        self._restart_timer = threading.Timer(delay, self._restart_later)
        self._restart_timer.daemon = True
        self._restart_timer.start()

    def _ran_for(self) -> float:
        try:
            return (parse_rfc3339(self._state["FinishedAt"])
                    - parse_rfc3339(self._state["StartedAt"]))
        except ValueError:
            return 0.0

    def _restart_later(self) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.proxy().restart_by_policy()

    def restart_by_policy(self) -> None:
        if self._gone or not self._state.get("Restarting"):
            return
        self.record["RestartCount"] += 1
        try:
            self._start()
            self._event("restart")
        except PouchError as exc:
            log.warning("restarting %s: %s", self.cid, exc.message)
            self._maybe_restart()

    def _cancel_restart(self) -> None:
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None
        if self._state.get("Restarting"):
            self._state.update(Status="exited", Restarting=False)

    # -- remove --------------------------------------------------------------

    def remove_container(self, reply: Reply, force: bool) -> None:
        try:
            self._check_alive()
            if self._state["Running"]:
                if not force:
                    raise conflict(
                        f"You cannot remove a running container {self.cid}. Stop the container "
                        "before attempting removal or force remove")
                self._private["ManuallyStopped"] = True
                self._remove_after_exit = reply
                self.env.ctrd.kill_task(self.cid, signals.SIGKILL, all=True)
                return
            self._cancel_restart()
            self._destroy()
            reply.send(None)
        except PouchError as exc:
            reply.fail(exc)

    def _destroy(self) -> None:
        ctrd = self.env.ctrd
        for step in (lambda: ctrd.delete_task(self.cid),
                     lambda: self.env.faults.hit("container.remove.task_deleted"),
                     lambda: ctrd.delete_container(self.cid), lambda: ctrd.remove(self.cid)):
            unless_gone(step)
        self.env.hub.forget(self.cid)
        fifo_dir = self.env.fifo_root / self.cid
        for fifo in fifo_dir.glob("*"):
            fifo.unlink(missing_ok=True)
        if fifo_dir.exists():
            fifo_dir.rmdir()
        self.env.meta.remove(self.cid)
        self._gone = True
        self._answer_waits(("removed", "not-running", "next-exit"))
        self._event("destroy")
        self.env.removed(self.cid, self._name)
        self.actor_ref.stop(block=False)

    # -- streams handed over by the gateway ----------------------------------

    def _take(self, reply: Reply, conn: socket.socket, preamble: bytes,
              check: Callable[[], Any] = lambda: None) -> bool:
        """Accept a handed-over connection: answer the gateway (an error while it can
        still shape it), then write the response head. False if the connection is done."""
        try:
            self._check_alive()
            check()
        except (PouchError, ValueError) as exc:
            conn.close()
            reply.fail(exc if isinstance(exc, PouchError) else invalid(str(exc)))
            return False
        reply.send(None)
        try:
            conn.sendall(preamble)
        except OSError:
            conn.close()
            return False
        return True

    def wait_container(self, reply: Reply, conn: socket.socket, condition: str,
                       preamble: bytes, chunked: bool) -> None:
        if not self._take(reply, conn, preamble):
            return
        waiter = Waiter(conn, condition, chunked)
        if condition == "not-running" and not self._state["Running"] \
                and not self._state.get("Restarting"):
            self._answer(waiter)
            return
        self._wait_conns.append(waiter)

    def _answer_waits(self, conditions: tuple[str, ...]) -> None:
        keep = []
        for waiter in self._wait_conns:
            if waiter.condition in conditions:
                self._answer(waiter)
            else:
                keep.append(waiter)
        self._wait_conns = keep

    def _answer(self, waiter: Waiter) -> None:
        error = self._state.get("Error") or None
        body = json.dumps({"StatusCode": self._state["ExitCode"],
                           "Error": {"Message": error} if error else None}).encode() + b"\n"
        try:
            waiter.conn.sendall(chunk(body) + LAST_CHUNK if waiter.chunked else body)
        except OSError:
            pass
        finally:
            waiter.conn.close()

    def attach_container(self, reply: Reply, conn: socket.socket, opts: dict[str, Any]) -> None:
        if not self._take(reply, conn, opts["preamble"]):
            return
        consumer = Consumer(conn, bool(self.record["Config"].get("Tty")), stdout=opts["stdout"],
                            stderr=opts["stderr"], stdin=opts["stdin"], chunked=opts["chunked"])
        # A created container's output is still to come: attaching waits for its start.
        live = opts["stream"] and self._state["Status"] not in ("exited", "dead")
        if opts["logs"]:
            self._replay(consumer, Selection(opts["stdout"], opts["stderr"]), live)
        elif live:
            self.env.hub.attach(self.cid, consumer)  # this thread serializes starts: no race
        else:
            with contextlib.suppress(OSError):
                conn.sendall(LAST_CHUNK if consumer.chunked else b"")
            conn.close()

    def logs_container(self, reply: Reply, conn: socket.socket, opts: dict[str, Any]) -> None:
        window: list[float] = []

        def parse() -> None:
            window.extend(parse_timestamp(opts[key]) if opts[key] else 0.0
                          for key in ("since", "until"))
            window.append(-1 if opts["tail"] in ("all", "") else int(opts["tail"]))

        if not self._take(reply, conn, opts["preamble"], parse):
            return
        since, until, tail = window
        streams = (opts["stdout"], opts["stderr"])
        consumer = Consumer(conn, bool(self.record["Config"].get("Tty")), stdout=streams[0],
                            stderr=streams[1], lines=True, timestamps=opts["timestamps"],
                            selection=Selection(*streams, since, until),
                            chunked=opts["chunked"])
        self._replay(consumer, Selection(*streams, since, until, int(tail)),
                     opts["follow"] and self._state["Running"])

    def _replay(self, consumer: Consumer, selection: Selection, live: bool) -> None:
        """Send the log so far and then, if `live`, what comes; in a thread of its own."""
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
            conn = consumer.conn
            try:
                offset = hub.log_offset(cid, path)
                # The head went out just now. docker-py reads what follows it from the raw
                # socket, losing whatever arrived together with the head (its HTTP layer
                # buffered it): let the head arrive alone.
                time.sleep(HEAD_SETTLE)
                for entry in selection.pick(read_entries(log_file, 0, offset)):
                    conn.sendall(consumer.encode_entry(entry))
                if live:
                    hub.follow(cid, consumer, log_file, offset, runs_seen)
                    return
                if consumer.chunked:
                    conn.sendall(LAST_CHUNK)
            except OSError:
                pass
            finally:
                log_file.close()
            conn.close()

        threading.Thread(target=run, name=f"logs-{cid[:12]}", daemon=True).start()
