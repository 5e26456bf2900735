"""/containers: create, list, inspect, start, stop, restart, kill, pause, unpause, rename,
update, attach, wait, logs, remove, prune."""

from __future__ import annotations

from pathlib import Path

import falcon

from pouch.gateway.hijack import Hijacker, StreamRequest
from pouch.gateway.params import filters, flag, integer, json_body, text
from pouch.proto.config import DaemonConfig
from pouch.proto.stream import JSON, RAW_STREAM, StreamSpec
from pouch.proto.stubs import Calls, Handoffs


class Create:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.container.create(name=req.get_param("name") or "",
                                                 config=json_body(req),
                                                 platform=req.get_param("platform") or "")
        resp.status = falcon.HTTP_201


class List:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.container.list(
            all=flag(req, "all"), limit=integer(req, "limit"), size=flag(req, "size"),
            filters=filters(req))


class Prune:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.container.prune(filters=filters(req))


class Inspect:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = self.calls.container.inspect(id=id, size=flag(req, "size"))


class Item:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        _refuse_link_removal(req)  # else `docker rm --link data` would remove `data`
        self.calls.container.remove(id=id, force=flag(req, "force"), volumes=flag(req, "v"))
        resp.status = falcon.HTTP_204


def _refuse_link_removal(req: falcon.Request) -> None:
    if flag(req, "link") is True:
        raise falcon.HTTPBadRequest(description="removing a link (docker rm --link) is not "
                                                "supported: remove the linking container")


def _container_path_not_found(req: falcon.Request, resp: falcon.Response, **_: str) -> None:
    """What no route takes under /containers/: `docker rm --link /web/data` sends the
    link's name, slashes and all, as the container's."""
    if req.method == "DELETE":
        _refuse_link_removal(req)
    raise falcon.HTTPNotFound(description="page not found")


class Rename:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.rename(id=id, name=req.get_param("name") or "")
        resp.status = falcon.HTTP_204


class Update:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = self.calls.container.update(id=id, config=json_body(req))


class Start:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        changed = self.calls.container.start(id=id)
        resp.status = falcon.HTTP_204 if changed else falcon.HTTP_304


class Stop:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        changed = self.calls.container.stop(id=id, timeout=integer(req, "t"))
        resp.status = falcon.HTTP_204 if changed else falcon.HTTP_304


class Restart:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.restart(id=id, timeout=integer(req, "t"))
        resp.status = falcon.HTTP_204


class Kill:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.kill(id=id, signal=text(req, "signal"))
        resp.status = falcon.HTTP_204


class Pause:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.pause(id=id)
        resp.status = falcon.HTTP_204


class Unpause:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.unpause(id=id)
        resp.status = falcon.HTTP_204


class Resize:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.calls.container.resize(id=id, height=integer(req, "h"), width=integer(req, "w"))
        resp.status = falcon.HTTP_200


class Attach:
    """Upgraded to a raw stream; the container actor takes the connection."""

    def __init__(self, handoff_dir: Path) -> None:
        self.handoffs = Handoffs(Hijacker(handoff_dir))

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        upgrade = "upgrade" in (req.get_header("Connection") or "").lower()
        spec = StreamSpec("upgrade" if upgrade else "chunked", RAW_STREAM)
        self.handoffs.container.attach(
            StreamRequest(req, spec), id=id, stream=flag(req, "stream"),
            logs=flag(req, "logs"), stdin=flag(req, "stdin"), stdout=flag(req, "stdout"),
            stderr=flag(req, "stderr"), detach_keys=text(req, "detachKeys"))


class Wait:
    """Headers go out at once (the CLI starts the container only then); the
    status follows when the container exits, written by the container actor."""

    def __init__(self, handoff_dir: Path) -> None:
        self.handoffs = Handoffs(Hijacker(handoff_dir))

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.handoffs.container.wait(
            StreamRequest(req, StreamSpec("chunked", JSON)), id=id,
            condition=text(req, "condition"))


class Logs:
    def __init__(self, handoff_dir: Path) -> None:
        self.handoffs = Handoffs(Hijacker(handoff_dir))

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.handoffs.container.logs(
            StreamRequest(req, StreamSpec("chunked", RAW_STREAM)), id=id,
            follow=flag(req, "follow"), stdout=flag(req, "stdout"), stderr=flag(req, "stderr"),
            timestamps=flag(req, "timestamps"), tail=text(req, "tail"),
            since=text(req, "since"), until=text(req, "until"))


def add_routes(app: falcon.App, calls: Calls, config: DaemonConfig) -> None:
    app.add_route("/containers/create", Create(calls))
    app.add_route("/containers/json", List(calls))
    app.add_route("/containers/prune", Prune(calls))
    app.add_route("/containers/{id}/json", Inspect(calls))
    app.add_route("/containers/{id}", Item(calls))
    app.add_sink(_container_path_not_found, "/containers/")
    app.add_route("/containers/{id}/rename", Rename(calls))
    app.add_route("/containers/{id}/update", Update(calls))
    app.add_route("/containers/{id}/start", Start(calls))
    app.add_route("/containers/{id}/stop", Stop(calls))
    app.add_route("/containers/{id}/restart", Restart(calls))
    app.add_route("/containers/{id}/kill", Kill(calls))
    app.add_route("/containers/{id}/pause", Pause(calls))
    app.add_route("/containers/{id}/unpause", Unpause(calls))
    app.add_route("/containers/{id}/resize", Resize(calls))
    app.add_route("/containers/{id}/attach", Attach(config.handoff_dir))
    app.add_route("/containers/{id}/wait", Wait(config.handoff_dir))
    app.add_route("/containers/{id}/logs", Logs(config.handoff_dir))
