"""docker exec: more processes in a running container, as dockerd 20.10 runs them.

An exec is created (its record: the command, user, environment, terminal, which
streams it attaches), started once (containerd's task Exec and Start, with a process
spec derived from the container's own) and ends with its process. Its exit code is
recorded before its stream ends, so a client that inspects it once the stream is over
(the docker CLI does) reads the code.

The records of a container's execs live in its worker (`Execs`, on the worker's
thread), so execs are serialized with the container's own operations: none is created
or started while the container stops, and they go with it. The container actor answers
inspect from the copies the worker sends after every change (and lists a container's
ExecIDs from them: those not ended). As dockerd's, the records
are kept in memory only: an actor that restarts knows no exec (their processes run on;
the gateway ends their streams, which were not resumable), and finished ones are
dropped by the GC, as dockerd's execCommandGC does (every GC_EVERY s, what was finished
at the last pass is dropped).

The IO follows the container's stream model: the IO hub reads the exec's FIFOs and
writes to the handed-over client connection, and moves its input to the process; the
exec's streams are `held` (see IOHub.open): read once its process runs and its client
is attached, and ended once its exit is recorded.

What an attached start costs beyond runc's own `exec` (which most of it is: runc compiles
the container's seccomp filter for every new process) is kept off its path where it can
be: the FIFOs and containerd's Exec are made while the gateway writes the head, and
what a finished exec held goes just after its client has been told of the end.

Pure rules first (the record, the process spec, when an exec may run, the GC); the
effects (`Execs`) after.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import logging
import shutil
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pouch.actors.container import lifecycle as lc
from pouch.actors.container.detach import DEFAULT_DETACH_KEYS, EscapeScanner, parse_detach_keys
from pouch.actors.container.iohub import Consumer, IOHub
from pouch.actors.container.spec.merge import replace_or_append_env
from pouch.actors.container.spec.oci import ALL_CAPABILITIES, grantable_capabilities
from pouch.actors.container.spec.user import User, resolve_user
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.rootfs import read_rootfs_file
from pouch.actors.host import Reply
from pouch.proto.envelope import PouchError, conflict, invalid, not_found
from pouch.proto.shapes import ExecCreated, ExecInspect
from pouch.proto.stream import StreamSession

log = logging.getLogger("pouch.container")

GC_EVERY = 300.0  # dockerd's execCommandGC: every 5 minutes
# After its exit, how long an exec's output may take to be all read (dockerd waits as
# long) before its stream ends anyway (a process it left behind holds its pipes).
DRAIN_WAIT = 2.0
# How long the worker itself waits for that (the hub reads the FIFOs' ends around the
# time the exit is told, often just after) before a thread of its own takes the wait:
# a thread and its hop back to the worker cost more than the usual wait.
DRAIN_NEAR = 0.05
# What a finished exec held (its process in containerd, its FIFOs) goes this long after
# its stream has ended: not while its client, told of the end, inspects it (the docker
# CLI does at once), which that work (containerd, the shim) would slow down.
TIDY_AFTER = 0.05
# An exec whose container died is killed with it; its own exit comes just after the
# container's: if it does not come within this, it is recorded as killed.
EXIT_GRACE = 2.0
KILLED = 128 + signal.SIGKILL
# dockerd 20.10 records 126 for an exec whose process could not start, whatever the cause.
START_FAILED = 126
DEFAULT_TERM = "TERM=xterm"

# Field of the create body -> the JSON types it may hold (None: null allowed).
_CONFIG_TYPES: dict[str, tuple[type | None, ...]] = {
    "AttachStdin": (bool, None), "AttachStdout": (bool, None), "AttachStderr": (bool, None),
    "Tty": (bool, None), "Privileged": (bool, None), "User": (str, None),
    "WorkingDir": (str, None), "DetachKeys": (str, None), "Env": (list, None),
    "Cmd": (list, str, None), "ConsoleSize": (list, None),
}


class Phase(StrEnum):
    CREATED = "created"    # not started yet: it may be started, once
    STARTING = "starting"  # a start took it: containerd is being asked to run it
    RUNNING = "running"
    EXITED = "exited"      # its exit code is recorded

    @property
    def live(self) -> bool:
        """Among the container's execs (dockerd's ExecCommands of the container)."""
        return self is not Phase.EXITED


@dataclass
class ExecRecord:
    id: str
    container_id: str
    entrypoint: str
    args: list[str]
    env: list[str]          # the request's, over the container's (see process_spec)
    user: str               # the request's, else the container's Config.User
    working_dir: str        # the request's; empty: the container's
    tty: bool
    privileged: bool
    open_stdin: bool
    open_stdout: bool
    open_stderr: bool
    detach_keys: bytes
    phase: Phase = Phase.CREATED
    exit_code: int | None = None
    pid: int = 0
    can_remove: bool = False  # the GC found it finished: it goes at its next pass

    @property
    def command(self) -> str:
        """As dockerd's events name it: the entrypoint, a space, the arguments."""
        return f"{self.entrypoint} {' '.join(self.args)}"

    def inspect(self) -> ExecInspect:
        return {
            "ID": self.id, "Running": self.phase in (Phase.STARTING, Phase.RUNNING),
            "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": self.entrypoint,
                              "arguments": list(self.args), "privileged": self.privileged,
                              "user": self.user},
            "OpenStdin": self.open_stdin, "OpenStderr": self.open_stderr,
            "OpenStdout": self.open_stdout, "CanRemove": self.can_remove,
            "ContainerID": self.container_id,
            "DetachKeys": base64.b64encode(self.detach_keys).decode(), "Pid": self.pid,
        }


