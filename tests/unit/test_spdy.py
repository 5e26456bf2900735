"""SPDY/3.1 framing on its own: a client and a server Connection talking bytes."""

from __future__ import annotations

import struct
import zlib

import pytest

from pouch.actors.cri import spdy


def pair() -> tuple[spdy.Connection, spdy.Connection]:
    return spdy.Connection(client=True), spdy.Connection(client=False)


def carry(src: spdy.Connection, dst: spdy.Connection) -> list[spdy.Event]:
    return dst.receive_data(src.data_to_send())


def test_dictionary_is_the_specs() -> None:
    d = spdy.DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert b"\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1" in d
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_header_blocks_need_the_dictionary() -> None:
    client, _ = pair()
    client.syn_stream({"streamtype": ["error"]})
    frame = client.data_to_send()
    block = frame[18:]  # 8 bytes of head, 10 of SYN_STREAM fields
    with pytest.raises(zlib.error):
        zlib.decompressobj().decompress(block)
    plain = zlib.decompressobj(zdict=spdy.DICTIONARY).decompress(block)
    assert spdy.decode_block(plain) == {"streamtype": ["error"]}


def test_streams_round_trip() -> None:
    client, server = pair()
    sid = client.syn_stream({"streamType": ["stdout"], "port": ["80", "81"]})
    (opened,) = carry(client, server)
    assert opened == spdy.StreamOpened(sid, {"streamtype": ["stdout"], "port": ["80", "81"]},
                                       False, False, 0)
    assert sid % 2 == 1
    server.syn_reply(sid, {"status": ["ok"]})
    server.send_data(sid, b"hello")
    server.send_data(sid, b" world", fin=True)
    events = carry(server, client)
    assert events == [spdy.StreamReplied(sid, {"status": ["ok"]}, False),
                      spdy.DataReceived(sid, b"hello", False),
                      spdy.DataReceived(sid, b" world", True)]
    client.send_data(sid, b"in")
    client.end_stream(sid)
    assert carry(client, server) == [spdy.DataReceived(sid, b"in", False),
                                     spdy.DataReceived(sid, b"", True)]
    assert not server.is_open(sid) and not client.is_open(sid)


def test_one_compression_context_for_many_blocks() -> None:
    client, server = pair()
    ids = [client.syn_stream({"streamtype": [kind], "requestid": ["7"]})
           for kind in ("error", "data", "error", "data")]
    events = carry(client, server)
    assert [e.stream_id for e in events if isinstance(e, spdy.StreamOpened)] == ids
    assert [e.headers["streamtype"] for e in events
            if isinstance(e, spdy.StreamOpened)] == [["error"], ["data"], ["error"], ["data"]]


def test_a_frame_split_across_reads_waits_for_its_rest() -> None:
    client, server = pair()
    sid = client.syn_stream({"streamtype": ["stdin"]})
    client.send_data(sid, b"x" * 1000, fin=True)
    wire = client.data_to_send()
    events: list[spdy.Event] = []
    for i in range(len(wire)):
        events += server.receive_data(wire[i:i + 1])
    assert isinstance(events[0], spdy.StreamOpened)
    assert b"".join(e.data for e in events if isinstance(e, spdy.DataReceived)) == b"x" * 1000
    assert isinstance(events[-1], spdy.DataReceived) and events[-1].fin


