"""Protocol errors to HTTP: the one place where an error code becomes a status."""

from __future__ import annotations

import logging
from typing import Any

import falcon

from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.gateway")

HTTP_STATUS = {"not_found": 404, "conflict": 409, "invalid": 400, "forbidden": 403,
               "unavailable": 503, "timeout": 504, "internal": 500}


def on_pouch_error(req: falcon.Request, resp: falcon.Response, ex: PouchError,
                   params: dict[str, Any]) -> None:
    resp.status = HTTP_STATUS.get(ex.code, 500)
    resp.media = {"message": ex.message}


def on_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                  params: dict[str, Any]) -> None:
    # Docker's clients read {"message": ...}; falcon's own body has title/description.
    resp.status = ex.status
    resp.media = {"message": ex.description or ex.title}
    if ex.headers:
        resp.set_headers(ex.headers)


def on_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                  params: dict[str, Any]) -> None:
    log.exception("%s %s failed", req.method, req.path)
    resp.status = 500
    resp.media = {"message": f"internal error: {type(ex).__name__}: {ex}"}


def register(app: falcon.App) -> None:
    # Falcon picks the most specific handler for an exception type.
    app.add_error_handler(Exception, on_unexpected)
    app.add_error_handler(falcon.HTTPError, on_http_error)
    app.add_error_handler(PouchError, on_pouch_error)
