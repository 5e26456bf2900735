"""The broker with stand-in actors: routing, errors as values, deadlines, lost requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from pouch.broker.client import Client
from pouch.broker.router import Broker
from pouch.broker.trust import private_endpoint, read_token
from pouch.proto import envelope as env
from pouch.proto.envelope import PouchError
from pouch.proto.stubs import Calls
from pouch.tests.support.wait import wait_for


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    address = f"ipc://{tmp_path}/broker.sock"
    broker = Broker(address)
    broker.bind()
    thread = threading.Thread(target=broker.run, daemon=True)
    thread.start()
    yield address
    broker.stop()
    thread.join(timeout=2)


class Actors:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "pouch.tests.support.standin",
                                 self.endpoint])
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def actors(endpoint: str) -> Iterator[Actors]:
    running = Actors(endpoint)
    yield running
    running.stop_all()


@pytest.fixture
def client(endpoint: str) -> Iterator[Client]:
    c = Client(endpoint, timeout=10)
    yield c
    c.close()


def wait_ready(client: Client) -> None:
    client.call("echo", "echo", {"text": "ready?"}, timeout=15)


def test_a_request_reaches_the_actor_and_comes_back(actors, client):
    actors.start()
    assert client.call("echo", "echo", {"text": "hi"}) == "hi"


def test_errors_travel_as_values(actors, client):
    actors.start()
    wait_ready(client)
    with pytest.raises(PouchError) as err:
        client.call("echo", "missing")
    assert (err.value.code, err.value.message) == ("not_found", "nothing here")


def test_bad_arguments_are_named(actors, client):
    actors.start()
    wait_ready(client)
    with pytest.raises(PouchError) as err:
        client.call("echo", "echo", {"txt": "x"})
    assert err.value.code == "invalid" and "'txt'" in err.value.message
    with pytest.raises(PouchError) as err:
        client.call("echo", "echo", {"text": 3})
    assert err.value.code == "invalid" and "'text' must be str" in err.value.message
    with pytest.raises(PouchError) as err:
        client.call("echo", "nosuch")
    assert err.value.code == "invalid" and "no method 'nosuch'" in err.value.message


def test_a_stream_arrives_in_order(actors, client):
    actors.start()
    wait_ready(client)
    assert list(client.stream("echo", "count", {"n": 5})) == [0, 1, 2, 3, 4]


def test_a_streams_items_that_come_during_another_call_wait_for_it(actors, client):
    actors.start()
    wait_ready(client)
    counting = client.stream("echo", "count", {"n": 3}, timeout=10)
    # Its items arrive while this call's answer is awaited: kept for the stream.
    assert client.call("echo", "echo", {"text": "meanwhile"}) == "meanwhile"
    assert list(counting) == [0, 1, 2]
    assert client._early == {}  # nothing kept once the stream is over


def test_a_request_waits_for_its_actor_to_arrive(actors, client):
    threading.Timer(0.5, actors.start).start()
    assert client.call("echo", "echo", {"text": "late"}, timeout=15) == "late"


def test_no_actor_means_unavailable_at_the_deadline_not_later(client):
    started = time.monotonic()
    with pytest.raises(PouchError) as err:
        client.call("nobody", "anything", timeout=1.0)
    elapsed = time.monotonic() - started
    assert err.value.code in ("unavailable", "timeout")
    assert 0.9 <= elapsed < 1.6


def test_a_lost_request_fails_at_once_and_says_the_outcome_is_unknown(actors, client):
    proc = actors.start()
    wait_ready(client)
    threading.Timer(0.3, lambda: os.kill(proc.pid, signal.SIGKILL)).start()
    started = time.monotonic()
    with pytest.raises(PouchError) as err:
        client.call("echo", "slow", {"seconds": 20}, timeout=20)
    assert err.value.code == "unavailable"
    assert "outcome is unknown" in err.value.message
    assert time.monotonic() - started < 3  # at once, not at the deadline


def test_an_idempotent_request_is_retried_on_a_restarted_actor(actors, client):
    proc = actors.start()
    wait_ready(client)

    def crash_and_restart() -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        actors.start()

    threading.Timer(0.3, crash_and_restart).start()
    assert client.call("echo", "slow_safe", {"seconds": 1.0}, timeout=20) == "safe done"


def test_the_broker_lists_live_actors_and_their_contracts(actors, client):
    actors.start()
    wait_ready(client)
    services = Calls(client).broker.services()
    assert services["echo"]["workers"][0]["pid"] == actors.procs[0].pid
    contract = Calls(client).broker.contract(service="echo")
    assert contract["echo"]["idempotent"] is True
    assert contract["slow"]["idempotent"] is False
    assert contract["echo"]["args"] == {"text": {"type": "str", "required": True}}


def test_pipelined_requests_of_many_clients_are_all_answered_between_heartbeats(tmp_path):
    """The broker sleeps on its sockets' file descriptors, which stay quiet about a
    message libzmq took in while sending: had it slept on such a message, the last
    replies here would wait for its next heartbeat, 5 s away."""
    address = f"ipc://{tmp_path}/broker.sock"
    broker = Broker(address, heartbeat=5.0)
    broker.bind()
    thread = threading.Thread(target=broker.run, daemon=True)
    thread.start()
    running = Actors(address)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    clients = [ctx.socket(zmq.DEALER) for _ in range(8)]
    try:
        running.start()
        first = Client(address, timeout=10)
        wait_ready(first)
        first.close()
        for sock in clients:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
        for rounds in range(3):
            for rid in range(50):
                for sock in clients:
                    sock.send_multipart([env.CLIENT, env.REQ, b"echo", env.request(
                        rid, "echo", {"text": f"{rounds}.{rid}"}, time.time() + 30)])
            for sock in clients:
                answered: list[str] = []
                while len(answered) < 50:
                    assert sock.poll(3000), f"{len(answered)} of 50 answered in round {rounds}"
                    answered.append(env.unpack(sock.recv_multipart()[3])["result"])
                assert sorted(answered) == sorted(f"{rounds}.{rid}" for rid in range(50))
    finally:
        for sock in clients:
            sock.close(linger=0)
        running.stop_all()
        broker.stop()
        thread.join(timeout=6)


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A broker in a process of its own, for a test to stop (SIGSTOP) and resume."""
    address = f"ipc://{tmp_path}/broker.sock"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from pouch.broker.router "
                             "import Broker; Broker(sys.argv[1]).run()", address])
    yield address, proc
    os.kill(proc.pid, signal.SIGCONT)
    proc.kill()
    proc.wait()


