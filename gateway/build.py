"""POST /commit, POST /build and POST /build/prune.

A build's context is the request's body, as large as the client's folder: the
connection is handed over to the builder actor, which reads the context from it and
writes the build's JSON messages on it. What the gateway's event loop read of the
body already (pouch.gateway.worker gathers the first bytes of every request) goes to
the builder in a spool file, so the gateway keeps nothing of the body.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import falcon

from pouch.gateway.hijack import Hijacker, StreamRequest
from pouch.gateway.params import filters, flag, integer, optional_json_body, text
from pouch.proto.config import DaemonConfig
from pouch.proto.limits import check_value
from pouch.proto.stream import JSON, StreamSpec
from pouch.proto.stubs import OMIT, Calls, Handoffs, Omitted


class Commit:
    """docker commit: the container's config (the body, optional) and Dockerfile
    `changes` for the new image."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        container = req.get_param("container")
        if not container:
            raise falcon.HTTPBadRequest(description="container is required")
        resp.media = self.calls.image.commit(
            container=container, repo=text(req, "repo"), tag=text(req, "tag"),
            comment=text(req, "comment"), author=text(req, "author"),
            changes=req.get_param_as_list("changes") or OMIT, pause=flag(req, "pause"),
            config=_or_omit(optional_json_body(req)))
        resp.status = falcon.HTTP_201


def _or_omit(body: dict[str, Any] | None) -> dict[str, Any] | Omitted:
    return OMIT if body is None else body


class Build:
    """docker build (the classic builder): the connection goes to the builder actor."""

    def __init__(self, handoff_dir: Path, spool: Path) -> None:
        self.handoffs = Handoffs(Hijacker(handoff_dir))
        self.spool = spool

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        remote = req.get_param("remote")
        if remote:
            # Never fetched: a daemon that cannot reach it would hang on it, and one that
            # can would build what its client never saw.
            raise falcon.HTTPBadRequest(description=(
                f"cannot build from the remote context {remote}: this daemon builds from "
                "the context sent as the request's body only (docker build fetches a URL "
                "or clones a git repository itself, then sends it)"))
        if flag(req, "squash") is True:  # dockerd 20.10's answer without experimental mode
            raise falcon.HTTPBadRequest(description="squash is only supported with "
                                                    "experimental mode")
        chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
        length = req.content_length
        if not chunked and length is None:
            length = 0
        options = {
            "tags": req.get_param_as_list("t") or [],
            # The first, as dockerd reads it: docker-py sends a Dockerfile from outside
            # the context as two values, its name in the context, then its text.
            "dockerfile": (req.get_param_as_list("dockerfile") or [""])[0],
            "buildargs": _json_param(req, "buildargs"),
            "labels": _json_param(req, "labels"),
            "target": req.get_param("target") or "",
            "nocache": flag(req, "nocache"), "pull": req.get_param("pull") or "",
            "rm": flag(req, "rm"), "forcerm": flag(req, "forcerm"), "q": flag(req, "q"),
            "cachefrom": _json_param(req, "cachefrom", list),
            "networkmode": req.get_param("networkmode") or "",
            "extrahosts": req.get_param("extrahosts") or "",
            "shmsize": integer(req, "shmsize"),
            "platform": req.get_param("platform") or "",
        }
        given = {key: value for key, value in options.items() if value is not OMIT}
        with self._head(req) as head:
            self.handoffs.builder.build(
                StreamRequest(req, StreamSpec("chunked", JSON)), head=head,
                chunked=chunked, length=-1 if length is None else length, options=given)

    @contextlib.contextmanager
    def _head(self, req: falcon.Request) -> Any:
        """What the gateway read of the body already, in a spool file the builder reads
        (and removes); removed here if the hand-off failed, and those bytes given back
        to the connection's reader, which reads past the body before the connection's
        next request (else it would take that request's first bytes for the body's)."""
        given = req.env.get("wsgi.input")
        reader = getattr(given, "reader", None)
        # gunicorn's readers: a length's holds the connection's reader, chunked's its request.
        unreader = getattr(reader, "unreader", None) or getattr(
            getattr(reader, "req", None), "unreader", None)
        if unreader is not None:
            data = unreader.take_buffered()
        else:  # a plain request's (gateway.plain): the whole body, read with the head
            data = given.read() if isinstance(given, io.BytesIO) else b""
        self.spool.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="build-", suffix=".head", dir=self.spool)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            yield name
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            if unreader is not None:
                unreader.unread(data)
            raise


def _json_param(req: falcon.Request, name: str, kind: type = dict) -> Any:
    raw = req.get_param(name)
    if not raw:
        return OMIT
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise falcon.HTTPBadRequest(description=f"invalid {name}: {exc}") from None
    if value is None:
        return OMIT
    if not isinstance(value, kind):
        raise falcon.HTTPBadRequest(description=f"invalid {name}: not a JSON {kind.__name__}")
    check_value(value, name)
    return value


class BuildPrune:
    """docker builder prune: the build cache's entries dropped (the images they name
    are kept unless nothing else uses them)."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.builder.prune(all=flag(req, "all"), filters=filters(req))


def add_routes(app: falcon.App, calls: Calls, config: DaemonConfig) -> None:
    app.add_route("/commit", Commit(calls))
    app.add_route("/build", Build(config.handoff_dir, config.home_dir / "tmp"))
    app.add_route("/build/prune", BuildPrune(calls))
