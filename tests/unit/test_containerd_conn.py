"""When a containerd call is made again after it found containerd away or lost it
(pouch.actors.containerd.conn): gRPC's answers stand in for a containerd that dies."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from pouch.actors.containerd import conn as conn_module
from pouch.actors.containerd.conn import Conn
from pouch.proto.envelope import PouchError

GONE = "failed to connect to all addresses; last error: connect: Connection refused"
LOST = "Socket closed"


class Failure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class Scripted:
    """A gRPC method that answers each call with the next of `answers` (an exception is
    raised), counting the calls."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, request: Any, **_: Any) -> Any:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Ready:
    def __init__(self, back: bool) -> None:
        self.back = back

    def result(self, timeout: float | None = None) -> None:
        if not self.back:
            raise grpc.FutureTimeoutError()


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Conn]:
    """A Conn whose channel says it is ready again at once."""
    monkeypatch.setattr(conn_module.grpc, "channel_ready_future", lambda channel: Ready(True))
    made = Conn("/nonexistent/containerd.sock", "test")
    yield made
    made.close()


def test_a_call_made_again_that_finds_no_connection_waits_again(conn: Conn) -> None:
    """The channel said ready while containerd had just died: the call made again finds
    no connection, so it never reached containerd and is made once more."""
    method = Scripted(Failure(grpc.StatusCode.UNAVAILABLE, LOST),
                      Failure(grpc.StatusCode.UNAVAILABLE, GONE), "deleted")
    assert conn.call(method, None, 5.0, idempotent=True) == "deleted"
    assert method.calls == 3


def test_a_call_lost_on_the_way_is_made_again_only_if_idempotent(conn: Conn) -> None:
    method = Scripted(Failure(grpc.StatusCode.UNAVAILABLE, LOST), "made twice")
    with pytest.raises(PouchError) as raised:
        conn.call(method, None, 5.0)
    assert raised.value.code == "unavailable" and method.calls == 1


def test_a_call_gives_up_when_containerd_is_not_back(monkeypatch: pytest.MonkeyPatch,
                                                    conn: Conn) -> None:
    monkeypatch.setattr(conn_module.grpc, "channel_ready_future", lambda channel: Ready(False))
    method = Scripted(Failure(grpc.StatusCode.UNAVAILABLE, GONE), "never")
    with pytest.raises(PouchError) as raised:
        conn.call(method, None, 5.0)
    assert raised.value.code == "unavailable" and "not reachable" in raised.value.message
    assert method.calls == 1


def test_a_call_waits_for_containerd_no_longer_than_the_reconnect_wait(
        monkeypatch: pytest.MonkeyPatch, conn: Conn) -> None:
    """However often the channel says ready and the call finds no connection."""
    clock = iter(range(0, 1000, 2))  # each reading of the clock 2 s after the last
    # The module's own clock only: time.monotonic of the whole process stays as it is.
    monkeypatch.setattr(conn_module, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    method = Scripted(*[Failure(grpc.StatusCode.UNAVAILABLE, GONE)] * 100)
    with pytest.raises(PouchError):
        conn.call(method, None, None)
    assert method.calls <= conn_module.RECONNECT_WAIT / 2 + 1


def test_other_errors_are_not_made_again(conn: Conn) -> None:
    method = Scripted(Failure(grpc.StatusCode.NOT_FOUND, "container x: not found"), "never")
    with pytest.raises(PouchError) as raised:
        conn.call(method, None, 5.0, idempotent=True)
    assert raised.value.code == "not_found" and method.calls == 1
