"""Detach keys as dockerd reads them, and the scanner that watches a client's input."""

from __future__ import annotations

import pytest

from pouch.actors.container.detach import DEFAULT_DETACH_KEYS, EscapeScanner, parse_detach_keys
from pouch.proto.envelope import PouchError


@pytest.mark.parametrize(("text", "keys"), [
    ("", b"\x10\x11"),
    ("ctrl-p,ctrl-q", b"\x10\x11"),
    ("ctrl-a", b"\x01"),
    ("ctrl-@,ctrl-_", b"\x00\x1f"),
    ("ctrl-\\,ctrl-]", b"\x1c\x1d"),
    ("a,b", b"ab"),
    ("ctrl-x,x", b"\x18x"),
    ("DEL", b"\x7f"),
])
def test_keys_read_as_moby_term_reads_them(text, keys):
    assert parse_detach_keys(text) == keys


# Commas only separate keys (so "," is two empty keys); "é" is two bytes, no one key.
@pytest.mark.parametrize("text", ["foo", "ctrl-", "ctrl-P", "ctrl-1", "ctrl-a,", ",", "é",
                                  "ab"])
def test_unknown_keys_are_refused_in_dockerds_words(text):
    with pytest.raises(PouchError) as err:
        parse_detach_keys(text)
    assert err.value.code == "invalid"
    assert err.value.message == f"Invalid detach keys ({text}) provided"


def test_the_sequence_is_swallowed_and_ends_the_input():
    scanner = EscapeScanner()
    assert scanner.feed(b"ls\r") == (b"ls\r", False)
    assert scanner.feed(b"ab\x10\x11cd") == (b"ab", True)


def test_a_sequence_split_across_reads_is_still_seen():
    scanner = EscapeScanner()
    assert scanner.feed(b"x\x10") == (b"x", False)  # the ctrl-p is held until we know
    assert scanner.feed(b"\x11") == (b"", True)


def test_a_sequence_that_breaks_off_passes_on_what_was_held():
    scanner = EscapeScanner()
    assert scanner.feed(b"\x10") == (b"", False)
    assert scanner.feed(b"y") == (b"\x10y", False)
    # A held byte that starts the sequence again is held again.
    assert scanner.feed(b"\x10\x10") == (b"\x10", False)
    assert scanner.feed(b"\x11") == (b"", True)


def test_a_longer_sequence_with_repeats_is_found_where_it_ends():
    scanner = EscapeScanner(b"aab")
    assert scanner.feed(b"aaab") == (b"a", True)
    assert EscapeScanner(b"aab").feed(b"aaxaab") == (b"aax", True)


def test_the_default_is_ctrl_p_ctrl_q():
    assert DEFAULT_DETACH_KEYS == b"\x10\x11" == EscapeScanner().keys
    with pytest.raises(ValueError):
        EscapeScanner(b"")
