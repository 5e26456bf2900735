"""Paths resolved inside a container's root, and what docker cp, export and diff make of
a tree: the resolver on a made-up file system, the rest on folders in tmp_path."""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from pouch.actors.container import archive, changes
from pouch.actors.container.fsview import Node, open_dir, overlay_options, resolve, target, walk
from pouch.proto.envelope import PouchError

# A made-up root: folders, files and symlinks by path (no leading slash).
TREE = {
    "etc": Node("dir"),
    "etc/passwd": Node("other"),
    "etc/evil": Node("link", "/../../../host"),
    "etc/up": Node("link", "../../.."),
    "etc/self": Node("link", "self"),
    "etc/loop": Node("link", "loop2"),
    "etc/loop2": Node("link", "loop"),
    "bin": Node("dir"),
    "bin/sh": Node("link", "busybox"),
    "bin/busybox": Node("other"),
    "usr": Node("dir"),
    "usr/bin": Node("link", "../bin"),
    "host": Node("dir"),
}


def lookup(parts: tuple[str, ...]) -> Node:
    return TREE.get("/".join(parts), Node("missing"))


@pytest.mark.parametrize(("path", "expected"), [
    ("/etc/passwd", ("etc", "passwd")),
    ("etc/passwd", ("etc", "passwd")),
    ("/../../etc/passwd", ("etc", "passwd")),
    # An absolute symlink that climbs: it stops at the root, as if the root were /.
    ("/etc/evil", ("host",)),
    ("/etc/evil/file", ("host", "file")),
    # A relative one that climbs past the root stays at the root too.
    ("/etc/up", ()),
    ("/etc/up/etc/passwd", ("etc", "passwd")),
    ("/usr/bin/sh", ("bin", "busybox")),
    ("/", ()),
])
def test_paths_resolve_inside_the_root(path: str, expected: tuple[str, ...]):
    assert resolve(lookup, path) == expected


def test_the_last_symlink_is_kept_unless_followed():
    assert resolve(lookup, "/etc/evil", follow_last=False) == ("etc", "evil")
    assert resolve(lookup, "/usr/bin/sh", follow_last=False) == ("bin", "sh")


def test_a_missing_last_component_resolves_a_missing_folder_does_not():
    assert resolve(lookup, "/etc/evil/new") == ("host", "new")
    assert walk(lookup, "/nope/deeper/x").rest == ("nope", "deeper", "x")
    with pytest.raises(FileNotFoundError):
        resolve(lookup, "/nope/x")


def test_a_file_on_the_way_is_not_a_folder():
    with pytest.raises(NotADirectoryError):
        resolve(lookup, "/etc/passwd/x")


def test_symlink_loops_end():
    with pytest.raises(OSError) as caught:
        resolve(lookup, "/etc/loop")
    assert caught.value.errno == errno.ELOOP
    with pytest.raises(OSError):
        resolve(lookup, "/etc/self/x")


@pytest.mark.parametrize(("path", "absolute", "name", "follow"), [
    ("/etc/passwd", "/etc/passwd", "passwd", False),
    ("/etc/", "/etc", "etc", True),
    ("/etc/.", "/etc", ".", True),
    ("/", "/", "/", True),
    ("//etc//x/../passwd", "/etc/passwd", "passwd", False),
])
def test_targets_read_as_dockerd_reads_them(path: str, absolute: str, name: str, follow: bool):
    asked = target(path)
    assert (asked.absolute, asked.name, asked.follow_last) == (absolute, name, follow)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/../x", ".."])
def test_members_that_climb_out_are_refused(name: str):
    with pytest.raises(PouchError) as caught:
        archive.member_path(name)
    assert caught.value.code == "invalid"


@pytest.mark.parametrize(("name", "expected"), [
    ("a/b", "a/b"), ("/a/b", "a/b"), ("./a", "a"), ("a/../b", "b"), ("./", "."),
    ("..foo", "..foo"),
])
def test_members_are_named_from_the_destination(name: str, expected: str):
    assert archive.member_path(name) == expected


def test_go_file_modes():
    assert archive.go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert archive.go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert archive.go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert archive.go_file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666


