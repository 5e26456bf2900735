"""The wire contract every process shares: frames, message bodies, error codes.

Frames (ZeroMQ multipart; DEALER peers send no empty delimiter):

    client -> broker   [CLIENT, REQ, service, body]      body = {id, method, args, deadline}
                       [CLIENT, CANCEL, service, id]
                       [CLIENT, SUB, b"", body]          body = {id, filters}
    broker -> client   [CLIENT, REP, service, body]      body = {id, ok, result | error, more?}
    actor  -> broker   [ACTOR, READY, service, contract]  contract = {method: declaration}
                       [ACTOR, REP, client, body]
                       [ACTOR, PUB, b"", event]
                       [ACTOR, HB] / [ACTOR, BYE]
    broker -> actor    [ACTOR, REQ, client, body]
                       [ACTOR, CANCEL, client, id]
                       [ACTOR, LOST, client, request body]
                       [ACTOR, HB] / [ACTOR, BYE]

LOST: the final answer to a call done once per token (a create, say) reached no
client (its process died meanwhile): nobody will retry it or learn its outcome.

`deadline` is a Unix time in seconds. A reply with `more: true` is one item
of a stream; the stream ends with a reply without it.
"""

from __future__ import annotations

import time
from typing import Any, Final, Literal

import msgpack

CLIENT: Final = b"PC1"
ACTOR: Final = b"PA1"

REQ: Final = b"REQ"
REP: Final = b"REP"
CANCEL: Final = b"CANCEL"
SUB: Final = b"SUB"
READY: Final = b"READY"
PUB: Final = b"PUB"
HEARTBEAT: Final = b"HB"
BYE: Final = b"BYE"
LOST: Final = b"LOST"

ErrorCode = Literal["not_found", "conflict", "invalid", "forbidden", "unavailable", "timeout",
                   "internal"]
ERROR_CODES: Final[frozenset[str]] = frozenset(
    ("not_found", "conflict", "invalid", "forbidden", "unavailable", "timeout", "internal")
)


class PouchError(Exception):
    """An error that travels as a value: a fixed code and a message for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code if code in ERROR_CODES else "internal"
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_wire(cls, error: dict[str, Any]) -> PouchError:
        return cls(error.get("code", "internal"), str(error.get("message", "")))

    def __repr__(self) -> str:
        return f"PouchError({self.code!r}, {self.message!r})"


def not_found(message: str) -> PouchError:
    return PouchError("not_found", message)


def conflict(message: str) -> PouchError:
    return PouchError("conflict", message)


def invalid(message: str) -> PouchError:
    return PouchError("invalid", message)


def forbidden(message: str) -> PouchError:
    """Well-formed but refused by policy (a predefined network's removal), as dockerd's 403."""
    return PouchError("forbidden", message)


def unavailable(message: str) -> PouchError:
    return PouchError("unavailable", message)


def pack(body: Any) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


def request(rid: int, method: str, args: dict[str, Any], deadline: float) -> bytes:
    return pack({"id": rid, "method": method, "args": args, "deadline": deadline})


def ok_reply(rid: int, result: Any, more: bool = False) -> bytes:
    body: dict[str, Any] = {"id": rid, "ok": True, "result": result}
    if more:
        body["more"] = True
    return pack(body)


def error_reply(rid: int, error: PouchError) -> bytes:
    return pack({"id": rid, "ok": False, "error": error.to_wire()})


def expired(deadline: float, now: float | None = None) -> bool:
    return (time.time() if now is None else now) >= deadline
