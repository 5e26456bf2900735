"""/_ping's answer, given by the worker's event loop itself.

Every docker command asks `/_ping` first (for the API version to speak), and
the answer never changes but for its Date. Served as any request, it costs a
hand-off to a thread and back, gunicorn's parse and WSGI environ and Falcon:
some 0.5 ms of CPU on a loaded two-core machine, for two bytes. So the worker
renders the answer once at start, through gunicorn and the app themselves
(the bytes are those a thread would send), and its event loop sends them again,
with the date of the moment, to a request that is exactly a plain
`GET /_ping` or `HEAD /_ping` (bench/request_floor.py measures it).

Anything less plain (a body, `Connection`, `Expect`, `Upgrade`, a versioned
path, a query, HTTP/1.0, an odd byte, a request behind it) goes the usual way,
as does every request when a plugin may have changed the API (it could wrap
/_ping, or add middleware that must see it).
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

from gunicorn import util

# A request line, then header lines a strict parser accepts alike (a token, a colon,
# visible ASCII), then the blank line that ends the head, and nothing behind it.
_PLAIN_PING = re.compile(
    rb"(GET|HEAD) /_ping HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\x20-\x7e\t]*\r\n){0,32})\r\n\Z")
_HEADER_NAME = re.compile(rb"^([^:\r\n]+):", re.MULTILINE)
# Headers that change what is answered or how the connection goes on.
_NOT_PLAIN = frozenset((b"content-length", b"transfer-encoding", b"expect", b"connection",
                        b"upgrade", b"te", b"http2-settings", b"keep-alive"))
MAX_HEAD = 4096  # gunicorn's request-line limit, short of its header limits: all is parsed alike
DATE_LINE = b"\r\nDate: "


class CannedPing:
    """The answers to GET and HEAD /_ping, split around their Date."""

    def __init__(self, answers: dict[bytes, tuple[bytes, bytes]]) -> None:
        self._answers = answers  # method -> (up to the date, after it)
        self._second = -1
        self._date = b""

    @classmethod
    def render(cls, worker: Any, conn_type: type[Any]) -> CannedPing | None:
        """Ask the worker's own gunicorn and app; None if the answer is not a plain,
        kept-alive 200 (then every /_ping goes the usual way)."""
        answers = {}
        for method in (b"GET", b"HEAD"):
            raw = _served(worker, conn_type, method + b" /_ping HTTP/1.1\r\nHost: pouch\r\n\r\n")
            head, date_line, rest = raw.partition(DATE_LINE)
            _, eol, after = rest.partition(b"\r\n")
            if not (raw.startswith(b"HTTP/1.1 200 ") and date_line and eol
                    and b"\r\nConnection: keep-alive\r\n" in raw):
                return None
            answers[method] = (head + date_line, eol + after)
        return cls(answers)

    def answer(self, request: bytes) -> bytes | None:
        """The bytes to send for `request` (a whole head), or None: not a plain ping."""
        if len(request) > MAX_HEAD:
            return None
        match = _PLAIN_PING.match(request)
        if match is None:
            return None
        if any(name.lower() in _NOT_PLAIN for name in _HEADER_NAME.findall(match[2])):
            return None
        before, after = self._answers[match[1]]
        return before + self._now() + after

    def _now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._date = util.http_date(second).encode("ascii")
            self._second = second
        return self._date


def _served(worker: Any, conn_type: type[Any], request: bytes) -> bytes:
    """What the worker's gunicorn and app answer to `request` (on a socketpair)."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(request)
        conn = conn_type(worker.cfg, theirs, ("", 0), "")
        conn.init()
        worker.handle_request(next(conn.parser), conn)
        ours.setblocking(False)
        raw = b""
        while True:
            try:
                chunk = ours.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            raw += chunk
        return raw
