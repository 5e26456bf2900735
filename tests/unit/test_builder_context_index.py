"""A plain context kept as its tar (`spool_context`): its sources resolve and sum as
they do in the folder `unpack_context` makes of the same tar, its files read as they
were sent, and a context that is not plain is left to `unpack_context`."""

from __future__ import annotations

import gzip
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pouch.actors.builder.context import (
    ContextError,
    ContextIndex,
    resolve_named,
    sources_digest,
    spool_context,
    unpack_context,
)
from pouch.actors.builder.ignore import IgnoreRules
from pouch.tests.unit.test_builder_context import Member, tar_bytes

PLAIN: list[Member] = [
    ("./", "dir", b"", 0o755),
    ("Dockerfile", "file", b"FROM busybox\r\nCOPY . /app\n", 0o644),
    ("app/", "dir", b"", 0o750),
    ("app/main.py", "file", b"print('hi')\n" * 300, 0o644),
    ("app/run.sh", "file", b"#!/bin/sh\n", 0o4755),
    ("app/empty", "file", b"", 0o600),
    ("app/pipe", "fifo", b"", 0o644),
    ("app/deep/er/x.txt", "file", b"x", 0o644),  # its folders implied
    ("b.txt", "file", b"b", 0o644),
    ("a.txt", "file", b"a", 0o640),
]


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the folders unpacking makes for implied ones
    yield
    os.umask(old)


Sums = dict[str, tuple[tuple[int, ...], str]]


def both(tmp_path: Path, members: list[Member]) -> tuple[ContextIndex, Path, Sums]:
    data = tar_bytes(members)
    index = spool_context(io.BytesIO(data), tmp_path / "ctx.tar", 1 << 26)
    assert index is not None
    folder = tmp_path / "ctx"
    folder.mkdir(mode=0o700)  # as mkdtemp makes it
    with open(index.spool, "rb") as spooled:
        assert spooled.read() == data  # the spool is the tar as sent
    sums = unpack_context(io.BytesIO(data), folder, 1 << 26).sums
    return index, folder, sums


@pytest.mark.parametrize("sources", [
    ["a.txt"], ["/b.txt"], ["./app"], ["app/deep"], ["*.txt"], ["app/*"], ["."], ["/"],
    ["a.txt", "app"], ["app/deep/../run.sh"], ["app/pipe"], ["a?txt", "app/deep/er"]])
def test_sources_resolve_and_sum_as_in_the_unpacked_folder(tmp_path: Path,
                                                          sources: list[str]):
    index, folder, sums = both(tmp_path, PLAIN)
    found = index.resolve_named(sources)
    on_disk = resolve_named(folder, sources)
    assert [name for name, _ in found] == [name for name, _ in on_disk]
    assert [folder / rel if rel else folder for _, rel in found] == [p for _, p in on_disk]
    assert index.digest([rel for _, rel in found]) == \
        sources_digest([p for _, p in on_disk], folder, sums) == \
        sources_digest([p for _, p in on_disk], folder)


def test_errors_and_ignore_rules_are_those_of_the_folder(tmp_path: Path):
    index, folder, _ = both(tmp_path, PLAIN)
    rules = IgnoreRules.from_text("b.txt\n")
    for sources in (["../x"], ["app/../../x"], ["nope"], ["*.nothing"], ["b.txt"]):
        with pytest.raises(ContextError) as in_index:
            index.resolve_named(sources, rules)
        with pytest.raises(ContextError) as in_folder:
            resolve_named(folder, sources, rules)
        assert str(in_index.value) == str(in_folder.value)
    assert index.resolve_named(["*.txt"], rules) == [("a.txt", "a.txt")]


def test_files_read_out_of_the_tar_and_the_tree_walks_as_os_walk(tmp_path: Path):
    index, folder, _ = both(tmp_path, PLAIN)
    assert index.is_file("Dockerfile") and not index.is_file("app")
    assert not index.is_file("app/pipe") and not index.is_file("nope")
    assert index.read("app/main.py") == (folder / "app/main.py").read_bytes()
    walked = []
    for root, dirs, files in os.walk(folder / "app"):
        dirs.sort()
        here = Path(root).relative_to(folder).as_posix()
        walked += [here] + [f"{here}/{name}" for name in sorted(files)]
    assert [path for path, _ in index.tree("app")] == walked
    assert next(index.tree("app")) == ("app", "")
    assert stat.S_IMODE((folder / "app/run.sh").stat().st_mode) == \
        index.node("app/run.sh").mode == 0o4755


def test_a_compressed_context_is_spooled_decompressed(tmp_path: Path):
    data = tar_bytes(PLAIN)
    index = spool_context(io.BytesIO(gzip.compress(data)), tmp_path / "ctx.tar", 1 << 26)
    assert index is not None
    assert (tmp_path / "ctx.tar").read_bytes() == data
    assert index.read("b.txt") == b"b"


def test_a_context_that_ends_unpadded_is_spooled_whole(tmp_path: Path):
    # As the docker CLI sends it with `-f -`: no padding, no end-of-archive blocks.
    whole = tar_bytes([("Dockerfile", "file", b"FROM busybox\n", 0o644),
                       (".dockerfile.1", "file", b"FROM scratch\n", 0o644)])
    index = spool_context(io.BytesIO(whole[:512 * 3 + len(b"FROM scratch\n")]),
                          tmp_path / "ctx.tar", 1 << 26)
    assert index is not None and index.read(".dockerfile.1") == b"FROM scratch\n"


@pytest.mark.parametrize("odd", [
    [("link", "symlink", "a.txt", 0o777)],
    [("hard", "hardlink", "a.txt", 0o644)],
    [("a.txt", "file", b"again", 0o644)],  # named twice
    [("app", "dir", b"", 0o755)],  # a folder named twice
    [("a.txt/inside", "file", b"x", 0o644)],  # under a file
    [("/abs", "file", b"x", 0o644)],
    [("../up", "file", b"x", 0o644)],
    [("null", "chr", b"", 0o644)],
], ids=["symlink", "hardlink", "twice", "folder-twice", "under-a-file", "absolute",
        "dotdot", "device"])
def test_a_context_that_is_not_plain_is_left_to_unpacking(tmp_path: Path,
                                                          odd: list[Member]):
    data = tar_bytes(PLAIN + odd)
    assert spool_context(io.BytesIO(data), tmp_path / "ctx.tar", 1 << 26) is None
    assert (tmp_path / "ctx.tar").read_bytes() == data  # whole, for unpack_context


def test_the_limit_and_garbage_are_refused(tmp_path: Path):
    with pytest.raises(ContextError, match="larger than its limit"):
        spool_context(io.BytesIO(tar_bytes(PLAIN)), tmp_path / "one.tar", 1024)
    with pytest.raises(ContextError, match="invalid build context"):
        spool_context(io.BytesIO(b"not a tar at all" * 64), tmp_path / "two.tar", 1 << 20)
