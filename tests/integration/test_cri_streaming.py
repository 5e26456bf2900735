"""CRI streaming end to end: exec, attach and port-forward URLs minted by the streaming
server, used as kubectl and crictl use them (SPDY/3.1 and WebSocket), against busybox
containers of a real pouchd. The server runs in the test process, as in the CRI actor."""

from __future__ import annotations

import base64
import functools
import json
import socket
import struct
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

from pouch.actors.cri import spdy
from pouch.actors.cri.streaming import StreamServer
from pouch.broker.client import ClientPool
from pouch.proto.stubs import Calls
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def server(daemon: PouchDaemon) -> Iterator[StreamServer]:
    pool = ClientPool(f"ipc://{daemon.run_dir}/broker.sock", timeout=20)
    srv = StreamServer(Calls(pool), handoff_dir=daemon.run_dir / "handoff", port=0)
    stop = srv.start()
    yield srv
    stop()


@pytest.fixture
def container(daemon: PouchDaemon) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def run(*args: str) -> str:
        name = f"cs-{uuid.uuid4().hex[:10]}"
        made.append(name)
        daemon.docker("run", "-d", "--name", name, *args)
        return daemon.inspect(name)["Id"]

    yield run
    for name in made:
        daemon.docker_result("rm", "-f", name)


# ---- a SPDY client on our own framing --------------------------------------------------

