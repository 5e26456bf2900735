"""Protocol errors to gRPC: the one place where an error code becomes a status."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from pouch.proto.envelope import PouchError

GRPC_STATUS = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "conflict": grpc.StatusCode.ALREADY_EXISTS,
    "forbidden": grpc.StatusCode.PERMISSION_DENIED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "internal": grpc.StatusCode.INTERNAL,
}

F = TypeVar("F", bound=Callable[..., Any])


def precondition(message: str) -> PouchError:
    """A call made in the wrong state (start a container twice): FAILED_PRECONDITION,
    which no protocol code spells, so it travels as a marked conflict."""
    return PouchError("conflict", PRECONDITION + message)


PRECONDITION = "precondition: "


def status_of(error: PouchError) -> tuple[grpc.StatusCode, str]:
    if error.code == "conflict" and error.message.startswith(PRECONDITION):
        return grpc.StatusCode.FAILED_PRECONDITION, error.message.removeprefix(PRECONDITION)
    return GRPC_STATUS.get(error.code, grpc.StatusCode.UNKNOWN), error.message


def answered(handler: F) -> F:
    """A servicer method whose PouchError ends the call with its gRPC status."""

    @functools.wraps(handler)
    def wrapped(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return handler(self, request, context)
        except PouchError as error:
            code, message = status_of(error)
            context.abort(code, message)

    return wrapped  # type: ignore[return-value]