# -- the rules ------------------------------------------------------------------------


def new_exec(exec_id: str, cid: str, body: dict[str, Any], container_user: str) -> ExecRecord:
    """An exec's record from a create body (dockerd's ExecConfig, its fields matched
    regardless of case as dockerd's Go decoder does: docker-py sends `detachKeys`).
    Errors: invalid."""
    canonical = {name.lower(): name for name in _CONFIG_TYPES}
    body = {canonical.get(key.lower(), key): value for key, value in body.items()}
    for key, kinds in _CONFIG_TYPES.items():
        value = body.get(key)
        if value is None and None in kinds:
            continue
        wanted = tuple(k for k in kinds if k is not None)
        if not isinstance(value, wanted):
            names = " or ".join(k.__name__ if k else "null" for k in kinds)
            raise invalid(f"invalid field {key}: must be {names}")
    cmd = body.get("Cmd") or []
    cmd = [cmd] if isinstance(cmd, str) else cmd
    env = body.get("Env") or []
    for name, values in (("Cmd", cmd), ("Env", env)):
        if not all(isinstance(v, str) and "\0" not in v for v in values):
            raise invalid(f"invalid field {name}: must be a list of strings without NUL")
    if not cmd:
        raise invalid("No exec command specified")
    keys = body.get("DetachKeys") or ""
    return ExecRecord(
        id=exec_id, container_id=cid, entrypoint=cmd[0], args=list(cmd[1:]), env=list(env),
        user=body.get("User") or container_user, working_dir=body.get("WorkingDir") or "",
        tty=bool(body.get("Tty")), privileged=bool(body.get("Privileged")),
        open_stdin=bool(body.get("AttachStdin")), open_stdout=bool(body.get("AttachStdout")),
        open_stderr=bool(body.get("AttachStderr")),
        detach_keys=parse_detach_keys(keys) if keys else b"")


def check_runnable(life: lc.State, stopping: bool) -> None:
    """Whether an exec may be created or started in the container now, with dockerd's
    words. `stopping`: a stop or a kill waits for the container's exit. Errors: conflict."""
    if life.status is lc.Status.PAUSED:
        raise conflict(f"Container {life.id} is paused, unpause the container before exec")
    if life.status is lc.Status.RESTARTING:
        raise conflict(f"Container {life.id} is restarting, wait until the container is "
                       "running")
    if life.status is not lc.Status.RUNNING:
        raise conflict(f"Container {life.id} is not running")
    if stopping:
        raise conflict(f"Container {life.id} is stopping")


