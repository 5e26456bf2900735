"""/images: load, save, pull, push, list, inspect, history, tag, remove, prune."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

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
        with spooled(req, self.spool, "load-") as name:
            loaded = self.calls.image.load(path=name)
        # `quiet` only silences progress, of which a local load has none.
        lines = [{"stream": f"Loaded image: {ref}\n"} for ref in loaded["names"]]
        lines += [{"stream": f"Loaded image ID: {i}\n"} for i in loaded["untagged"]]
        resp.content_type = falcon.MEDIA_JSON
        resp.text = "".join(json.dumps(line) + "\n" for line in lines)


@contextlib.contextmanager
def spooled(req: falcon.Request, folder: Path, prefix: str) -> Iterator[str]:
    """The request's body (an archive) in a spool file the image actor reads, for the
    block: a body this size belongs neither in memory nor in a message."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tar", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            received = spool(req, out)
        if req.content_length is not None and received < req.content_length:
            raise falcon.HTTPBadRequest(description=(
                f"the archive ended after {received} of {req.content_length} bytes"))
        yield name
    finally:
        Path(name).unlink(missing_ok=True)


def spool(req: falcon.Request, out: BinaryIO) -> int:
    """Copy the request's body to `out`, a chunk at a time (with a length or chunked);
    how many bytes it had."""
    received = 0
    try:
        while chunk := req.stream.read(CHUNK):
            out.write(chunk)
            received += len(chunk)
    except ClientStalled:
        raise falcon.HTTPError(falcon.HTTP_408, description=(
            f"the archive stopped coming after {received} bytes")) from None
    return received


class Save:
    """GET /images/get?names=a&names=b: several images in one docker-save archive."""

    def __init__(self, calls: Calls, spool: Path) -> None:
        self.calls = calls
        self.spool = spool

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_archive(self.calls, self.spool, req.get_param_as_list("names") or [], resp)


def send_archive(calls: Calls, spool: Path, names: list[str], resp: falcon.Response) -> None:
    """Answer with the docker-save archive of `names`, which the image actor writes to a
    spool file: an archive is as large as its images, too large for a message."""
    spool.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="save-", suffix=".tar", dir=spool)
    os.close(fd)
    try:
        calls.image.save(names=names, path=name)
        archive = open(name, "rb")  # noqa: SIM115 - the response closes it
    finally:
        # Open, it stays readable; gone from the folder, it leaves no file behind
        # however the response ends (sent, or dropped by a client that left).
        Path(name).unlink(missing_ok=True)
    resp.content_type = "application/x-tar"
    resp.content_length = os.fstat(archive.fileno()).st_size
    resp.stream = archive


class Create:
    """POST /images/create?fromImage=: a pull, answered in Docker's progress messages."""

    def __init__(self, calls: Calls, spool: Path) -> None:
        self.calls = calls
        self.spool = spool

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        image = req.get_param("fromImage")
        if not image:
            source = req.get_param("fromSrc")
            if not source:
                raise falcon.HTTPBadRequest(description="fromImage or fromSrc is required")
            self.import_rootfs(req, resp, source)
            return
        stream_progress(resp, self.calls.image.pull(
            image=image, tag=req.get_param("tag") or "",
            platform=req.get_param("platform") or "",
            auth=req.get_header("X-Registry-Auth") or ""))

    def import_rootfs(self, req: falcon.Request, resp: falcon.Response, source: str) -> None:
        """docker import: the tarball is the request's body (fromSrc=-)."""
        if source != "-":
            raise falcon.HTTPBadRequest(description=(
                "pouch imports only the request's body (fromSrc=-), not from a URL"))
        with spooled(req, self.spool, "import-") as name:
            image_id = self.calls.image.import_rootfs(
                path=name, repo=req.get_param("repo") or "", tag=req.get_param("tag") or "",
                changes=req.get_param_as_list("changes") or [],
                message=req.get_param("message") or "")
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"status": image_id}) + "\n"


