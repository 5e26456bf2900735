"""A TLS connection cannot be handed to an actor as it is: the gateway relays it
through a socket pair, and the actor streams to the plain end as it always does.

Real TLS (a self-signed certificate made with openssl), the real hand-off
socket and the gateway's hijack; the actor is a stand-in that answers
through a stream session.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import falcon
import falcon.testing
import pytest

from pouch.gateway.hijack import Hijacker, StreamRequest
from pouch.proto import envelope as env
from pouch.proto import stdstream
from pouch.proto.handoff import LinkWatch, receive, socket_path, wait_for_go
from pouch.proto.stream import RAW_STREAM, StreamSession, StreamSpec
from pouch.tests.support.tools import require

UPGRADE = StreamSpec("upgrade", RAW_STREAM)
Actor = Callable[[StreamSession], None]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([require("openssl", "openssl"), "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_pair(certificate: tuple[Path, Path]) -> Iterator[tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    """A client's TLS connection and the server's end of it, as gunicorn holds it."""
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted: Future[ssl.SSLSocket] = Future()

        def accept() -> None:
            conn, _ = listener.accept()
            accepted.set_result(server_ctx.wrap_socket(conn, server_side=True))

        threading.Thread(target=accept, daemon=True).start()
        client = client_ctx.wrap_socket(socket.create_connection(listener.getsockname()),
                                        server_hostname="localhost")
        server = accepted.result(timeout=10)
    client.settimeout(10)
    with client, server:
        yield client, server


@pytest.fixture
def actor(tmp_path: Path) -> Iterator[Callable[[Actor | env.PouchError], Path]]:
    """Starts a stand-in actor on a hand-off socket: it takes one connection and runs
    the given story on its stream session, or refuses with the given error."""
    threads: list[threading.Thread] = []

    def start(story: Actor | env.PouchError) -> Path:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(str(socket_path(tmp_path, "echo")))
        listener.listen(1)

        def serve() -> None:
            with listener:
                link, _ = listener.accept()
            message, conn = receive(link)
            assert conn is not None
            if isinstance(story, env.PouchError):
                conn.close()
                link.send(env.error_reply(0, story))
                link.close()
                return
            link.send(env.ok_reply(0, None))
            assert wait_for_go(link)  # the gateway wrote the head
            # The link stays open: the session tells the gateway when the stream is over.
            story(StreamSession(conn, StreamSpec.from_wire(message["stream"]),
                                watch=LinkWatch(link, resumable=False), head_out=True))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return tmp_path

    yield start
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), "the stand-in actor did not finish"


def attach(sock: socket.socket, handoff_dir: Path) -> None:
    """What the gateway does for an attach whose connection is `sock`."""
    req = falcon.Request(falcon.testing.create_environ(method="POST", path="/containers/c/attach"))
    req.env["gunicorn.socket"] = sock
    Hijacker(handoff_dir).hand_over(StreamRequest(req, UPGRADE), "echo", "attach", {"id": "c"})


def read_until_closed(client: ssl.SSLSocket) -> bytes:
    """What the client reads until the gateway closes the TLS session, which the
    client then closes on its side too, as a well-behaved client does."""
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    client.unwrap()
    return data


def test_an_attach_over_tls_carries_input_and_multiplexed_output(tls_pair, actor):
    client, server = tls_pair

    def echo(session: StreamSession) -> None:
        session.start(multiplexed=True)
        line = session.conn.recv(1024)
        session.write("stdout", line.upper())
        session.write("stderr", b"done\n")
        session.end()

    handoff_dir = actor(echo)
    gateway = threading.Thread(target=attach, args=(server, handoff_dir))
    gateway.start()
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += client.recv(1)
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    client.sendall(b"hello\n")
    frames, rest = stdstream.parse(read_until_closed(client))
    assert frames == [(stdstream.STDOUT, b"HELLO\n"), (stdstream.STDERR, b"done\n")]
    assert rest == b""
    gateway.join(timeout=10)
    assert not gateway.is_alive(), "the relay outlived the stream"


def test_a_long_output_arrives_whole_through_the_relay(tls_pair, actor):
    client, server = tls_pair
    payload = bytes(range(256)) * 16 * 1024  # 4 MiB: more than the relay buffers

    def flood(session: StreamSession) -> None:
        session.start(multiplexed=False)
        session.write("stdout", payload)
        session.end()

    gateway = threading.Thread(target=attach, args=(server, actor(flood)))
    gateway.start()
    data = read_until_closed(client)
    assert data.partition(b"\r\n\r\n")[2] == payload
    gateway.join(timeout=10)
    assert not gateway.is_alive()


def test_a_client_that_hangs_up_ends_the_actors_input(tls_pair, actor):
    client, server = tls_pair
    seen: Future[bytes] = Future()

    def listen(session: StreamSession) -> None:
        session.start()
        seen.set_result(session.conn.recv(1024))
        session.end()

    gateway = threading.Thread(target=attach, args=(server, actor(listen)))
    gateway.start()
    assert client.recv(4096).startswith(b"HTTP/1.1 101")
    client.close()
    assert seen.result(timeout=10) == b""
    gateway.join(timeout=10)
    assert not gateway.is_alive()


def test_a_refused_hand_off_leaves_the_connection_to_the_gateway(tls_pair, actor):
    client, server = tls_pair
    handoff_dir = actor(env.not_found("No such container: c"))
    with pytest.raises(env.PouchError) as refused:
        attach(server, handoff_dir)
    assert refused.value.code == "not_found"
    server.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert client.recv(4096).startswith(b"HTTP/1.1 404")
