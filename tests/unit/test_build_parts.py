"""The builder's own pure parts: reading a request body off a socket (a length, or
chunked), the cache's keys and file, options off the wire, references split for
tagging, which images others were built on, COPY --chown's owners, the platforms a
build may ask for, and ADD's downloads (against a server of the test's own)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from pouch.actors.builder.body import BodyError, BodyReader
from pouch.actors.builder.cache import BuildCache, cache_key
from pouch.actors.builder.remote import (
    RemoteError,
    fetch,
    file_name,
    is_url,
    modified,
    progress_text,
    proxies_for,
)
from pouch.actors.builder.run import BuildError, Options, _owner, check_platform, split_tag
from pouch.actors.image.commit import parents
from pouch.tests.support.fileserver import Served, closed_port, serving


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


# -- ADD <url>: the download itself, against a server of the test's own on 127.0.0.1 --


def test_a_downloads_name_comes_from_the_url_then_the_answer():
    assert file_name("http://h/files/app.tar.gz?x=1") == "app.tar.gz"
    assert file_name("http://h/a%20b.txt") == "a b.txt"
    assert file_name("http://h/dir/", 'attachment; filename="given.txt"') == "given.txt"
    assert file_name("https://h", "attachment; filename=../../etc/passwd") == "passwd"
    assert file_name("http://h/") == "" and file_name("http://h/dir/", "inline") == ""
    assert is_url("http://h/x") and is_url("https://h/x")
    assert not is_url("ftp://h/x") and not is_url("git@h:x") and not is_url("HTTP://h/x")


def test_last_modified_dates_the_file_else_the_epoch():
    assert modified("Wed, 21 Oct 2015 07:28:00 GMT") == 1445412480
    assert modified("") == 0 and modified("yesterday") == 0


def test_loopback_goes_direct_and_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch):
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3129")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert proxies_for("http://127.0.0.1:8080/a") == {}
    assert proxies_for("http://localhost/a") == {} and proxies_for("http://[::1]/a") == {}
    assert proxies_for("http://files.example/a")["http"] == "http://proxy.example:3128"
    assert proxies_for("https://files.example/a")["https"] == "http://proxy.example:3129"
    assert proxies_for("http://internal.example/a") == {}
    assert proxies_for("http://a.internal.example/a") == {}


def test_a_download_is_written_as_it_came(tmp_path: Path):
    body = bytes(range(256)) * 8192  # 2 MiB: progress along the way
    with serving({"/data.bin": Served(body, {"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}),
                  "/": Served(b"no name\n"),
                  "/files/hello.txt": Served(b"hello from the web\n")}) as server:
        told: list[tuple[int, int]] = []
        got = fetch(server.url("/data.bin"), tmp_path, 10 << 20,
                    progress=lambda current, total: told.append((current, total)))
        unnamed_dir = tmp_path / "unnamed"
        unnamed_dir.mkdir()
        unnamed = fetch(server.url("/"), unnamed_dir, 100)
        hello = fetch(server.url("/files/hello.txt"), unnamed_dir, 100)
    assert got.path == tmp_path / "data.bin" and got.path.read_bytes() == body
    assert got.name == "data.bin" and got.size == len(body) and got.mtime == 1445412480
    info = got.path.stat()
    assert oct(info.st_mode & 0o7777) == "0o600" and info.st_mtime == 1445412480
    # As dockerd's: the first past 1% of it, then ten a second at most; none at the end.
    assert told and told[0][1] == len(body) and len(body) // 100 < told[0][0] < len(body)
    assert unnamed.name == "" and unnamed.path.name == "__unnamed__" and unnamed.mtime == 0
    # The sums dockerd 20.10 (as root) took of the same answers, and showed in history.
    if os.geteuid() == 0:
        assert unnamed.digest == \
            "625d3aab8d30f8858faf7b6cfa2b57217a7e24d41a29f8131bda697bb2f79fea"
        assert hello.digest == "4bd589178d0a2d8a5b2ab0d3dc78e8054d552444ffb4362947b86650229bb08c"


def test_progress_is_drawn_as_dockerds():
    assert progress_text(32768, 3145728) == "[>" + " " * 50 + "]  32.77kB/3.146MB"
    assert progress_text(3145728, 3145728) == "[" + "=" * 50 + ">]  3.146MB/3.146MB"
    assert progress_text(1_500_000, 3_000_000) == "[" + "=" * 25 + ">" + " " * 25 \
        + "]    1.5MB/3MB"
    assert progress_text(999, -1) == "    999B"


def test_a_failed_download_names_the_url_and_leaves_no_file(tmp_path: Path):
    with serving({"/big": Served(b"x" * 4096)}) as server:
        missing = server.url("/missing.txt")
        with pytest.raises(RemoteError) as failed:
            fetch(missing, tmp_path, 1 << 20)
        assert str(failed.value) == (f"failed to GET {missing} with status 404 Not Found: "
                                     "no such file: /missing.txt")  # dockerd's words
        with pytest.raises(RemoteError, match="more than the 1000 a build may add"):
            fetch(server.url("/big"), tmp_path, 1000)
        cancelled = RuntimeError("cancelled")

        def check() -> None:
            raise cancelled

        with pytest.raises(RuntimeError) as stopped:
            fetch(server.url("/big"), tmp_path, 1 << 20, check=check)
        assert stopped.value is cancelled
    port = closed_port()
    closed = f"http://127.0.0.1:{port}/gone.txt"
    with pytest.raises(RemoteError) as refused:
        fetch(closed, tmp_path, 1 << 20)
    assert str(refused.value) == \
        f'Get "{closed}": dial tcp 127.0.0.1:{port}: connect: connection refused'  # Go's words
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_never_answers_fails_at_the_timeout(tmp_path: Path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/slow.txt"
        began = time.monotonic()
        with pytest.raises(RemoteError, match=f'Get "{re.escape(url)}": no answer within 0.5 s'):
            fetch(url, tmp_path, 1 << 20, timeout=0.5)
        assert time.monotonic() - began < 5
    assert list(tmp_path.iterdir()) == []