def stream_progress(resp: falcon.Response, messages: Iterable[Any]) -> None:
    """Answer with a pull's or push's progress messages. As dockerd: an error before the
    first message is the request's (404 for an unknown image); once the stream began,
    it is the stream's last message."""
    rest = iter(messages)
    first = next(rest)
    resp.content_type = falcon.MEDIA_JSON
    resp.stream = progress_lines(first, rest)


def progress_lines(first: Any, rest: Iterator[Any]) -> Iterator[bytes]:
    """Docker's JSON message stream; an error ends it as an `errorDetail` message. Closed
    early (the client left), it cancels the operation."""
    try:
        yield json.dumps(first).encode() + b"\n"
        for message in rest:
            yield json.dumps(message).encode() + b"\n"
    except PouchError as exc:
        yield json.dumps({"errorDetail": {"message": exc.message},
                          "error": exc.message}).encode() + b"\n"
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


class Prune:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.image.prune(filters=filters(req))


class List:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.image.list(all=flag(req, "all"), filters=filters(req))


class Named:
    """Paths that name an image. A name may hold slashes, which Falcon's templates do not
    match, so one sink serves them all and picks by method and suffix, as dockerd's router
    does (a DELETE of `a/json` removes the image `a/json`)."""

    PATH = re.compile(r"^/images/(?P<rest>.+)$")
    # (method, suffix) -> handler; ROUTES names them as the OpenAPI document does.
    SUFFIXES = {("GET", "/json"): "inspect", ("GET", "/history"): "history",
                ("GET", "/get"): "save",
                ("POST", "/tag"): "tag", ("POST", "/push"): "push", ("DELETE", ""): "remove"}
    ROUTES = {f"/images/{{name}}{suffix}": method for method, suffix in SUFFIXES}

    def __init__(self, calls: Calls, spool: Path) -> None:
        self.calls = calls
        self.spool = spool

    def __call__(self, req: falcon.Request, resp: falcon.Response, **groups: str) -> None:
        rest = groups["rest"]
        for (method, suffix), handler in self.SUFFIXES.items():
            if req.method == method and rest.endswith(suffix) and len(rest) > len(suffix):
                getattr(self, handler)(req, resp, rest[:len(rest) - len(suffix)])
                return
        if any(rest.endswith(suffix) for _, suffix in self.SUFFIXES if suffix):
            raise falcon.HTTPMethodNotAllowed(
                [m for m, suffix in self.SUFFIXES if suffix and rest.endswith(suffix)])
        raise falcon.HTTPNotFound(description="page not found")

    def inspect(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = self.calls.image.inspect(name=name)

    def history(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = self.calls.image.history(name=name)

    def save(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        send_archive(self.calls, self.spool, [name], resp)

    def tag(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        repo = req.get_param("repo")
        if not repo:
            raise falcon.HTTPBadRequest(description="repo is required")
        self.calls.image.tag(name=name, repo=repo, tag=req.get_param("tag") or "")
        resp.status = falcon.HTTP_201

    def push(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        stream_progress(resp, self.calls.image.push(
            name=name, tag=req.get_param("tag") or "",
            auth=req.get_header("X-Registry-Auth") or ""))

    def remove(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = self.calls.image.remove(name=name, force=flag(req, "force"),
                                             noprune=flag(req, "noprune"))


def add_routes(app: falcon.App, calls: Calls, config: DaemonConfig) -> None:
    app.add_route("/images/load", Load(calls, config.home_dir / "tmp"))
    app.add_route("/images/json", List(calls))
    app.add_route("/images/prune", Prune(calls))
    app.add_route("/images/create", Create(calls, config.home_dir / "tmp"))
    app.add_route("/images/get", Save(calls, config.home_dir / "tmp"))
    app.add_sink(Named(calls, config.home_dir / "tmp"), Named.PATH)
