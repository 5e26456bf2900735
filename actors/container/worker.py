"""One pykka actor per container: every operation on a container runs here, in
order, while other containers proceed in parallel.

The worker owns the container's record: it changes it, saves it (atomically)
and then tells the container actor, which answers list and inspect from its
copies. Operations that finish later (stop waits for the exit, wait for the
exit or the removal) keep their reply and answer when the task exit arrives.
Saves that need not precede what follows them are made on helper threads
meanwhile (a start's intent, and its running record while containerd starts
the task: see lifecycle.on_start_sent); so are containerd calls that need not
follow each other (a snapshot made while its container is, both removed at once).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import logging
import secrets
import signal as signals
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pykka

from pouch.actors import plugins
from pouch.actors.container import (
    archive,
    changes,
    cproot,
    etcfiles,
    fsview,
    joins,
    links,
    observe,
    pause,
)
from pouch.actors.container import lifecycle as lc
from pouch.actors.container import mounts as vols
from pouch.actors.container import networking as nets
from pouch.actors.container import record as rec
from pouch.actors.container.detach import EscapeScanner
from pouch.actors.container.exec import ExecEnv, Execs, check_runnable
from pouch.actors.container.health import KILL, HealthEnv, HealthMonitor
from pouch.actors.container.iohub import CALL_TIMEOUT, Consumer, IOHub
from pouch.actors.container.jsonlog import Selection, log_config
from pouch.actors.container.meta import MetaStore
from pouch.actors.container.replay import after_removal, attach_window, log_window, replay
from pouch.actors.container.sizes import files_size
from pouch.actors.container.spec.merge import daemon_env, effective_process
from pouch.actors.container.spec.oci import (
    SpecInput,
    build_spec,
    grantable_capabilities,
    nofile_ceiling,
)
from pouch.actors.container.spec.user import resolve_user
from pouch.actors.container.sweep import group_serves
from pouch.actors.container.update import linux_resources, plan_update, with_limits
from pouch.actors.containerd import shims
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.rootfs import read_rootfs_file
from pouch.actors.containerd.snapshots import GC_ROOT_LABEL
from pouch.actors.faults import Faults
from pouch.actors.host import ObjectActor, Reply
from pouch.actors.timefmt import ZERO_TIME, parse_timestamp, rfc3339_nano
from pouch.proto.envelope import PouchError, conflict, invalid, not_found
from pouch.proto.shapes import ContainerLayer, ExecCreated, ExecInspect
from pouch.proto.stream import StreamSession
from pouch.proto.stubs import Calls

log = logging.getLogger("pouch.container")
T = TypeVar("T")

OWNER_LABEL = "io.pouch.container"
CGROUP_PARENT = "/pouch"
DRAIN_TIMEOUT = 5.0
TASK_CREATE_WAIT = 10.0
# How long a task that containerd says exists and cannot show may be another create
# still on its way, before it is taken for one containerd's death left (_create_task).
LOST_TASK_AFTER = 1.0
IO_OPEN_WAIT = 30.0  # s: the hub opening a container's output
IMAGE_FILES_KEPT = 64
# A commit's layer: uncompressed, so its digest is its diff ID and nothing is zipped.
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


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
    exec_changed: Callable[[str, ExecInspect | None], None]  # an exec's copy (None: gone)
    views: Path  # where a stopped container's files are mounted to be read (fsview.View)
    # Another container's latest copy by its full ID, read without a message (None: ask).
    peek: Callable[[str], Mapping[str, Any] | None]
    # An image's /etc/passwd and /etc/group by its chain ID (its layers never change).
    image_files: dict[str, tuple[str | None, str | None]]
    side: Executor  # a worker's calls that may run alongside its own
    # Where containerd keeps the bundles of its tasks, when it is pouchd's own (a task's
    # rootfs is mounted in its bundle: dockerd's MergedDir); None when it is elsewhere.
    task_root: Path | None = None


@dataclass(frozen=True)
class Notice:
    """A call on a worker that answers nobody (a task's exit, a timer that fired): told
    as it is, not through a pykka proxy, whose making introspects the whole worker (over
    a millisecond of the sender's thread). An error it raises is logged."""

    handler: Callable[..., None]  # a ContainerWorker method taking (*args)
    args: tuple[Any, ...] = ()


def _nothing() -> None:
    pass


def remember_image_files(known: dict[str, tuple[str | None, str | None]], chain: str,
                         files: tuple[str | None, str | None]) -> None:
    """Keep an image's users for the next creates (a few images' worth: shared by every
    worker, so a dict's single steps, which need no lock)."""
    if len(known) >= IMAGE_FILES_KEPT:
        known.clear()
    known[chain] = files


def unless_gone(step: Callable[[], T]) -> T | None:
    """What `step` returns, or None when what it acts on is gone already (not_found)."""
    try:
        return step()
    except PouchError as exc:
        if exc.code != "not_found":
            raise
        return None


def _cut_create_in_the_way(exc: PouchError) -> bool:
    """Whether a task create failed on the remains of a cut one that containerd is still
    cleaning up: its task still exists, or the bundle folder (the same container, the
    same folder) went away under the new shim ("getwd", its log fifo, or the root it
    mounts the snapshot on), or the new shim's connection closed as that cleanup ended it
    ("ttrpc: closed")."""
    text = exc.message
    return "exists" in text or "getwd" in text or "ttrpc: closed" in text or (
        "failed to start shim" in text and "no such file or directory" in text) or (
        "mkdir" in text and "/rootfs: no such file or directory" in text)


def _no_output() -> Future[tuple[dict[str, str], threading.Event]]:
    """What the hub's open gives a task with no output: no FIFOs (the shim's /dev/null),
    and nothing left to read."""
    drained, opened = threading.Event(), Future[tuple[dict[str, str], threading.Event]]()
    drained.set()
    opened.set_result(({"stdin": "", "stdout": "", "stderr": ""}, drained))
    return opened


class ContainerWorker(ObjectActor):
    def __init__(self, env: WorkerEnv, cid: str, record: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.env = env
        self.cid = cid
        self.record: dict[str, Any] = record or {}
        self._gone = False
        self._tomb: dict[str, Any] | None = None  # once removed (not for a create undone)
        self._drained: threading.Event | None = None
        self._held: list[tuple[Reply, Any]] = []  # answered when the task exits
        self._remover: Reply | None = None  # answered when the container is gone
        self._wait_conns: list[Waiter] = []
        self._restart_timer: threading.Timer | None = None
        self._restarters: list[Reply] = []  # restarts whose stop waits for the exit
        self._stops_at_exit = 0  # stops told (a `stop` event each) once the exit comes
        self._created: dict[str, Any] | Exception = PouchError("internal", "no create ran here")
        # No task in containerd, as far as this worker knows (one made for a create has
        # none; a restored one asks): a removal then skips deleting it.
        self._task_gone = record is None
        # What containerd holds for the container, as this worker last made or changed it
        # (None: not known here, containerd is asked): its OCI spec, and its snapshot's
        # mounts. A start then asks containerd for neither.
        self._spec: dict[str, Any] | None = None
        self._mounts: list[Any] | None = None
        self._volume_env = vols.VolumeEnv(env.calls, cid, env.views)
        self._execs = Execs(ExecEnv(
            cid=cid, ctrd=env.ctrd, hub=env.hub, fifo_root=env.fifo_root / "exec",
            changed=env.exec_changed, event=self._event,
            on_worker=lambda step: self._tell_self(lambda _worker: step()),
            group_add=lambda: list(self.record["HostConfig"].get("GroupAdd") or [])))
        self._health = HealthMonitor(HealthEnv(
            cid=cid, record=lambda: self.record, save=self._save, event=self._event,
            on_worker=lambda step: self._tell_self(lambda _worker: step()),
            run_exec=self._probe_exec, exit_code=self._exec_exit_code,
            kill_exec=lambda exec_id: env.ctrd.tasks.kill(cid, KILL, exec_id=exec_id),
            may_probe=self._may_probe))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Notice):
            try:
                message.handler(self, *message.args)
            except Exception:
                log.exception("container %s: %s failed", self.cid, message.handler.__name__)
            return None
        return super().on_receive(message)

    # -- helpers -------------------------------------------------------------

    @property
    def _state(self) -> dict[str, Any]:
        return self.record["State"]

    @property
    def _name(self) -> str:
        return str(self.record.get("Name", "")).lstrip("/")

    def _save(self) -> None:
        self.env.updated(json.loads(self.env.meta.save(self.record)))

    def _event(self, action: str, **extra: str) -> None:
        attributes = {"name": self._name, "image": self.record["Config"].get("Image", ""),
                      **(self.record["Config"].get("Labels") or {}), **extra}
        self.env.publish(action, self.cid, attributes)

    def _check_alive(self) -> None:
        if self._gone:
            raise not_found(f"No such container: {self.cid}")

    # -- create --------------------------------------------------------------

    def create_container(self, reply: Reply, name: str, body: dict[str, Any],
                         warnings: list[str], token: str, platform: str) -> None:
        reply.run(self._create_kept, reply, name, body, warnings, token, platform)

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
                warnings: list[str], token: str, platform: str) -> dict[str, Any]:
        env, cid = self.env, self.cid
        if plugins.loaded().has("pre_create"):
            body, warnings = self._pre_create(name, body)
        try:
            # Its folder first: the snapshot is asked for as soon as the image is known,
            # and the sweep removes a snapshot of ours whose ID names no folder.
            env.meta.make_folder(cid)
            image = env.calls.image.resolve(name=body["Image"], platform=platform)
        except BaseException as exc:
            env.meta.remove(cid)
            self._abandon()
            if isinstance(exc, PouchError) and exc.code == "not_found" \
                    and "platform" not in exc.message:
                raise not_found(f"No such image: {body['Image']}") from None
            raise
        mode = rec.network_mode(body)
        # The host's network comes with the host's name, as dockerd gives it.
        hostname = body.get("Hostname") or (socket.gethostname() if mode == "host"
                                            else cid[:12])
        body = {**body, "Hostname": hostname}
        files_written: Callable[[], None] | None = None
        preparing: Future[list[Any]] | None = None
        host_config = body.get("HostConfig") or {}
        try:
            joins.check_donors(host_config, self._other)
            if joins.donor_of(mode):  # container:<name> is recorded as container:<id>
                mode = joins.network_mode(cid, mode, self._donor)
                body = {**body, "HostConfig": {**body["HostConfig"], "NetworkMode": mode}}
            wanted = links.requested(body, mode)
            reached = [] if nets.is_user_network(mode) else [
                (link, links.linked(link.name, self._other)) for link in wanted]
            process = effective_process(image["config"], body)
            planned = vols.plan(self._volume_env, body, image["config"])
            labels = {OWNER_LABEL: name}
            if group := (body.get("Labels") or {}).get(shims.GROUP_LABEL):
                labels[shims.GROUP_LABEL] = str(group)  # its shim's: see Sweeper
            # A root of containerd's garbage collection until the container's removal
            # removes it: no lease need hold it until the container does (a lease costs
            # containerd two more writes on a create's way). What a cut create leaves,
            # the sweep removes: a snapshot of ours that no container's folder names.
            prepare = functools.partial(env.ctrd.snapshots.prepare, cid, image["chain_id"],
                                        labels={**labels, GC_ROOT_LABEL: "pouch"})
            chain = image["chain_id"]
            files = env.image_files.get(chain)
            rootfs: list[dict[str, Any]] = []
            if files is None or any(m.type == "volume" for m in planned):
                mounts = prepare()
                env.faults.hit("container.create.prepared")
                rootfs = [dict(m) for m in mounts]
                files = (read_rootfs_file(rootfs, "etc/passwd"),
                         read_rootfs_file(rootfs, "etc/group"))
                remember_image_files(env.image_files, chain, files)
            else:
                # Nothing below reads the snapshot (the image's users are known, no volume
                # is filled from it), and containerd takes a container whose snapshot is
                # still to come: the snapshot is made while the container's files are
                # written, its network attached and its spec built, and then with it.
                preparing = env.side.submit(prepare)
            extra_hosts = etcfiles.extra_hosts(host_config)
            gateway = nets.host_gateway(env.calls) if any(
                address == etcfiles.HOST_GATEWAY for _, address in extra_hosts) else ""
            # The links' lines, written at each start, follow the extra hosts (dockerd's
            # order), above the network actor's section.
            files_written = env.meta.create(
                cid, hostname, mode, etcfiles.Dns.of(host_config),
                etcfiles.hosts_lines(extra_hosts, gateway)
                + (links.HOSTS_MARKER + "\n" if wanted else ""))
            paths = env.meta.paths(cid)
            if nets.on_network(mode):
                files_written()  # the network actor writes the container's name in its hosts
            endpoint = nets.attach(env.calls, cid, name, body, mode, hostname, paths["hosts"])
            if endpoint and nets.is_user_network(mode) \
                    and not nets.is_user_network(endpoint["NetworkName"]):
                env.meta.unembed_dns(cid, etcfiles.Dns.of(host_config))
            user = resolve_user(process.user, *files,
                                (body.get("HostConfig") or {}).get("GroupAdd"))
            placed = vols.place(self._volume_env, planned, rootfs)
            spec = build_spec(SpecInput(
                container_id=cid, process=process, user=user, hostname=hostname,
                domainname=str(body.get("Domainname") or ""),
                network_mode=mode, netns_path=endpoint["SandboxKey"] if endpoint else None,
                hosts_path=paths["hosts"],
                resolv_conf_path=paths["resolv.conf"], hostname_path=paths["hostname"],
                # --cgroup-parent (the CRI's pod cgroup), else pouch's own.
                cgroup_parent=str((body.get("HostConfig") or {}).get("CgroupParent")
                                  or CGROUP_PARENT),
                host_config=body.get("HostConfig") or {},
                labels=dict(body.get("Labels") or {}),
                grantable_caps=grantable_capabilities(), nofile_ceiling=nofile_ceiling(),
                mounts=tuple(placed)))
            spec = joins.initial_spec(spec, self._other, env.meta.folder, cid,
                                      body.get("HostConfig") or {})
            made = env.ctrd.containers.create(cid, image["name"], spec, snapshot_key=cid,
                                              labels=labels)
            if preparing is not None:
                mounts, preparing = preparing.result(), None
                env.faults.hit("container.create.prepared")
            self._spec, self._mounts = made.spec, mounts  # what its first start needs
            snapshot = [dict(m) for m in mounts]
            changes.mark_new_layer(snapshot)
            env.faults.hit("container.create.container_made")
            if reply.cancelled:  # the caller gave up: it was told the create failed
                raise PouchError("timeout", f"the create of {name} was given up on")
            files_written()  # before meta.json, which says the container exists
        except BaseException:
            if files_written is not None:
                with contextlib.suppress(OSError):
                    files_written()  # done with the folder, which the undo removes
            if preparing is not None:
                wait([preparing])  # its snapshot, if made, is the undo's to remove
            self._undo_create()
            raise
        self.record = rec.new_record(cid, name, body, image, process.args, paths)
        if dirs := changes.overlay_dirs(snapshot):
            if env.task_root is not None:
                dirs["MergedDir"] = str(env.task_root / cid / "rootfs")
            self.record["GraphDriver"]["Data"] = dirs
        nets.record(self.record, mode, endpoint, nets.static_ip(body, mode))
        if wanted:
            rec.set_links(self.record, wanted, reached)
        rec.set_mounts(self.record, vols.records(placed), vols.inspect_mounts(placed))
        rec.remember_token(self.record, token)
        self._save()
        self.env.faults.hit("container.create.recorded")
        self._event("create")
        return {"Id": cid, "Warnings": warnings}

    def _donor(self, ref: str) -> joins.Donor:
        """Another container, as `--network container:<ref>` names it."""
        return joins.Donor.of(self._other(ref))

    def _other(self, ref: str) -> Mapping[str, Any]:
        """Another container's inspect document (the actor's copy, read in place when
        `ref` is its full ID). Errors: not_found, invalid."""
        found = self.env.peek(ref)
        return found if found is not None else self.env.calls.container.inspect(id=ref)

    def _pre_create(self, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The body as the pre_create plugins leave it, then checked (the actor checks
        it when no plugin has the hook), and the warnings it earns."""
        try:
            body = plugins.loaded().pre_create(plugins.ContainerCreate(name, body))
            return body, rec.check_config(body)
        except BaseException:
            self._abandon()
            raise

    def _undo_create(self) -> None:
        if self._volume_env.acquired:
            vols.undo(self._volume_env)
        for undo in (lambda: self.env.ctrd.containers.delete(self.cid),
                     lambda: self.env.ctrd.snapshots.remove(self.cid)):
            try:
                unless_gone(undo)
            except PouchError as exc:
                log.warning("cleaning up a failed create of %s: %s", self.cid, exc.message)
        nets.release(self.env.calls, self.cid, "")  # whatever the mode: it may have begun
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
            rec.unstarted(self.record)  # recorded as running already: as it was before
        # A start cut by the last actor's death ran if a task (or its exit) is left: a
        # retry of it (the same token) must not run the container again.
        rec.settle_start(self.record, went_through=task is not None or self._task_live)
        if task is not None and task.status in ("RUNNING", "PAUSED", "PAUSING"):
            self._open_io(restore=True)
            if not self._task_live:
                rec.set_running(self.record, task.pid, rfc3339_nano())
            self._state["Pid"] = task.pid
            self._restore_as(lc.on_restore_live(
                self._life, paused=task.status in ("PAUSED", "PAUSING")), save=True)
            self._health.resume()
            return
        if task is not None:  # stopped while nobody watched
            self._open_io(restore=True)
            self._handle_exit(task.exit_status, "")
            return
        noted = rec.noted_exit(self.record)
        if noted is not None and self._task_live:
            # The last actor deleted the task, then died before it recorded the exit.
            self._record_exit(*noted)
            return
        if self._task_live:
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
        if task is not None and task.status == "CREATED" and not self._task_live:
            self._drop_unstarted_task()
            task = None
        if task is None:
            self._end_shims()

    def _end_shims(self) -> None:
        """The last resort for shims of this container that containerd lost track of
        (not one that serves the other containers of its group)."""
        address, namespace = self.env.ctrd.address, self.env.ctrd.namespace
        found = shims.find(address, namespace, (self.cid,))
        try:
            if found and group_serves(self.env.ctrd, self.cid):
                return
        except PouchError as exc:  # left to the sweep, which asks again
            log.warning("shims of %s: %s", self.cid, exc.message)
            return
        for shim in found:
            if shims.end(shim, address, namespace):
                log.warning("ended shim %d of container %s: it served no task", shim.pid,
                            self.cid)

    def _open_io(self, restore: bool = False) -> dict[str, str]:
        return self._io_opened(self._open_io_soon(restore))

    def _open_io_soon(self, restore: bool = False
                      ) -> Future[tuple[dict[str, str], threading.Event]]:
        """The hub opens the container's output while this thread goes on: _io_opened
        waits for it. A pod's pause has none (pouch.actors.container.pause)."""
        config = self.record["Config"]
        if pause.is_pause(config.get("Labels")):
            return _no_output()
        return self.env.hub.open_soon(
            self.cid, self.env.fifo_root / self.cid, Path(self.record["LogPath"]),
            tty=bool(config.get("Tty")), stdin=bool(config.get("OpenStdin")),
            stdin_once=bool(config.get("StdinOnce")), restore=restore,
            log_config=log_config(self.record["HostConfig"].get("LogConfig")))

    def _io_opened(self, opening: Future[tuple[dict[str, str], threading.Event]]
                   ) -> dict[str, str]:
        """The FIFOs' paths for the task."""
        paths, self._drained = opening.result(timeout=IO_OPEN_WAIT)
        return paths

    # -- the lifecycle: lifecycle.py decides, the worker carries it out -------

    @property
    def _life(self) -> lc.State:
        return rec.lifecycle(self.record)

    @property
    def _task_live(self) -> bool:
        """The task lives (its exit is to come). Not State.Running, which dockerd also
        sets while a restart is pending and no task runs."""
        return self._life.live

    @property
    def _restart_policy(self) -> lc.RestartPolicy:
        return lc.RestartPolicy.of(self.record["HostConfig"])

    def _stop_policy(self) -> lc.StopPolicy:
        return lc.StopPolicy.of(self.record["Config"])

    def _commit(self, life: lc.State) -> None:
        rec.set_lifecycle(self.record, life)
        self._save()

    def _commit_soon(self, life: lc.State, sync_dir: bool = True) -> Callable[[], None]:
        """_commit, its save made on a helper thread meanwhile. The function it returns
        waits for that save: call it before the effect the save must precede, and before
        any other save of the record. `sync_dir`: see MetaStore.save_soon."""
        rec.set_lifecycle(self.record, life)
        data, saving = self.env.meta.save_soon(self.record, sync_dir)

        def saved() -> None:
            saving.result()
            self.env.updated(json.loads(data))
        return saved

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
        commit = self._commit if self._cut_would_leave_a_trace(transition) else \
            functools.partial(rec.set_lifecycle, self.record)
        commit(transition.state)
        try:
            self._carry_out_all(transition, reply)
        except BaseException:
            commit(before)
            raise

    def _cut_would_leave_a_trace(self, transition: lc.Transition) -> bool:
        """Whether the transition's state must be saved before its effects: all but the
        removal of a container that does not run and has no volume or network endpoint
        to release. Such a removal changes nothing a restore reads before its folder goes
        (its commit), so a cut one leaves the container as it was, as dockerd's would,
        and its removal costs no wait for the disk."""
        return (transition.effects != (lc.Destroy(),) or self._life.live
                or nets.on_network(self.record["HostConfig"].get("NetworkMode", ""))
                or any(m["type"] == "volume" for m in rec.mounts(self.record)))

    def _carry_out_all(self, transition: lc.Transition, reply: Reply | None = None) -> None:
        for effect in transition.effects:
            self._carry_out(effect, reply, transition.result)

    def _carry_out(self, effect: lc.Effect, reply: Reply | None, result: Any) -> None:
        match effect:
            case lc.Signal(signum, every):
                # Gone already: its exit is on the way, and answers what waits for it.
                unless_gone(lambda: self.env.ctrd.tasks.kill(self.cid, signum, all=every))
                self._event("kill", signal=str(signum))
            case lc.KillAfter(seconds) if seconds <= 0:
                self.escalate(self._state["Pid"])  # now: no timer, no hop back to this worker
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
            case lc.Freeze():
                self.env.ctrd.tasks.pause(self.cid)
                self._event("pause")
            case lc.Thaw(after_signal):
                try:
                    unless_gone(lambda: self.env.ctrd.tasks.resume(self.cid))
                except PouchError as exc:
                    if not after_signal:
                        raise
                    # The signal's end comes anyway (SIGKILL after the grace, if need be).
                    log.warning("thawing %s after a signal: %s", self.cid, exc.message)
                    return
                self._event("unpause")
            case lc.RemoveUnlessStarted(seconds):
                self._later(seconds, self._tell_self, ContainerWorker.unclaimed)
            case lc.TellStopped(at_exit=True):
                self._stops_at_exit += 1
            case lc.TellStopped():
                self._event("stop")
            case lc.AnswerWaiters():
                held, self._held = self._held, []
                for waiting, answer in held:
                    waiting.send(answer)
                self._answer_waits(("not-running", "next-exit"))
            case lc.Destroy():
                remover, self._remover = self._remover, None
                if remover is not None:
                    remover.run(self._destroy)
                else:
                    try:
                        self._destroy()
                    except Exception:
                        log.exception("removing %s after its exit", self.cid)
                if self._gone:
                    self._delete_from_containerd()

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
        self._task_gone = False
        running_saved: Callable[[], None] = _nothing
        try:
            if self._ran_before():  # a stopped task of an earlier run
                unless_gone(lambda: ctrd.tasks.delete(self.cid))
            rec.begin_start(self.record, token)
            # The intent need outlive the actor only (a crash of the machine takes the
            # task with it, and the record before is then as good): its rename is made
            # durable by the next full save, the running record's. It is written while
            # containerd makes the task, and on disk before the task starts: a task made
            # and never started is dropped at restore, whatever the record says.
            intent_saved = self._commit_soon(lc.on_starting(life), sync_dir=False)
            opening = self._open_io_soon()
            try:
                try:
                    if joins.prepares(self.record["HostConfig"]):
                        network = joins.prepare(
                            self._current_spec, self._set_spec, self._other,
                            self.env.meta.folder, self.cid, self.record["HostConfig"])
                        if network is not None:
                            joins.share_network(self.record, network)
                    nets.check(self.env.calls, self.record)
                    self._apply_links()
                    if plugins.loaded().has("pre_start"):
                        self._pre_start()
                    self._mount_volumes()
                    nets.publish_ports(self.env.calls, self.record)
                    if self._mounts is None:
                        self._mounts = ctrd.snapshots.mounts(self.cid)
                    mounts = self._mounts
                finally:
                    fifos = self._io_opened(opening)  # even after a failure: the hub is done
                pid = self._create_task(mounts, fifos)
            finally:
                intent_saved()
            self.env.hub.writers_ready(self.cid)
            self.env.faults.hit("container.start.task_created")
            started_at = rfc3339_nano()  # before: a quick process may end before start returns
            now = time.time()
            # Recorded as running while containerd starts the task, so that the answer
            # waits for no write of its own: a restore that finds the task started (or
            # gone with the machine) takes this record as it is, one that finds it made
            # and never started puts the record back (rec.unstarted): a cut start.
            rec.begin_running(self.record, pid, started_at)
            self._health.reset()
            running_saved = self._commit_soon(lc.on_start_sent(self._life, now, by_policy))
            if self.env.faults.armed("container.start.recorded_running"):
                running_saved()  # the point is that record on disk, the start not sent
            self.env.faults.hit("container.start.recorded_running")
            self._start_task()
            self.env.faults.hit("container.start.task_started")
        except PouchError as exc:
            self._start_failed(life, exc.message, by_policy, running_saved)
            raise self._explain_start_error(exc) from None
        except Exception as exc:
            self._start_failed(life, f"{type(exc).__name__}: {exc}", by_policy, running_saved)
            raise
        running_saved()  # a failed write fails the answer (the task runs, as before)
        rec.settle_start(self.record, went_through=True)
        self._health.started()
        # What the running record says once the start answers: not saved again (see
        # above), the next save writes it. Nor sent to the actor again: its copy, the
        # running record's, differs only in the private part, which the actor drops.
        rec.set_lifecycle(self.record, lc.on_started(self._life, now, by_policy))
        self._event("start")
        return True

    def _apply_links(self) -> None:
        """The container's links as dockerd gives them at each start (see links): the
        lines of its /etc/hosts, and on the default bridge their environment. That goes
        into the spec's process, whose env the create fixed without it: containerd holds
        the spec the task is made from, and so does every exec's process (dockerd gives
        an exec the links' environment too). Errors: conflict (a linked container does
        not run), the lookups'."""
        record = self.record
        kept = rec.bridge_links(record)
        networks = record["NetworkSettings"]["Networks"]
        if kept is None and not any(n.get("Links") for n in networks.values()):
            return
        find = links.finder(self._other)
        lines: list[str] = []
        if kept is not None and "bridge" in networks:
            others = {k["Id"]: found for k in kept if (found := find(k["Id"])) is not None}
            applied = links.on_bridge(kept, others)
            names = {cid: str(other["Name"]) for cid, other in others.items()}
            # One that is gone took its links with it, as in dockerd.
            rec.set_bridge_links(record, [k for k in kept if k["Id"] in others],
                                 links.shown(kept, names))
            lines = applied.hosts
            self._set_process_env(applied.env)
        for network in networks.values():
            if network.get("Links"):
                lines += links.alias_lines(str(network["NetworkID"]),
                                           map(links.parse, network["Links"]), find)
        links.rewrite_hosts(str(record.get("HostsPath") or ""), lines)

    def _set_process_env(self, linked: list[str]) -> None:
        """The spec's process env made what dockerd gives at a start, with `linked`."""
        config = self.record["Config"]
        env = daemon_env(str(config.get("Hostname") or ""), bool(config.get("Tty")), linked,
                         list(config.get("Env") or []))
        spec = self._current_spec()
        process = spec.get("process") or {}
        if process.get("env") != env:
            self._set_spec({**spec, "process": {**process, "env": env}})

    def _ran_before(self) -> bool:
        """Whether containerd may hold a task of an earlier run: not for a container that
        never began a start (its first start then saves asking containerd)."""
        state = self.record["State"]
        return (state.get("StartedAt", ZERO_TIME) != ZERO_TIME
                or state.get("FinishedAt", ZERO_TIME) != ZERO_TIME
                or "StartingToken" in (self.record.get(rec.PRIVATE) or {}))

    def _pre_start(self) -> None:
        """The pre_start plugins change the spec the task is made from (kept in
        containerd: the next start begins from it). A failure fails the start."""
        current = self._current_spec()
        changed = plugins.loaded().pre_start(plugins.ContainerStart(
            id=self.cid, name=self._name, config=copy.deepcopy(self.record["Config"]),
            host_config=copy.deepcopy(self.record["HostConfig"]),
            spec=copy.deepcopy(current)))
        if changed != current:
            self._set_spec(changed)

    def _current_spec(self) -> dict[str, Any]:
        """The OCI spec containerd holds for the container (do not change it in place).
        Errors: not_found, containerd's."""
        if self._spec is None:
            container = self.env.ctrd.containers.get(self.cid)
            if container is None:
                raise not_found(f"No such container: {self.cid}")
            self._spec = container.spec
        return self._spec

    def _set_spec(self, spec: Mapping[str, Any]) -> None:
        """Give containerd the container's new spec (its next task is made from it)."""
        self._spec = None  # unknown, should the update fail
        self._spec = self.env.ctrd.containers.update_spec(self.cid, spec).spec

    def _create_task(self, mounts: list[Any], fifos: dict[str, str]) -> int:
        """The task's pid. A start cut by the last actor's death may still be creating its
        task inside containerd (its shim's folder exists), and so may a create on the way
        when containerd died: that task is waited for and dropped, and this one created,
        within TASK_CREATE_WAIT. A create that containerd's death cut after it started
        the shim leaves a task that its successor says exists and cannot show: after
        LOST_TASK_AFTER its shim is ended, and containerd cleans up after it."""
        ctrd, began = self.env.ctrd, time.monotonic()
        deadline = began + TASK_CREATE_WAIT
        while True:
            try:
                return ctrd.tasks.create(self.cid, mounts, fifos["stdin"], fifos["stdout"],
                                         fifos["stderr"],
                                         terminal=bool(self.record["Config"].get("Tty")))
            except PouchError as exc:
                if not (_cut_create_in_the_way(exc) or exc.code == "unavailable") \
                        or time.monotonic() > deadline:
                    raise
                exists = exc.code == "conflict"
            time.sleep(0.1)
            task = ctrd.tasks.get(self.cid)
            if task is not None and task.status == "CREATED":
                self._drop_unstarted_task()
            elif task is None and exists and time.monotonic() > began + LOST_TASK_AFTER:
                self._end_shims()

    def _release_shm(self) -> None:
        """A shareable /dev/shm lives as long as a run (pouch.actors.container.shm)."""
        try:
            joins.release(self.env.meta.folder(self.cid), self.record["HostConfig"])
        except OSError as exc:
            log.warning("unmounting the /dev/shm of %s: %s", self.cid, exc)

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

    def _mount_volumes(self) -> None:
        """The volumes mounted for the task; should one lie elsewhere than the spec made
        at create says, the spec follows it."""
        moved = vols.mount_all(self._volume_env, vols.from_records(rec.mounts(self.record)))
        if moved:
            spec = copy.deepcopy(self._current_spec())
            for mount in spec.get("mounts") or []:
                if mount.get("type") == "bind" and mount.get("destination") in moved:
                    mount["source"] = moved[mount["destination"]]
            self._set_spec(spec)

    def _unmount_volumes(self) -> None:
        vols.unmount_all(self._volume_env, vols.from_records(rec.mounts(self.record)))

    def _start_failed(self, life: lc.State, message: str, by_policy: bool,
                      running_saved: Callable[[], None] = _nothing) -> None:
        with contextlib.suppress(Exception):
            running_saved()  # first: the failure's record must land after it
        rec.unstarted(self.record)
        with contextlib.suppress(PouchError):
            self.env.ctrd.tasks.delete(self.cid)
        self._release_shm()
        self._unmount_volumes()
        nets.unpublish_ports(self.env.calls, self.record)
        self.env.hub.forget(self.cid)
        # dockerd's codes for what the runtime says (a network not found is no 127).
        code = 127 if ("executable file not found" in message or "no such file" in message) \
            else 126 if "permission denied" in message else 128
        ran_before = self._state.get("StartedAt", ZERO_TIME) != ZERO_TIME  # as it was put back
        transition = lc.on_start_failed(life, self._restart_policy, code, time.time(), by_policy,
                                        ran_before)
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

    def stop_container(self, reply: Reply, timeout: int | None, signal: str) -> None:
        """True once the task has exited (SIGKILL after the grace period); False if it
        was not running."""
        self._serve(reply, lambda life: lc.on_stop(
            life, self._stop_policy(), timeout, lc.parse_signal(signal) if signal else None))

    def _escalate_later(self, pid: int) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(Notice(ContainerWorker.escalate, (pid,)))

    def escalate(self, pid: int) -> None:
        """The grace period is over: kill what still runs."""
        if self._task_live and self._state["Pid"] == pid:
            try:
                self.env.ctrd.tasks.kill(self.cid, signals.SIGKILL, all=True)
            except PouchError as exc:
                log.warning("killing %s: %s", self.cid, exc.message)
                return
            self._event("kill", signal=str(int(signals.SIGKILL)))

    def resize_container(self, reply: Reply, height: int, width: int) -> None:
        reply.run(self._resize, height, width)

    def _resize(self, height: int, width: int) -> None:
        self._check_alive()
        if not self._task_live:
            raise conflict(f"Container {self.cid} is not running")
        if not self.record["Config"].get("Tty"):
            return  # as dockerd: no terminal, nothing to resize
        self.env.ctrd.tasks.resize_pty(self.cid, width, height)

    def kill_container(self, reply: Reply, signal: str) -> None:
        """SIGKILL answers once the exit is recorded, as dockerd does."""
        self._serve(reply, lambda life: lc.on_kill(life, self._stop_policy(),
                                                   lc.parse_signal(signal)))

    def pause_container(self, reply: Reply) -> None:
        self._serve(reply, lc.on_pause)

    def unpause_container(self, reply: Reply) -> None:
        self._serve(reply, lc.on_unpause)

    def restart_container(self, reply: Reply, timeout: int | None) -> None:
        """Stop as `stop` does, then start; answered once started (or failed to)."""
        ok, transition = reply.attempt(
            self._decide, lambda life: lc.on_restart(life, self._stop_policy(), timeout))
        if not ok:
            return
        if not transition.held:  # nothing ran: start it (a pending restart is cancelled)
            if reply.attempt(self._apply, transition)[0]:
                reply.run(self._start_again)
            return
        # The start follows the exit the stop brings (see _record_exit). No AnswerBy for
        # this reply: a restart answers once the container runs again, or fails to.
        self._restarters.append(reply)
        if not reply.attempt(self._apply, transition)[0]:
            self._restarters.remove(reply)

    def _start_again(self) -> None:
        self._start()
        self._event("restart")

    def _start_restarters(self) -> None:
        """The exit a restart waited for is recorded: start the container again."""
        restarters, self._restarters = self._restarters, []
        for reply in restarters:
            if not reply.done:
                reply.run(self._start_again)

    def rename_container(self, reply: Reply, name: str) -> None:
        """`name` (no slash) is checked and reserved by the container actor already."""
        reply.run(self._rename, name)

    def _rename(self, name: str) -> None:
        self._check_alive()
        old = self.record["Name"]
        self.record["Name"] = "/" + name
        self._save()
        self._event("rename", oldName=old)

    def connect_network(self, reply: Reply, network: str, aliases: list[str], ip: str,
                        wanted: list[str]) -> None:
        reply.run(self._connect_network, network, aliases, ip, wanted)

    def _connect_network(self, network: str, aliases: list[str], ip: str,
                         wanted: list[str]) -> None:
        self._check_alive()
        parsed = [links.parse(entry) for entry in dict.fromkeys(wanted)]
        settings = nets.connect(self.env.calls, self.record, network, aliases, ip)
        if parsed and nets.is_user_network(settings["NetworkName"]):
            rec.set_network_links(self.record, settings["NetworkName"], parsed)
            if self._task_live:  # the others' lines are the start's: these are added
                links.add_hosts_lines(str(self.record.get("HostsPath") or ""),
                                      links.alias_lines(settings["NetworkID"], parsed,
                                                        links.finder(self._other)))
        self._save()

    def disconnect_network(self, reply: Reply, network: str) -> None:
        reply.run(self._disconnect_network, network)

    def _disconnect_network(self, network: str) -> None:
        self._check_alive()
        nets.disconnect(self.env.calls, self.record, network)
        self._save()

    def update_container(self, reply: Reply, body: dict[str, Any]) -> None:
        reply.run(self._update, body)

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        """docker update: the restart policy and cgroup limits. Limits reach the live
        task (containerd's task Update) and the spec its next start is made from."""
        self._check_alive()
        life = self._life
        if life.status in (lc.Status.REMOVING, lc.Status.DEAD) or life.removal_pending:
            raise conflict(f"Cannot update container {self.cid}: container is marked for "
                           'removal and cannot be "update"')
        hooks = plugins.loaded()
        if hooks.has("pre_update"):  # the body as the plugins leave it is what is checked
            body = hooks.pre_update(plugins.ContainerUpdate(self.cid, self._name, body))
        plan = plan_update(self.record["HostConfig"], body)
        if plan.limits:
            limits = linux_resources(plan.host_config)
            ctrd = self.env.ctrd
            try:
                if life.live:
                    ctrd.tasks.update(self.cid, limits)
                spec = unless_gone(self._current_spec)
                if spec is not None:
                    self._set_spec(with_limits(spec, limits))
            except PouchError as exc:
                raise PouchError(exc.code, f"Cannot update container {self.cid}: "
                                           f"{exc.message}") from None
        self.record["HostConfig"] = plan.host_config
        self._save()
        self._event("update")
        if hooks.has("post_update"):  # the update stands; a failure here is still said
            pid = self._state.get("Pid") or 0
            hooks.post_update(plugins.ContainerUpdated(
                self.cid, self._name, f"/proc/{pid}/root" if life.live and pid else "",
                list(self.record["Config"].get("Env") or [])))
        return {"Warnings": plan.warnings}

    def prune(self) -> int | None:
        """docker container prune, asked through a pykka proxy: remove the container if
        it does not run; the bytes its own layer took, or None when it stays."""
        if self._gone or not lc.prunable(self._life):
            return None
        try:  # its SizeRw, as dockerd counts what a prune reclaims
            size = files_size(changes.layers_of(self._snapshot_mounts())[0])
        except PouchError:
            size = 0
        rec.begin_removal(self.record, "")
        self._apply(lc.on_remove(self._life, force=False))
        return size if self._gone else None

    # -- observation and files: container.observe, .archive, .changes, .fsview --
    # Copies run here, in turn with the rest (as dockerd holds the container's lock for
    # them): a removal waits for a copy, and a copy never meets a half-removed container.

    def _cgroup(self) -> observe.Cgroup:
        """Where runc put the container: its spec's cgroupsPath."""
        container = self.env.ctrd.containers.get(self.cid)
        path = ((container.spec if container else {}).get("linux") or {}).get("cgroupsPath")
        if not path:
            raise conflict(f"Container {self.cid} has no cgroup")
        return observe.Cgroup.of(path)

    def _snapshot_mounts(self) -> list[dict[str, Any]]:
        return [dict(m) for m in self.env.ctrd.snapshots.mounts(self.cid)]

    def _running_check(self) -> None:
        self._check_alive()
        if self._state.get("Restarting"):
            raise conflict(f"Container {self.cid} is restarting, wait until the container "
                           "is running")
        if not self._task_live:
            raise conflict(f"Container {self.cid} is not running")

    def top_container(self, reply: Reply, ps_args: str) -> None:
        reply.run(self._top, ps_args)

    def _top(self, ps_args: str) -> dict[str, Any]:
        self._running_check()
        result = observe.top(self._cgroup().pids(), ps_args)
        self._event("top")
        return result

    def stats_container(self, reply: Reply, conn: StreamSession, stream: bool,
                        one_shot: bool) -> None:
        cgroup: list[observe.Cgroup] = []
        if not self._take(reply, conn, lambda: cgroup.append(self._cgroup()),
                          resumable=stream, multiplexed=False):
            return
        if stream:
            conn.may_resume()
        threading.Thread(target=self._stats_loop, args=(conn, cgroup[0], stream, one_shot),
                         name=f"stats-{self.cid[:12]}", daemon=True).start()

    def _stats_loop(self, conn: StreamSession, cgroup: observe.Cgroup, stream: bool,
                    one_shot: bool) -> None:
        """On a thread of its own: a reading a second (or one), until the client leaves
        or the container is removed. It reads the record the worker changes: a reading
        that straddles a stop reads zeros, as one taken after it."""
        reader = observe.StatsReader(self.record["Name"], self.cid, rfc3339_nano)
        host_network = self.record["HostConfig"].get("NetworkMode") == "host"
        prime = not stream and not one_shot  # dockerd's precpu_stats: a reading before
        while not self._gone:
            live = self._task_live and not self._state.get("Restarting")
            if not live and not stream:
                conn.write_json(observe.empty_stats(self.record["Name"], self.cid))
                break
            stats = reader.next(cgroup if live else None, self._state.get("Pid") or 0,
                                host_network)
            if not prime:
                if not conn.write_json(stats):
                    return
                if not stream:
                    break
            prime = False
            time.sleep(observe.STATS_EVERY)
        conn.end()

    def runtime_spec_container(self, reply: Reply) -> None:
        reply.run(self._current_spec)

    def changes_container(self, reply: Reply) -> None:
        reply.run(self._changes)

    def _changes(self) -> list[dict[str, Any]] | None:
        self._check_alive()
        upper, lowers = changes.layers_of(self._snapshot_mounts())
        container = self.env.ctrd.containers.get(self.cid)
        made = changes.init_paths((container.spec.get("mounts") or []) if container else [])
        return changes.changes(upper, lowers, made) or None  # none: null, as dockerd

    def commit_layer_container(self, reply: Reply, pause: bool, lease: str) -> None:
        reply.run(self._commit_layer, pause, lease)

    def _commit_layer(self, pause: bool, lease: str) -> ContainerLayer:
        """The container's changes against its image, stored by containerd's diff
        service as an uncompressed layer blob under `lease`; frozen meanwhile if `pause`
        and it runs (the freeze is the commit's own: no state change, no event)."""
        self._check_alive()
        ctrd = self.env.ctrd
        frozen = pause and self._life.status == lc.Status.RUNNING and self._task_live
        if frozen:
            ctrd.tasks.pause(self.cid)
        view = f"commit-{self.cid[:12]}-{secrets.token_hex(4)}"
        try:
            if not self._task_live:  # its rootfs is not mounted: the layer may be tidied
                upper, lowers = changes.layers_of(self._snapshot_mounts())
                container = ctrd.containers.get(self.cid)
                changes.drop_mount_points(upper, lowers, changes.init_paths(
                    (container.spec.get("mounts") or []) if container else []))
            info = ctrd.snapshots.stat(self.cid)
            if info is None:
                raise not_found(f"No such container: {self.cid}")
            lower = ctrd.snapshots.view(view, info.parent, lease=lease) if info.parent else []
            try:
                blob = ctrd.diff.diff(lower, self._snapshot_mounts(), LAYER_MEDIA_TYPE,
                                      lease=lease)
            finally:
                if info.parent:
                    unless_gone(lambda: ctrd.snapshots.remove(view))
        finally:
            if frozen:
                unless_gone(lambda: ctrd.tasks.resume(self.cid))
        return {"digest": blob["digest"], "size": blob["size"], "media_type": LAYER_MEDIA_TYPE,
                "parent": info.parent, "image": self.record["Image"],
                "config": copy.deepcopy(self.record["Config"])}

    @contextlib.contextmanager
    def _root(self, writable: bool = False) -> Iterator[cproot.Root]:
        """The container's root as docker cp sees it: its processes' while it runs, else
        its snapshot's; with its volumes and binds either way (pouch.actors.container.
        cproot), a stopped container's volumes mounted meanwhile."""
        pid = int(self._state.get("Pid") or 0) if self._task_live else 0
        planned = vols.from_records(rec.mounts(self.record))
        mounted = not pid and any(m.type == "volume" for m in planned)
        try:
            moved = vols.mount_all(self._volume_env, planned) if mounted else {}
            with cproot.cp_root(self.cid, pid, self._snapshot_mounts, self.env.views,
                                writable, cproot.binds_of(planned, self.record, moved)
                                ) as root:
                yield root
        finally:
            if mounted:
                vols.unmount_all(self._volume_env, planned)

    def archive_stat_container(self, reply: Reply, path: str, ref: str) -> None:
        reply.run(self._archive_stat, path, ref)

    def _archive_stat(self, path: str, ref: str) -> dict[str, Any]:
        self._check_alive()
        with self._root() as root:
            return archive.path_stat(root.fd, archive.find(root.fd, path, ref))

    def archive_get_container(self, reply: Reply, path: str, spool: str, ref: str) -> None:
        reply.run(self._archive_get, path, spool, ref)

    def _archive_get(self, path: str, spool: str, ref: str) -> dict[str, Any]:
        self._check_alive()
        with self._root() as root:
            found = archive.find(root.fd, path, ref)
            stat = archive.path_stat(root.fd, found)
            with archive.open_spool(spool, write=True) as out:
                archive.write(root.fd, found, out, root.devices)
        self._event("archive-path")
        return stat

    def archive_put_container(self, reply: Reply, path: str, spool: str, ref: str,
                              no_overwrite_dir_non_dir: bool, copy_uid_gid: bool) -> None:
        reply.run(self._archive_put, path, spool, ref,
                  archive.ExtractOptions(no_overwrite_dir_non_dir, None), copy_uid_gid)

    def _archive_put(self, path: str, spool: str, ref: str, options: archive.ExtractOptions,
                     copy_uid_gid: bool) -> None:
        self._check_alive()
        cproot.check_writable(path, vols.from_records(rec.mounts(self.record)),
                              bool(self.record["HostConfig"].get("ReadonlyRootfs")))
        user = self.record["Config"].get("User") or ""
        if copy_uid_gid and user:  # docker cp -a: owned by the container's user
            mounts = self._snapshot_mounts()
            owner = resolve_user(user, read_rootfs_file(mounts, "etc/passwd"),
                                 read_rootfs_file(mounts, "etc/group"))
            options = archive.ExtractOptions(options.no_overwrite_dir_non_dir,
                                             (owner.uid, owner.gid))
        with self._root(writable=True) as root, archive.open_spool(spool) as tarball:
            archive.extract(root.fd, path, tarball, options, ref)
        self._event("extract-to-dir")

    def export_container(self, reply: Reply, conn: StreamSession) -> None:
        views: list[fsview.View] = []

        def mount() -> None:
            self._check_alive()
            views.append(fsview.View(self._snapshot_mounts(), self.env.views, readonly=True))

        if not self._take(reply, conn, mount, multiplexed=False):
            for view in views:
                view.close()
            return
        threading.Thread(target=archive.export_to, args=(views[0], conn),
                         name=f"export-{self.cid[:12]}", daemon=True).start()
        self._event("export")

    # -- exec: pouch.actors.container.exec, run here in turn with the rest ------

    def _exec_runnable(self) -> None:
        self._check_alive()
        check_runnable(self._life, stopping=bool(self._held))

    def exec_create(self, reply: Reply, exec_id: str, config: dict[str, Any]) -> None:
        reply.run(self._exec_create, exec_id, config)

    def _exec_create(self, exec_id: str, config: dict[str, Any]) -> ExecCreated:
        self._exec_runnable()
        return self._execs.create(exec_id, config, self.record["Config"].get("User") or "")

    def exec_start(self, reply: Reply, conn: StreamSession | None, exec_id: str,
                   tty: bool) -> None:
        self._execs.serve_start(reply, conn, exec_id, tty, self._exec_runnable,
                                self.record["Config"])

    def exec_resize(self, reply: Reply, exec_id: str, height: int, width: int) -> None:
        reply.run(self._execs.resize, exec_id, height, width)

    def exec_exited(self, exec_id: str, status: int) -> None:
        self._execs.exited(exec_id, status)

    def exec_collect_garbage(self) -> None:
        self._execs.collect_garbage()

    def _probe_exec(self, command: list[str], output: StreamSession) -> str:
        """A health probe (pouch.actors.container.health): an exec as dockerd's probes
        are, its output to `output`; its ID. Errors: PouchError (it could not run)."""
        self._exec_runnable()
        config, exec_id = self.record["Config"], rec.new_id()
        self._execs.create(exec_id, {"Cmd": command, "AttachStdout": True,
                                     "AttachStderr": True,
                                     "WorkingDir": config.get("WorkingDir") or ""},
                           config.get("User") or "")
        error = self._execs.start(self._execs.get(exec_id), output, config)
        if error is not None:
            raise error
        return exec_id

    def _may_probe(self) -> bool:
        """Whether a health probe may run: the container runs, unpaused, and no stop, kill
        or restart waits for its exit."""
        return self._life.status is lc.Status.RUNNING and not self._held \
            and not self._restarters

    def _exec_exit_code(self, exec_id: str) -> int | None:
        with contextlib.suppress(PouchError):
            return self._execs.get(exec_id).exit_code
        return None

    # -- exit ----------------------------------------------------------------

    def task_exited(self, pid: int, status: int, exited_at: str) -> None:
        """containerd says the init process exited."""
        if self._gone or not self._task_live:
            return
        if pid and self._state["Pid"] and pid != self._state["Pid"]:
            return  # a task this run replaced (a start cut by the last actor's death)
        if not pid and exited_at and parse_timestamp(exited_at) < parse_timestamp(
                self._state["StartedAt"]):
            # containerd's own word for a shim it lost (no pid, status 255), of an
            # attempt before this run's task: a create that containerd's death cut.
            return
        self._handle_exit(status, exited_at)

    def task_oom(self) -> None:
        """containerd says the OOM killer killed a process of the container: recorded
        (State.OOMKilled, until the next start, as dockerd) and told (an `oom` event)."""
        if self._gone or not self.record:
            return
        self._state["OOMKilled"] = True
        self._save()
        self._event("oom")

    def check_task(self) -> None:
        """After missed events (containerd restarted): does the task still run?"""
        if self._gone or not self._task_live:
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
            self._task_gone = True
            if exit_info is not None:
                status, exited_at = exit_info.exit_status, exit_info.exited_at or exited_at
        except PouchError as exc:
            log.warning("deleting the task of %s: %s", self.cid, exc.message)
        self.env.faults.hit("container.exit.task_deleted")
        if self._drained is not None and not self._drained.wait(DRAIN_TIMEOUT):
            log.warning("output of %s did not end within %.0f s", self.cid, DRAIN_TIMEOUT)
            self.env.hub.forget(self.cid)
        self._drained = None
        self._execs.container_exited()
        self._health.stop()
        self._release_shm()
        self._record_exit(status, exited_at)

    def _record_exit(self, status: int, exited_at: str, error: str = "") -> None:
        self._unmount_volumes()  # first: a restart by the policy mounts them again
        nets.unpublish_ports(self.env.calls, self.record)
        policy = self._restart_policy
        if self._restarters:  # a restart's stop: not auto-removed (as dockerd's restart)
            policy = lc.RestartPolicy(policy.name, policy.maximum_retry_count)
        transition = lc.on_exit(self._life, policy, status, time.time())
        rec.set_exited(self.record, status, exited_at, error)
        self._commit(transition.state)
        self.env.hub.release(self.cid)  # its attached clients end: they find it stopped
        self._event("die", exitCode=str(status))
        # Told before the stops are answered, as dockerd tells each before its reply.
        stops, self._stops_at_exit = self._stops_at_exit, 0
        for _ in range(stops):
            self._event("stop")
        self._carry_out_all(transition)
        if self._restarters:
            self._start_restarters()

    # -- restart policy ------------------------------------------------------

    def _tell_self(self, action: Callable[[ContainerWorker], None]) -> None:
        """From a timer's thread: run `action` on this worker's own thread."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(Notice(ContainerWorker.run, (action,)))

    def run(self, action: Callable[[ContainerWorker], None]) -> None:
        action(self)

    def unclaimed(self) -> None:
        """Nobody will start this container: a start cut by the last actor's death was
        not sent again in time, or its create's caller died before the answer reached it."""
        if not self._gone:
            transition = lc.on_unclaimed(self._life)
            if transition.effects:  # it goes, leaving nothing: its anonymous volumes neither
                rec.begin_removal(self.record, "", volumes=True)
            self._apply(transition)

    def restart_by_policy(self) -> None:
        """The restart timer fired."""
        if self._gone or not lc.on_restart_due(self._life):
            return
        try:
            # Told by its `start` alone: dockerd's `restart` event is docker restart's.
            self._start(by_policy=True)
        except Exception as exc:  # the failed start is recorded; the policy decided what next
            log.warning("restarting %s: %s", self.cid, exc)

    def _cancel_restart(self) -> None:
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None

    # -- remove --------------------------------------------------------------

    def remove_container(self, reply: Reply, force: bool, token: str,
                         volumes: bool = False) -> None:
        if token and token == rec.removal_token(self.record):  # a retry of this removal
            if self._gone:
                reply.send(None)  # done at restore, before its tomb reached the actor
                return
            if self._life.status is lc.Status.REMOVING:
                self._remover = reply  # answered when it ends
                return
        rec.begin_removal(self.record, token, volumes)
        self._serve(reply, lambda life: lc.on_remove(life, force), removal=True)

    def _destroy(self) -> None:
        ctrd = self.env.ctrd
        if not self._task_gone:
            unless_gone(lambda: ctrd.tasks.delete(self.cid))
        self.env.faults.hit("container.remove.task_deleted")
        forgetting = self.env.hub.forget_soon(self.cid)
        self._health.stop()
        self._execs.forget_all()
        fifo_dir = self.env.fifo_root / self.cid
        for fifo in fifo_dir.glob("*"):
            fifo.unlink(missing_ok=True)
        if fifo_dir.exists():
            fifo_dir.rmdir()
        if any(m["type"] == "volume" for m in rec.mounts(self.record)):
            vols.release(self._volume_env, rec.removes_volumes(self.record))
        self._release_shm()  # before its folder goes: a mount point cannot be removed
        nets.release(self.env.calls, self.cid, self.record["HostConfig"].get("NetworkMode", ""))
        # A shim containerd lost keeps its socket (its own exit removes it): without one,
        # the process table need not be searched.
        if shims.socket_path(ctrd.address, ctrd.namespace, self.cid).exists():
            self._end_shims()
        forgetting.result(timeout=CALL_TIMEOUT)  # the log closed before its files move
        # First: a removal cut after it is done at restore.
        self._tomb = self.env.meta.bury(self.cid, self.record)
        self.env.meta.remove(self.cid)
        self._gone = True
        # The actor's index first: a waiter told of the removal lists containers next
        # (`docker run --rm` returns), and finds it gone.
        self.env.removed(self.cid, self._name, self._tomb)
        self._answer_waits(("removed", "not-running", "next-exit"), removed=True)
        self._event("destroy")
        self.actor_ref.stop(block=False)

    def _delete_from_containerd(self) -> None:
        """The removed container's containerd container and snapshot, deleted on helper
        threads once the removal has answered: nothing needs them gone first (the task
        is), and what a failed or cut delete leaves, the sweep removes, as it names no
        folder. Not sooner: their gRPC calls would only take turns with the removal's
        own work, on the process's one interpreter lock and the machine's few cores."""
        ctrd = self.env.ctrd
        for step in (lambda: ctrd.containers.delete(self.cid),
                     lambda: ctrd.snapshots.remove(self.cid)):
            self.env.side.submit(self._delete, step).add_done_callback(self._deleted)

    def _delete(self, step: Callable[[], object]) -> None:
        """On a helper thread: one of the removal's containerd deletes."""
        self.env.faults.hit("container.remove.deleting")
        unless_gone(step)

    def _deleted(self, done: Future[None]) -> None:
        """On a helper thread: a containerd delete of the removal ended."""
        exc = done.exception()
        if exc is not None:
            message = exc.message if isinstance(exc, PouchError) else str(exc)
            log.warning("removing %s from containerd: %s (the sweep tries again)",
                        self.cid, message)

    # -- streams handed over by the gateway ----------------------------------

    def _take(self, reply: Reply, session: StreamSession,
              check: Callable[[], Any] | None = None, resumable: bool = False,
              multiplexed: bool | None = None) -> bool:
        """Accept a handed-over connection: answer the gateway (an error while it can
        still shape it), then start the response. False if the connection is done.
        `check` (default: the container is still here) may refuse it;
        `resumable`: a restarted actor could take the stream up from the start;
        `multiplexed` (default: the container has no TTY): its output is framed."""
        try:
            (check or self._check_alive)()
        except (PouchError, ValueError) as exc:
            # The refusal first: closing the session tells the gateway the stream is over.
            reply.fail(exc if isinstance(exc, PouchError) else invalid(str(exc)))
            session.close()
            return False
        reply.send(None)
        self.env.faults.hit("container.stream.taken")
        if multiplexed is None:
            multiplexed = not self.record["Config"].get("Tty")
        return session.start(multiplexed=multiplexed, resumable=resumable)

    def wait_container(self, reply: Reply, conn: StreamSession, condition: str) -> None:
        # A container removed meanwhile (its actor has yet to hear) is past every condition.
        if not self._take(reply, conn, lambda: None, resumable=True):
            return
        waiter = Waiter(conn, condition)
        ended = not self._state["Running"] and not self._state.get("Restarting") and (
            condition == "not-running" or self._exited_since(conn))
        if ended or self._gone:
            self._answer(waiter, removed=self._gone)
            return
        self._wait_conns.append(waiter)

    def _exited_since(self, conn: StreamSession) -> bool:
        """A stream handed over again after this actor restarted: did an exit come after
        it first began, which no actor told it of? (Not after the cut: the gateway sees
        the cut a little late, and an exit may come in between. Nor only if the dead
        actor had started the stream: the gateway had written its head, so the client
        may have started the container since.)"""
        finished = self._state.get("FinishedAt") or ZERO_TIME
        return (bool(conn.began_at) and finished != ZERO_TIME
                and parse_timestamp(finished) >= conn.began_at)

    def _answer_waits(self, conditions: tuple[str, ...], removed: bool = False) -> None:
        keep = []
        for waiter in self._wait_conns:
            if waiter.condition in conditions:
                self._answer(waiter, removed)
            else:
                keep.append(waiter)
        self._wait_conns = keep

    def _answer(self, waiter: Waiter, removed: bool = False) -> None:
        # Told of the removal, a waiter gets the exit code and no error, as from dockerd
        # (the CLI's `run --rm` would print a failed start's error twice).
        error = "" if removed else self._state.get("Error") or ""
        waiter.session.write_json(rec.wait_answer(self._state["ExitCode"], error))
        waiter.session.end()

    def attach_container(self, reply: Reply, conn: StreamSession, opts: dict[str, Any]) -> None:
        if self._removed_meanwhile(conn, reply, "attach", opts):
            return
        # Without stdin, an attach that follows live is taken up as a `logs -f` is: the
        # output logged since the cut, then what comes. What a client sent to stdin died
        # with the actor: that attach ends saying so.
        follows = opts["stream"] and not opts["stdin"]
        if not self._take(reply, conn, resumable=follows and not opts["logs"]):
            return
        taken_up = bool(conn.began_at)  # handed over again: no new client's attach
        if not taken_up:
            self._event("attach")
        # With a terminal, the client's input is watched for the detach keys (dockerd
        # watches only then: without one, every byte is the container's).
        tty = bool(self.record["Config"].get("Tty"))
        detached = {"name": self._name, "image": self.record["Config"].get("Image", ""),
                    **(self.record["Config"].get("Labels") or {})}
        consumer = Consumer(
            conn, stdout=opts["stdout"], stderr=opts["stderr"], stdin=opts["stdin"], tty=tty,
            escape=EscapeScanner(opts["detach_keys"]) if tty and opts["stdin"] else None,
            on_detach=lambda: self.env.publish("detach", self.cid, detached))
        # A container that does not run has its output still to come: attaching waits for
        # its next start (`docker start -a` attaches first, as to dockerd). A stream taken
        # up again after the actor's restart gets what was logged since the cut (since it
        # began, if the dead actor had not started it: its head was out, so the client
        # may have started the container), and ends with a run that ended since it began.
        ended = ("exited", "dead") if self._exited_since(conn) else ("dead",)
        live = opts["stream"] and self._state["Status"] not in ended
        if taken_up or opts["logs"]:
            self._replay(consumer, attach_window(opts, conn), live, resumable=follows)
        elif live:
            self.env.hub.attach(self.cid, consumer)  # this thread serializes starts: no race
        else:
            conn.end()

    def _removed_meanwhile(self, conn: StreamSession, reply: Reply, method: str,
                           opts: dict[str, Any]) -> bool:
        """A stream handed over again after the actor restarted, for this container, which
        was removed before the actor's index heard: answered as the actor answers one
        after (replay.after_removal)."""
        if self._tomb is not None and conn.began_at:
            after_removal(self._tomb, conn, reply, method, opts)
            return True
        return False

    def logs_container(self, reply: Reply, conn: StreamSession, opts: dict[str, Any]) -> None:
        if self._removed_meanwhile(conn, reply, "logs", opts):
            return
        window: list[Selection] = []

        def parse() -> None:
            self._check_alive()
            if not log_config(self.record["HostConfig"].get("LogConfig")).keeps:
                # dockerd's words (its 501 has no code of ours: 400 says it as plainly).
                raise invalid("configured logging driver does not support reading")
            window.append(log_window(opts, conn.resumed_at))

        if not self._take(reply, conn, parse):
            return
        selection = window[0]
        consumer = Consumer(conn, stdout=opts["stdout"], stderr=opts["stderr"], lines=True,
                            timestamps=opts["timestamps"],
                            selection=dataclasses.replace(selection, tail=-1))
        self._replay(consumer, selection, opts["follow"] and self._task_live)

    def _replay(self, consumer: Consumer, selection: Selection, live: bool,
                resumable: bool = True) -> None:
        """Send the log so far and then, if `live`, what comes; in a thread of its own.
        `resumable`: once it follows live, a restarted actor could take it up."""
        hub, cid, session = self.env.hub, self.cid, consumer.session
        # Not running: the client waits for the next start, unless one happens meanwhile.
        runs_seen = hub.runs(cid) if live and self._state["Status"] in ("created", "exited") \
            else None
        # Opened now, on this thread: a removal of the container, which this thread also
        # does, unlinks the files (a rotation renames them) but cannot take them from
        # the reader.
        log = hub.open_log(cid, Path(self.record["LogPath"]))

        def follow() -> None:
            if resumable:
                session.may_resume()
            hub.follow(cid, consumer, log, runs_seen)

        replay(consumer, log, selection, f"logs-{cid[:12]}", follow if live else None)
