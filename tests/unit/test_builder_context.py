"""The build context: unpacking a client's tar safely as it streams, finding COPY's
sources in it, and the checksum the build cache keys on."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pouch.actors.builder.context import (
    ContextError,
    ContextInfo,
    resolve_named,
    resolve_sources,
    sources_digest,
    unpack_context,
)
from pouch.actors.builder.ignore import IgnoreRules

MB = 1 << 20
Member = tuple[str, str, bytes | str, int]  # name, type, content or link target, mode


def tar_bytes(members: list[Member], mtime: int = 1_600_000_000) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, body, mode in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, mtime
            data = None
            if kind == "file":
                assert isinstance(body, bytes)
                info.size, data = len(body), io.BytesIO(body)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(body)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(body)
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, data)
    return buffer.getvalue()


def unpack(data: bytes, dest: Path, limit: int = 64 * MB, **kwargs: Any) -> ContextInfo:
    return unpack_context(io.BytesIO(data), dest, limit, **kwargs)


SIMPLE: list[Member] = [
    ("./", "dir", b"", 0o755),
    ("./Dockerfile", "file", b"FROM busybox\n", 0o644),
    ("./app", "dir", b"", 0o750),
    ("./app/run.sh", "file", b"#!/bin/sh\necho hi\n", 0o4755),
    ("./app/link", "symlink", "run.sh", 0o777),
    ("./app/hard", "hardlink", "app/run.sh", 0o4755),
    ("./abs", "symlink", "/usr/bin/env", 0o777),
]


@pytest.mark.parametrize("compress", [
    ("", lambda b: b), ("gzip", gzip.compress), ("bzip2", bz2.compress),
    ("xz", lzma.compress)], ids=lambda c: c[0] or "plain")
def test_a_context_unpacks_with_modes_times_and_links(tmp_path: Path,
                                                      compress: tuple[str, Callable]):
    kind, squeeze = compress
    info = unpack(squeeze(tar_bytes(SIMPLE)), tmp_path)
    assert info.compression == kind and info.members == 6  # "./" itself is not counted
    assert (tmp_path / "Dockerfile").read_bytes() == b"FROM busybox\n"
    script = (tmp_path / "app" / "run.sh").stat()
    assert stat.S_IMODE(script.st_mode) == 0o4755 and script.st_mtime == 1_600_000_000
    assert stat.S_IMODE((tmp_path / "app").stat().st_mode) == 0o750
    assert (tmp_path / "app").stat().st_mtime == 1_600_000_000
    assert os.readlink(tmp_path / "app" / "link") == "run.sh"
    assert (tmp_path / "app" / "hard").stat().st_ino == script.st_ino
    assert os.readlink(tmp_path / "abs") == "/usr/bin/env"  # kept, resolved in scope


def test_members_without_folders_and_a_later_member_replacing_an_earlier(tmp_path: Path):
    unpack(tar_bytes([("a/b/c.txt", "file", b"one", 0o600),
                      ("a/b/c.txt", "file", b"two", 0o640),
                      ("a/d", "file", b"file first", 0o644),
                      ("a/d", "dir", b"", 0o755)]), tmp_path)
    assert (tmp_path / "a" / "b" / "c.txt").read_bytes() == b"two"
    assert (tmp_path / "a" / "d").is_dir()


@pytest.mark.parametrize(("members", "message"), [
    ([("../evil", "file", b"x", 0o644)], "path outside the build context: ../evil"),
    ([("a/../../evil", "file", b"x", 0o644)], "path outside the build context: a/../../evil"),
    ([("/etc/evil", "file", b"x", 0o644)], "absolute path in the build context: /etc/evil"),
    ([("dev", "chr", b"", 0o644)], "device node in the build context: dev"),
    ([("up", "symlink", "../..", 0o777)], "symlink outside the build context: up -> ../.."),
    ([("a/up", "symlink", "../../x", 0o777)], "symlink outside the build context: a/up"),
    ([("etc", "symlink", "/etc", 0o777), ("etc/evil", "file", b"x", 0o644)],
     "path through a symlink in the build context: etc/evil"),
    ([("d", "symlink", "sub", 0o777), ("sub", "dir", b"", 0o755),
      ("d/evil", "file", b"x", 0o644)], "path through a symlink in the build context: d/evil"),
    ([("h", "hardlink", "/etc/passwd", 0o644)], "absolute path in the build context: "
                                                 "h -> /etc/passwd"),
    ([("h", "hardlink", "../outside", 0o644)], "path outside the build context: h -> ../out"),
    ([("h", "hardlink", "nothing", 0o644)], "hard link to no earlier member in the build "
                                             "context: h -> nothing"),
    ([("l", "symlink", "/etc/passwd", 0o777), ("h", "hardlink", "l/x", 0o644)],
     "path through a symlink in the build context: h"),
])
def test_hostile_members_are_refused_by_name(tmp_path: Path, members: list[Member],
                                             message: str):
    dest = tmp_path / "ctx"
    dest.mkdir()
    with pytest.raises(ContextError, match=re.escape(message)):
        unpack(tar_bytes(members), dest)
    outside = sorted(p.name for p in tmp_path.iterdir())
    assert outside == ["ctx"]


def test_a_symlink_escape_never_writes_through_to_the_host(tmp_path: Path):
    victim = tmp_path / "victim"
    victim.mkdir()
    dest = tmp_path / "ctx"
    dest.mkdir()
    with pytest.raises(ContextError):
        unpack(tar_bytes([("x", "symlink", str(victim), 0o777),
                          ("x/planted", "file", b"gotcha", 0o644)]), dest)
    assert list(victim.iterdir()) == []


def test_the_size_limit_stops_the_unpacking(tmp_path: Path):
    data = gzip.compress(tar_bytes([(f"f{i}", "file", b"\0" * MB, 0o644) for i in range(5)]))
    assert len(data) < MB  # compressed small: the limit counts what it unpacks to
    with pytest.raises(ContextError, match="larger than its limit of 2097152 bytes"):
        unpack(data, tmp_path, limit=2 * MB)
    assert len(list(tmp_path.iterdir())) <= 2


def test_a_huge_extended_header_is_refused_before_it_is_read(tmp_path: Path):
    info = tarfile.TarInfo("f")
    info.pax_headers = {"comment": "x" * (2 * MB)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ContextError, match="header too large in the build context"):
        unpack(buffer.getvalue(), tmp_path)


def test_garbage_is_an_invalid_context(tmp_path: Path):
    with pytest.raises(ContextError, match="invalid build context"):
        unpack(b"this is not a tar at all" * 40, tmp_path)
    with pytest.raises(ContextError, match="invalid build context"):
        unpack(gzip.compress(tar_bytes(SIMPLE))[:200], tmp_path)


def _unpadded(members: list[Member]) -> tuple[bytes, int]:
    """A tar that ends right after its last member's data (as the docker CLI's `-f -`
    context does), and where that data ends."""
    whole = tar_bytes(members)
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        last = tar.getmembers()[-1]
    return whole[:last.offset_data + last.size], last.offset_data + last.size


def test_a_tar_without_its_end_blocks_is_whole_but_cut_data_is_not(tmp_path: Path):
    data, end = _unpadded([("Dockerfile", "file", b"FROM busybox\n", 0o644),
                           (".dockerfile.1234", "file", b"FROM scratch\n", 0o644)])
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    unpack(data, tmp_path / "whole")
    assert (tmp_path / "whole" / ".dockerfile.1234").read_bytes() == b"FROM scratch\n"
    with pytest.raises(ContextError, match="invalid build context"):
        unpack(data[:end - 3], tmp_path / "cut")


def test_ignore_rules_skip_members_but_never_the_dockerfile(tmp_path: Path):
    rules = IgnoreRules.from_text("*\n!src\n")
    info = unpack(tar_bytes([("Dockerfile", "file", b"FROM x\n", 0o644),
                             (".dockerignore", "file", b"*\n!src\n", 0o644),
                             ("secret", "file", b"s", 0o600),
                             ("src/main.c", "file", b"int main;", 0o644)]),
                  tmp_path, ignore=rules, keep=["Dockerfile"])
    assert info.skipped == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".dockerignore", "Dockerfile", "src"]


def make_context(root: Path) -> Path:
    unpack(tar_bytes([("a.txt", "file", b"a", 0o644),
                      ("b.txt", "file", b"b", 0o644),
                      ("dir/c.txt", "file", b"c", 0o644),
                      ("dir/sub/d.txt", "file", b"d", 0o644),
                      ("link", "symlink", "dir", 0o777),
                      ("abs", "symlink", "/dir/c.txt", 0o777),
                      ("dir/up", "symlink", "../a.txt", 0o777)]), root)
    return root


def test_sources_plain_and_wildcard(tmp_path: Path):
    ctx = make_context(tmp_path)
    assert resolve_sources(ctx, ["a.txt", "/b.txt", "./dir"]) == [
        ctx / "a.txt", ctx / "b.txt", ctx / "dir"]
    assert resolve_named(ctx, ["*.txt"]) == [("a.txt", ctx / "a.txt"), ("b.txt", ctx / "b.txt")]
    assert resolve_sources(ctx, ["d*/*.txt"]) == [ctx / "dir" / "c.txt"]
    assert resolve_sources(ctx, ["dir/s?b/[d]*"]) == [ctx / "dir" / "sub" / "d.txt"]


def test_symlinks_resolve_inside_the_context(tmp_path: Path):
    ctx = make_context(tmp_path)
    assert resolve_named(ctx, ["link/c.txt"]) == [("link/c.txt", ctx / "dir" / "c.txt")]
    assert resolve_sources(ctx, ["abs"]) == [ctx / "dir" / "c.txt"]  # "/" is the context
    assert resolve_sources(ctx, ["dir/up"]) == [ctx / "a.txt"]
    os.symlink("/etc/passwd", ctx / "passwd")
    os.symlink("../../../../../../etc", ctx / "up")
    for name in ("passwd", "up/passwd"):
        with pytest.raises(ContextError, match="file not found in build context"):
            resolve_sources(ctx, [name])
    os.symlink("nowhere", ctx / "dangling.txt")
    with pytest.raises(ContextError, match=r"stat dangling\.txt: file does not exist"):
        resolve_sources(ctx, ["*.txt"])
    os.symlink("loop", ctx / "loop")
    with pytest.raises(ContextError, match="too many links in the build context: loop"):
        resolve_sources(ctx, ["loop"])


def test_sources_outside_or_missing_are_refused(tmp_path: Path):
    ctx = make_context(tmp_path)
    outside = re.escape("forbidden path outside the build context: ../x")
    with pytest.raises(ContextError, match=outside):
        resolve_sources(ctx, ["../x"])
    with pytest.raises(ContextError, match=re.escape(
            "forbidden path outside the build context: dir/../../x")):
        resolve_sources(ctx, ["dir/../../x"])
    with pytest.raises(ContextError, match=re.escape(
            "file not found in build context or excluded by .dockerignore: stat nope: "
            "file does not exist")):
        resolve_sources(ctx, ["nope"])
    with pytest.raises(ContextError, match="no source files were specified"):
        resolve_sources(ctx, ["*.nothing"])
    rules = IgnoreRules.from_text("b.txt\n")
    with pytest.raises(ContextError, match="file not found"):
        resolve_sources(ctx, ["b.txt"], rules)
    assert resolve_sources(ctx, ["*.txt"], rules) == [ctx / "a.txt"]


def test_the_digest_follows_content_names_and_modes_only(tmp_path: Path):
    ctx = make_context(tmp_path)
    one = sources_digest([ctx / "a.txt"], ctx)
    assert one.startswith("file:") and len(one) == len("file:") + 64
    folder = sources_digest([ctx / "dir"], ctx)
    assert folder.startswith("dir:")
    both = sources_digest([ctx / "a.txt", ctx / "dir"], ctx)
    assert both.startswith("multi:")
    assert sources_digest([ctx / "a.txt", ctx / "dir"], ctx) == both  # deterministic

    os.utime(ctx / "dir" / "sub" / "d.txt", (1, 1))
    assert sources_digest([ctx / "dir"], ctx) == folder  # mtimes do not count
    (ctx / "dir" / "sub" / "d.txt").write_bytes(b"changed")
    assert sources_digest([ctx / "dir"], ctx) != folder
    os.chmod(ctx / "a.txt", 0o600)
    assert sources_digest([ctx / "a.txt"], ctx) != one
    os.chmod(ctx / "a.txt", 0o644)
    assert sources_digest([ctx / "a.txt"], ctx) == one
    os.rename(ctx / "b.txt", ctx / "b2.txt")
    (ctx / "b2.txt").write_bytes(b"a")
    assert sources_digest([ctx / "b2.txt"], ctx) != one  # same content, another name


_NAMES = st.sampled_from(["a", "b", "a/b", "a/../b", "../x", "/abs", "./c", "a/./d", "l",
                          "l/x", "a/l", "a/l/y", "h"])
_MEMBERS = st.lists(st.tuples(
    _NAMES, st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]),
    st.sampled_from(["a", "../victim", "../../victim", "VICTIM", "l/x", "b", "a/b"]),
    st.sampled_from([0o644, 0o755])), max_size=6)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=_MEMBERS)
def test_any_tar_unpacks_or_is_refused_and_nothing_lands_outside(tmp_path: Path,
                                                                 members: list[Member]):
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    dest, victim = work / "ctx", work / "victim"
    dest.mkdir()
    victim.mkdir()
    fixed: list[Member] = [
        (name, kind, b"data" if kind == "file" else str(body).replace("VICTIM", str(victim)),
         mode) for name, kind, body, mode in members]
    with contextlib.suppress(ContextError):
        unpack(tar_bytes(fixed), dest)
    assert sorted(p.name for p in work.iterdir()) == ["ctx", "victim"]
    assert list(victim.iterdir()) == []


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_refused_cleanly(tmp_path: Path, data: bytes):
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    dest = work / "ctx"
    dest.mkdir()
    try:
        info = unpack(data, dest)  # an empty tar is a valid one
        assert info.members == len(list(dest.rglob("*")))
    except ContextError as e:
        assert str(e)  # refused, in words; any other exception fails the test
    assert [p.name for p in work.iterdir()] == ["ctx"]
