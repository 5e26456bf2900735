"""/images: load, list, inspect."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

import falcon

from pouch.gateway.params import filters, flag
from pouch.gateway.worker import ClientStalled
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError
from pouch.proto.stubs import Calls

CHUNK = 1 << 20


class Load:
    def __init__(self, calls: Calls, spool: Path) -> None:
        self.calls = calls
        self.spool = spool

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The archive goes to a spool file the image actor reads, a chunk at a
        # time (with a length or chunked): a body this size belongs neither in
        # memory nor in a message.
        self.spool.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="load-", suffix=".tar", dir=self.spool)
        try:
            with os.fdopen(fd, "wb") as out:
                received = spool(req, out)
            if req.content_length is not None and received < req.content_length:
                raise falcon.HTTPBadRequest(description=(
                    f"the archive ended after {received} of {req.content_length} bytes"))
            loaded = self.calls.image.load(path=name)
        finally:
            Path(name).unlink(missing_ok=True)
        # `quiet` only silences progress, of which a local load has none.
        lines = [{"stream": f"Loaded image: {ref}\n"} for ref in loaded["names"]]
        lines += [{"stream": f"Loaded image ID: {i}\n"} for i in loaded["untagged"]]
        resp.content_type = falcon.MEDIA_JSON
        resp.text = "".join(json.dumps(line) + "\n" for line in lines)


def spool(req: falcon.Request, out: BinaryIO) -> int:
    """Copy the request's body to `out`; how many bytes it had."""
    received = 0
    try:
        while chunk := req.stream.read(CHUNK):
            out.write(chunk)
            received += len(chunk)
    except ClientStalled:
        raise falcon.HTTPError(falcon.HTTP_408, description=(
            f"the archive stopped coming after {received} bytes")) from None
    return received


class Create:
    """POST /images/create (pull, import): not served yet, so the CLI's automatic pull
    of a missing image ends in a clear 404 rather than a generic one."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        image = req.get_param("fromImage") or req.get_param("fromSrc") or ""
        tag = req.get_param("tag")
        wanted = f"{image}:{tag}" if tag and "@" not in image else image
        raise PouchError("not_found", f"No such image: {wanted} (pouch cannot pull images "
                                      "yet: load them with docker load)")


class List:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.image.list(all=flag(req, "all"), filters=filters(req))


class Named:
    """/images/{name}/json, where the name may hold slashes (a sink, not a route)."""

    PATH = re.compile(r"^/images/(?P<name>.+)/json$")
    TEMPLATE = "/images/{name}/json"  # as the OpenAPI document names it
    METHODS = ("GET",)

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def __call__(self, req: falcon.Request, resp: falcon.Response, **groups: str) -> None:
        if req.method not in self.METHODS:
            raise falcon.HTTPMethodNotAllowed(list(self.METHODS))
        resp.media = self.calls.image.inspect(name=groups["name"])


def add_routes(app: falcon.App, calls: Calls, config: DaemonConfig) -> None:
    app.add_route("/images/load", Load(calls, config.home_dir / "tmp"))
    app.add_route("/images/json", List(calls))
    app.add_route("/images/create", Create())
    app.add_sink(Named(calls), Named.PATH)
