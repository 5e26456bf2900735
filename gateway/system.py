"""/_ping, /version, /info, /system/df, /events, /metrics, /auth, /daemon/update."""

from __future__ import annotations

from pathlib import Path

import falcon

from pouch.gateway.hijack import Hijacker, StreamRequest
from pouch.gateway.params import filters, json_body, text
from pouch.proto.stream import JSON, StreamSpec
from pouch.proto.stubs import Calls, Handoffs


class Ping:
    """Answers without asking any actor: a degraded daemon still says it is there."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "OK"
        resp.set_header("Cache-Control", "no-cache, no-store, must-revalidate")
        resp.set_header("Pragma", "no-cache")
        resp.set_header("Builder-Version", "1")

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.on_get(req, resp)
        resp.text = None
        resp.content_length = 2


class Version:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.system.version()


class Info:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.system.info()


class DiskUsage:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.system.disk_usage()


class Events:
    """GET /events: a stream that outlives the request, so the system actor writes it."""

    def __init__(self, handoff_dir: Path) -> None:
        self.handoffs = Handoffs(Hijacker(handoff_dir))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.handoffs.system.watch(StreamRequest(req, StreamSpec("chunked", JSON)),
                                   since=text(req, "since"), until=text(req, "until"),
                                   filters=filters(req))


class Auth:
    """docker login: the credentials checked against their registry; nothing is kept."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req)
        fields = {key: body.get(key) or "" for key in
                  ("serveraddress", "username", "password", "identitytoken")}
        if not all(isinstance(value, str) for value in fields.values()):
            raise falcon.HTTPBadRequest(description=(
                "serveraddress, username, password and identitytoken must be strings"))
        resp.media = self.calls.image.login(**fields)


class DaemonUpdate:
    """pouchd's POST /daemon/update: settings changed while the daemon runs."""

    CHANGEABLE = ("ImageProxy", "Labels")

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req)
        fixed = sorted(set(body) - set(self.CHANGEABLE))
        if fixed:
            raise falcon.HTTPBadRequest(description=(
                f"{', '.join(fixed)} cannot be changed at run time; "
                f"what can: {', '.join(self.CHANGEABLE)}"))
        proxy = body.get("ImageProxy")
        if proxy is not None and not isinstance(proxy, str):
            raise falcon.HTTPBadRequest(description="ImageProxy must be a string")
        labels = body.get("Labels")
        if labels is not None and not (isinstance(labels, list) and
                                       all(isinstance(label, str) for label in labels)):
            raise falcon.HTTPBadRequest(description="Labels must be a list of strings")
        self.calls.supervisor.update(image_proxy=proxy, labels=labels)
        resp.status = falcon.HTTP_200


class Metrics:
    """Every actor process's metrics, gathered by the system actor (Prometheus text)."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.text = self.calls.system.all_metrics()


def add_routes(app: falcon.App, calls: Calls, handoff_dir: Path) -> None:
    app.add_route("/_ping", Ping())
    app.add_route("/events", Events(handoff_dir))
    app.add_route("/metrics", Metrics(calls))
    app.add_route("/version", Version(calls))
    app.add_route("/info", Info(calls))
    app.add_route("/system/df", DiskUsage(calls))
    app.add_route("/auth", Auth(calls))
    app.add_route("/daemon/update", DaemonUpdate(calls))
