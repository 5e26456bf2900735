"""containerd, the broker or the gateway killed while a user works: each is
replaced, the rest of the tree reconnects by itself, running containers run on."""

from __future__ import annotations

import os
import subprocess
import threading

import grpc
import zmq
from google.protobuf import any_pb2, timestamp_pb2

from pouch.actors.containerd import shims
from pouch.actors.containerd.client import Containerd
from pouch.actors.timefmt import parse_rfc3339
from pouch.broker.trust import private_endpoint, read_token
from pouch.proto import envelope as env
from pouch.proto.containerd.api.events import task_pb2 as task_events
from pouch.proto.containerd.api.services.events.v1 import events_pb2, events_pb2_grpc
from pouch.proto.envelope import PouchError
from pouch.proto.stubs import Calls
from pouch.tests.faults.checks import (
    check_failures_clear,
    check_invariants,
    docker_api,
    quiet_call,
    wait_restored,
)
from pouch.tests.faults.tree import BrokerView, broker, kill, kill_while_busy, until
from pouch.tests.faults.workload import Request, Workload
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.procs import alive, children_of
from pouch.tests.support.wait import wait_for

ACTORS = ("system", "image", "volume", "network", "container", "builder")
BACK_WITHIN = 15.0


def brief(failed: list[Request]) -> list[str]:
    return [f"{r.what} {r.outcome} {r.status or ''} {r.message[:70]!r}" for r in failed]


def test_containerd_killed_is_restarted_and_running_containers_run_on(pouchd: PouchDaemon):
    cid = pouchd.docker("run", "-d", "--name", "sleeper", "busybox", "sleep", "300")
    before = pouchd.inspect(cid)["State"]
    old = pouchd.pid_of("containerd")
    actors = {name: pouchd.pid_of(name) for name in ACTORS}
    with Containerd(pouchd.containerd_socket) as ctrd, Workload(pouchd.host).running() as load:
        load.wait_for_cycles(3)
        fault = kill(old)
        new, back = until(lambda: (pid := pouchd.pid_of("containerd")) != old and alive(pid)
                          and quiet_call(lambda: ctrd.version(timeout=0.5)) and pid,
                          BACK_WITHIN, "a new containerd answering")
        restored = wait_restored(pouchd, fault)
        load.wait_for_cycles(3)

    after = pouchd.inspect("sleeper")["State"]
    assert (after["Status"], after["Pid"], after["StartedAt"]) == \
        ("running", before["Pid"], before["StartedAt"])
    assert alive(before["Pid"])
    # The actors waited for containerd and reconnected: none of them was restarted.
    assert {name: pouchd.pid_of(name) for name in ACTORS} == actors
    requests = load.requests

    def clear(r: Request) -> bool:
        return r.status == 503 and ("containerd" in r.message or "container actor" in r.message
                                    or r.outcome_unknown)

    failed = check_failures_clear(requests, fault, fault + restored, clear)
    check_invariants(pouchd, requests)
    pouchd.docker("rm", "-f", "sleeper")
    print(f"containerd: pid {old} -> {new}, answering after {back - fault:.3f} s, service back "
          f"after {restored:.3f} s; {len(requests)} requests, "
          f"failed: {brief(failed)}")


