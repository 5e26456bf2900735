"""/containers/{id}/top and /stats: docker top, and docker stats (a stream the container
actor writes to the handed-over connection, one reading a second)."""

from __future__ import annotations

from pathlib import Path

import falcon

from pouch.gateway.hijack import Hijacker, StreamRequest
from pouch.gateway.params import flag, text
from pouch.proto.config import DaemonConfig
from pouch.proto.stream import JSON, StreamSpec
from pouch.proto.stubs import Calls, Handoffs


class Top:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = self.calls.container.top(id=id, ps_args=text(req, "ps_args"))


class Stats:
    def __init__(self, handoff_dir: Path) -> None:
        self.handoffs = Handoffs(Hijacker(handoff_dir))

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.handoffs.container.stats(
            StreamRequest(req, StreamSpec("chunked", JSON)), id=id,
            stream=flag(req, "stream"), one_shot=flag(req, "one-shot"))


def add_routes(app: falcon.App, calls: Calls, config: DaemonConfig) -> None:
    app.add_route("/containers/{id}/top", Top(calls))
    app.add_route("/containers/{id}/stats", Stats(config.handoff_dir))
