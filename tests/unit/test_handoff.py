"""Handing a client's connection to an actor (SCM_RIGHTS over a unix socket): the
gateway's side (`hand_over`) against a real listener in front of a hosted actor."""

from __future__ import annotations

import array
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pouch.actors.handoff import HandoffListener
from pouch.actors.host import host_of
from pouch.gateway.errors import HTTP_STATUS
from pouch.proto import envelope as env
from pouch.proto.envelope import PouchError
from pouch.proto.handoff import (
    GO,
    MAX_MESSAGE,
    LinkWatch,
    PassedStream,
    hand_over,
    keeper_path,
    pass_to_keeper,
    read_notice,
    receive_sockets,
    socket_path,
)
from pouch.proto.stream import JSON, StreamSpec
from pouch.tests.support.probe import ANSWER_WITHIN, hosted

CHUNKED_JSON = StreamSpec("chunked", JSON)


@pytest.fixture
def handoff_dir() -> Iterator[Path]:
    """A probe actor listening for hand-offs in the folder yielded."""
    folder = Path(tempfile.mkdtemp(prefix="ph-", dir="/tmp"))  # unix paths must be short
    try:
        with hosted(folder) as (ref, _broker):
            stop = HandoffListener(host_of(ref), folder / "handoff", time.time()).start()
            try:
                yield folder / "handoff"
            finally:
                stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def client_conn() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A client's connection: (the client's end, the end the gateway accepted)."""
    client, accepted = socket.socketpair()
    client.settimeout(ANSWER_WITHIN)
    yield client, accepted
    client.close()
    accepted.close()


def read_all(conn: socket.socket) -> bytes:
    data = b""
    while part := conn.recv(65536):
        data += part
    return data


def test_a_handed_over_connection_is_answered_by_the_actor(handoff_dir, client_conn):
    client, accepted = client_conn
    hand_over(handoff_dir, "probe", "greet", {"name": "ann"}, CHUNKED_JSON, accepted.fileno())
    accepted.close()  # the gateway lets go; the actor holds its own copy

    head, _, body = read_all(client).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b'11\r\n{"hello": "ann"}\n\r\n0\r\n\r\n'


def test_the_actor_tells_the_gateway_when_the_stream_begins_and_when_it_is_over(
        handoff_dir, client_conn):
    client, accepted = client_conn
    link = hand_over(handoff_dir, "probe", "greet", {"name": "ann"}, CHUNKED_JSON,
                     accepted.fileno())
    accepted.close()
    link.settimeout(ANSWER_WITHIN)

    assert read_notice(link) == {"started": True, "multiplexed": False, "resumable": False}
    assert read_notice(link) == {"done": True}
    assert read_notice(link) is None  # then the link ends: the actor did not die midway
    assert read_all(client).endswith(b"0\r\n\r\n")
    link.close()


def test_a_resumed_stream_goes_on_without_a_second_head(handoff_dir, client_conn):
    client, accepted = client_conn
    link = hand_over(handoff_dir, "probe", "greet", {"name": "ann"}, CHUNKED_JSON,
                     accepted.fileno(), resumed_at=1.0, head_out=True)
    accepted.close()
    link.close()

    assert read_all(client) == b'11\r\n{"hello": "ann"}\n\r\n0\r\n\r\n'


def raw_hand_over(handoff_dir: Path, fd: int) -> socket.socket:
    """A hand-off of `fd` for probe.greet up to the actor's ok, and no further."""
    link = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link.settimeout(ANSWER_WITHIN)
    link.connect(str(socket_path(handoff_dir, "probe")))
    link.sendmsg([env.pack({"method": "greet", "args": {"name": "ann"},
                            "stream": CHUNKED_JSON.to_wire()})],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    assert env.unpack(link.recv(MAX_MESSAGE))["ok"] is True
    return link


def test_the_actor_writes_nothing_before_the_gateway_wrote_the_head(handoff_dir, client_conn):
    """Whoever outlives an actor's death must know whether the head is out: so the
    gateway writes it, and the actor waits for its go."""
    client, accepted = client_conn
    link = raw_hand_over(handoff_dir, accepted.fileno())
    accepted.close()
    client.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.recv(1)
    link.send(GO)
    client.settimeout(ANSWER_WITHIN)

    assert read_all(client) == b'11\r\n{"hello": "ann"}\n\r\n0\r\n\r\n'
    link.close()


def test_without_the_gateways_go_the_actor_writes_no_body(handoff_dir, client_conn):
    client, accepted = client_conn
    link = raw_hand_over(handoff_dir, accepted.fileno())
    accepted.close()
    link.close()  # the gateway died between the actor's ok and its go

    assert read_all(client) == b""


def test_a_refused_hand_off_leaves_the_gateway_an_error_to_answer(handoff_dir, client_conn):
    client, accepted = client_conn
    with pytest.raises(PouchError) as refused:
        hand_over(handoff_dir, "probe", "greet", {"name": 5}, CHUNKED_JSON, accepted.fileno())
    assert refused.value.code == "invalid" and "'name'" in refused.value.message
    assert HTTP_STATUS[refused.value.code] == 400
    # The gateway still owns the connection and answers on it.
    accepted.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    accepted.close()
    assert read_all(client).startswith(b"HTTP/1.1 400 ")


def test_a_method_that_takes_no_connection_is_refused(handoff_dir, client_conn):
    _, accepted = client_conn
    with pytest.raises(PouchError) as refused:
        hand_over(handoff_dir, "probe", "echo", {"text": "hi"}, CHUNKED_JSON, accepted.fileno())
    assert refused.value.code == "invalid"
    assert "probe.echo does not take a connection" in refused.value.message


def test_an_unknown_method_is_refused(handoff_dir, client_conn):
    _, accepted = client_conn
    with pytest.raises(PouchError) as refused:
        hand_over(handoff_dir, "probe", "nothing", {}, CHUNKED_JSON, accepted.fileno())
    assert refused.value.code == "invalid"


def test_a_hand_off_without_a_connection_is_refused(handoff_dir):
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as link:
        link.settimeout(ANSWER_WITHIN)
        link.connect(str(socket_path(handoff_dir, "probe")))
        link.send(env.pack({"method": "greet", "args": {"name": "ann"},
                            "stream": CHUNKED_JSON.to_wire()}))
        answer = env.unpack(link.recv(MAX_MESSAGE))
    assert answer["ok"] is False
    assert answer["error"]["code"] == "invalid" and "connection" in answer["error"]["message"]


def test_no_actor_listening_is_unavailable(tmp_path, client_conn):
    _, accepted = client_conn
    with pytest.raises(PouchError) as refused:
        hand_over(tmp_path, "probe", "greet", {"name": "ann"}, CHUNKED_JSON, accepted.fileno())
    assert refused.value.code == "unavailable"
    assert HTTP_STATUS[refused.value.code] == 503


def test_a_stream_is_passed_to_a_living_keeper_and_a_dead_ones_socket_is_dropped(tmp_path):
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(keeper_path(tmp_path, 1)))
    dead.close()  # its process died: the path stays, nothing reads it
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as living:
        living.bind(str(keeper_path(tmp_path, 2)))
        conn, link = socket.socketpair()
        with conn, link:
            state = PassedStream("probe", "greet", {"name": "ann"}, CHUNKED_JSON, 1.0,
                                 started=True)
            assert pass_to_keeper(tmp_path, state, conn.fileno(), link.fileno()) == 2
        message, passed = receive_sockets(living, 2)
    assert PassedStream.from_wire(message) == state and len(passed) == 2
    for sock in passed:
        sock.close()
    assert not keeper_path(tmp_path, 1).exists()
    assert pass_to_keeper(tmp_path, state, 0, 0) is None  # no keeper left


def test_a_link_watch_says_what_it_told_and_nothing_after_done():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    closed: list[bool] = []
    watch = LinkWatch(ours, resumable=True)
    watch.on_done = lambda: closed.append(True)
    watch.started(multiplexed=True, resumable=False)
    watch.may_resume()
    assert watch.told == {"started": True, "multiplexed": True, "resumable": True}
    watch.done()
    watch.may_resume()
    assert closed == [True] and watch.ended
    theirs.settimeout(ANSWER_WITHIN)
    notices = [read_notice(theirs) for _ in range(3)]
    assert notices[2] == {"done": True}
    ours.close()
    assert read_notice(theirs) is None  # nothing after done
    theirs.close()
