"""/volumes: list, create, inspect, remove, prune."""

from __future__ import annotations

from typing import Any

import falcon

from pouch.gateway.params import filters, flag, json_body
from pouch.gateway.routing import action_or_item
from pouch.proto.stubs import OMIT, Calls, Omitted


def _field(body: dict[str, Any], key: str) -> Any | Omitted:
    """A body field as given, or OMIT when absent or null (the declared default then)."""
    value = body.get(key)
    return OMIT if value is None else value


class List:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.volume.list(filters=filters(req))


class Item:
    """/volumes/{name} (also /volumes/create and /volumes/prune but for their POST:
    pouch.gateway.routing)."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = self.calls.volume.inspect(name=name)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.calls.volume.remove(name=name, force=flag(req, "force"))
        resp.status = falcon.HTTP_204


class Create:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req)
        resp.media = self.calls.volume.create(
            name=_field(body, "Name"), driver=_field(body, "Driver"),
            driver_opts=_field(body, "DriverOpts"), labels=_field(body, "Labels"))
        resp.status = falcon.HTTP_201


class Prune:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.volume.prune(filters=filters(req))


def add_routes(app: falcon.App, calls: Calls) -> None:
    app.add_route("/volumes", List(calls))
    item = Item(calls)
    app.add_route("/volumes/create", action_or_item(Create(calls), item, name="create"))
    app.add_route("/volumes/prune", action_or_item(Prune(calls), item, name="prune"))
    app.add_route("/volumes/{name}", item)
