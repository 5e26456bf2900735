"""One kept-alive connection carrying every kind of request in turn: the event loop's
/_ping, plain requests served by a lingering thread (pouch.gateway.plain), requests with
a body that gunicorn parses, a request that arrives in pieces while a thread lingers,
and pipelined requests. Each gets its own answer, in order."""

from __future__ import annotations

import json
import socket
import time

from pouch.gateway.worker import LINGER_MS
from pouch.tests.support.daemon import PouchDaemon

# Not a wait for anything: the silence a client keeps between two writes, long past the
# gateway thread's linger, so that what comes next finds the event loop in charge again.
PAUSE = 25 * LINGER_MS / 1000


class Client:
    def __init__(self, daemon: PouchDaemon) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(str(daemon.socket))
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> tuple[int, bytes, bytes]:
        """The next response: status, head, body (Content-Length or chunked)."""
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        fields = {name.strip().lower(): value.strip() for name, _, value in
                  (line.partition(b":") for line in head.split(b"\r\n")[1:])}
        if b"content-length" in fields:
            body = self._take(int(fields[b"content-length"]))
        else:
            assert fields.get(b"transfer-encoding") == b"chunked", head
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    self._read()
                size, _, self.buffer = self.buffer.partition(b"\r\n")
                piece = self._take(int(size, 16) + 2)[:-2]
                if not piece:
                    break
                body += piece
        return status, head, body

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._read()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "the connection closed"
        self.buffer += chunk


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: pouch\r\n\r\n".encode()


def test_every_kind_of_request_in_turn_on_one_connection(daemon: PouchDaemon):
    client = Client(daemon)
    try:
        client.send(get("/_ping"))
        assert client.answer()[2] == b"OK"
        client.send(get("/v1.41/containers/json?all=1"))
        status, _, body = client.answer()
        assert status == 200 and isinstance(json.loads(body), list)
        # At once behind the answer: the head while a thread lingers, the body later.
        body = b'{"Image": "busybox", "StopTimeout": 99999999999999999999}'
        client.send(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: pouch\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body))
        time.sleep(PAUSE)
        client.send(body)
        status, _, answer = client.answer()
        assert status == 400 and b"StopTimeout" in answer
        # The same body with its head in one write: a plain request.
        client.send(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: pouch\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        status, _, answer = client.answer()
        assert status == 400 and b"StopTimeout" in answer
        # Pipelined: two plain requests and a missing container's inspect in one write.
        client.send(get("/v1.41/version") + get("/_ping") + get("/v1.41/containers/nosuch/json"))
        status, _, version = client.answer()
        assert status == 200 and json.loads(version)["ApiVersion"] == "1.41"
        assert client.answer()[2] == b"OK"
        status, _, missing = client.answer()
        assert status == 404 and b"nosuch" in missing
        # A plain request after all that, and one after an idle pause (the poller's again).
        client.send(get("/v1.41/containers/json"))
        assert client.answer()[0] == 200
        time.sleep(PAUSE)
        client.send(get("/v1.41/info"))
        status, _, info = client.answer()
        assert status == 200 and "Containers" in json.loads(info)
    finally:
        client.sock.close()


def test_a_request_that_asks_to_close_is_answered_and_the_connection_closed(daemon):
    client = Client(daemon)
    try:
        client.send(get("/v1.41/containers/json"))
        assert client.answer()[0] == 200
        client.send(b"GET /v1.41/containers/json HTTP/1.1\r\nHost: pouch\r\n"
                    b"Connection: close\r\n\r\n")
        status, head, _ = client.answer()
        assert status == 200 and b"Connection: close" in head
        assert client.sock.recv(1) == b""
    finally:
        client.sock.close()
