"""Which members of a layer's tar stay inside the root file system: the pure rule, and
the walk over a layer's headers that applies it while the layer is hashed."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from pouch.actors.image.tarcheck import HashingReader, check_layer, check_layer_member
from pouch.proto.envelope import PouchError

WHERE = "layer blobs/sha256/ab12"


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def layer(*members: tarfile.TarInfo) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"") if info.isreg() else None)
    return buf.getvalue()


def refusal(info: tarfile.TarInfo) -> str:
    with pytest.raises(PouchError) as caught:
        check_layer_member(info, WHERE)
    assert caught.value.code == "invalid"
    return caught.value.message


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/x", "..", "./../x"])
def test_a_member_named_outside_the_root_is_refused_by_name(name: str) -> None:
    assert refusal(member(name)) == f'{WHERE} member "{name}" escapes the root file system'


@pytest.mark.parametrize("target", ["../x", "/x", "a/../../x"])
def test_a_hard_link_out_of_the_root_is_refused(target: str) -> None:
    message = refusal(member("a/link", tarfile.LNKTYPE, target))
    assert message == (f'{WHERE} member "a/link" is a hard link to "{target}", '
                       "outside the root file system")


@pytest.mark.parametrize(("name", "target"), [("a/b", "../../x"), ("x", ".."),
                                              ("a/../b", "../x")])
def test_a_symlink_climbing_out_of_the_root_is_refused(name: str, target: str) -> None:
    message = refusal(member(name, tarfile.SYMTYPE, target))
    assert message == (f'{WHERE} member "{name}" is a symlink to "{target}", '
                       "outside the root file system")


@pytest.mark.parametrize("info", [
    member("a/../b"),
    member("./etc/passwd"),
    member("bin/sh", tarfile.SYMTYPE, "/bin/busybox"),
    member("a/b", tarfile.SYMTYPE, "../c"),
    member("a/b", tarfile.SYMTYPE, "/../../etc/passwd"),  # read inside the container's root
    member("usr/bin/awk", tarfile.LNKTYPE, "bin/busybox"),
    member("dev/null", tarfile.CHRTYPE),
    member("dev/sda", tarfile.BLKTYPE),
    member("run/fifo", tarfile.FIFOTYPE),
    member("etc", tarfile.DIRTYPE),
    member("etc/.wh..wh..opq"),
], ids=lambda info: f"{info.name}->{info.linkname}" if info.linkname else info.name)
def test_what_a_root_file_system_holds_is_allowed(info: tarfile.TarInfo) -> None:
    check_layer_member(info, WHERE)


def test_the_walk_refuses_a_layer_at_its_hostile_member() -> None:
    data = layer(member("bin/sh", tarfile.SYMTYPE, "/bin/busybox"), member("../evil"))
    with pytest.raises(PouchError) as caught:
        check_layer(io.BytesIO(data), WHERE)
    assert caught.value.message == f'{WHERE} member "../evil" escapes the root file system'


def test_the_walk_reads_a_gzipd_layer() -> None:
    good = layer(member("etc", tarfile.DIRTYPE), member("etc/passwd"))
    check_layer(io.BytesIO(gzip.compress(good)), WHERE, gzipped=True)
    bad = gzip.compress(layer(member("a/b", tarfile.SYMTYPE, "../../x")))
    with pytest.raises(PouchError) as caught:
        check_layer(io.BytesIO(bad), WHERE, gzipped=True)
    assert '"a/b" is a symlink to "../../x"' in caught.value.message


def test_a_layer_of_several_gzip_members_is_read_through() -> None:
    # Go's gzip reader takes concatenated members as one stream, and so must the walk.
    data = layer(member("etc/passwd"), member("bin/sh", tarfile.SYMTYPE, "/bin/busybox"),
                 member("x/y", tarfile.SYMTYPE, "../../z"))
    half = len(data) // 2
    twice = gzip.compress(data[:half]) + gzip.compress(data[half:])
    with pytest.raises(PouchError) as caught:
        check_layer(io.BytesIO(twice), WHERE, gzipped=True)
    assert '"x/y" is a symlink to "../../z"' in caught.value.message


def test_a_long_hostile_name_in_a_pax_header_is_seen() -> None:
    name = "a/" * 80 + "../" * 90 + "evil"
    with pytest.raises(PouchError) as caught:
        check_layer(io.BytesIO(layer(member(name))), WHERE)
    assert f'"{name}"' in caught.value.message


@pytest.mark.parametrize("data", [b"not a tar at all" * 64, gzip.compress(b"junk" * 300)],
                         ids=["plain", "gzip"])
def test_a_stream_that_is_not_a_tar_is_invalid_naming_the_layer(data: bytes) -> None:
    with pytest.raises(PouchError) as caught:
        check_layer(io.BytesIO(data), WHERE, gzipped=data.startswith(b"\x1f\x8b"))
    assert caught.value.code == "invalid"
    assert caught.value.message.startswith(f"{WHERE} is not a tar archive")


def test_hashing_while_walking_covers_every_byte() -> None:
    data = layer(member("etc/passwd"), member("bin/sh", tarfile.SYMTYPE, "/bin/busybox"))
    data += b"\0" * 8192  # tar writers pad to a record; the walk stops at the end marker
    reader = HashingReader(io.BytesIO(data))
    assert reader.head(8) == data[:8]
    check_layer(reader, WHERE)
    reader.drain()
    assert (reader.digest, reader.size) == ("sha256:" + hashlib.sha256(data).hexdigest(),
                                            len(data))


def test_a_failing_source_raises_its_own_error_not_the_layers() -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            raise tarfile.ReadError("unexpected end of data")

    with pytest.raises(tarfile.ReadError):
        check_layer(HashingReader(Broken()), WHERE)
