"""The cache's sums `unpack_context` takes as it writes the context's files: the same as
`sources_digest` reads off the files, and never trusted for a file written since; and
the folders it has looked at once, never trusted once one was replaced."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from pouch.actors.builder.context import (
    ContextError,
    resolve_sources,
    sources_digest,
    unpack_context,
)
from pouch.tests.unit.test_builder_context import Member, tar_bytes


def unpack(members: list[Member], dest: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    return unpack_context(io.BytesIO(tar_bytes(members)), dest, 1 << 26).sums


MEMBERS: list[Member] = [
    ("app/", "dir", b"", 0o755),
    ("app/one", "file", b"one\n" * 5000, 0o644),
    ("app/run.sh", "file", b"#!/bin/sh\n", 0o4755),
    ("app/deep/er/two", "file", b"", 0o600),
    ("app/hard", "hardlink", "app/one", 0o644),
    ("app/link", "symlink", "one", 0o777),
    ("top", "file", b"top\n", 0o644),
    ("top", "file", b"top, again\n", 0o640),  # a later member replaces it
]


def test_the_sums_taken_while_unpacking_are_those_read_off_the_files(tmp_path: Path):
    sums = unpack(MEMBERS, tmp_path)
    assert {"app/one", "app/run.sh", "app/deep/er/two", "top"} <= set(sums)
    assert "app/hard" not in sums and "app/link" not in sums
    for sources in (["app"], ["top"], ["app/one", "top"], ["app/link"], ["app/hard"]):
        paths = resolve_sources(tmp_path, sources)
        assert sources_digest(paths, tmp_path, sums) == sources_digest(paths, tmp_path)


def test_a_file_changed_after_unpacking_is_read_again(tmp_path: Path):
    sums = unpack(MEMBERS, tmp_path)
    paths = resolve_sources(tmp_path, ["app"])
    before = sources_digest(paths, tmp_path, sums)
    (tmp_path / "app/run.sh").write_bytes(b"#!/bin/sh\nexit 1\n")
    after = sources_digest(paths, tmp_path, sums)
    assert after != before
    assert after == sources_digest(paths, tmp_path)
    # Replaced by another file of the same size, mode and mtime: still read again.
    (tmp_path / "top").unlink()
    (tmp_path / "top").write_bytes(b"top, AGAIN\n")
    os.chmod(tmp_path / "top", 0o640)
    os.utime(tmp_path / "top", (1_600_000_000, 1_600_000_000))
    top = resolve_sources(tmp_path, ["top"])
    assert sources_digest(top, tmp_path, sums) == sources_digest(top, tmp_path)


def test_a_file_under_a_replaced_folder_has_no_sum_left(tmp_path: Path):
    sums = unpack([("d/", "dir", b"", 0o755), ("d/f", "file", b"x", 0o644),
                   ("d", "file", b"now a file", 0o644)], tmp_path)
    assert "d/f" not in sums and "d" in sums


def test_a_folder_replaced_by_a_symlink_is_looked_at_again(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "ctx"
    dest.mkdir()
    with pytest.raises(ContextError, match="through a symlink"):
        unpack([("d/", "dir", b"", 0o755), ("d/f", "file", b"x", 0o644),
                ("d", "symlink", "sub", 0o777), ("sub/", "dir", b"", 0o755),
                ("d/g", "file", b"y", 0o644)], dest)
    assert not (dest / "sub" / "g").exists()
    assert list(outside.iterdir()) == []


def owned(name: str, uid: int, gid: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid = 1, 0o644, uid, gid
        tar.addfile(info, io.BytesIO(b"x"))
    return buffer.getvalue()


@pytest.mark.skipif(os.geteuid() != 0, reason="owners are kept only when run as root")
@pytest.mark.parametrize("setgid", [False, True], ids=["plain", "setgid-folder"])
def test_files_keep_their_owners(tmp_path: Path, setgid: bool):
    dest = tmp_path / "ctx"
    dest.mkdir()
    if setgid:
        os.chown(dest, 0, 4321)
        os.chmod(dest, 0o2755)
    for name, uid, gid in (("root", 0, 0), ("user", 1000, 1001), ("sub/root", 0, 0)):
        unpack_context(io.BytesIO(owned(name, uid, gid)), dest, 1 << 20)
        info = (dest / name).stat()
        assert (info.st_uid, info.st_gid) == (uid, gid)