def exec_env(container_env: list[str], container_config: dict[str, Any], tty: bool,
             request_env: list[str]) -> list[str]:
    """dockerd's: the container's environment (PATH, HOSTNAME, its Env over its image's),
    TERM=xterm if the exec has a terminal, the exec's Env over all that. The container's
    spec carries TERM=xterm if the container has a terminal: that one is not the exec's."""
    own_term = any(e.partition("=")[0] == "TERM" for e in container_config.get("Env") or [])
    env = [e for e in container_env
           if not (container_config.get("Tty") and e == DEFAULT_TERM and not own_term)]
    if tty and not any(e.partition("=")[0] == "TERM" for e in env):
        after = next((i + 1 for i, e in enumerate(env) if e.startswith("HOSTNAME=")), len(env))
        env.insert(after, DEFAULT_TERM)
    return replace_or_append_env(env, request_env)


def process_spec(container_process: dict[str, Any], record: ExecRecord,
                 container_config: dict[str, Any], user: User | None,
                 all_caps: Iterable[str]) -> dict[str, Any]:
    """The OCI process spec of an exec: the container's own process (its rlimits,
    capabilities, user...) with the exec's command, environment, working folder and
    terminal; its user if it names one (resolved by the caller); every capability the
    daemon can give if privileged (`all_caps`), as dockerd's execSetPlatformOpt."""
    process = copy.deepcopy(container_process)
    process.pop("consoleSize", None)
    process["args"] = [record.entrypoint, *record.args]
    process["env"] = exec_env(list(process.get("env") or []), container_config, record.tty,
                              record.env)
    process["cwd"] = record.working_dir or process.get("cwd") or "/"
    process["terminal"] = record.tty
    if user is not None:
        process["user"] = {"uid": user.uid, "gid": user.gid, "additionalGids": list(
            dict.fromkeys([user.gid, *user.additional_gids]))}
    caps = process.get("capabilities") or {}
    bounding = list(all_caps) if record.privileged else list(caps.get("bounding") or [])
    # As the container's own spec: a non-root process keeps only the bounding set.
    held = bounding if process.get("user", {}).get("uid", 0) == 0 else []
    process["capabilities"] = {"bounding": bounding, "effective": list(held),
                               "permitted": list(held)}
    return process


def collect_garbage(records: Iterable[ExecRecord]) -> list[str]:
    """One pass of dockerd's execCommandGC: the IDs to drop now (found finished by the
    last pass); those finished since are marked to go at the next."""
    dropped = []
    for record in records:
        if record.can_remove:
            dropped.append(record.id)
        elif not record.phase.live:
            record.can_remove = True
    return dropped


def explain_start_error(error: PouchError) -> PouchError:
    """A detached start that failed, as dockerd answers it: a command that cannot run is
    the request's fault (400)."""
    text = error.message.lower()
    if "executable file not found" in text or "no such file or directory" in text \
            or "permission denied" in text:
        return invalid(error.message)
    return error


# -- the effects: one container's execs, on its worker's thread ----------------------


@dataclass(frozen=True)
class ExecEnv:
    """What a container's execs need of their worker and of the actor's process."""

    cid: str
    ctrd: Containerd
    hub: IOHub
    fifo_root: Path  # one folder per exec under it, for its FIFOs
    changed: Callable[[str, ExecInspect | None], None]  # a copy for the actor (None: gone)
    event: Callable[..., None]  # the container's event: (action, **attributes)
    on_worker: Callable[[Callable[[], None]], None]  # run later on the worker's thread
    # The container's HostConfig.GroupAdd: an exec's user gets those groups too (dockerd's).
    group_add: Callable[[], list[str]] = lambda: []


@dataclass
class _Running:
    """What a started exec holds until its end."""

    drained: threading.Event | None = None  # its output is all read (None: no IO opened)
    made: bool = False  # containerd has the process: it is deleted at the end
    attached: bool = False  # the client's connection is the hub's
    ending: bool = False  # its exit came: being recorded


