"""Random frames against the broker's parser, on both its sockets: afterwards the
broker still runs and a real request through a real actor still works."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pouch.broker.client import Client
from pouch.broker.trust import private_endpoint
from pouch.proto import envelope as env
from pouch.tests.unit.test_broker_hostile import Running

HEADERS = st.sampled_from([env.CLIENT, env.ACTOR, b"", b"PC2"])
COMMANDS = st.sampled_from([env.REQ, env.REP, env.CANCEL, env.SUB, env.READY, env.PUB,
                            env.HEARTBEAT, env.BYE, b"\x00"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
                    st.floats(), st.text(max_size=20), st.binary(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
BODIES = st.one_of(
    st.binary(max_size=64),
    VALUES.map(env.pack),
    st.fixed_dictionaries({"id": SCALARS, "method": SCALARS, "args": VALUES,
                           "deadline": SCALARS, "fields": VALUES, "pid": SCALARS,
                           "token": SCALARS, "methods": VALUES, "more": SCALARS}).map(env.pack),
)
SERVICES = st.one_of(st.sampled_from([b"echo", b"broker", b"supervisor", b"", b"events"]),
                     st.binary(max_size=12))
MESSAGES = st.lists(st.one_of(
    st.tuples(HEADERS, COMMANDS, SERVICES, BODIES).map(list),
    st.lists(st.binary(max_size=16), max_size=5)), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    r = Running(tmp_path_factory.mktemp("fuzz"))
    r.actor()
    yield r
    r.close()


@pytest.fixture(scope="module")
def client(running: Running) -> Iterator[Client]:
    c = Client(running.endpoint, timeout=10)
    c.call("echo", "echo", {"text": "ready?"}, timeout=15)
    yield c
    c.close()


@pytest.fixture(scope="module")
def peers(running: Running) -> Iterator[list[zmq.Socket[bytes]]]:
    yield [running.raw(), running.raw(private_endpoint(running.endpoint))]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=MESSAGES, trusted=st.booleans())
def test_random_frames_leave_the_broker_serving(running: Running, client: Client,
                                                 peers: list[Any], messages: list[list[bytes]],
                                                 trusted: bool):
    sock = peers[trusted]
    for frames in messages:
        if frames:
            sock.send_multipart(frames)
    while sock.poll(0):
        sock.recv_multipart()
    assert client.call("echo", "echo", {"text": "real"}) == "real"
    assert running.thread.is_alive()
