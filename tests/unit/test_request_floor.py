"""What the gateway does to spend less per request: /_ping answered by its event loop,
and request threads woken one at a time (see bench/request_floor.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pouch.gateway.canned import CannedPing
from pouch.gateway.server import Gateway
from pouch.gateway.threads import HandOff
from pouch.gateway.worker import Conn, Worker
from pouch.proto.config import DaemonConfig
from pouch.tests.support.wait import wait_for

DATE = b"Date: "


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    """A gateway worker as gunicorn makes it, its app loaded, serving no socket."""
    (tmp_path / "run").mkdir()  # pouchd's supervisor makes it before the gateway starts
    config = DaemonConfig(home_dir=tmp_path / "home", exec_root_dir=tmp_path / "run",
                          listen=(f"unix://{tmp_path}/api.sock",), gateway_workers=1)
    gateway = Gateway(config)
    cfg = gateway.cfg
    made = Worker(1, 0, [], gateway, 30, cfg, cfg.logger_class(cfg))
    made.wsgi = gateway.wsgi()
    made.alive = True
    yield made
    made.tmp.close()


def served(worker: Worker, request: bytes) -> bytes:
    """What a request thread answers to `request`."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(request)
        conn = Conn(worker.cfg, theirs, ("", 0), "")
        conn.init()
        worker.handle_request(next(conn.parser), conn)
        ours.settimeout(5)
        answer = ours.recv(65536)
    return answer


def without_date(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith(DATE))


PLAIN = [
    b"GET /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n"
    b"User-Agent: Docker-Client/28.1.1 (linux)\r\n\r\n",
    b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\n\r\n",
]


@pytest.mark.parametrize("request_", PLAIN)
def test_a_plain_ping_gets_the_bytes_a_thread_would_send(worker: Worker, request_: bytes):
    canned = CannedPing.render(worker, Conn)
    assert canned is not None
    answer = canned.answer(request_)
    assert answer is not None
    assert without_date(answer) == without_date(served(worker, request_))
    assert b"\r\nApi-Version: 1.41\r\n".lower() in answer.lower()
    date = next(line for line in answer.split(b"\r\n") if line.startswith(DATE))
    assert date.endswith(b" GMT")


@pytest.mark.parametrize("request_", [
    b"GET /_ping HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nconnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
    b"GET /_ping HTTP/1.0\r\n\r\n",
    b"GET /_ping?x=1 HTTP/1.1\r\n\r\n",
    b"GET /v1.99/_ping HTTP/1.1\r\n\r\n",
    b"GET /_pingx HTTP/1.1\r\n\r\n",
    b"POST /_ping HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
    b"GET /_ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\n\r\nGET /_ping HTTP/1.1\r\n\r\n",  # another behind it
    b"GET /_ping HTTP/1.1\r\nBad Name: x\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nX: \x01\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nX: \xff\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n",
    b"GET /_ping HTTP/1.1\r\n" + b"X: y\r\n" * 40 + b"\r\n",
    b"GET /_ping HTTP/1.1\nHost: x\n\n",
])
def test_anything_less_plain_goes_the_usual_way(worker: Worker, request_: bytes):
    canned = CannedPing.render(worker, Conn)
    assert canned is not None
    assert canned.answer(request_) is None


def test_the_date_is_of_the_moment(worker: Worker, monkeypatch: pytest.MonkeyPatch):
    canned = CannedPing.render(worker, Conn)
    assert canned is not None
    monkeypatch.setattr(time, "time", lambda: 0.0)
    assert b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n" in (canned.answer(PLAIN[2]) or b"")
    monkeypatch.setattr(time, "time", lambda: 86400.5)
    assert b"Date: Fri, 02 Jan 1970 00:00:00 GMT\r\n" in (canned.answer(PLAIN[2]) or b"")


# -- request threads -----------------------------------------------------------------


def test_one_client_after_another_is_served_by_the_same_warm_thread():
    pool = HandOff(4)
    try:
        names = []
        for _ in range(20):
            names.append(pool.submit(lambda: threading.current_thread().name).result(timeout=5))
            wait_for(lambda: pool._idle, 5, "the thread to be idle again")  # as between requests
        assert len(set(names)) == 1
    finally:
        pool.shutdown()


def test_jobs_beyond_the_threads_wait_for_one_and_all_are_done():
    pool = HandOff(2)
    gate = threading.Event()
    running: list[str] = []
    lock = threading.Lock()

    def job(i: int) -> int:
        with lock:
            running.append(threading.current_thread().name)
        gate.wait(5)
        return i * 2

    try:
        futures = [pool.submit(job, i) for i in range(6)]
        wait_for(lambda: len(running) == 2, 5, "two jobs running")
        assert len(running) == 2  # two threads at most; the rest wait for one
        gate.set()
        assert [f.result(timeout=5) for f in futures] == [0, 2, 4, 6, 8, 10]
        assert len(set(running)) == 2
    finally:
        pool.shutdown()


def test_a_job_that_raises_fails_its_future_and_the_thread_serves_on():
    pool = HandOff(1)
    try:
        def boom() -> None:
            raise ValueError("no")
        with pytest.raises(ValueError):
            pool.submit(boom).result(timeout=5)
        assert pool.submit(lambda: 7).result(timeout=5) == 7
    finally:
        pool.shutdown()


def test_done_callbacks_run_and_shutdown_ends_every_thread():
    pool = HandOff(3)
    done = threading.Event()
    seen: list[Any] = []
    future = pool.submit(lambda: "x")
    def on_done(f: Any) -> None:
        seen.append(f.result())
        done.set()
    future.add_done_callback(on_done)
    assert done.wait(5) and seen == ["x"]
    mine = [t for t in threading.enumerate() if t.name.startswith("request-")]
    pool.shutdown(wait=False)
    for thread in mine:
        thread.join(5)
        assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
