"""The broker against hostile clients: whatever reaches its client socket, it keeps
serving, only pouchd's own processes serve services, and nothing it keeps grows
without bound. One test per finding of issue 8 (7 to 12) and its poison requests."""

from __future__ import annotations

import ctypes
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from pouch.broker.client import Client
from pouch.broker.router import HEARTBEAT_INTERVAL, Broker
from pouch.broker.trust import private_endpoint, read_token
from pouch.proto import envelope as env
from pouch.proto.envelope import PouchError
from pouch.tests.support.probe import hosted
from pouch.tests.support.wait import wait_for

ANSWER_WITHIN = 5.0


class Running:
    def __init__(self, tmp_path: Path, heartbeat: float = HEARTBEAT_INTERVAL,
                 tree: int | None = None) -> None:
        self.endpoint = f"ipc://{tmp_path}/broker.sock"
        self.broker = Broker(self.endpoint, queue_wait=0.5, heartbeat=heartbeat, tree=tree)
        self.broker.bind()
        self.thread = threading.Thread(target=self.broker.run, daemon=True)
        self.thread.start()
        self.actors: list[subprocess.Popen[bytes]] = []
        self.sockets: list[zmq.Socket[bytes]] = []

    def actor(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "pouch.tests.support.standin",
                                 self.endpoint])
        self.actors.append(proc)
        return proc

    def raw(self, endpoint: str | None = None) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint or self.endpoint)
        self.sockets.append(sock)
        return sock

    def serving(self) -> bool:
        """The broker thread runs and answers a fresh client."""
        client = Client(self.endpoint, timeout=ANSWER_WITHIN)
        try:
            return self.thread.is_alive() and client.call("broker", "ping") == "pong"
        finally:
            client.close()

    def close(self) -> None:
        for proc in self.actors:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for sock in self.sockets:
            sock.close(linger=0)
        self.broker.stop()
        self.thread.join(timeout=2)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    yield r
    r.close()


@pytest.fixture
def client(running: Running) -> Iterator[Client]:
    c = Client(running.endpoint, timeout=10)
    yield c
    c.close()


def answer(sock: zmq.Socket[bytes], timeout: float = ANSWER_WITHIN) -> dict[str, Any]:
    assert sock.poll(int(timeout * 1000)), "no answer"
    return dict(env.unpack(sock.recv_multipart()[3]))


def request(rid: Any, method: str, args: Any = None, deadline: Any = 0) -> bytes:
    return env.pack({"id": rid, "method": method, "args": args or {}, "deadline": deadline})


def wait_echo(client: Client) -> None:
    client.call("echo", "echo", {"text": "ready?"}, timeout=15)


# -- finding 7: ids that are not integers ------------------------------------------------

@pytest.mark.parametrize("rid", [1e300, "7", None, -1, 2**64 - 1, True])
def test_a_request_id_that_is_no_sane_integer_is_refused_and_the_broker_serves_on(
        running: Running, client: Client, rid: Any):
    running.actor()
    wait_echo(client)
    sock = running.raw()
    for service in (b"nosuch", b"echo", b"supervisor"):
        sock.send_multipart([env.CLIENT, env.REQ, service, request(rid, "echo", {"text": "x"})])
    assert client.call("echo", "echo", {"text": "still"}) == "still"
    assert running.serving()
    assert [p.poll() for p in running.actors] == [None]


def test_a_float_id_sent_to_an_actor_directly_leaves_its_serving_thread_alive(tmp_path):
    with hosted(tmp_path) as (_ref, broker):
        broker.sock.send_multipart([broker.actor, env.ACTOR, env.REQ, b"c1",
                                    request(1e300, "echo", {"text": "x"}, time.time() + 30)])
        broker.request("echo", {"text": "after"}, rid=2)
        reply = broker.reply()
        assert (reply["id"], reply["result"]) == (2, "after")


# -- finding 8: subscription fields of the wrong type ---------------------------------

def test_a_subscription_with_fields_of_the_wrong_type_is_refused_and_breaks_nothing(
        running: Running, client: Client):
    actor = running.actor()
    wait_echo(client)
    sock = running.raw()
    sock.send_multipart([env.CLIENT, env.SUB, b"", env.pack({"id": 9, "fields": {"Type": 5}})])
    refused = answer(sock)
    assert (refused["id"], refused["ok"], refused["error"]["code"]) == (9, False, "invalid")
    actor.kill()  # the broker publishes actor-lost to its subscribers
    wait_for(lambda: not client.call("broker", "services").get("echo", {}).get("workers"),
             5, "the broker to forget the killed actor")
    assert running.serving()


# -- finding 10: requests nobody will answer ------------------------------------------

def test_a_request_without_deadline_for_a_service_nobody_serves_is_not_kept(
        running: Running, client: Client):
    sock = running.raw()
    sock.send_multipart([env.CLIENT, env.REQ, b"nosuch", request(3, "anything")])
    failed = answer(sock)
    assert (failed["id"], failed["error"]["code"]) == (3, "unavailable")
    sock.close(linger=0)
    assert client.call("broker", "services").get("nosuch", {}).get("queued", 0) == 0


