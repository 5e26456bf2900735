"""The streaming server's pure parts: tokens, request checks, negotiation, statuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pouch.actors.cri import streaming
from pouch.proto.envelope import PouchError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_serves_once() -> None:
    tokens = streaming.Tokens(clock=Clock())
    token = tokens.add("exec", {"cmd": ["ls"]})
    taken = tokens.take(token)
    assert taken is not None and taken.kind == "exec" and taken.request == {"cmd": ["ls"]}
    assert tokens.take(token) is None


def test_an_unused_token_expires_after_a_minute() -> None:
    clock = Clock()
    tokens = streaming.Tokens(clock=clock)
    early, late = tokens.add("attach", {}), tokens.add("attach", {})
    clock.now += 59
    assert tokens.take(early) is not None
    clock.now += 2
    assert tokens.take(late) is None


def test_tokens_are_unguessable_and_distinct() -> None:
    tokens = streaming.Tokens()
    made = {tokens.add("exec", {}) for _ in range(100)}
    assert len(made) == 100 and all(len(t) >= 16 for t in made)


def test_requests_are_checked_as_kubelet_checks_them() -> None:
    ok = streaming.checked_request("exec", {"container_id": "c", "cmd": ["sh"], "tty": True,
                                            "stdin": True, "stdout": True, "stderr": True})
    assert ok["stderr"] is False  # a terminal has one output
    bad: list[tuple[str, dict[str, Any]]] = [
        ("exec", {"container_id": "c", "cmd": [], "stdout": True}),
        ("exec", {"container_id": "c", "cmd": ["ls"]}),             # no stream at all
        ("attach", {"stdout": True}),                               # no container
        ("portforward", {"container_id": "c", "ports": [70000]}),
        ("shell", {"container_id": "c"}),
    ]
    for kind, request in bad:
        with pytest.raises(PouchError) as err:
            streaming.checked_request(kind, request)
        assert err.value.code == "invalid"


def test_negotiation_follows_the_clients_order() -> None:
    supported = streaming.REMOTECOMMAND_WS
    assert streaming.negotiate(["v3.channel.k8s.io", "v5.channel.k8s.io"], supported) \
        == "v3.channel.k8s.io"
    assert streaming.negotiate([], supported) == ""
    assert streaming.negotiate(["v9.channel.k8s.io"], supported) is None
    assert streaming.protocol_version("v5.channel.k8s.io") == 5
    assert streaming.protocol_version("channel.k8s.io") == 1
    assert streaming.protocol_version("v4.base64.channel.k8s.io") == 4


def test_the_error_channel_carries_the_exit_code() -> None:
    success = json.loads(streaming.status_of(4, 0, None, ["true"]))
    assert success == {"metadata": {}, "status": "Success"}
    failed = json.loads(streaming.status_of(4, 7, None, ["false"]))
    assert failed["status"] == "Failure" and failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    broken = json.loads(streaming.status_of(5, None, "no such container", []))
    assert broken["message"] == "no such container" and "details" not in broken
    # Before v4: the error's text, nothing when all went well.
    assert streaming.status_of(3, 0, None, ["true"]) == b""
    assert b"exit code 2" in streaming.status_of(2, 2, None, ["x"])


def test_resize_messages_split_anywhere() -> None:
    decoder = streaming.ResizeDecoder()
    assert decoder.feed(b'{"Width":80,"Hei') == []
    assert decoder.feed(b'ght":24}\n{"Width":100,"Height":30}') == [(80, 24), (100, 30)]
