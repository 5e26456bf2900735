"""Plain requests (pouch.gateway.plain): which are, and that their answers are framed as
gunicorn frames them; the gateway's own app answers alike either way."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from pouch.gateway.plain import AppFailed, plain_environ, respond
from pouch.gateway.worker import Worker
from pouch.tests.unit.test_request_floor import served, without_date, worker  # noqa: F401

CLI = b"Host: api.moby.localhost\r\nUser-Agent: Docker-Client/20.10.24 (linux)\r\n"


def environ(request: bytes) -> dict[str, Any] | None:
    return plain_environ(request, "/run/api.sock", "", multiprocess=True)


@pytest.mark.parametrize("request_", [
    b"GET /v1.41/containers/json?all=1 HTTP/1.1\r\n" + CLI + b"\r\n",
    b"POST /v1.41/containers/abc/start HTTP/1.1\r\n" + CLI + b"Content-Length: 0\r\n\r\n",
    b"DELETE /v1.41/containers/abc?force=1 HTTP/1.1\r\n\r\n",
    b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_what_the_docker_cli_sends_without_a_body_is_plain(request_: bytes):
    assert environ(request_) is not None


def test_a_body_that_came_whole_with_its_head_is_the_wsgi_input():
    env = environ(b"POST /containers/create HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    assert env is not None and env["wsgi.input"].read() == b"{}"


@pytest.mark.parametrize("request_", [
    b"POST /containers/create HTTP/1.1\r\nContent-Length: 3\r\n\r\n{}",  # not all there
    b"POST /containers/create HTTP/1.1\r\nContent-Length: 1\r\n\r\n{}",  # more behind
    b"POST /containers/create HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}",
    b"POST /build HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /containers/create HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    b"POST /containers/a/attach HTTP/1.1\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /_ping HTTP/1.0\r\n\r\n",
    b"GET http://pouch/_ping HTTP/1.1\r\nHost: pouch\r\n\r\n",
    b"GET /_ping#here HTTP/1.1\r\n\r\n",
    b"get /_ping HTTP/1.1\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nBad Name: 1\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\n\r\nGET /_ping HTTP/1.1\r\n\r\n",  # one behind it
    b"GET /_ping HTTP/1.1\r\nHost: x\r\n",  # not whole
])
def test_anything_else_is_not_plain(request_: bytes):
    assert environ(request_) is None


def test_the_environ_is_a_wsgi_environ_with_the_path_decoded():
    env = environ(b"GET /v1.41/containers/a%20b/json?x=%20 HTTP/1.1\r\nHost: pouch:2375\r\n\r\n")
    assert env is not None
    assert (env["REQUEST_METHOD"], env["PATH_INFO"], env["QUERY_STRING"], env["RAW_URI"]) == \
        ("GET", "/v1.41/containers/a b/json", "x=%20", "/v1.41/containers/a%20b/json?x=%20")
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["SCRIPT_NAME"]) == ("pouch", "2375", "")
    assert env["wsgi.input"].read() == b"" and env["wsgi.multiprocess"] is True


def answer(app: Callable[..., Iterable[bytes]], method: str = "GET", keep: bool = True) \
        -> tuple[bool, bytes]:
    env = environ(f"{method} /x HTTP/1.1\r\nHost: pouch\r\n\r\n".encode())
    assert env is not None
    ours, theirs = socket.socketpair()
    with ours, theirs:
        kept = respond(app, env, theirs, keep)
        theirs.close()
        raw = b""
        while chunk := ours.recv(65536):
            raw += chunk
    return kept, raw


def app_of(status: str, headers: list[tuple[str, str]], body: Iterable[bytes]) \
        -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, headers)
        return body
    return app


def test_a_body_of_known_length_leaves_with_its_head_in_one_write():
    kept, raw = answer(app_of("200 OK", [("Content-Length", "3")], [b"[]\n"]))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert kept and body == b"[]\n"
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: keep-alive" in head
    assert b"\r\nServer: gunicorn" in head and b"\r\nDate: " in head


def test_a_body_without_a_length_is_chunked():
    def pieces() -> Iterator[bytes]:
        yield b"ab"
        yield b""
        yield b"cde"
    kept, raw = answer(app_of("200 OK", [("Content-Type", "text/plain")], pieces()))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert kept and b"Transfer-Encoding: chunked" in head
    assert body == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"


def test_head_204_and_hop_by_hop_headers_as_gunicorn_frames_them():
    kept, raw = answer(app_of("200 OK", [("Content-Length", "3")], [b"abc"]), method="HEAD")
    assert kept and raw.endswith(b"Content-Length: 3\r\n\r\n") and b"abc" not in raw
    kept, raw = answer(app_of("204 No Content", [("Content-Length", "0"), ("Keep-Alive", "x"),
                                                  ("Server", "pouch (linux)")], [b""]))
    assert kept and b"Content-Length" not in raw and b"Keep-Alive" not in raw
    assert raw.count(b"Server: ") == 1 and b"Server: gunicorn" in raw


def test_a_body_shorter_than_its_length_closes_the_connection():
    kept, raw = answer(app_of("200 OK", [("Content-Length", "9")], [b"abc"]))
    assert not kept and raw.endswith(b"\r\n\r\nabc")


def test_an_app_that_fails_before_its_head_writes_nothing():
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise RuntimeError("no")
    with pytest.raises(AppFailed):
        answer(broken)
    with pytest.raises(AppFailed):
        answer(app_of("200 OK", [("Bad Name", "x")], [b""]))


def test_an_app_that_fails_midway_ends_the_connection_after_what_it_gave():
    def pieces() -> Iterator[bytes]:
        yield b"ab"
        raise RuntimeError("midway")
    kept, raw = answer(app_of("200 OK", [], pieces()))
    assert not kept and raw.endswith(b"2\r\nab\r\n")


@pytest.mark.parametrize("request_", [
    b"GET /_ping HTTP/1.1\r\n" + CLI + b"\r\n",
    b"GET /v9.99/_ping HTTP/1.1\r\n" + CLI + b"\r\n",
    b"DELETE /v1.41/nothing/here HTTP/1.1\r\nHost: pouch\r\n\r\n",
])
def test_the_gateway_app_answers_as_through_gunicorn(worker: Worker, request_: bytes):  # noqa: F811
    env = environ(request_)
    assert env is not None
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert respond(worker.wsgi, env, theirs, True)
        ours.settimeout(5)
        raw = ours.recv(65536)
    assert without_date(raw) == without_date(served(worker, request_))