def test_a_read_only_view_stacks_the_writable_layer_as_a_lower_one():
    options = ["index=off", "workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs",
               "uuid=on"]
    assert overlay_options(options, readonly=True) == "lowerdir=/s/2/fs:/s/1/fs"
    assert overlay_options(options, readonly=False) == ",".join(options)


# -- on real folders -------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A container root beside a folder that stands for the host's files."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "secret").write_text("host's")
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (rootfs / "etc" / "evil").symlink_to("/../../../host")
    (rootfs / "etc" / "rel").symlink_to("../../../host")
    (rootfs / "host").mkdir()  # what the symlinks lead to, inside
    (rootfs / "data").mkdir()
    (rootfs / "data" / "a").write_text("a")
    os.link(rootfs / "data" / "a", rootfs / "data" / "b")
    return rootfs


def _fd(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def _tar(members: list[tuple[str, bytes | None, str]]) -> io.BytesIO:
    """A tar of (name, content or None for a folder, symlink target or "")."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content, link in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode, info.uid, info.gid = len(content), 0o640, 1234, 99
                tar.addfile(info, io.BytesIO(content))
    out.seek(0)
    return out


def test_stat_names_where_a_symlink_leads_inside(root: Path):
    fd = _fd(root)
    try:
        found = archive.find(fd, "/etc/evil", "c1")
        described = archive.path_stat(fd, found)
    finally:
        os.close(fd)
    assert described["name"] == "evil" and described["linkTarget"] == "/host"
    assert described["mode"] & (1 << 27)


def test_a_missing_path_is_not_found_in_dockerds_words(root: Path):
    fd = _fd(root)
    try:
        with pytest.raises(PouchError) as caught:
            archive.find(fd, "/nope", "c1")
    finally:
        os.close(fd)
    assert caught.value.code == "not_found"
    assert caught.value.message == "Could not find the file /nope in container c1"


def test_an_archive_keeps_names_symlinks_and_hard_links(root: Path):
    fd = _fd(root)
    out = io.BytesIO()
    try:
        archive.write(fd, archive.find(fd, "/data", "c1"), out)
        out.seek(0)
        with tarfile.open(fileobj=out) as tar:
            members = {m.name: m for m in tar.getmembers()}
        out = io.BytesIO()
        archive.write(fd, archive.find(fd, "/etc/evil/", "c1"), out)  # followed: /host
        out.seek(0)
        with tarfile.open(fileobj=out) as tar:
            followed = tar.getnames()
    finally:
        os.close(fd)
    assert set(members) == {"data", "data/a", "data/b"}
    assert members["data/b"].islnk() and members["data/b"].linkname == "data/a"
    assert followed == ["evil"]  # the folder /host inside, named as asked


@pytest.mark.parametrize("into", ["/etc/evil", "/etc/rel"])
def test_extraction_through_a_symlink_stays_inside(root: Path, into: str):
    fd = _fd(root)
    try:
        archive.extract(fd, into, _tar([("pwned", b"x", "")]), archive.ExtractOptions(), "c1")
        archive.extract(fd, "/", _tar([("etc/evil/deeper/f", b"y", "")]),
                        archive.ExtractOptions(), "c1")
    finally:
        os.close(fd)
    assert (root / "host" / "pwned").read_text() == "x"
    assert (root / "host" / "deeper" / "f").read_text() == "y"
    assert sorted(p.name for p in (root.parent / "host").iterdir()) == ["secret"]


def test_extraction_keeps_owners_and_modes_unless_told(root: Path):
    fd = _fd(root)
    try:
        archive.extract(fd, "/data", _tar([("d", None, ""), ("d/f", b"z", ""),
                                            ("d/l", None, "f")]),
                        archive.ExtractOptions(), "c1")
        archive.extract(fd, "/data", _tar([("g", b"q", "")]),
                        archive.ExtractOptions(owner=(7, 8)), "c1")
    finally:
        os.close(fd)
    st = os.stat(root / "data" / "d" / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 99, 0o640)
    assert os.readlink(root / "data" / "d" / "l") == "f"
    assert os.stat(root / "data" / "g").st_uid == 7


def test_extraction_refuses_climbing_members_and_folder_swaps(root: Path):
    fd = _fd(root)
    try:
        with pytest.raises(PouchError) as climbing:
            archive.extract(fd, "/data", _tar([("../../escaped", b"x", "")]),
                            archive.ExtractOptions(), "c1")
        with pytest.raises(PouchError) as swapped:
            archive.extract(fd, "/", _tar([("etc", b"not a folder", "")]),
                            archive.ExtractOptions(no_overwrite_dir_non_dir=True), "c1")
        with pytest.raises(PouchError) as not_a_folder:
            archive.extract(fd, "/etc/passwd", _tar([("x", b"", "")]),
                            archive.ExtractOptions(), "c1")
    finally:
        os.close(fd)
    assert climbing.value.code == swapped.value.code == not_a_folder.value.code == "invalid"
    assert "cannot overwrite directory" in swapped.value.message
    assert not_a_folder.value.message == "extraction point is not a directory"
    assert not (root.parent / "escaped").exists() and (root / "etc").is_dir()


def test_open_dir_refuses_a_symlink_on_the_way(root: Path):
    fd = _fd(root)
    try:
        with pytest.raises(OSError) as caught:
            open_dir(fd, ("etc", "evil"))
    finally:
        os.close(fd)
    assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)


def test_export_names_entries_from_the_root(root: Path):
    fd = _fd(root)
    out = io.BytesIO()
    try:
        archive.export(fd, out)
    finally:
        os.close(fd)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        names = tar.getnames()
    assert "etc/passwd" in names and "data/b" in names
    assert not any(name.startswith(("/", "./")) for name in names)


# -- changes -------------------------------------------------------------------


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, Path]:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for folder in ("etc", "tmp", "var/cache", "opt"):
        (lower / folder).mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root")
    (lower / "etc" / "group").write_text("root")
    (lower / "var" / "cache" / "old").write_text("old")
    (lower / "opt" / "kept").write_text("kept")
    upper.mkdir()
    return upper, lower


def _copy_up(upper: Path, lower: Path, folder: str) -> None:
    """A folder as overlayfs copies it up: same mode and times."""
    (upper / folder).mkdir(parents=True)
    st = os.stat(lower / folder)
    os.chmod(upper / folder, stat.S_IMODE(st.st_mode))
    os.utime(upper / folder, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_changes_as_dockerds_overlay_driver_sees_them(layers: tuple[Path, Path]):
    upper, lower = layers
    _copy_up(upper, lower, "etc")
    (upper / "etc" / "passwd").write_text("root\nnew")     # modified
    os.mknod(upper / "etc" / "group", stat.S_IFCHR, 0)      # whiteout: deleted
    (upper / "etc" / "hosts").write_text("")               # made for a mount: not shown
    _copy_up(upper, lower, "tmp")
    (upper / "tmp" / "x").write_text("x")                  # added
    _copy_up(upper, lower, "var")                          # unchanged: not shown
    (upper / "var" / "cache").mkdir()                      # opaque: what was there is gone
    os.setxattr(upper / "var" / "cache", "trusted.overlay.opaque", b"y")
    (upper / "var" / "cache" / "fresh").write_text("f")
    os.utime(upper / "etc", ns=(0, 0))  # the runtime's /etc/hosts touched /etc
    found = changes.changes(str(upper), [str(lower)],
                            changes.init_paths([{"destination": "/etc/hosts"}]))
    assert [(c["Path"], c["Kind"]) for c in found] == [
        ("/etc", 0), ("/etc/group", 2), ("/etc/passwd", 0),  # /etc: for its deleted entry
        ("/tmp", 0), ("/tmp/x", 1),
        ("/var/cache", 0), ("/var/cache/old", 2), ("/var/cache/fresh", 1)]


def test_no_change_is_an_empty_list(layers: tuple[Path, Path]):
    upper, lower = layers
    assert changes.changes(str(upper), [str(lower)]) == []


def test_layers_of_overlay_and_bind_mounts():
    overlay = [{"type": "overlay", "source": "overlay",
                "options": ["workdir=/s/3/work", "upperdir=/s/3/fs", "lowerdir=/s/2/fs:/s/1/fs"]}]
    assert changes.layers_of(overlay) == ("/s/3/fs", ["/s/2/fs", "/s/1/fs"])
    bind = [{"type": "bind", "source": "/s/1/fs", "options": ["rbind", "rw"]}]
    assert changes.layers_of(bind) == ("/s/1/fs", [])
