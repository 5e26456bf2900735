"""The json-file log: how output becomes entries, and which entries `docker logs` shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pouch.actors.container.jsonlog import MAX_LINE, Entry, LogWriter, Selection, read_entries
from pouch.actors.timefmt import parse_rfc3339


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "json.log"


@pytest.fixture
def writer(log_path: Path) -> Iterator[LogWriter]:
    w = LogWriter(log_path)
    yield w
    w.close()


def records(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def data(entries: list[Entry]) -> list[bytes]:
    return [e.data for e in entries]


# -- writing -----------------------------------------------------------------


def test_each_line_becomes_one_record_in_dockers_format(writer, log_path):
    entries = writer.write("stdout", b"one\ntwo\n")
    assert data(entries) == [b"one\n", b"two\n"]
    lines = log_path.read_bytes().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert set(first) == {"log", "stream", "time"}
    assert (first["log"], first["stream"]) == ("one\n", "stdout")
    assert first["time"].endswith("Z") and parse_rfc3339(first["time"]) > 0
    assert lines[0].startswith(b'{"log":"one\\n","stream":"stdout","time":"')


def test_a_line_split_across_chunks_is_written_once_whole(writer, log_path):
    assert writer.write("stdout", b"hel") == []
    assert writer.write("stdout", b"lo") == []
    assert data(writer.write("stdout", b" world\nnext")) == [b"hello world\n"]
    assert [r["log"] for r in records(log_path)] == ["hello world\n"]


def test_streams_keep_their_partial_lines_apart(writer, log_path):
    writer.write("stdout", b"out-")
    writer.write("stderr", b"err-")
    writer.write("stdout", b"end\n")
    writer.write("stderr", b"end\n")
    assert [(r["stream"], r["log"]) for r in records(log_path)] == \
        [("stdout", "out-end\n"), ("stderr", "err-end\n")]


def test_flush_writes_a_last_line_without_its_newline(writer, log_path):
    writer.write("stderr", b"done\nno newline")
    assert data(writer.flush("stderr")) == [b"no newline"]
    assert writer.flush("stderr") == []
    assert writer.flush("stdout") == []
    assert [r["log"] for r in records(log_path)] == ["done\n", "no newline"]


def test_a_line_longer_than_16_kib_is_split_without_newlines(writer, log_path):
    assert MAX_LINE == 16 * 1024
    long_line = b"x" * (2 * MAX_LINE + 10) + b"\n"
    assert data(writer.write("stdout", long_line)) == \
        [b"x" * MAX_LINE, b"x" * MAX_LINE, b"x" * 10 + b"\n"]
    assert b"".join(e.data for e in read_entries(log_path)) == long_line


def test_a_line_of_exactly_16_kib_with_its_newline_is_one_entry(writer):
    line = b"y" * (MAX_LINE - 1) + b"\n"
    assert data(writer.write("stdout", line)) == [line]


def test_16_kib_without_a_newline_is_cut_at_once(writer):
    assert data(writer.write("stdout", b"z" * MAX_LINE)) == [b"z" * MAX_LINE]
    assert data(writer.write("stdout", b"\n")) == [b"\n"]


def test_the_limit_applies_across_chunks(writer):
    assert writer.write("stdout", b"a" * (MAX_LINE - 1)) == []
    assert data(writer.write("stdout", b"bc")) == [b"a" * (MAX_LINE - 1) + b"b"]
    assert data(writer.flush("stdout")) == [b"c"]


def test_bytes_that_are_not_utf8_are_replaced(writer, log_path):
    writer.write("stdout", b"caf\xc3\xa9 \xff\n")
    assert records(log_path)[0]["log"] == "café \ufffd\n"


def test_size_is_the_log_files_length(writer, log_path):
    assert writer.size() == 0
    writer.write("stdout", b"hello\n")
    assert writer.size() == log_path.stat().st_size > 0


def test_a_writer_appends_to_an_existing_log(log_path):
    first = LogWriter(log_path)
    first.write("stdout", b"before\n")
    first.close()
    second = LogWriter(log_path)
    second.write("stdout", b"after\n")
    second.close()
    assert data(list(read_entries(log_path))) == [b"before\n", b"after\n"]


# -- reading -----------------------------------------------------------------


def test_read_entries_gives_back_what_was_written(writer, log_path):
    written = writer.write("stdout", b"a\n") + writer.write("stderr", b"b\n")
    assert list(read_entries(log_path)) == written


def test_read_entries_between_offsets(writer, log_path):
    writer.write("stdout", b"first\n")
    after_first = writer.size()
    writer.write("stdout", b"second\n")
    after_second = writer.size()
    writer.write("stdout", b"third\n")
    assert data(list(read_entries(log_path, 0, after_first))) == [b"first\n"]
    assert data(list(read_entries(log_path, after_first, after_second))) == [b"second\n"]
    assert data(list(read_entries(log_path, after_second))) == [b"third\n"]
    assert data(list(read_entries(log_path, after_first))) == [b"second\n", b"third\n"]
    assert list(read_entries(log_path, after_first, after_first)) == []


def test_a_missing_log_reads_as_empty(tmp_path):
    assert list(read_entries(tmp_path / "nope.log")) == []


def test_a_torn_or_foreign_line_is_skipped(writer, log_path):
    writer.write("stdout", b"kept\n")
    with open(log_path, "ab") as f:
        f.write(b'{"stream":"stdout"}\n')   # no log, no time
        f.write(b'{"log":"torn')            # a writer that died mid-line
    assert data(list(read_entries(log_path))) == [b"kept\n"]


# -- selection ---------------------------------------------------------------

T0 = 1_700_000_000.0
STAMPS = ["2023-11-14T22:13:20Z", "2023-11-14T22:13:21Z", "2023-11-14T22:13:22.5Z",
          "2023-11-14T22:13:23Z"]


def sample() -> list[Entry]:
    streams = ["stdout", "stderr", "stdout", "stderr"]
    pairs = zip(streams, STAMPS, strict=True)
    return [Entry(s, f"{i}\n".encode(), t) for i, (s, t) in enumerate(pairs)]


def pick(selection: Selection) -> list[bytes]:
    return [e.data for e in selection.pick(iter(sample()))]


def test_by_default_everything_is_shown():
    assert pick(Selection()) == [b"0\n", b"1\n", b"2\n", b"3\n"]


def test_one_stream_alone():
    assert pick(Selection(stderr=False)) == [b"0\n", b"2\n"]
    assert pick(Selection(stdout=False)) == [b"1\n", b"3\n"]
    assert pick(Selection(stdout=False, stderr=False)) == []


def test_tail_keeps_the_last_entries():
    assert pick(Selection(tail=2)) == [b"2\n", b"3\n"]
    assert pick(Selection(tail=10)) == [b"0\n", b"1\n", b"2\n", b"3\n"]
    assert pick(Selection(tail=0)) == []


def test_since_and_until_are_inclusive():
    assert pick(Selection(since=T0 + 1)) == [b"1\n", b"2\n", b"3\n"]
    assert pick(Selection(until=T0 + 1)) == [b"0\n", b"1\n"]
    assert pick(Selection(since=T0 + 1, until=T0 + 2.5)) == [b"1\n", b"2\n"]
    assert pick(Selection(since=T0 + 2.6, until=T0 + 2.7)) == []


def test_fractions_of_a_second_count():
    assert pick(Selection(since=T0 + 2.4)) == [b"2\n", b"3\n"]
    assert pick(Selection(since=T0 + 2.6)) == [b"3\n"]


def test_filters_combine():
    assert pick(Selection(stderr=False, since=T0 + 1, tail=5)) == [b"2\n"]


def test_tail_counts_lines_of_every_stream_as_docker_does():
    assert pick(Selection(stderr=False, tail=1)) == []


def test_a_selection_without_tail_is_lazy():
    def endless() -> Iterator[Entry]:
        n = 0
        while True:
            yield Entry("stdout", f"{n}\n".encode(), STAMPS[0])
            n += 1

    chosen = iter(Selection().pick(endless()))
    assert [next(chosen).data for _ in range(3)] == [b"0\n", b"1\n", b"2\n"]
