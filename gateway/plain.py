"""Plain requests, served without gunicorn's per-request machinery.

Most of what the docker CLI sends is plain: HTTP/1.1, no body or a short one
that came whole with its head, no upgrade, one request at a time. gunicorn
parses each request in Python objects (its config looked up a dozen times, a
trusted-proxy check), then builds the environ and a response object, and
writes the head and the body in two writes: some 170 us of CPU per request on
this two-core machine, on the path of every answer (bench/request_floor.py).
The worker's event loop has a plain request in hand already; gunicorn_h1c
(gunicorn's own C parser, its `fast` extra) makes it a WSGI environ in a few
microseconds, and the answer leaves in one write when the app gives its body
at once (Falcon does for every JSON answer).

What is plain is judged strictly, and anything else goes gunicorn's way as
before: a body not all there (the rest would be read from the socket as the
route consumes it), chunked framing, `Expect`, `Upgrade`, `Connection`,
HTTP/1.0, a request-target that is not a plain path, a request gunicorn_h1c
refuses (gunicorn then answers 400 and says why), bytes behind the request. A
plain request's body is its environ's `wsgi.input`, wholly read: nothing of
it is left on the connection. Responses are framed as gunicorn frames them:
its status-line and header checks, its Server, Date and Connection headers,
chunked when the app gives no length, no body for HEAD, 1xx, 204 and 304.
"""

from __future__ import annotations

import functools
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import gunicorn_h1c
from gunicorn import util
from gunicorn.http.errors import InvalidResponseHeader, InvalidResponseHeaderName
from gunicorn.http.wsgi import HEADER_VALUE_RE, SERVER, STATUS_RE, TOKEN_RE

log = logging.getLogger("pouch.gateway")

# Request headers that make a request anything but plain (WSGI environ keys).
_NOT_PLAIN = ("HTTP_TRANSFER_ENCODING", "HTTP_EXPECT", "HTTP_UPGRADE", "HTTP_CONNECTION",
              "HTTP_TE", "HTTP_HTTP2_SETTINGS", "HTTP_KEEP_ALIVE")
# An origin-form target: a path, maybe a query; no fragment, no absolute form.
_TARGET_BYTES = frozenset(range(0x21, 0x7f)) - {ord("#")}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AppFailed(Exception):
    """The app raised before the response's head was written: answer 500 as gunicorn does."""


def plain_environ(data: bytes, server: Any, client: Any, *, multiprocess: bool) \
        -> dict[str, Any] | None:
    """The WSGI environ of `data` (a whole request, body and all), or None if it is
    not plain."""
    try:
        environ: dict[str, Any] = gunicorn_h1c.parse_to_wsgi_environ(data)
    except Exception:
        return None
    head = environ.pop("_consumed")
    length = environ.get("CONTENT_LENGTH", "0")
    if not length.isdigit() or head + int(length) != len(data) \
            or environ["SERVER_PROTOCOL"] != "HTTP/1.1" \
            or any(key in environ for key in _NOT_PLAIN):
        return None
    path = environ["PATH_INFO"]
    query = environ["QUERY_STRING"]
    if not path.startswith("/") or not _TARGET_BYTES.issuperset(path.encode("latin-1")) \
            or not _TARGET_BYTES.issuperset(query.encode("latin-1")):
        return None
    environ["RAW_URI"] = f"{path}?{query}" if query else path
    if "%" in path:
        environ["PATH_INFO"] = util.unquote_to_wsgi_str(path)
    environ["SCRIPT_NAME"] = ""
    environ["SERVER_SOFTWARE"] = SERVER
    _addresses(environ, server, client)
    environ["wsgi.version"] = (1, 0)
    environ["wsgi.input"] = io.BytesIO(data[head:])
    environ["wsgi.input_terminated"] = True
    environ["wsgi.errors"] = sys.stderr
    environ["wsgi.multithread"] = True
    environ["wsgi.multiprocess"] = multiprocess
    environ["wsgi.run_once"] = False
    return environ


