"""Docker's multiplexed stream: an 8-byte header per frame, then the payload."""

from __future__ import annotations

import struct

import pytest

from pouch.proto.stdstream import (
    HEADER_SIZE,
    MAX_FRAME,
    STDERR,
    STDIN,
    STDOUT,
    STREAMS,
    frame,
    parse,
)


def test_the_header_is_stream_three_zeros_and_a_big_endian_length():
    assert frame(STDOUT, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert frame(STDERR, b"e") == b"\x02\x00\x00\x00\x00\x00\x00\x01e"
    assert frame(STDIN, b"x" * 258)[:HEADER_SIZE] == b"\x00\x00\x00\x00\x00\x00\x01\x02"
    assert HEADER_SIZE == 8


def test_stream_names_map_to_their_numbers():
    assert STREAMS == {"stdin": 0, "stdout": 1, "stderr": 2}


def test_frames_round_trip():
    data = frame(STDOUT, b"one\n") + frame(STDERR, b"two\n") + frame(STDOUT, b"")
    assert parse(data) == ([(STDOUT, b"one\n"), (STDERR, b"two\n"), (STDOUT, b"")], b"")


def test_a_partial_frame_is_left_over_whole():
    whole = frame(STDOUT, b"complete")
    partial = frame(STDERR, b"cut short")
    for cut in range(len(partial)):
        frames, rest = parse(whole + partial[:cut])
        assert frames == [(STDOUT, b"complete")]
        assert rest == partial[:cut]


def test_leftovers_complete_with_the_next_read():
    data = frame(STDOUT, b"a" * 100) + frame(STDERR, b"b" * 50)
    frames, rest = parse(data[:70])
    assert frames == [] and rest == data[:70]
    more, rest = parse(rest + data[70:])
    assert more == [(STDOUT, b"a" * 100), (STDERR, b"b" * 50)] and rest == b""


def test_empty_input():
    assert parse(b"") == ([], b"")


def test_a_payload_of_exactly_32_kib_is_one_frame():
    payload = bytes(range(256)) * (MAX_FRAME // 256)
    data = frame(STDOUT, payload)
    assert MAX_FRAME == 32 * 1024
    assert len(data) == HEADER_SIZE + MAX_FRAME
    assert parse(data) == ([(STDOUT, payload)], b"")


@pytest.mark.parametrize("size", [MAX_FRAME + 1, 2 * MAX_FRAME, 5 * MAX_FRAME + 123])
def test_a_payload_over_32_kib_is_split_into_frames_of_at_most_32_kib(size):
    payload = bytes(i % 251 for i in range(size))
    frames, rest = parse(frame(STDERR, payload))
    assert rest == b""
    assert all(stream == STDERR for stream, _ in frames)
    assert [len(chunk) for _, chunk in frames][:-1] == [MAX_FRAME] * (len(frames) - 1)
    assert 0 < len(frames[-1][1]) <= MAX_FRAME
    assert len(frames) == -(-size // MAX_FRAME)
    assert b"".join(chunk for _, chunk in frames) == payload


def test_lengths_are_read_as_unsigned_32_bit():
    big = struct.pack(">BxxxI", STDOUT, 0x01000000)
    frames, rest = parse(big + b"x" * 10)
    assert frames == [] and rest == big + b"x" * 10
