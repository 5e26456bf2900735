"""A stream session writes the HTTP head and Docker's framing; actors only emit frames."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from pouch.proto import stdstream
from pouch.proto.envelope import PouchError
from pouch.proto.stream import (
    HEAD_SETTLE,
    LAST_CHUNK,
    RAW_STREAM,
    StreamSession,
    StreamSpec,
)

UPGRADE = StreamSpec("upgrade", RAW_STREAM)
CHUNKED = StreamSpec("chunked", RAW_STREAM)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, client = socket.socketpair()
    client.settimeout(5)
    with ours, client:
        yield ours, client


def received(client: socket.socket) -> bytes:
    """All the client receives until the session closes the connection."""
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def head_and_body(data: bytes) -> tuple[list[str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode().split("\r\n"), body


def test_an_upgrade_answers_101_with_the_raw_stream_headers():
    lines, body = head_and_body(UPGRADE.head())
    assert lines[0] == "HTTP/1.1 101 UPGRADED"
    assert {"Connection: Upgrade", "Upgrade: tcp", f"Content-Type: {RAW_STREAM}",
            "Api-Version: 1.41"} <= set(lines)
    assert body == b""


def test_a_chunked_stream_answers_200_and_closes_when_done():
    lines, body = head_and_body(StreamSpec("chunked", "application/json").head())
    assert lines[0] == "HTTP/1.1 200 OK"
    assert {"Transfer-Encoding: chunked", "Connection: close",
            "Content-Type: application/json"} <= set(lines)
    assert body == b""


def body_of(pair, spec: StreamSpec, multiplexed: bool, *writes: tuple[str, bytes]) -> bytes:
    """The response body a client receives for a session that writes `writes`, then ends."""
    ours, client = pair
    session = StreamSession(ours, spec)
    assert session.start(multiplexed=multiplexed)
    assert all(session.write(stream, data) for stream, data in writes)
    session.end()
    return head_and_body(received(client))[1]


def test_without_a_tty_an_upgraded_stream_is_multiplexed(pair):
    body = body_of(pair, UPGRADE, True, ("stdout", b"out\n"), ("stderr", b"err\n"))
    assert stdstream.parse(body) == ([(stdstream.STDOUT, b"out\n"),
                                      (stdstream.STDERR, b"err\n")], b"")


def test_with_a_tty_the_bytes_go_as_they_are(pair):
    assert body_of(pair, UPGRADE, False, ("stdout", b"\x1b[1mbold\r\n")) == b"\x1b[1mbold\r\n"


def test_a_chunked_stream_puts_each_frame_in_a_chunk_and_ends_with_the_last_chunk(pair):
    frame = stdstream.frame(stdstream.STDOUT, b"hello\n")
    assert body_of(pair, CHUNKED, True, ("stdout", b"hello\n")) == \
        b"e\r\n" + frame + b"\r\n" + LAST_CHUNK


def test_an_empty_write_sends_no_chunk_that_would_end_the_body(pair):
    assert body_of(pair, CHUNKED, False, ("stdout", b"")) == LAST_CHUNK


def test_a_json_document_is_one_line_in_one_chunk(pair):
    ours, client = pair
    session = StreamSession(ours, StreamSpec("chunked", "application/json"))
    session.start()
    session.write_json({"StatusCode": 3, "Error": None})
    session.end()
    body = head_and_body(received(client))[1]
    size, _, rest = body.partition(b"\r\n")
    document = rest[:int(size, 16)]
    assert json.loads(document) == {"StatusCode": 3, "Error": None}
    assert document.endswith(b"\n") and rest[int(size, 16):] == b"\r\n" + LAST_CHUNK


def test_an_upgraded_stream_ends_by_closing_the_connection(pair):
    assert body_of(pair, UPGRADE, False) == b""
    assert pair[0].fileno() == -1


def test_a_failure_is_told_on_the_system_error_stream_then_the_stream_ends(pair):
    ours, client = pair
    session = StreamSession(ours, CHUNKED)
    session.start(multiplexed=True)
    session.fail("Error grabbing logs: disk on fire")
    body = head_and_body(received(client))[1]
    size, _, rest = body.partition(b"\r\n")
    frames, _ = stdstream.parse(rest[:int(size, 16)])
    assert frames == [(stdstream.SYSTEM_ERROR, b"Error grabbing logs: disk on fire\n")]
    assert body.endswith(LAST_CHUNK)


def test_writes_to_a_client_that_went_away_report_it(pair):
    ours, client = pair
    session = StreamSession(ours, UPGRADE)
    client.close()
    assert not session.start()
    assert not session.write("stdout", b"lost")
    session.end()  # nothing to end: no error either


def test_the_hub_takes_the_bytes_and_sends_them_itself(pair):
    ours, _ = pair
    session = StreamSession(ours, CHUNKED)
    session.multiplexed = True
    assert session.encode("stderr", b"e") == b"9\r\n" + stdstream.frame(stdstream.STDERR, b"e") \
        + b"\r\n"
    assert session.trailer() == LAST_CHUNK
    assert StreamSession(ours, UPGRADE).trailer() == b""


def test_data_after_an_upgrade_head_waits_for_the_head_to_settle(pair):
    ours, _ = pair
    session = StreamSession(ours, UPGRADE)
    started = time.monotonic()
    session.start()
    session.settle()
    assert time.monotonic() - started >= HEAD_SETTLE
    chunked = StreamSession(ours, CHUNKED)
    chunked.start()
    started = time.monotonic()
    chunked.settle()
    assert time.monotonic() - started < HEAD_SETTLE


def test_the_description_travels_with_the_hand_off():
    assert StreamSpec.from_wire(UPGRADE.to_wire()) == UPGRADE
    for bad in (None, {"kind": "sideways", "content_type": RAW_STREAM}, {"kind": "upgrade"}):
        with pytest.raises(PouchError) as caught:
            StreamSpec.from_wire(bad)
        assert caught.value.code == "invalid"