def _addresses(environ: dict[str, Any], server: Any, client: Any) -> None:
    """SERVER_NAME/PORT and REMOTE_ADDR/PORT as gunicorn gives them (a unix socket's
    server name is the Host header's)."""
    if isinstance(server, tuple):
        environ["SERVER_NAME"], environ["SERVER_PORT"] = str(server[0]), str(server[1])
    else:
        host, _, port = environ.get("HTTP_HOST", "").partition(":")
        environ["SERVER_NAME"], environ["SERVER_PORT"] = host, port or ("80" if host else "")
    if isinstance(client, tuple):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(client[0]), str(client[1])
    else:
        environ["REMOTE_ADDR"] = str(client)


class _Started:
    """What the app passed to start_response."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.written: list[bytes] = []  # by the legacy write() callable

    def __call__(self, status: str, headers: list[tuple[str, str]],
                 exc_info: Any = None) -> Callable[[bytes], None]:
        if self.status is not None and exc_info is None:
            raise AssertionError("Response headers already set!")
        if not isinstance(status, str) or not STATUS_RE.fullmatch(status):
            raise ValueError(f"Invalid status {status!r}")
        for name, value in headers:
            if not isinstance(name, str) or not TOKEN_RE.fullmatch(name):
                raise InvalidResponseHeaderName(repr(name))
            if not isinstance(value, str) or not HEADER_VALUE_RE.fullmatch(value):
                raise InvalidResponseHeader(repr(name))
        self.status, self.headers = status, headers
        return self.written.append


@functools.lru_cache(maxsize=2)
def _http_date(second: int) -> str:
    return util.http_date(second)


def respond(app: WSGIApp, environ: dict[str, Any], sock: Any, keep: bool) -> bool:
    """Call `app` and write its answer to `sock`; whether the connection may serve
    another request (`keep`, unless the answer's framing went wrong). OSError: the
    client went, or the app took the connection (a hand-over). AppFailed: nothing
    was written, the caller answers 500."""
    started = _Started()
    try:
        body = app(environ, started)
    except Exception as exc:
        raise AppFailed() from exc
    try:
        return _write(started, body, environ["REQUEST_METHOD"], sock, keep)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def _write(started: _Started, body: Iterable[bytes], method: str, sock: Any,
           keep: bool) -> bool:
    items = iter(body)
    try:
        first = next(items, b"")  # a generator app calls start_response at its first item
    except Exception as exc:
        raise AppFailed() from exc
    if started.status is None:
        raise AppFailed() from AssertionError("the app did not start a response")
    code = int(started.status[:3])
    omit = method == "HEAD" or code < 200 or code in (204, 304)
    length: int | None = None
    lines = []
    for name, value in started.headers:
        lower = name.lower()
        value = value.strip(" \t")  # RFC 9110 5.5
        if lower == "content-length":
            if code < 200 or code == 204:
                continue
            length = int(value)
        elif lower in util.hop_headers:  # gunicorn's: with Server and Date, its own
            continue
        lines.append(f"{name}: {value}\r\n")
    chunked = length is None and not omit
    lines[:0] = [f"HTTP/1.1 {started.status}\r\nServer: {SERVER}\r\n",
                 f"Date: {_http_date(int(time.time()))}\r\n",
                 f"Connection: {'keep-alive' if keep else 'close'}\r\n",
                 "Transfer-Encoding: chunked\r\n" if chunked else ""]
    lines.append("\r\n")
    out = bytearray("".join(lines).encode("latin-1"))
    sent = 0
    for given in (*started.written, first):
        sent = _frame(out, given, sent, length, chunked, omit)
    sock.sendall(out)  # the head, with the body when the app gave it at once
    while True:
        try:
            data = next(items, None)
        except Exception:
            log.exception("the app failed while its response was being written")
            return False
        if data is None:
            break
        out.clear()
        sent = _frame(out, data, sent, length, chunked, omit)
        if out:
            sock.sendall(out)
    if chunked:
        sock.sendall(b"0\r\n\r\n")
    return keep and (length is None or omit or sent == length)


def _frame(out: bytearray, data: bytes, sent: int, length: int | None, chunked: bool,
           omit: bool) -> int:
    """Add `data` to `out` as the response's framing says; the body bytes sent then."""
    if omit or not data:
        return sent
    if length is not None:
        data = data[:length - sent]
    if chunked:
        out += b"%X\r\n" % len(data)
        out += data
        out += b"\r\n"
    else:
        out += data
    return sent + len(data)