def test_received_data_is_given_back_in_window_updates() -> None:
    client, server = pair()
    sid = client.syn_stream({"streamtype": ["stdin"]})
    client.send_data(sid, b"a" * 40_000)
    carry(client, server)
    updates = [e for e in carry(server, client) if isinstance(e, spdy.WindowUpdated)]
    assert {u.stream_id for u in updates} == {0, sid}
    assert all(u.delta >= spdy.DEFAULT_WINDOW // 2 for u in updates)
    assert client.peer_flow_control


def test_windows_bound_a_peer_that_keeps_them() -> None:
    client, server = pair()
    sid = client.syn_stream({"streamtype": ["stdout"]})
    carry(client, server)
    server.syn_reply(sid)
    # Before the peer shows it keeps windows, nothing holds data back (spdystream).
    assert server.send_window(sid) > spdy.DEFAULT_WINDOW
    client.settings({spdy.SETTINGS_INITIAL_WINDOW_SIZE: spdy.DEFAULT_WINDOW})
    carry(client, server)
    assert server.peer_flow_control
    payload = bytes(range(256)) * 1024  # 256 KiB: four windows
    received = bytearray()
    sent = 0
    rounds = 0
    while sent < len(payload):
        rounds += 1
        assert rounds < 100, "the transfer stalled"
        window = server.send_window(sid)
        assert window <= spdy.DEFAULT_WINDOW
        sent += server.send_data(sid, payload[sent:])
        for event in carry(server, client):
            if isinstance(event, spdy.DataReceived):
                received += event.data
        carry(client, server)  # the client's WINDOW_UPDATEs
    assert bytes(received) == payload
    assert rounds > 3


def test_a_window_stops_what_it_does_not_cover() -> None:
    client, server = pair()
    sid = client.syn_stream({})
    carry(client, server)
    client.settings({spdy.SETTINGS_INITIAL_WINDOW_SIZE: 10})
    carry(client, server)
    assert server.send_data(sid, b"0123456789abc") == 10
    assert server.send_window(sid) == 0
    assert server.send_data(sid, b"abc") == 0


def test_pings_are_echoed() -> None:
    client, server = pair()
    ping_id = client.ping()
    assert carry(client, server) == [spdy.PingReceived(ping_id, ours=False)]
    assert carry(server, client) == [spdy.PingReceived(ping_id, ours=True)]


def test_goaway_refuses_new_streams() -> None:
    client, server = pair()
    first = client.syn_stream({})
    carry(client, server)
    server.goaway()
    assert carry(server, client) == [spdy.GoAwayReceived(first, spdy.GOAWAY_OK)]
    second = client.syn_stream({})
    assert carry(client, server) == []
    assert carry(server, client) == [spdy.StreamReset(second, spdy.REFUSED_STREAM)]


def control(kind: int, payload: bytes, version: int = 3, flags: int = 0) -> bytes:
    return struct.pack(">HHI", 0x8000 | version, kind, (flags << 24) | len(payload)) + payload


@pytest.mark.parametrize("frame", [
    control(spdy.PING, struct.pack(">I", 1), version=2),          # another version
    control(spdy.RST_STREAM, struct.pack(">I", 1)),               # too short
    control(spdy.PING, b"\0" * 5),                                # wrong size
    control(spdy.WINDOW_UPDATE, struct.pack(">II", 1, 0)),        # a zero delta
    control(spdy.SETTINGS, struct.pack(">I", 2) + b"\0" * 8),     # fewer entries than said
    control(spdy.SYN_STREAM, struct.pack(">IIBB", 1, 0, 0, 0) + b"not zlib"),
    control(spdy.SYN_STREAM, struct.pack(">IIBB", 2, 0, 0, 0)),   # an id the client may not use
    struct.pack(">II", 0, 3) + b"abc",                            # DATA on stream 0
])
def test_bad_frames_are_refused(frame: bytes) -> None:
    server = spdy.Connection(client=False)
    with pytest.raises(spdy.ProtocolError):
        server.receive_data(frame)
    goaway = server.data_to_send()
    assert goaway[:4] == struct.pack(">HH", 0x8003, spdy.GOAWAY)


def test_bad_header_blocks_are_refused() -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_block(struct.pack(">I", 1) + struct.pack(">I", 10) + b"short")
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_block(spdy.encode_block({"a": ["1"]}) + b"junk")
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_block(struct.pack(">II", 1, 1) + b"A" + struct.pack(">I", 0))


def test_data_on_an_unknown_stream_is_reset() -> None:
    client, server = pair()
    assert server.receive_data(struct.pack(">II", 5, 2) + b"hi") == []
    assert carry(server, client) == [spdy.StreamReset(5, spdy.INVALID_STREAM)]


def test_unknown_control_frames_are_ignored() -> None:
    server = spdy.Connection(client=False)
    assert server.receive_data(control(spdy.CREDENTIAL, b"whatever") + control(99, b"")) == []