def test_a_start_whose_task_create_containerd_s_death_cut_goes_through(pouchd: PouchDaemon):
    """containerd killed as it creates a start's task, the task's shim started: its
    successor says the task exists and cannot show it. The start ends that shim and goes
    through (the chaos soak's `docker run` failed after 10 s: "task <id>: already
    exists")."""
    pouchd.docker("create", "--name", "cut", "busybox", "sleep", "60")
    cid = pouchd.inspect("cut")["Id"]
    address = str(pouchd.containerd_socket.absolute())
    env = pouchd.cli_env()
    start = subprocess.Popen(["docker", "start", "cut"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: shims.find(address, "pouch", (cid,)) or None, BACK_WITHIN,
                 "the task's shim started", poll=0.002)
        kill(pouchd.pid_of("containerd"))
        _, err = start.communicate(timeout=60)
    finally:
        if start.poll() is None:
            start.kill()
            start.wait()
    assert start.returncode == 0, err
    assert pouchd.inspect("cut")["State"]["Running"]


def test_broker_killed_is_restarted_and_everyone_reconnects(pouchd: PouchDaemon):
    actors = {name: pouchd.pid_of(name) for name in ACTORS}
    view = BrokerView(pouchd)
    try:
        with Workload(pouchd.host).running() as load:
            load.wait_for_cycles(3)
            old = pouchd.pid_of("broker")
            _, fault = kill_while_busy(view, load, "container", "create", pid=old)

            def all_back() -> dict[str, object] | None:
                services = view.services()
                if services and all((services.get(a) or {}).get("workers") for a in ACTORS):
                    return services
                return None

            _, back = until(all_back, BACK_WITHIN, "every actor registered with a new broker")
            restored = wait_restored(pouchd, fault)
            load.wait_for_cycles(3)
    finally:
        view.close()

    new = pouchd.pid_of("broker")
    assert new != old and alive(new) and not alive(old)
    requests = load.requests

    def clear(r: Request) -> bool:
        return r.status == 503 and ("broker" in r.message or r.outcome_unknown)

    failed = check_failures_clear(requests, fault, fault + restored, clear)
    # A create (or the start after it) the broker took with it cannot be retried: it may
    # have run. (The kill may also land just after it was answered: nothing failed.)
    assert len(failed) <= 1 and all(r.what in ("create", "start") for r in failed), failed
    assert all(r.outcome_unknown for r in failed), failed
    assert all(r.took < 1.0 for r in failed), failed  # the gateway saw the broker go at once
    check_invariants(pouchd, requests)
    # Not asserted, since it happens at random: see the test below.
    killed = [name for name, pid in actors.items() if pouchd.pid_of(name) != pid]
    print(f"broker: pid {old} -> {new}, every actor back after {back - fault:.3f} s, service "
          f"back after {restored:.3f} s; actors restarted meanwhile: {killed}; "
          f"{len(requests)} requests, failed: {brief(failed)}")


def test_an_actor_saying_ready_again_is_not_reported_lost(pouchd: PouchDaemon):
    """What every actor does after a broker restart: the new broker answers each of the
    messages the actor had queued with BYE, and the actor says READY for each."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    events, actor = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    try:
        clients = f"ipc://{pouchd.run_dir}/broker.sock"
        for sock, endpoint in ((events, clients), (actor, private_endpoint(clients))):
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
        events.send_multipart([env.CLIENT, env.SUB, b"", env.pack(
            {"id": 1, "fields": {"Type": ["daemon"], "Action": ["actor-lost"]}})])
        # The broker handles one peer's messages in order: once this is answered, the
        # subscription is in place.
        events.send_multipart([env.CLIENT, env.REQ, b"broker", env.request(2, "ping", {}, 0)])
        assert events.poll(2000) and env.unpack(events.recv_multipart()[3])["result"] == "pong"
        hello = env.pack({"pid": os.getpid(), "methods": {},
                          "token": read_token(private_endpoint(clients))})
        for _ in range(2):
            actor.send_multipart([env.ACTOR, env.READY, b"faultprobe", hello])
        lost = []
        for _ in range(3):  # heartbeating, as a live actor does
            actor.send_multipart([env.ACTOR, env.HEARTBEAT])
            while events.poll(150):
                lost.append(env.unpack(events.recv_multipart()[3])["result"])
        view = BrokerView(pouchd)
        try:
            assert view.pids("faultprobe") == {os.getpid()}
        finally:
            view.close()
        assert lost == [], f"a live actor was reported lost: {lost}"
    finally:
        actor.send_multipart([env.ACTOR, env.BYE])
        events.close(linger=0)
        actor.close(linger=0)


def test_a_start_interrupted_by_a_broker_restart_runs_the_container_once(pouchd: PouchDaemon):
    """The start goes through the broker, as a remote client's does (a local one's goes
    straight to the actor): sent again with its token after the broker's restart, or
    answered that its outcome is unknown, it runs the container once."""
    api = docker_api(pouchd)
    view = BrokerView(pouchd)
    client = broker(pouchd, timeout=30)
    try:
        cid = api.create_container("busybox", ["echo", "once"])["Id"]
        outcome: list[object] = []

        def start() -> None:
            try:
                outcome.append(Calls(client).container.start(id=cid))
            except PouchError as exc:
                outcome.append(exc)

        starting = threading.Thread(target=start)
        starting.start()
        until(lambda: view.busy("container"), 5.0, "the start reaching the container actor")
        fault = kill(pouchd.pid_of("broker"))
        starting.join(30)
        wait_restored(pouchd, fault)
        [answer] = outcome
        if isinstance(answer, PouchError):
            assert answer.code == "unavailable" and "outcome is unknown" in answer.message
        assert api.wait(cid)["StatusCode"] == 0
        assert api.logs(cid) == b"once\n"
    finally:
        view.close()
        client.close()
        api.close()


def test_a_killed_gateway_master_cuts_nothing_and_is_restarted(pouchd: PouchDaemon):
    """gunicorn's master killed while a worker serves a start: the worker finishes it,
    then exits; pouchd starts a new master on the listening sockets it holds, so no
    connection is refused meanwhile and no request fails."""
    old = pouchd.pid_of("gateway")
    view = BrokerView(pouchd)
    try:
        with Workload(pouchd.host).running() as load:
            load.wait_for_cycles(3)
            _, fault = kill_while_busy(view, load, "container", "start", pid=old)
            new, forked = until(lambda: alive(p := pouchd.pid_of("gateway")) and p != old and p,
                                BACK_WITHIN, "pouchd restarting the gateway")
            restored = wait_restored(pouchd, fault)
            load.wait_for_cycles(3)
    finally:
        view.close()
    assert not alive(old)
    requests = load.requests
    failed = check_failures_clear(requests, fault, fault + restored, lambda r: False)
    assert failed == []
    check_invariants(pouchd, requests)
    print(f"gateway master: pid {old} -> {new} after {forked - fault:.3f} s; "
          f"{len(requests)} requests, none failed")


def test_killed_gateway_workers_cut_only_what_they_served(pouchd: PouchDaemon):
    """Every gateway worker killed while one serves a start: that start's connection
    dies with it (no answer), the master starts new workers, nothing else fails."""
    master = pouchd.pid_of("gateway")
    workers = children_of(master)
    view = BrokerView(pouchd)
    try:
        with Workload(pouchd.host).running() as load:
            load.wait_for_cycles(3)
            load.wait_sending("start")
            until(lambda: view.busy("container"), 2.0, "start reaching the container actor")
            fault = min(kill(pid) for pid in workers)
            until(lambda: (kids := children_of(master)) and not set(kids) & set(workers),
                  BACK_WITHIN, "gunicorn's master starting new workers")
            restored = wait_restored(pouchd, fault)
            load.wait_for_cycles(3)
    finally:
        view.close()
    assert alive(master)
    requests = load.requests
    failed = check_failures_clear(requests, fault, fault + restored, lambda r: r.outcome == "cut")
    assert [r.what for r in failed] == ["start"], failed
    check_invariants(pouchd, requests)
    print(f"gateway workers {workers} killed: service back after {restored:.3f} s; "
          f"{len(requests)} requests, failed: {brief(failed)}")


def test_containerd_s_exit_for_a_shim_lost_before_this_run_leaves_the_container_running(
        pouchd: PouchDaemon):
    """A start that containerd's death cut goes through with another task; containerd's
    cleanup of the first attempt's shim then says that task exited (pid 0, status 255)
    after the second was made. Once, that made-up exit was taken for the run's: the
    container was recorded exited 255 while its process ran on (the chaos soak's
    `docker wait` printed 255)."""
    pouchd.docker("run", "-d", "--name", "runs", "busybox", "sleep", "600")
    state = pouchd.inspect("runs")["State"]
    started = parse_rfc3339(state["StartedAt"])
    before = timestamp_pb2.Timestamp()
    before.FromNanoseconds(int((started - 0.5) * 1e9))
    cid = pouchd.inspect("runs")["Id"]
    stale = task_events.TaskExit(container_id=cid, id=cid, pid=0, exit_status=255,
                                 exited_at=before)
    with grpc.insecure_channel(f"unix://{pouchd.containerd_socket}") as channel:
        events_pb2_grpc.EventsStub(channel).Publish(
            events_pb2.PublishRequest(topic="/tasks/exit", event=any_pb2.Any(
                type_url="containerd.events.TaskExit", value=stale.SerializeToString())),
            metadata=[("containerd-namespace", "pouch")], timeout=10)

    # The stale exit is taken (or not) before this kill's real one: events come in order.
    pouchd.docker("kill", "runs")
    assert pouchd.docker("wait", "runs") == "137"
    assert pouchd.inspect("runs")["State"]["Pid"] == 0