class Execs:
    def __init__(self, env: ExecEnv) -> None:
        self.env = env
        self._records: dict[str, ExecRecord] = {}
        self._running: dict[str, _Running] = {}
        # The container's own process spec, while it runs (it is the same for every exec).
        self._container_process: dict[str, Any] | None = None

    def get(self, exec_id: str) -> ExecRecord:
        record = self._records.get(exec_id)
        if record is None:
            raise not_found(f"No such exec instance: {exec_id}")
        return record

    def _changed(self, record: ExecRecord) -> None:
        self.env.changed(record.id, record.inspect())

    # -- create ------------------------------------------------------------

    def create(self, exec_id: str, body: dict[str, Any], container_user: str) -> ExecCreated:
        """The caller checked that the container may run an exec (check_runnable). An
        exec_id made already is a create sent again (its token's ID): answered alike."""
        if exec_id in self._records:
            return {"Id": exec_id}
        record = new_exec(exec_id, self.env.cid, body, container_user)
        self._records[exec_id] = record
        self._changed(record)
        self.env.event(f"exec_create: {record.command}", execID=exec_id)
        return {"Id": exec_id}

    # -- start -------------------------------------------------------------

    def serve_start(self, reply: Reply, conn: StreamSession | None, exec_id: str, tty: bool,
                    runnable: Callable[[], None], container_config: dict[str, Any]) -> None:
        """A start request. Attached (`conn`, handed over): answer the gateway, begin the
        response (multiplexed unless the start asks for a `tty`, as dockerd decides it),
        then run; a refusal goes to the gateway while it can still make it a status.
        Detached: answer once the process runs, or with why it could not."""
        ok, record = reply.attempt(self.startable, exec_id, runnable)
        if not ok:
            if conn is not None:
                conn.close()  # after the refusal: closing tells the gateway it is over
            return
        if conn is None:
            error = self.start(record, None, container_config)
            if error is None:
                reply.send(None)
            else:
                reply.fail(explain_start_error(error))
            return
        # containerd is given the process while the gateway writes the head and says go
        # (a round trip through two other processes); only its start waits for that. The
        # answer goes first: the helper's Python would hold it back.
        running = self._running[record.id] = _Running()
        record.phase = Phase.STARTING
        reply.send(None)
        prepared = _helpers().submit(self._prepare, record, running, record.open_stdin,
                                     container_config)
        if not conn.start(multiplexed=not tty):
            self._unprepare(record, running, prepared)
            return  # the client left first: the exec stays created, as dockerd's
        self.start(record, conn, container_config, prepared=(running, prepared))

    def startable(self, exec_id: str, runnable: Callable[[], None]) -> ExecRecord:
        """The exec, if it may start now. Errors: not_found, conflict."""
        record = self.get(exec_id)
        if record.phase is Phase.EXITED:
            raise conflict(f"Error: Exec command {exec_id} has already run")
        if record.phase is not Phase.CREATED:
            raise conflict(f"Error: Exec command {exec_id} is already running")
        runnable()
        return record

    def start(self, record: ExecRecord, conn: StreamSession | None,
              container_config: dict[str, Any],
              prepared: tuple[_Running, Future[None]] | None = None) -> PouchError | None:
        """Run the exec, its output to `conn` (None: detached, the output dropped, as
        dockerd drops it); the error if its process could not start (then recorded as
        exited with START_FAILED, and said on the stream). `prepared`: its _prepare runs
        already, on a helper thread."""
        record.phase = Phase.STARTING  # the copies say so once it runs: one message less
        if prepared is None:
            running = self._running[record.id] = _Running()
        else:
            running = prepared[0]
        self.env.event(f"exec_start: {record.command}", execID=record.id)
        stdin = record.open_stdin and conn is not None
        try:
            if prepared is None:
                self._prepare(record, running, stdin, container_config)
            else:
                prepared[1].result()
            record.pid = self._launch(record, running, conn, stdin)
        except Exception as exc:
            error = exc if isinstance(exc, PouchError) else \
                PouchError("internal", f"{type(exc).__name__}: {exc}")
            if not isinstance(exc, PouchError):
                log.exception("exec %s in %s failed", record.id, self.env.cid)
            self._failed(record, running, conn, error)
            return error
        record.phase = Phase.RUNNING
        self._changed(record)
        return None

    def _prepare(self, record: ExecRecord, running: _Running, stdin: bool,
                 container_config: dict[str, Any]) -> None:
        """Its FIFOs and its process in containerd, not started. `stdin`: its input comes
        from a client (a detached exec's is empty, as dockerd's). On the worker's thread,
        or on a helper's while the worker waits for the gateway (see serve_start)."""
        env, cid = self.env, self.env.cid
        if self._container_process is None:
            container = env.ctrd.containers.get(cid)
            if container is None:
                raise conflict(f"Container {cid} is not running")
            self._container_process = container.spec.get("process") or {}
        user = None
        if record.user:
            mounts = [dict(m) for m in env.ctrd.snapshots.mounts(cid)]
            user = resolve_user(record.user, read_rootfs_file(mounts, "etc/passwd"),
                                read_rootfs_file(mounts, "etc/group"), env.group_add())
        process = process_spec(self._container_process, record, container_config, user,
                               _grantable())
        # Held: the output waits in the FIFOs until writers_ready, so none is missed.
        paths, running.drained = env.hub.open(
            record.id, env.fifo_root / record.id, None, tty=record.tty, stdin=stdin,
            stdin_once=True, held=True)
        env.ctrd.tasks.exec(cid, record.id, process, paths["stdin"], paths["stdout"],
                            paths["stderr"], terminal=record.tty)
        running.made = True

    def _launch(self, record: ExecRecord, running: _Running, conn: StreamSession | None,
                stdin: bool) -> int:
        """Start the prepared process and connect its client; its pid."""
        env = self.env
        pid = env.ctrd.tasks.start(env.cid, record.id)
        if conn is not None:
            conn.settle()  # the output must not reach the client with the head (runc's
            # start takes longer than that wait: it is over by now, but for slow starts)
            env.hub.attach(record.id, self._consumer(record, conn, stdin))
            running.attached = True
        # Only now does the shim hold the FIFOs (an exec's are opened by its start, not by
        # its creation as a task's are): until then the hub's own writers stand in.
        env.hub.writers_ready(record.id)
        return pid

    def _unprepare(self, record: ExecRecord, running: _Running, prepared: Future[None]) -> None:
        """The client left before the start: what _prepare made goes, the exec stays
        created (it may be started again)."""
        with contextlib.suppress(Exception):  # whatever it failed on is undone the same
            prepared.result()
        record.phase = Phase.CREATED
        self._running.pop(record.id, None)
        if running.drained is not None:
            self.env.hub.forget(record.id)
        if running.made:
            self._delete_process(record.id)
        shutil.rmtree(self.env.fifo_root / record.id, ignore_errors=True)

    def _consumer(self, record: ExecRecord, conn: StreamSession, stdin: bool) -> Consumer:
        """The client's side of the exec's IO: with a terminal, its detach keys (the
        exec's own, else ctrl-p ctrl-q) end the stream and leave the process running."""
        escape = EscapeScanner(record.detach_keys or DEFAULT_DETACH_KEYS) \
            if stdin and record.tty else None

        def detached() -> None:  # on the hub's thread
            self.env.event("exec_detach", execID=record.id)

        return Consumer(conn, stdout=record.open_stdout, stderr=record.open_stderr,
                        stdin=stdin, tty=record.tty, escape=escape, on_detach=detached)

    def _failed(self, record: ExecRecord, running: _Running, conn: StreamSession | None,
                error: PouchError) -> None:
        record.phase, record.exit_code, record.pid = Phase.EXITED, START_FAILED, 0
        self._changed(record)
        # dockerd writes why on the stream, on stdout; the client then inspects the code.
        note = (error.message + "\r\n").encode()
        if running.drained is not None:
            self.env.hub.release(record.id, note if running.attached else b"")
        if conn is not None and not running.attached:
            conn.write("stdout", note)
            conn.end()
        self._end(record.id, running)

    # -- resize ------------------------------------------------------------

    def resize(self, exec_id: str, height: int, width: int) -> None:
        """Errors: not_found, conflict (not running)."""
        record = self.get(exec_id)
        if record.phase is not Phase.RUNNING:
            raise conflict(f"Exec {exec_id} is not running")
        if record.tty:
            self.env.ctrd.tasks.resize_pty(self.env.cid, width, height, exec_id=exec_id)

    # -- exit --------------------------------------------------------------

    def exited(self, exec_id: str, status: int) -> None:
        """containerd says the exec's process exited: its code is recorded once its
        output is all read (within DRAIN_WAIT); its stream ends after."""
        record, running = self._records.get(exec_id), self._running.get(exec_id)
        if record is None or running is None or running.ending \
                or record.phase is not Phase.RUNNING:
            return
        running.ending = True
        drained = running.drained
        if drained is None or drained.wait(DRAIN_NEAR):
            self._record_exit(record, running, status)
            return

        def wait() -> None:  # off the worker's thread: a slow drain holds nothing else
            if not drained.wait(DRAIN_WAIT):
                log.warning("output of exec %s did not end within %.0f s", exec_id,
                            DRAIN_WAIT)
            self.env.on_worker(lambda: self._record_exit(record, running, status))
        threading.Thread(target=wait, name=f"exec-{exec_id[:12]}", daemon=True).start()

    def _record_exit(self, record: ExecRecord, running: _Running, status: int) -> None:
        if self._running.get(record.id) is not running:
            return  # dropped meanwhile (its container was removed)
        record.phase, record.exit_code = Phase.EXITED, status
        self._changed(record)
        self.env.hub.release(record.id)  # after the code is recorded: see the docstring
        self.env.event("exec_die", execID=record.id, exitCode=str(status))
        self._end(record.id, running)

    def _end(self, exec_id: str, running: _Running) -> None:
        """What a finished exec held goes (see TIDY_AFTER), on a timer's thread: it needs
        nothing of the worker's, and a shim still copying what a leftover process writes
        may keep the deletion waiting."""
        self._running.pop(exec_id, None)
        timer = threading.Timer(TIDY_AFTER, self._tidy, args=(exec_id, running.made))
        timer.daemon = True
        timer.start()

    def _tidy(self, exec_id: str, made: bool) -> None:
        if made:
            self._delete_process(exec_id)
        shutil.rmtree(self.env.fifo_root / exec_id, ignore_errors=True)

    def _delete_process(self, exec_id: str) -> None:
        try:
            self.env.ctrd.tasks.delete_process(self.env.cid, exec_id)
        except PouchError as exc:
            if exc.code != "not_found":  # gone with its task
                log.warning("deleting exec %s of %s: %s", exec_id, self.env.cid, exc.message)

    # -- the container -----------------------------------------------------

    def container_exited(self) -> None:
        """The container's task is gone, and its execs' processes with it: those never
        started go (as dockerd's Cleanup unregisters them); a running one is recorded
        as killed unless its own exit comes within EXIT_GRACE."""
        self._container_process = None
        never = [r.id for r in self._records.values() if r.phase is Phase.CREATED]
        for exec_id in never:
            del self._records[exec_id]
            self.env.changed(exec_id, None)
        for exec_id in [i for i, r in self._records.items() if r.phase is Phase.RUNNING]:
            timer = threading.Timer(EXIT_GRACE, self.env.on_worker,
                                    args=(lambda i=exec_id: self.exited(i, KILLED),))
            timer.daemon = True
            timer.start()

    def forget_all(self) -> None:
        """The container is removed: its execs go (their streams end at once)."""
        for exec_id in list(self._records):
            running = self._running.pop(exec_id, None)
            if running is not None and running.drained is not None:
                self.env.hub.forget(exec_id)
            if running is not None:
                shutil.rmtree(self.env.fifo_root / exec_id, ignore_errors=True)
            self.env.changed(exec_id, None)
        self._records.clear()

    def collect_garbage(self) -> None:
        """One pass of the GC (see collect_garbage)."""
        for exec_id in collect_garbage(self._records.values()):
            del self._records[exec_id]
            self.env.changed(exec_id, None)
        for record in self._records.values():
            if record.can_remove:
                self._changed(record)


def forget_leftovers(fifo_root: Path) -> None:
    """At the actor's start no exec is known: the FIFO folders of the last actor's go
    (a shim that still writes holds its own descriptors)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(fifo_root)


@functools.cache
def _helpers() -> ThreadPoolExecutor:
    """Threads that prepare attached execs (see Execs.serve_start), shared by every
    container; made on first use, in the actor's process (not in the parent it forks from)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="exec-prepare")


@functools.cache
def _grantable() -> tuple[str, ...]:
    """Every capability this daemon can give, in the kernel's order (its bounding set,
    which does not change while it runs)."""
    held = grantable_capabilities()
    return tuple(c for c in ALL_CAPABILITIES if c in held)
