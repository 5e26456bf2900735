"""Query and body parsing with Docker's conventions; errors name the parameter.

A parameter the client left out comes back as OMIT, so the service's declared
default applies: the gateway restates no default of its own.
"""

from __future__ import annotations

import json
from typing import Any

import falcon

from pouch.proto.docker import Filters, parse_filters
from pouch.proto.limits import MAX_JSON_BODY, check_int, check_value
from pouch.proto.stubs import OMIT, Omitted

_TRUE = {"1", "true", "True", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "False", "no", "off", "f", "n", ""}


def flag(req: falcon.Request, name: str) -> bool | Omitted:
    value = req.get_param(name)
    if value is None:
        return OMIT
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise falcon.HTTPBadRequest(description=f"invalid value for {name}: {value!r} is not a boolean")


def integer(req: falcon.Request, name: str) -> int | Omitted:
    value = req.get_param(name)
    if value in (None, ""):
        return OMIT
    try:
        number = int(value)
    except ValueError:
        raise falcon.HTTPBadRequest(
            description=f"invalid value for {name}: {value!r} is not an integer") from None
    return check_int(number, f"invalid value for {name}")


def text(req: falcon.Request, name: str) -> str | Omitted:
    value = req.get_param(name)
    return OMIT if value in (None, "") else value


def filters(req: falcon.Request) -> Filters | Omitted:
    """The `filters` parameter, in Docker's form."""
    raw = req.get_param("filters")
    return parse_filters(raw) if raw else OMIT


def json_body(req: falcon.Request) -> dict[str, Any]:
    """The request body as a JSON object: at most MAX_JSON_BODY bytes, with a length or
    chunked (as the docker CLI and docker-py send some bodies), and only values the
    wire can carry."""
    body = optional_json_body(req)
    if body is None:
        raise falcon.HTTPBadRequest(description="a JSON body is required")
    return body


def optional_json_body(req: falcon.Request) -> dict[str, Any] | None:
    """As `json_body`, but None for no body (empty, or `null` as the docker CLI sends
    for some requests)."""
    if req.content_length is not None and req.content_length > MAX_JSON_BODY:
        raise _too_large()
    # falcon's bounded stream reads nothing of a chunked body; gunicorn's own input
    # decodes the chunks and ends with them.
    stream = req.bounded_stream if req.content_length is not None else req.stream
    data = stream.read(MAX_JSON_BODY + 1)
    if len(data) > MAX_JSON_BODY:
        raise _too_large()
    if not data.strip():
        return None
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise falcon.HTTPBadRequest(description=f"malformed JSON body: {exc}") from None
    if body is None:
        return None
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(description="the JSON body must be an object")
    check_value(body, "body")
    return body


def _too_large() -> falcon.HTTPError:
    return falcon.HTTPPayloadTooLarge(
        description=f"the JSON body is larger than {MAX_JSON_BODY // (1024 * 1024)} MiB")