def test_a_client_has_a_bounded_number_of_requests_waiting(running: Running):
    sock = running.raw()
    for rid in range(300):
        sock.send_multipart([env.CLIENT, env.REQ, b"nosuch",
                             request(rid, "anything", deadline=time.time() + 30)])
    first = answer(sock)
    assert first["error"]["code"] == "unavailable" and "in flight" in first["error"]["message"]


# -- finding 11: clients cannot pose as actors or as the supervisor --------------------

def test_the_client_endpoint_refuses_what_only_pouchds_processes_may_do(
        running: Running, client: Client):
    actor = running.actor()
    wait_echo(client)
    pid = actor.pid
    with pytest.raises(PouchError) as gone:
        client.call("broker", "worker_gone", {"service": "echo", "pid": pid})
    assert gone.value.code == "invalid"
    with pytest.raises(PouchError) as fault:
        client.call("echo", "debug_fault", {"point": "x"})
    assert fault.value.code == "invalid"
    with pytest.raises(PouchError) as stop:
        client.call("supervisor", "stop_all")
    assert stop.value.code == "invalid"

    fake = running.raw()
    fake.send_multipart([env.ACTOR, env.READY, b"echo", env.pack(
        {"pid": os.getpid(), "token": read_token(private_endpoint(running.endpoint)),
         "methods": {}})])
    fake.send_multipart([env.ACTOR, env.PUB, b"", env.pack({"Type": "daemon"})])
    with client.subscribe({"Type": ["daemon"]}) as events:
        fake.send_multipart([env.ACTOR, env.PUB, b"", env.pack({"Type": "daemon"})])
        assert [w["pid"] for w in client.call("broker", "services")["echo"]["workers"]] == [pid]
        for _ in range(20):
            assert client.call("echo", "echo", {"text": "real"}) == "real"
        assert not fake.poll(100)
        client.call("broker", "ping")
        assert not events._client._sock.poll(100)  # no forged event arrived


def test_an_actor_without_the_brokers_token_is_not_registered(running: Running, client: Client):
    fake = running.raw(private_endpoint(running.endpoint))
    fake.send_multipart([env.ACTOR, env.READY, b"echo", env.pack(
        {"pid": os.getpid(), "token": "guessed", "methods": {}})])
    fake.send_multipart([env.ACTOR, env.HEARTBEAT])
    assert fake.poll(2000)  # told BYE: it is not registered
    assert "echo" not in client.call("broker", "services")


# -- finding 12: sockets have their mode from the start --------------------------------

def test_sockets_have_their_mode_from_the_moment_they_exist(tmp_path, monkeypatch):
    modes: dict[str, int] = {}
    bind = zmq.Socket.bind

    def watched(sock: zmq.Socket[bytes], address: str) -> Any:
        result = bind(sock, address)
        if address.startswith("ipc://"):
            path = address.removeprefix("ipc://")
            modes[Path(path).name] = stat.S_IMODE(os.stat(path).st_mode)
        return result

    monkeypatch.setattr(zmq.Socket, "bind", watched)
    broker = Broker(f"ipc://{tmp_path}/broker.sock")
    broker.bind()
    private = tmp_path / "private"
    assert modes == {"broker.sock": 0o660, "actors.sock": 0o600}
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE((private / "token").stat().st_mode) == 0o600


# -- poison requests ---------------------------------------------------------------

def test_a_request_that_took_its_actor_down_twice_is_refused(tmp_path: Path):
    # Slow heartbeats: the broker learns of each death from the supervisor's report (here,
    # the test's), which says whether the process ended by itself or was killed.
    running = Running(tmp_path, heartbeat=30.0)
    client = Client(running.endpoint, timeout=10)
    internal = Client(running.broker.actor_endpoint, timeout=10)
    try:
        for killed in (True, True):  # killed from outside: never counted
            assert die_reported(running, client, internal, {"why": "x"}, killed) == \
                "unavailable"
        # Ended by itself while handling it: counted; the second time it is refused.
        assert [die_reported(running, client, internal, {"why": "poison"})
                for _ in range(2)] == ["unavailable", "invalid"]
        survivor = running.actor()
        wait_echo(client)
        with pytest.raises(PouchError) as refused:
            client.call("echo", "die", {"why": "poison"})
        assert refused.value.code == "invalid" and "down 2 times" in refused.value.message
        assert survivor.poll() is None
        # The same method with other arguments is another request.
        assert die_reported(running, client, internal, {"why": "x"}, actor=survivor) == \
            "unavailable"
    finally:
        client.close()
        internal.close()
        running.close()


def die_reported(running: Running, client: Client, internal: Client, args: dict[str, Any],
                 killed: bool = False, actor: subprocess.Popen[bytes] | None = None) -> str:
    """The error code of an `echo.die` call on an actor (a new one unless given), its
    death reported as the supervisor reports it."""
    if actor is None:
        actor = running.actor()
        wait_echo(client)
    codes: list[str] = []

    def call() -> None:
        try:
            client.call("echo", "die", args)
            codes.append("ok")
        except PouchError as exc:
            codes.append(exc.code)

    dying = threading.Thread(target=call)
    dying.start()
    actor.wait()
    internal.call("broker", "worker_gone",
                  {"service": "echo", "pid": actor.pid, "killed": killed})
    dying.join()
    return codes[0]


