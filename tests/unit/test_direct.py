"""The direct path (`pouch.broker.direct`): a local client's calls that may be sent again
(idempotent, or done once per token) on the actor's own socket, served by the actor's
thread beside its broker socket."""

from __future__ import annotations

import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from pouch.broker import direct
from pouch.proto import envelope as env
from pouch.tests.support.probe import ANSWER_WITHIN, BrokerEnd, hosted
from pouch.tests.support.wait import wait_for


@pytest.fixture
def probed() -> Iterator[tuple[Path, BrokerEnd, pykka.ActorRef[Any]]]:
    """A probe actor's direct socket, the test's broker end it registered with, and the
    actor."""
    folder = Path(tempfile.mkdtemp(prefix="pd-", dir="/tmp"))  # unix paths must be short
    try:
        with hosted(folder, folder / "direct") as (ref, broker):
            yield direct.socket_path(folder / "direct", "probe"), broker, ref
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def probe(probed) -> tuple[Path, BrokerEnd]:
    """A probe actor's direct socket, and the test's broker end it registered with."""
    return probed[0], probed[1]


def call(link: socket.socket, method: str, args: dict[str, Any], rid: int = 7) -> Any:
    body = env.request(rid, method, args, time.time() + 30)
    return env.unpack(direct.exchange(link, body, ANSWER_WITHIN))


def linked(path: Path) -> socket.socket:
    link = direct.connect(path)
    assert link is not None, f"nothing listens at {path}"
    return link


def test_an_idempotent_call_is_answered_without_the_broker(probe):
    path, broker = probe
    with linked(path) as link:
        assert call(link, "echo", {"text": "hi"}) == {"id": 7, "ok": True, "result": "hi"}
        # Several on one link, one after the other.
        assert call(link, "echo", {"text": "again"}, rid=8)["result"] == "again"
    with pytest.raises(AssertionError, match="sent nothing"):
        broker.receive(timeout=0.3)
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_answer_given_on_another_thread_comes_back_on_the_link(probe):
    path, _ = probe
    with linked(path) as link:
        assert call(link, "later", {"text": "hey"})["result"] == "hey"


def test_a_call_done_once_per_token_is_answered_without_the_broker(probed):
    path, broker, ref = probed
    with linked(path) as link:
        link.sendall(direct.frame(env.request(
            4, "hold", {"text": "once", "token": "t-1"}, time.time() + 30)))
        wait_for(lambda: ref.ask("held"), ANSWER_WITHIN, "the call reaches the actor")
        ref.ask("release")
        link.settimeout(ANSWER_WITHIN)
        bodies: list[bytes] = []
        reader = direct.Reader()
        while not bodies:
            bodies = reader.feed(link.recv(4096))
    assert env.unpack(bodies[0]) == {"id": 4, "ok": True, "result": "once"}
    with pytest.raises(AssertionError, match="sent nothing"):
        broker.receive(timeout=0.3)
    assert ref.ask("lost") == []


def test_a_link_closed_before_its_once_per_token_answer_cancels_it_and_tells_the_actor(
        probed):
    """As the broker does: a client that leaves gives up on its calls (the handler sees
    its reply cancelled), and the answer that then reaches nobody is reported."""
    path, _broker, ref = probed
    args = {"text": "gone", "token": "t-2"}
    with linked(path) as link:
        link.sendall(direct.frame(env.request(5, "hold", args, time.time() + 30)))
        wait_for(lambda: ref.ask("held"), ANSWER_WITHIN, "the call reaches the actor")
    assert wait_for(lambda: ref.ask("held") == [True], ANSWER_WITHIN,
                    "the call cancelled once its link closed")
    ref.ask("release")
    assert wait_for(lambda: ref.ask("lost"), ANSWER_WITHIN,
                    "the lost answer reported") == [("hold", args)]


@pytest.mark.parametrize("method, args", [("broken", {}), ("count", {"n": 2})])
def test_what_must_go_through_the_broker_is_refused(probe, method, args):
    """Neither idempotent nor done once per token (its outcome must be known if the
    actor dies), or a stream."""
    path, _ = probe
    with linked(path) as link:
        answer = call(link, method, args)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid"
    assert "call it through the broker" in answer["error"]["message"]


def test_arguments_are_validated_as_on_the_broker_path(probe):
    path, _ = probe
    with linked(path) as link:
        answer = call(link, "echo", {"text": 5})
    assert answer["error"]["code"] == "invalid" and "'text'" in answer["error"]["message"]


def test_a_client_that_speaks_nonsense_is_dropped_and_others_are_served(probe):
    path, _ = probe
    with linked(path) as bad:
        bad.settimeout(ANSWER_WITHIN)
        bad.sendall(struct.pack(">I", direct.MAX_BODY + 1))
        assert bad.recv(1) == b""  # the actor closed it
    with linked(path) as link:
        assert call(link, "echo", {"text": "still"})["result"] == "still"


def test_a_request_split_across_writes_is_read_whole(probe):
    path, _ = probe
    framed = direct.frame(env.request(3, "echo", {"text": "slow"}, time.time() + 30))
    with linked(path) as link:
        link.settimeout(ANSWER_WITHIN)
        for i in range(len(framed)):
            link.send(framed[i:i + 1])
        reader = direct.Reader()
        bodies: list[bytes] = []
        while not bodies:
            bodies = reader.feed(link.recv(4096))
    assert env.unpack(bodies[0])["result"] == "slow"


def test_nothing_listens_once_the_actor_has_stopped(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="pd-", dir="/tmp"))
    try:
        with hosted(folder, folder / "direct"):
            path = direct.socket_path(folder / "direct", "probe")
            assert path.exists()
        assert not path.exists()
        assert direct.connect(path) is None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_reader_parts_bodies_however_the_bytes_arrive():
    stream = b"".join(direct.frame(body) for body in (b"a", b"", b"xyz" * 1000))
    reader = direct.Reader()
    got = [body for i in range(0, len(stream), 7) for body in reader.feed(stream[i:i + 7])]
    assert got == [b"a", b"", b"xyz" * 1000]
    with pytest.raises(direct.BadFrame):
        direct.Reader().feed(struct.pack(">I", direct.MAX_BODY + 1))
