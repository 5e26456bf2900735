"""/containers/{id}/exec and /exec/{id}: create, start, resize and inspect an exec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon

from pouch.gateway.hijack import Hijacker, StreamRequest
from pouch.gateway.params import integer, json_body
from pouch.proto.config import DaemonConfig
from pouch.proto.stream import RAW_STREAM, StreamSpec
from pouch.proto.stubs import OMIT, Calls, Handoffs, Omitted


class Create:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = self.calls.container.exec_create(id=id, config=json_body(req))
        resp.status = falcon.HTTP_201


class Start:
    """Detached: answered once the process runs. Else upgraded to a raw stream (as for
    attach) that the container actor takes: it ends when the process has exited."""

    def __init__(self, calls: Calls, handoff_dir: Path) -> None:
        self.calls = calls
        self.handoffs = Handoffs(Hijacker(handoff_dir))

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        body = _fields(json_body(req), ("Detach", "Tty"))
        if _flag(body, "Detach") is True:
            self.calls.container.exec_start_detached(id=id)
            resp.status = falcon.HTTP_200
            return
        upgrade = "upgrade" in (req.get_header("Connection") or "").lower()
        spec = StreamSpec("upgrade" if upgrade else "chunked", RAW_STREAM)
        self.handoffs.container.exec_start(StreamRequest(req, spec), id=id,
                                           tty=_flag(body, "Tty"))


class Resize:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.exec_resize(id=id, height=integer(req, "h"),
                                         width=integer(req, "w"))
        resp.status = falcon.HTTP_200


class Inspect:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = self.calls.container.exec_inspect(id=id)


def _fields(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The body's fields by their Docker names, matched as dockerd's Go decoder matches
    them: regardless of case (docker-py sends `detachKeys`, for one)."""
    canonical = {name.lower(): name for name in names}
    return {canonical.get(key.lower(), key): value for key, value in body.items()}


def _flag(body: dict[str, Any], name: str) -> bool | Omitted:
    value = body.get(name)
    if value is None:
        return OMIT
    if not isinstance(value, bool):
        raise falcon.HTTPBadRequest(description=f"invalid field {name}: must be true or false")
    return value


def add_routes(app: falcon.App, calls: Calls, config: DaemonConfig) -> None:
    app.add_route("/containers/{id}/exec", Create(calls))
    app.add_route("/exec/{id}/start", Start(calls, config.handoff_dir))
    app.add_route("/exec/{id}/resize", Resize(calls))
    app.add_route("/exec/{id}/json", Inspect(calls))