def upgrade(url: str, headers: dict[str, str]) -> tuple[socket.socket, bytes, bytes]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
    lines = [f"GET {parts.path}?{parts.query} HTTP/1.1", f"Host: {parts.netloc}",
             *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        assert chunk, f"closed before a response: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return sock, head, rest


class SpdyClient:
    def __init__(self, send: Callable[[bytes], None], recv: Callable[[], bytes],
                 rest: bytes = b"") -> None:
        self._send, self._recv = send, recv
        self.conn = spdy.Connection(client=True)
        self.data: dict[int, bytearray] = {}
        self.fin: set[int] = set()
        self.replied: set[int] = set()
        self.goaway = False
        self.closed = False
        if rest:
            self._feed(rest)

    @classmethod
    def over_tcp(cls, url: str, protocol: str) -> SpdyClient:
        sock, head, rest = upgrade(url, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                         "X-Stream-Protocol-Version": protocol})
        assert head.startswith(b"HTTP/1.1 101"), head
        assert f"x-stream-protocol-version: {protocol}".encode() in head.lower()
        return cls(sock.sendall, lambda: sock.recv(65536), rest)

    def open(self, **headers: str) -> int:
        sid = self.conn.syn_stream({k: [v] for k, v in headers.items()})
        self.flush()
        self.data[sid] = bytearray()
        return sid

    def write(self, sid: int, data: bytes = b"", fin: bool = False) -> None:
        self.conn.send_data(sid, data, fin=fin)
        self.flush()

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self._send(out)

    def _feed(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, spdy.StreamReplied):
                self.replied.add(event.stream_id)
            elif isinstance(event, spdy.DataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                if event.fin:
                    self.fin.add(event.stream_id)
            elif isinstance(event, spdy.GoAwayReceived):
                self.goaway = True
        self.flush()

    def until(self, done: Callable[[], bool], what: str) -> None:
        while not done():
            data = self._recv()
            if not data:
                self.closed = True
                assert done(), f"{what}: the server closed first ({dict(self.data)})"
                return
            self._feed(data)


def exit_status(raw: bytes) -> dict:
    return json.loads(raw.decode())


def exit_code_of(status: dict) -> int:
    if status["status"] == "Success":
        return 0
    causes = status["details"]["causes"]
    return int(next(c["message"] for c in causes if c["reason"] == "ExitCode"))


def spdy_exec(server: StreamServer, cid: str, cmd: list[str], *, stdin: bytes | None = None,
              tty: bool = False, resize: tuple[int, int] | None = None
              ) -> tuple[bytes, bytes, dict]:
    url = server.mint("exec", {"container_id": cid, "cmd": cmd, "tty": tty,
                               "stdin": stdin is not None, "stdout": True, "stderr": not tty})
    client = SpdyClient.over_tcp(url, "v4.channel.k8s.io")
    error = client.open(streamtype="error")
    in_sid = client.open(streamtype="stdin") if stdin is not None else 0
    out = client.open(streamtype="stdout")
    err = client.open(streamtype="stderr") if not tty else 0
    size = client.open(streamtype="resize") if tty else 0
    client.until(lambda: {error, out} <= client.replied, "replies")
    if resize is not None:
        client.write(size, json.dumps({"Width": resize[0], "Height": resize[1]}).encode())
    if stdin is not None:
        client.write(in_sid, stdin, fin=True)  # a terminal's output goes on past it
    client.until(lambda: error in client.fin and out in client.fin, "the exec's end")
    return bytes(client.data[out]), bytes(client.data.get(err, b"")), \
        exit_status(bytes(client.data[error]))


def test_spdy_exec_streams_and_exit_code(server: StreamServer,
                                         container: Callable[..., str]) -> None:
    cid = container("busybox", "sleep", "300")
    out, err, status = spdy_exec(server, cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert out == b"out\n"
    assert err == b"err\n"
    assert status["reason"] == "NonZeroExitCode"
    assert exit_code_of(status) == 3


def test_spdy_exec_reads_stdin_to_its_end(server: StreamServer,
                                          container: Callable[..., str]) -> None:
    cid = container("busybox", "sleep", "300")
    payload = b"".join(b"line %d\n" % i for i in range(20000))  # past a few windows
    out, _, status = spdy_exec(server, cid, ["cat"], stdin=payload)
    assert out == payload
    assert status == {"metadata": {}, "status": "Success"}


def test_spdy_exec_with_a_terminal_is_resized(server: StreamServer,
                                              container: Callable[..., str]) -> None:
    cid = container("busybox", "sleep", "300")
    out, _, status = spdy_exec(server, cid, ["sh", "-c", "read x; stty size"],
                               stdin=b"go\n", tty=True, resize=(123, 45))
    assert b"45 123" in out
    assert exit_code_of(status) == 0


def test_a_url_serves_once(server: StreamServer, container: Callable[..., str]) -> None:
    cid = container("busybox", "sleep", "300")
    url = server.mint("exec", {"container_id": cid, "cmd": ["true"], "stdout": True})
    spdy_headers = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                    "X-Stream-Protocol-Version": "v9.channel.k8s.io"}
    sock, head, _ = upgrade(url, spdy_headers)
    sock.close()
    assert head.startswith(b"HTTP/1.1 403")  # no protocol in common
    sock, head, _ = upgrade(url, {**spdy_headers,
                                  "X-Stream-Protocol-Version": "v4.channel.k8s.io"})
    sock.close()
    assert head.startswith(b"HTTP/1.1 404")


# ---- WebSocket ---------------------------------------------------------------------

class WsClient:
    def __init__(self, url: str, protocols: list[str]) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
        self.ws = WSConnection(ConnectionType.CLIENT)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall(self.ws.send(Request(host=parts.netloc, target=target,
                                               subprotocols=protocols)))
        self.protocol: str | None = None
        self.messages: list[bytes] = []
        self.closed = False
        self._parts: list[bytes] = []
        while self.protocol is None:
            self._pump()
            assert not self.closed, "refused"

    def _pump(self) -> None:
        data = self.sock.recv(65536)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.protocol = event.subprotocol or ""
            elif isinstance(event, RejectConnection):
                self.closed = True
            elif isinstance(event, BytesMessage):
                self._parts.append(bytes(event.data))
                if event.message_finished:
                    self.messages.append(b"".join(self._parts))
                    self._parts.clear()
            elif isinstance(event, CloseConnection):
                if not self.closed:
                    self.sock.sendall(self.ws.send(event.response()))
                self.closed = True
        if not data:
            self.closed = True

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def until(self, done: Callable[[], bool], what: str) -> None:
        while not done():
            assert not self.closed, f"{what}: closed first ({self.messages})"
            self._pump()

    def channel(self, number: int) -> bytes:
        return b"".join(m[1:] for m in self.messages if m[:1] == bytes([number]))


def test_websocket_exec_v4(server: StreamServer, container: Callable[..., str]) -> None:
    cid = container("busybox", "sleep", "300")
    url = server.mint("exec", {"container_id": cid, "cmd": ["sh", "-c", "echo hi; exit 2"],
                               "stdout": True, "stderr": True})
    client = WsClient(url, ["v4.channel.k8s.io", "channel.k8s.io"])
    assert client.protocol == "v4.channel.k8s.io"
    client.until(lambda: client.closed, "the exec's end")
    assert client.channel(1) == b"hi\n"
    assert exit_code_of(exit_status(client.channel(3))) == 2


def test_websocket_exec_v5_closes_stdin(server: StreamServer,
                                        container: Callable[..., str]) -> None:
    cid = container("busybox", "sleep", "300")
    url = server.mint("exec", {"container_id": cid, "cmd": ["cat"], "stdin": True,
                               "stdout": True, "stderr": True})
    client = WsClient(url, ["v5.channel.k8s.io", "v4.channel.k8s.io"])
    assert client.protocol == "v5.channel.k8s.io"
    client.send(b"\x00abc\n")
    client.until(lambda: b"abc\n" in client.channel(1), "the echo")
    client.send(b"\xff\x00")  # v5: stdin is over
    client.until(lambda: client.closed, "the exec's end")
    assert client.channel(1) == b"abc\n"
    assert exit_status(client.channel(3))["status"] == "Success"


def test_attach_over_spdy(server: StreamServer, container: Callable[..., str]) -> None:
    cid = container("-i", "busybox", "sh", "-c",
                    'while read l; do [ "$l" = quit ] && exit 0; echo got $l; done')
    url = server.mint("attach", {"container_id": cid, "stdin": True, "stdout": True,
                                 "stderr": True})
    client = SpdyClient.over_tcp(url, "v4.channel.k8s.io")
    error = client.open(streamtype="error")
    stdin = client.open(streamtype="stdin")
    out = client.open(streamtype="stdout")
    client.open(streamtype="stderr")
    client.until(lambda: {error, stdin, out} <= client.replied, "replies")
    client.write(stdin, b"one\n")
    client.until(lambda: b"got one\n" in client.data[out], "the container's answer")
    client.write(stdin, b"quit\n")  # the container exits: so does the attach
    client.until(lambda: error in client.fin, "the attach's end")
    assert exit_status(bytes(client.data[error]))["status"] == "Success"


# ---- port-forward ------------------------------------------------------------------

@pytest.fixture
def echo_server(container: Callable[..., str], daemon: PouchDaemon) -> str:
    cid = container("busybox", "nc", "-ll", "-p", "8080", "-e", "cat")  # -ll: persistent
    pid = daemon.inspect(cid)["State"]["Pid"]

    def listening() -> bool:
        lines: list[str] = []
        for table in ("tcp", "tcp6"):  # busybox nc may listen on either
            try:
                with open(f"/proc/{pid}/net/{table}") as f:
                    lines += f.readlines()
            except OSError:
                pass
        return any(":1F90 " in line and " 0A " in line for line in lines)

    wait_for(listening, TIMEOUT, "the echo server listening")
    return cid


def spdy_forward(client: SpdyClient, request_id: str) -> tuple[int, int]:
    error = client.open(streamtype="error", port="8080", requestid=request_id)
    data = client.open(streamtype="data", port="8080", requestid=request_id)
    client.until(lambda: {error, data} <= client.replied, "replies")
    return error, data


def echoed(client: SpdyClient, sid: int, message: bytes) -> bool:
    return bytes(client.data[sid]) == message


def test_portforward_over_spdy(server: StreamServer, echo_server: str) -> None:
    url = server.mint("portforward", {"container_id": echo_server, "ports": [8080]})
    client = SpdyClient.over_tcp(url, "portforward.k8s.io")
    for request_id in ("0", "1"):  # two connections on one session
        _, data = spdy_forward(client, request_id)
        message = f"ping {request_id}\n".encode() * 5000
        client.write(data, message)
        client.until(functools.partial(echoed, client, data, message), "the echo")


def test_portforward_to_a_closed_port_reports_on_the_error_stream(
        server: StreamServer, echo_server: str) -> None:
    url = server.mint("portforward", {"container_id": echo_server, "ports": [8081]})
    client = SpdyClient.over_tcp(url, "portforward.k8s.io")
    error = client.open(streamtype="error", port="8081", requestid="0")
    client.open(streamtype="data", port="8081", requestid="0")
    client.until(lambda: error in client.fin, "the error stream's end")
    assert b"8081" in client.data[error]


def test_portforward_over_websocket(server: StreamServer, echo_server: str) -> None:
    url = server.mint("portforward", {"container_id": echo_server, "ports": []})
    client = WsClient(url + "?port=8080", ["v4.channel.k8s.io"])
    port = struct.pack("<H", 8080)
    client.until(lambda: client.channel(0) == port and client.channel(1) == port,
                 "the ports on both channels")
    client.send(b"\x00hello\n")
    client.until(lambda: client.channel(0) == port + b"hello\n", "the echo")


def test_portforward_spdy_tunneled_in_websocket(server: StreamServer, echo_server: str) -> None:
    url = server.mint("portforward", {"container_id": echo_server, "ports": [8080]})
    ws = WsClient(url, ["SPDY/3.1+portforward.k8s.io"])
    assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
    seen = 0

    def recv() -> bytes:
        nonlocal seen
        while seen == len(ws.messages):
            if ws.closed:
                return b""
            ws._pump()
        seen += 1
        return ws.messages[seen - 1]

    client = SpdyClient(ws.send, recv)
    _, data = spdy_forward(client, "0")
    client.write(data, b"through the tunnel\n")
    client.until(lambda: bytes(client.data[data]) == b"through the tunnel\n", "the echo")


def test_spdy_exec_output_past_many_windows(server: StreamServer,
                                            container: Callable[..., str]) -> None:
    cid = container("busybox", "sleep", "300")
    out, err, status = spdy_exec(server, cid, ["sh", "-c",
                                               "dd if=/dev/zero bs=4096 count=512 2>/dev/null"])
    assert out == b"\0" * (4096 * 512)  # 2 MiB: 32 windows, given back as they are read
    assert err == b""
    assert exit_code_of(status) == 0


def test_websocket_exec_base64_with_a_terminal(server: StreamServer,
                                               container: Callable[..., str]) -> None:
    cid = container("busybox", "sleep", "300")
    url = server.mint("exec", {"container_id": cid, "cmd": ["sh", "-c", "read x; stty size"],
                               "tty": True, "stdin": True, "stdout": True})
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=parts.netloc, target=parts.path,
                                 subprotocols=["v4.base64.channel.k8s.io"])))
    texts: list[str] = []
    accepted = closed = False

    def pump() -> None:
        nonlocal accepted, closed
        data = sock.recv(65536)
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                accepted = event.subprotocol == "v4.base64.channel.k8s.io"
            elif isinstance(event, TextMessage):
                texts.append(event.data)
            elif isinstance(event, CloseConnection):
                if not closed:
                    sock.sendall(ws.send(event.response()))
                closed = True
        closed = closed or not data

    while not accepted:
        pump()
    size = base64.b64encode(json.dumps({"Width": 91, "Height": 19}).encode()).decode()
    sock.sendall(ws.send(TextMessage(data="4" + size)))
    sock.sendall(ws.send(TextMessage(data="0" + base64.b64encode(b"go\r").decode())))
    while not closed:
        pump()
    sock.close()
    out = b"".join(base64.b64decode(t[1:]) for t in texts if t[:1] == "1")
    assert b"19 91" in out
    error = b"".join(base64.b64decode(t[1:]) for t in texts if t[:1] == "3")
    assert exit_status(error)["status"] == "Success"


def test_exec_in_a_stopped_container_fails_on_the_error_stream(
        server: StreamServer, container: Callable[..., str], daemon: PouchDaemon) -> None:
    cid = container("busybox", "true")
    wait_for(lambda: not daemon.inspect(cid)["State"]["Running"], TIMEOUT, "the exit")
    url = server.mint("exec", {"container_id": cid, "cmd": ["ls"], "stdout": True})
    client = SpdyClient.over_tcp(url, "v4.channel.k8s.io")
    error = client.open(streamtype="error")
    client.open(streamtype="stdout")
    client.until(lambda: error in client.fin, "the error stream's end")
    status = exit_status(bytes(client.data[error]))
    assert status["status"] == "Failure"
    assert "running" in status["message"]
