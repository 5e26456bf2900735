"""Query and body parsing with Docker's conventions; errors name the parameter.

A parameter the client left out comes back as OMIT, so the service's declared
default applies: the gateway restates no default of its own.
"""

from __future__ import annotations

from typing import Any

import falcon

from pouch.proto.docker import Filters, parse_filters
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
        return int(value)
    except ValueError:
        raise falcon.HTTPBadRequest(
            description=f"invalid value for {name}: {value!r} is not an integer") from None


def text(req: falcon.Request, name: str) -> str | Omitted:
    value = req.get_param(name)
    return OMIT if value in (None, "") else value


def filters(req: falcon.Request) -> Filters | Omitted:
    """The `filters` parameter, in Docker's form."""
    raw = req.get_param("filters")
    return parse_filters(raw) if raw else OMIT


def json_body(req: falcon.Request) -> dict[str, Any]:
    """The request body as a JSON object."""
    try:
        body = req.get_media()
    except falcon.MediaNotFoundError:
        raise falcon.HTTPBadRequest(description="a JSON body is required") from None
    except falcon.MediaMalformedError as exc:
        raise falcon.HTTPBadRequest(
            description=f"malformed JSON body: {exc.description or exc.title}") from None
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(description="the JSON body must be an object")
    return body
