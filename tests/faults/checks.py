"""What must hold after any fault, once the service is back.

1. what the workload was told succeeded is so: a created container is listed
   until its remove succeeded; one whose create or remove had an unknown
   outcome exists everywhere or nowhere;
2. nothing leaked: the API's list, the meta store and containerd (containers,
   tasks, snapshots, leases) agree, only running containers have a rootfs
   mounted and only listed ones a network namespace, and every live shim
   serves one of containerd's tasks;
3. no request hung past its deadline;
4. the service answers: `docker ps`, and `docker run --rm busybox echo hi`.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import grpc

from pouch.actors.container.worker import OWNER_LABEL
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.tasks import TaskState
from pouch.proto.containerd.api.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pouch.proto.envelope import PouchError
from pouch.tests.faults.workload import CLIENT_TIMEOUT, Request
from pouch.tests.support.containerd import TASKS_DIR, shims_of
from pouch.tests.support.daemon import DockerError, PouchDaemon
from pouch.tests.support.procs import cmdline

NAMESPACE = "pouch"
# Slack over a request's deadline, for the gateway's and the client's own work.
DEADLINE_SLACK = 5.0
# How long the daemon may take to settle (exits noticed, leases ended) once idle.
SETTLE = 8.0
RESTORE_WITHIN = 10.0


@dataclass(frozen=True)
class State:
    """One look at everything that records a container."""

    listed: dict[str, dict[str, Any]]     # ID -> GET /containers/json?all=1 row
    meta: dict[str, dict[str, Any]]       # ID -> <home>/containers/<id>/meta.json
    folders_without_meta: list[str]
    containers: dict[str, dict[str, str]]  # ID -> labels, of containerd's labelled containers
    tasks: dict[str, TaskState]
    snapshots: set[str]                   # keys of snapshots labelled as a container's
    leases: list[str]
    mounts: list[Path]
    shims: dict[int, str]                 # pid -> the task ID, of the live shims

    @property
    def taskless_shims(self) -> dict[int, str]:
        """Shims that serve no task of containerd's: nothing will ever end them."""
        return {pid: tid for pid, tid in self.shims.items() if tid not in self.tasks}

    @property
    def running(self) -> set[str]:
        return {cid for cid, row in self.listed.items() if row["State"] == "running"}

    def names(self) -> dict[str, set[str]]:
        """Container names as each record keeps them."""
        return {
            "listed": {n.lstrip("/") for row in self.listed.values() for n in row["Names"]},
            "meta": {str(r.get("Name", "")).lstrip("/") for r in self.meta.values()},
            "containerd": {labels.get(OWNER_LABEL, "") for labels in self.containers.values()},
        }


def list_leases(address: Path) -> list[str]:
    """The IDs of the leases in pouch's namespace (the client has no call for this)."""
    with grpc.insecure_channel(f"unix://{address}") as channel:
        stub = leases_pb2_grpc.LeasesStub(channel)
        reply = stub.List(leases_pb2.ListRequest(), timeout=5,
                          metadata=[("containerd-namespace", NAMESPACE)])
        return sorted(lease.id for lease in reply.leases)


def live_shims(daemon: PouchDaemon) -> dict[int, str]:
    """pid -> task ID of every live runc shim serving the daemon's containerd."""
    found = {}
    for pid in shims_of(daemon.containerd_socket):
        argv = cmdline(pid)
        if argv and argv[-1] not in ("start", "delete"):  # the shim run as a command
            found[pid] = dict(itertools.pairwise(argv)).get("-id", "")
    return found


def rootfs_of(daemon: PouchDaemon, cid: str) -> Path:
    return (daemon.run_dir / "containerd" / TASKS_DIR / NAMESPACE / cid / "rootfs").resolve()


def docker_api(daemon: PouchDaemon) -> docker.APIClient:
    """docker-py's low-level client, waiting longer than any gateway deadline."""
    return docker.APIClient(base_url=daemon.host, version="1.41", timeout=CLIENT_TIMEOUT)


def observe(daemon: PouchDaemon) -> State:
    api = docker_api(daemon)
    try:
        listed = {row["Id"]: row for row in api.containers(all=True)}
    finally:
        api.close()
    meta: dict[str, dict[str, Any]] = {}
    without: list[str] = []
    for folder in sorted((daemon.home / "containers").glob("*")):
        try:
            meta[folder.name] = json.loads((folder / "meta.json").read_text())
        except FileNotFoundError:
            without.append(folder.name)
    shims = live_shims(daemon)  # before the tasks: a shim of a task just made is not taskless
    with Containerd(daemon.containerd_socket, NAMESPACE) as ctrd:
        containers = {c.id: c.labels for c in ctrd.containers.list([f'labels."{OWNER_LABEL}"'])}
        tasks = ctrd.tasks.list()
        snapshots = {s.name for s in ctrd.snapshots.list() if OWNER_LABEL in s.labels}
    return State(listed, meta, without, containers, tasks, snapshots,
                 list_leases(daemon.containerd_socket), daemon.mounts(), shims)


