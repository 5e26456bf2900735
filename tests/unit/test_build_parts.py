"""The builder's own pure parts: reading a request body off a socket (a length, or
chunked), the cache's keys and file, options off the wire, references split for
tagging, which images others were built on, COPY --chown's owners and the platforms a
build may ask for."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from pouch.actors.builder.body import BodyError, BodyReader
from pouch.actors.builder.cache import BuildCache, cache_key
from pouch.actors.builder.run import BuildError, Options, _owner, check_platform, split_tag
from pouch.actors.image.commit import parents


def read_all(head: bytes, wire: bytes, chunked: bool, length: int) -> bytes:
    ours, theirs = socket.socketpair()

    def send() -> None:
        with theirs:
            theirs.sendall(wire)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        return BodyReader(head, ours, chunked, length).read()
    finally:
        sender.join()
        ours.close()


def test_a_body_with_a_length_ends_there_even_with_more_on_the_wire():
    assert read_all(b"hel", b"lo world", chunked=False, length=5) == b"hello"


def test_a_chunked_body_is_decoded_across_reads():
    wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    assert read_all(wire[:7], wire[7:], chunked=True, length=-1) == b"hello world"


def test_a_body_cut_short_is_an_error():
    with pytest.raises(BodyError):
        read_all(b"", b"abc", chunked=False, length=10)
    with pytest.raises(BodyError):
        read_all(b"", b"5\r\nhel", chunked=True, length=-1)
    with pytest.raises(BodyError):
        read_all(b"", b"zz\r\n", chunked=True, length=-1)


def test_an_empty_body_reads_as_nothing():
    assert read_all(b"", b"", chunked=False, length=0) == b""


def test_cache_keys_change_with_every_part():
    base = cache_key("sha256:a", "RUN x", {"Env": ["A=1"]}, "file:1")
    assert base == cache_key("sha256:a", "RUN x", {"Env": ["A=1"]}, "file:1")
    assert len({base, cache_key("sha256:b", "RUN x", {"Env": ["A=1"]}, "file:1"),
                cache_key("sha256:a", "RUN y", {"Env": ["A=1"]}, "file:1"),
                cache_key("sha256:a", "RUN x", {"Env": ["A=2"]}, "file:1"),
                cache_key("sha256:a", "RUN x", {"Env": ["A=1"]}, "file:2")}) == 5


def test_the_cache_file_outlives_its_reader(tmp_path: Path):
    cache = BuildCache(tmp_path / "builder" / "cache.json")
    cache.put("k1", "sha256:1")
    cache.put("k1", "sha256:3")
    cache.put("k2", "sha256:2")
    cache.drop("k2", "sha256:2")
    again = BuildCache(tmp_path / "builder" / "cache.json")
    assert again.get("k1") == ["sha256:3", "sha256:1"] and again.get("k2") == []
    assert again.clear() == ["sha256:1", "sha256:3"]
    assert BuildCache(tmp_path / "builder" / "cache.json").images() == set()
    (tmp_path / "broken.json").write_text("{not json")
    assert BuildCache(tmp_path / "broken.json").images() == set()


def test_options_from_the_wire():
    options = Options.from_wire({"tags": ["a:1", "b"], "buildargs": {"X": "1", "Y": None},
                                 "pull": "1", "rm": False, "extrahosts": "h:1.2.3.4,g:5.6.7.8",
                                 "shmsize": 1024})
    assert options.tags == ["a:1", "b"] and options.buildargs == {"X": "1", "Y": None}
    assert options.pull and not options.rm and options.forcerm is False
    assert options.extrahosts == ["h:1.2.3.4", "g:5.6.7.8"] and options.shmsize == 1024
    assert not Options.from_wire({"pull": "False"}).pull
    with pytest.raises(ValueError):
        Options.from_wire({"buildargs": ["not", "a", "map"]})
    with pytest.raises(ValueError):
        Options.from_wire({"labels": {"a": 1}})


def test_split_tag_keeps_a_registry_port_and_a_digest():
    assert split_tag("name") == ("name", "")
    assert split_tag("name:v1") == ("name", "v1")
    assert split_tag("localhost:5000/name") == ("localhost:5000/name", "")
    assert split_tag("localhost:5000/name:v2") == ("localhost:5000/name", "v2")
    assert split_tag("name@sha256:abc") == ("name@sha256:abc", "")


def test_images_built_on_are_parents():
    base = {"history": [{"created": "1"}]}
    step = {"history": [{"created": "1"}, {"created": "2", "empty_layer": True}]}
    top = {"history": [{"created": "1"}, {"created": "2", "empty_layer": True},
                       {"created": "3"}]}
    other = {"history": [{"created": "9"}]}
    found = parents({"base": base, "step": step, "top": top, "other": other, "none": {}})
    assert found == {"base", "step"}


PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = "root:x:0:\nusers:x:100:\nnogroup:x:65534:\n"


def test_chown_names_are_looked_up_as_dockerd_looks_them_up():
    def files(path: str) -> str:
        return {"/etc/passwd": PASSWD, "/etc/group": GROUP}[path]

    assert _owner("", files) is None
    assert _owner("1234", files) == (1234, 1234)
    assert _owner("1234:5678", files) == (1234, 5678)
    assert _owner("nobody:users", files) == (65534, 100)
    assert _owner("0:nogroup", files) == (0, 65534)
    # A user alone names the group too: busybox has no group "nobody".
    with pytest.raises(BuildError, match="can't find gid for group nobody: no such group"):
        _owner("nobody", files)
    with pytest.raises(BuildError, match="can't find uid for user ghost: no such user"):
        _owner("ghost:users", files)
    with pytest.raises(BuildError, match="to host mapping: invalid chown string format: 1:2:3"):
        _owner("1:2:3", files)


def test_a_build_platform_is_this_machines_or_refused():
    for fine in ("", "linux", "linux/amd64", "Linux/x86_64", "linux/amd64/v3"):
        check_platform(fine, machine="x86_64")
    check_platform("linux/arm64/v8", machine="aarch64")
    for other in ("linux/arm64", "windows/amd64", "darwin"):
        with pytest.raises(ValueError, match=f"linux/amd64\\), not {other}$"):
            check_platform(other, machine="x86_64")
    with pytest.raises(ValueError, match='"" is an invalid component of "linux//amd64"'):
        check_platform("linux//amd64", machine="x86_64")
    with pytest.raises(ValueError, match="unknown operating system or architecture"):
        check_platform("linux/amd64/v3/x", machine="x86_64")
