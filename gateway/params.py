"""Query and body parsing with Docker's conventions; errors name the parameter."""

from __future__ import annotations

import json
from typing import Any

import falcon

_TRUE = {"1", "true", "True", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "False", "no", "off", "f", "n", ""}


def flag(req: falcon.Request, name: str, default: bool = False) -> bool:
    value = req.get_param(name)
    if value is None:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise falcon.HTTPBadRequest(description=f"invalid value for {name}: {value!r} is not a boolean")


def integer(req: falcon.Request, name: str, default: int | None = None) -> int | None:
    value = req.get_param(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise falcon.HTTPBadRequest(
            description=f"invalid value for {name}: {value!r} is not an integer") from None


def filters(req: falcon.Request) -> dict[str, list[str]]:
    """The `filters` parameter: {"key": ["v", ...]}, or the older {"key": {"v": true}}."""
    raw = req.get_param("filters")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise falcon.HTTPBadRequest(description=f"invalid filters: {exc}") from None
    if not isinstance(parsed, dict):
        raise falcon.HTTPBadRequest(description="invalid filters: must be a JSON object")
    result: dict[str, list[str]] = {}
    for key, values in parsed.items():
        if isinstance(values, dict):
            values = [v for v, on in values.items() if on]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise falcon.HTTPBadRequest(description=f"invalid filter '{key}'")
        result[key] = values
    return result


def json_body(req: falcon.Request, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object."""
    if not req.content_length and not required:
        return {}
    try:
        body = req.get_media()
    except falcon.MediaNotFoundError:
        if required:
            raise falcon.HTTPBadRequest(description="a JSON body is required") from None
        return {}
    except falcon.MediaMalformedError as exc:
        raise falcon.HTTPBadRequest(
            description=f"malformed JSON body: {exc.description or exc.title}") from None
    if body is None and not required:
        return {}
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(description="the JSON body must be an object")
    return body