def leaks(daemon: PouchDaemon, state: State) -> list[str]:
    """How the records disagree, or what is left that nothing accounts for."""
    found = []
    ids = set(state.listed)
    for what, others in (("the meta store", set(state.meta)),
                         ("containerd's containers", set(state.containers)),
                         ("containerd's snapshots", state.snapshots)):
        if others != ids:
            found.append(f"{what} differ from the API's list: only listed {ids - others}, "
                         f"only in {what} {others - ids}")
    if state.folders_without_meta:
        found.append(f"container folders without meta.json: {state.folders_without_meta}")
    running = state.running
    live_tasks = set(state.tasks)
    if live_tasks != running:
        found.append(f"tasks {sorted(live_tasks)} are not the running containers "
                     f"{sorted(running)}")
    for cid in running & live_tasks:
        inspected = state.meta.get(cid, {}).get("State", {})
        task = state.tasks[cid]
        if task.status != "RUNNING" or inspected.get("Pid") != task.pid:
            found.append(f"{cid[:12]} runs as pid {inspected.get('Pid')} by pouch but its task "
                         f"is {task}")
    if state.leases:
        found.append(f"leases left while idle: {state.leases}")
    if state.taskless_shims:
        found.append(f"shims that serve no task: {state.taskless_shims}")
    # A bridged container holds its network namespace from create to remove, bound in a
    # folder that is a mount of its own (as `ip netns add` makes /run/netns).
    netns = (daemon.run_dir / "netns").resolve()
    allowed = {rootfs_of(daemon, cid) for cid in running} | {netns / cid for cid in ids}
    allowed.add(netns)
    stray = [m for m in state.mounts if m.resolve() not in allowed]
    if stray:
        found.append(f"mounts of no running container: {stray}")
    return found


def settled(daemon: PouchDaemon, within: float = SETTLE) -> State:
    """The daemon's state once it has no leak left, polled for `within` s; else fail."""
    deadline = time.monotonic() + within
    while True:
        state = observe(daemon)
        found = leaks(daemon, state)
        if not found:
            return state
        if time.monotonic() >= deadline:
            raise AssertionError("the daemon's records disagree or leak:\n  "
                                 + "\n  ".join(found))
        time.sleep(0.2)


def check_promises(requests: Iterable[Request], state: State) -> None:
    """Invariant 1: every answer the workload got is true of the daemon now."""
    requests = list(requests)
    names = state.names()
    listed_ids = set(state.listed)
    removes = [r for r in requests if r.what == "remove"]
    removed = {r.name for r in removes if r.ok}
    maybe_removed = {r.name for r in removes if r.outcome_unknown}
    problems = []
    for create in (r for r in requests if r.what == "create"):
        where = sorted(k for k, v in names.items() if create.name in v)
        if where not in ([], sorted(names)):
            problems.append(f"{create.name} is only in {where}")
        elif create.ok and create.name in removed:
            if where:
                problems.append(f"{create.name} was removed but is still in {where}")
        elif create.ok and create.name not in maybe_removed:
            if create.cid not in listed_ids:
                problems.append(f"{create.name} ({create.cid[:12]}) was created but is not "
                                "listed")
        elif not create.ok and not create.outcome_unknown and where:
            problems.append(f"{create.name} failed ({create}) but is in {where}")
    assert not problems, "\n".join(problems)


def check_deadlines(requests: Iterable[Request], slack: float = DEADLINE_SLACK) -> None:
    """Invariant 3: every request was answered, success or error, before its deadline."""
    late = [r for r in requests if r.outcome == "timeout" or r.took > r.deadline + slack]
    assert not late, "requests that hung:\n" + "\n".join(map(str, late))


def check_invariants(daemon: PouchDaemon, requests: Iterable[Request]) -> State:
    """Invariants 1-3, once the workload has stopped; the settled state."""
    requests = list(requests)
    check_deadlines(requests)
    state = settled(daemon)
    check_promises(requests, state)
    return state


def wait_restored(daemon: PouchDaemon, since: float, within: float = RESTORE_WITHIN) -> float:
    """Invariant 4: `docker ps` answers and `docker run --rm` works; seconds since `since`."""
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        try:
            daemon.docker("ps", timeout=within)
            if daemon.docker("run", "--rm", "busybox", "echo", "hi", timeout=within) == "hi":
                return time.monotonic() - since
        except DockerError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise AssertionError(f"the service was not back within {within:.0f} s: {last}\n"
                         f"{daemon.log_tail()}")


def failures(requests: Iterable[Request]) -> list[Request]:
    return [r for r in requests if not r.ok]


def check_failures_clear(requests: Iterable[Request], start: float, end: float,
                         clear: Callable[[Request], bool]) -> list[Request]:
    """Every failed request was in flight between `start` and `end` (monotonic) and
    `clear` accepts how it failed; the failures."""
    failed = failures(requests)
    outside = [r for r in failed if not r.overlaps(start, end)]
    assert not outside, (f"failures outside the fault's window [{start:.3f}, {end:.3f}]:\n"
                         + "\n".join(map(str, outside)))
    unclear = [r for r in failed if not clear(r)]
    assert not unclear, "failures without a clear error:\n" + "\n".join(map(str, unclear))
    return failed


def names_actor(service: str) -> Callable[[Request], bool]:
    """A 503 whose message names the actor or says the outcome is unknown."""
    def clear(r: Request) -> bool:
        return r.status == 503 and (f"{service} actor" in r.message or r.outcome_unknown)
    return clear


def quiet_call(fn: Callable[[], Any]) -> Any:
    """fn(), or None if the daemon could not answer (it is being faulted)."""
    try:
        return fn()
    except (PouchError, OSError, docker.errors.DockerException):
        return None
