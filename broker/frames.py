"""What the broker accepts in a frame, checked before anything is done with it.

Bodies come from any process that can open the client socket: each value the
broker keeps or compares (ids, names, deadlines, subscription fields) is
checked for type and range here, and a message that fails is answered with
`invalid` or dropped, never trusted. Arguments are the actor's to validate
against its contract; the broker only requires them to be a map.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import msgpack

from pouch.proto import envelope as env

MAX_ID = 2**63 - 1
MAX_FIELDS = 16        # paths in one subscription
MAX_VALUES = 64        # values for one path
MAX_TEXT = 256         # characters in a path or a value
WHOLE_REPLY = 256      # bytes of a reply below which reply_id decodes it whole
# Service and method names: what a Python identifier declares, and a little more.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


class Malformed(ValueError):
    """A message the broker will not act on; `rid` if one could be read, to answer it."""

    def __init__(self, message: str, rid: int | None = None) -> None:
        super().__init__(message)
        self.rid = rid


@dataclass(frozen=True)
class Request:
    rid: int
    method: str
    args: dict[str, Any]
    deadline: float  # Unix time; 0: none given


def unpack_map(body: bytes, what: str) -> dict[Any, Any]:
    try:
        value = env.unpack(body)
    except (ValueError, TypeError) as exc:  # msgpack's errors are ValueErrors
        raise Malformed(f"{what} is not msgpack: {exc}") from None
    if not isinstance(value, dict):
        raise Malformed(f"{what} must be a map")
    return value


def request_id(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise Malformed(f"a request id must be an integer from 0 to {MAX_ID}")
    return value


def name(raw: bytes | str, what: str) -> str:
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    if not isinstance(text, str) or not _NAME.fullmatch(text):
        raise Malformed(f"{what} must be a name of up to 64 letters, digits, '_', '.' or '-'")
    return text


def request(body: bytes) -> Request:
    msg = unpack_map(body, "a request")
    rid = request_id(msg.get("id"))
    try:
        method = name(msg.get("method") or "", "the method")
        args = msg.get("args")
        if args is None:
            args = {}
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise Malformed("args must be a map of names to values")
        return Request(rid, method, args, deadline(msg.get("deadline")))
    except Malformed as exc:
        raise Malformed(str(exc), rid) from None


def deadline(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0:
        raise Malformed("the deadline must be a Unix time in seconds, or 0")
    return float(value)


def cancel_id(body: bytes) -> int:
    try:
        value = env.unpack(body)
    except (ValueError, TypeError):
        raise Malformed("a cancel names a request id") from None
    return request_id(value)


def subscription(body: bytes) -> tuple[int, dict[str, list[str]]]:
    """A subscription's id and fields: {path: [values]}, paths and values strings."""
    msg = unpack_map(body, "a subscription")
    rid = request_id(msg.get("id"))
    fields = msg.get("fields") or {}
    if not isinstance(fields, dict) or len(fields) > MAX_FIELDS:
        raise Malformed(f"fields must be a map of at most {MAX_FIELDS} paths", rid)
    for path, values in fields.items():
        if not _text(path) or not isinstance(values, list) or len(values) > MAX_VALUES \
                or not all(_text(v) for v in values):
            raise Malformed(f"fields must map paths to lists of at most {MAX_VALUES} "
                            f"strings of up to {MAX_TEXT} characters", rid)
    return rid, fields


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def reply_id(body: bytes) -> tuple[int, bool]:
    """An actor's reply: the id it answers, and whether more items follow.

    Only those two fields are decoded: a result is the client's to decode, and the
    broker decoding it as well cost it as much again (530 us for a list of 100
    containers, on the path of every request; see bench/request_floor.py). A small
    body is decoded whole, which is quicker than stepping through it."""
    if len(body) <= WHOLE_REPLY:
        msg = unpack_map(body, "a reply")
        return request_id(msg.get("id")), bool(msg.get("more"))
    rid: Any = None
    more: Any = False
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(body))
    unpacker.feed(body)
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key == "id":
                rid = unpacker.unpack()
            elif key == "more":
                more = unpacker.unpack()
            else:
                unpacker.skip()  # checked as msgpack, no object built
    except (ValueError, TypeError, msgpack.OutOfData) as exc:  # a non-map is a ValueError
        raise Malformed(f"a reply is not a msgpack map: {exc!r}") from None
    if unpacker.tell() != len(body):
        raise Malformed("a reply has bytes past its map")
    return request_id(rid), bool(more)


def hello(body: bytes) -> tuple[int, str, dict[str, dict[str, Any]]]:
    """An actor's READY: its pid, token and contract ({method: declaration})."""
    msg = unpack_map(body, "a READY")
    pid, token, methods = msg.get("pid"), msg.get("token"), msg.get("methods") or {}
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**31:
        raise Malformed("a READY names the actor's pid")
    if not isinstance(token, str):
        raise Malformed("a READY carries the broker's token")
    if not isinstance(methods, dict):
        raise Malformed("a READY's methods must be a map")
    for method, decl in methods.items():
        name(method, "a method")
        timeout = decl.get("timeout") if isinstance(decl, dict) else 0
        if not isinstance(decl, dict) or (timeout is not None and not _seconds(timeout)):
            raise Malformed(f"the declaration of '{method}' is malformed")
    return pid, token, methods


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value) and value > 0