def test_actors_that_die_unseen_while_requests_wait_do_not_wedge_the_broker(broker_process):
    """The chaos soak's 18 s wedge: requests wait for an actor; it says READY and dies
    while the broker is stopped; on resuming, the broker reads the READY of a
    connection that is gone. It must still answer everybody. (Whether the broker
    sees the connection gone before it routes to it is a race: thirty such actors.)"""
    address, proc = broker_process
    services = [f"echo{i}" for i in range(30)]
    client = Client(address, timeout=10)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    waiting = ctx.socket(zmq.DEALER)  # a client whose requests are sent, never awaited
    actors = [ctx.socket(zmq.DEALER) for _ in services]
    try:
        for sock in (waiting, *actors):
            # Connected: the broker answered it.
            sock.connect(address)
            sock.send_multipart([env.CLIENT, env.REQ, b"broker", env.request(1, "ping", {}, 0)])
            assert sock.poll(5000)
            sock.recv_multipart()
        for service in services:
            waiting.send_multipart([env.CLIENT, env.REQ, service.encode(), env.request(
                2, "echo", {"text": "hi"}, time.time() + 60)])
        wait_for(lambda: all((client.call("broker", "services").get(s) or {}).get("queued")
                             for s in services), 5.0, "the requests queued")
        os.kill(proc.pid, signal.SIGSTOP)
        for service, actor in zip(services, actors, strict=True):
            actor.send_multipart([env.ACTOR, env.READY, service.encode(),
                                  env.pack({"pid": os.getpid(), "methods": {}})])
            actor.close(linger=100)  # time for the READY to reach the broker's socket buffer
        os.kill(proc.pid, signal.SIGCONT)
        assert client.call("broker", "ping", timeout=2.0) == "pong"
    finally:
        for sock in (waiting, *actors):
            sock.close(linger=0)
        client.close()


def test_the_lost_answer_of_a_call_done_once_goes_back_to_its_actor(endpoint):
    """A caller gone before its answer came (its process died): for a call done once per
    token the actor hears of it (LOST, with the request), as nobody will retry it."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    actor = ctx.socket(zmq.DEALER)
    actor.connect(private_endpoint(endpoint))
    actor.send_multipart([env.ACTOR, env.READY, b"maker", env.pack(
        {"pid": os.getpid(), "token": read_token(private_endpoint(endpoint)),
         "methods": {"make": {"once": True}, "look": {"idempotent": True}}})])

    def received(timeout: float) -> list[bytes] | None:
        """The next frames for the actor other than heartbeats."""
        end = time.monotonic() + timeout
        while actor.poll(max(0, int((end - time.monotonic()) * 1000))):
            frames = actor.recv_multipart()
            if frames[1] != env.HEARTBEAT:
                return frames
            actor.send_multipart([env.ACTOR, env.HEARTBEAT])  # alive, as an actor says
        return None

    try:
        for method in ("look", "make"):
            caller = ctx.socket(zmq.DEALER)
            caller.connect(endpoint)
            body = env.request(1, method, {"token": "t"}, 0)
            caller.send_multipart([env.CLIENT, env.REQ, b"maker", body])
            _, command, client, routed = received(5.0) or []
            assert (command, routed) == (env.REQ, body)
            caller.close(linger=0)
            assert received(0.3) is None  # meanwhile the broker sees the connection end
            actor.send_multipart([env.ACTOR, env.REP, client, env.ok_reply(1, "made")])
            if method == "look":
                assert received(0.5) is None  # an idempotent call's caller may ask again
            else:
                assert received(5.0) == [env.ACTOR, env.LOST, client, body]
    finally:
        actor.close(linger=0)
