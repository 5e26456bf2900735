"""/containers: create, list, inspect, start, stop, kill, attach, wait, logs, remove."""

from __future__ import annotations

from pathlib import Path

import falcon

from pouch.broker.client import ClientPool
from pouch.gateway.hijack import hijack, stream_head, upgrade_head
from pouch.gateway.params import filters, flag, integer, json_body
from pouch.proto.config import DaemonConfig

RAW_STREAM = "application/vnd.docker.raw-stream"
START_TIMEOUT = 60.0
STOP_GRACE = 10


class Create:
    def __init__(self, calls: ClientPool) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        created = self.calls.container.create(name=req.get_param("name") or "",
                                              config=json_body(req))
        resp.status = falcon.HTTP_201
        resp.media = created


class List:
    def __init__(self, calls: ClientPool) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.container.list(
            all=flag(req, "all"), limit=integer(req, "limit", -1), size=flag(req, "size"),
            filters=filters(req))


class Inspect:
    def __init__(self, calls: ClientPool) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = self.calls.container.inspect(id=id, size=flag(req, "size"))


class Item:
    def __init__(self, calls: ClientPool) -> None:
        self.calls = calls

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.remove(id=id, force=flag(req, "force"), volumes=flag(req, "v"))
        resp.status = falcon.HTTP_204


class Start:
    def __init__(self, calls: ClientPool) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        changed = self.calls.container.start(id=id, _timeout=START_TIMEOUT)
        resp.status = falcon.HTTP_204 if changed else falcon.HTTP_304


class Stop:
    def __init__(self, calls: ClientPool) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        grace = integer(req, "t")
        changed = self.calls.container.stop(
            id=id, timeout=grace, _timeout=(grace if grace is not None else STOP_GRACE) + 30)
        resp.status = falcon.HTTP_204 if changed else falcon.HTTP_304


class Kill:
    def __init__(self, calls: ClientPool) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.kill(id=id, signal=req.get_param("signal") or "SIGKILL")
        resp.status = falcon.HTTP_204


class Resize:
    def __init__(self, calls: ClientPool) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.resize(id=id, height=integer(req, "h", 0), width=integer(req, "w", 0))
        resp.status = falcon.HTTP_200


class Attach:
    """Upgraded to a raw stream; the container actor takes the connection."""

    def __init__(self, handoff_dir: Path) -> None:
        self.handoff_dir = handoff_dir

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        upgrade = "upgrade" in (req.get_header("Connection") or "").lower()
        head = upgrade_head(RAW_STREAM) if upgrade else stream_head(RAW_STREAM)
        hijack(req, self.handoff_dir, "container", "attach", {
            "id": id, "stream": flag(req, "stream"), "logs": flag(req, "logs"),
            "stdin": flag(req, "stdin"), "stdout": flag(req, "stdout"),
            "stderr": flag(req, "stderr"), "preamble": head, "chunked": not upgrade})


class Wait:
    """Headers go out at once (the CLI starts the container only then); the
    status follows when the container exits, written by the container actor."""

    def __init__(self, handoff_dir: Path) -> None:
        self.handoff_dir = handoff_dir

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        hijack(req, self.handoff_dir, "container", "wait", {
            "id": id, "condition": req.get_param("condition") or "not-running",
            "preamble": stream_head(falcon.MEDIA_JSON), "chunked": True})


class Logs:
    def __init__(self, handoff_dir: Path) -> None:
        self.handoff_dir = handoff_dir

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        hijack(req, self.handoff_dir, "container", "logs", {
            "id": id, "follow": flag(req, "follow"), "stdout": flag(req, "stdout"),
            "stderr": flag(req, "stderr"),
            "timestamps": flag(req, "timestamps"), "tail": req.get_param("tail") or "all",
            "since": req.get_param("since") or "", "until": req.get_param("until") or "",
            "preamble": stream_head(RAW_STREAM), "chunked": True})


def add_routes(app: falcon.App, calls: ClientPool, config: DaemonConfig) -> None:
    app.add_route("/containers/create", Create(calls))
    app.add_route("/containers/json", List(calls))
    app.add_route("/containers/{id}/json", Inspect(calls))
    app.add_route("/containers/{id}", Item(calls))
    app.add_route("/containers/{id}/start", Start(calls))
    app.add_route("/containers/{id}/stop", Stop(calls))
    app.add_route("/containers/{id}/kill", Kill(calls))
    app.add_route("/containers/{id}/resize", Resize(calls))
    app.add_route("/containers/{id}/attach", Attach(config.handoff_dir))
    app.add_route("/containers/{id}/wait", Wait(config.handoff_dir))
    app.add_route("/containers/{id}/logs", Logs(config.handoff_dir))