def test_requests_in_flight_on_an_actor_stopped_by_a_signal_are_not_poison(
        running: Running, client: Client):
    """The chaos soak's SIGSTOP of the image actor: its heartbeats expire while the same
    request is in flight each time; the request is not to blame, and is served later."""
    sock = running.raw()
    for rid in (1, 2):
        actor = running.actor()
        wait_echo(client)
        sock.send_multipart([env.CLIENT, env.REQ, b"echo", request(
            rid, "slow_safe", {"seconds": 2}, time.time() + 30)])
        wait_for(lambda: inflight(client) == 1, 5, "the request in flight")
        os.kill(actor.pid, signal.SIGSTOP)
        lost = answer(sock)  # the broker gave up on the silent actor
        assert (lost["id"], lost["error"]["code"], lost["error"].get("retry")) == \
            (rid, "unavailable", True)
        actor.kill()
        actor.wait()
    running.actor()
    assert client.call("echo", "slow_safe", {"seconds": 2}) == "safe done"


def inflight(client: Client) -> int:
    workers = client.call("broker", "services").get("echo", {}).get("workers") or []
    return sum(w["inflight"] for w in workers)


# -- finding 9: routing ids nobody can guess ------------------------------------------

def unseeded_routing_ids(sockets: int, each: int) -> list[bytes]:
    """The ids libzmq 4.3 gives the anonymous peers of the first ROUTER sockets of a
    process that never seeded libc's rand(): 0x00, then a counter that starts, per
    socket, at rand() | (the next rand() << 31), in 32 bits."""
    libc = ctypes.CDLL(None)
    libc.srand(1)  # what glibc's rand() starts from when nobody seeds it
    ids = []
    for _ in range(sockets):
        low, high = libc.rand(), libc.rand()
        start = (low | high << 31) % 2**32
        ids += [b"\0" + ((start + i) % 2**32).to_bytes(4, "big") for i in range(each)]
    return ids


def test_a_client_claiming_the_next_routing_ids_does_not_abort_the_broker(tmp_path: Path):
    endpoint = f"ipc://{tmp_path}/broker.sock"
    broker = subprocess.Popen([sys.executable, "-c", "import sys; from pouch.broker.router "
                               "import Broker; Broker(sys.argv[1]).run()", endpoint])
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    claimed: list[zmq.Socket[bytes]] = []
    try:
        wait_for(lambda: Path(endpoint.removeprefix("ipc://")).exists(), 10, "the broker")
        for routing_id in unseeded_routing_ids(3, 64):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTING_ID, routing_id)
            sock.connect(endpoint)
            sock.send_multipart([env.CLIENT, env.REQ, b"broker", request(1, "ping")])
            claimed.append(sock)
        for sock in claimed:
            sock.poll(int(ANSWER_WITHIN * 1000))  # connected: the broker has it
        for _ in range(5):  # anonymous clients, as every Client is
            fresh = Client(endpoint, timeout=ANSWER_WITHIN)
            try:
                assert fresh.call("broker", "ping") == "pong"
            finally:
                fresh.close()
        assert broker.poll() is None
    finally:
        for sock in claimed:
            sock.close(linger=0)
        broker.kill()
        broker.wait()


# -- what must exist 4: only pouchd's tree on the actors' endpoint (SO_PEERCRED) -------

# Says READY with the broker's token on the actors' endpoint; "served" once the broker
# heartbeats it (it is registered), "refused" if nothing comes.
REGISTER = """
import os, sys, zmq
from pouch.proto import envelope as env
sock = zmq.Context.instance().socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(sys.argv[1])
sock.send_multipart([env.ACTOR, env.READY, b"outsider",
                     env.pack({"pid": os.getpid(), "token": sys.argv[2], "methods": {}})])
print("served" if sock.poll(2000) else "refused", flush=True)
"""


def test_only_processes_of_the_brokers_tree_register_on_the_actors_endpoint(tmp_path: Path):
    running = Running(tmp_path, tree=os.getpid())  # this test stands for the supervisor
    actors = private_endpoint(running.endpoint)
    argv = [sys.executable, "-c", REGISTER, actors, read_token(actors)]
    try:
        child = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        assert child.stdout.strip() == "served"
        said = tmp_path / "outsider.out"
        with said.open("w") as out:
            # setsid -f: a process of its own session whose parent exits at once, so that
            # it is no longer a descendant of this one when it connects.
            subprocess.run(["setsid", "-f", *argv], stdout=out, check=True)
        wait_for(lambda: said.read_text().strip() != "", 30, "the outsider's verdict")
        assert said.read_text().strip() == "refused"
        client = Client(running.endpoint, timeout=ANSWER_WITHIN)
        try:
            assert not client.call("broker", "services").get("outsider", {}).get("workers")
        finally:
            client.close()
    finally:
        running.close()
