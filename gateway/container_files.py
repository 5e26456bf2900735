"""/containers/{id}/archive, /export and /changes: docker cp both ways, docker export
and docker diff. An archive travels through a spool file in the daemon's tmp folder
(too large for a message, as an image's); an export is a stream the container actor
writes to the handed-over connection."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

import falcon

from pouch.gateway.hijack import Hijacker, StreamRequest
from pouch.gateway.images import spooled
from pouch.gateway.params import flag
from pouch.proto.config import DaemonConfig
from pouch.proto.shapes import PathStat
from pouch.proto.stream import StreamSpec
from pouch.proto.stubs import Calls, Handoffs

TAR = "application/x-tar"
STAT_HEADER = "X-Docker-Container-Path-Stat"


def _path(req: falcon.Request) -> str:
    path = req.get_param("path")
    if not path:
        raise falcon.HTTPBadRequest(description="bad parameter: path cannot be empty")
    return str(path)


def _stat_header(resp: falcon.Response, stat: PathStat) -> None:
    resp.set_header(STAT_HEADER, base64.b64encode(json.dumps(stat).encode()).decode())


class Archive:
    def __init__(self, calls: Calls, spool: Path) -> None:
        self.calls = calls
        self.spool = spool

    def on_head(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        _stat_header(resp, self.calls.container.archive_stat(id=id, path=_path(req)))

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        path = _path(req)
        self.spool.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="cp-", suffix=".tar", dir=self.spool)
        os.close(fd)
        try:
            stat = self.calls.container.archive_get(id=id, path=path, spool=name)
            tarball = open(name, "rb")  # noqa: SIM115 - the response closes it
        finally:
            Path(name).unlink(missing_ok=True)  # open, it stays readable till sent
        _stat_header(resp, stat)
        resp.content_type = TAR
        resp.content_length = os.fstat(tarball.fileno()).st_size
        resp.stream = tarball

    def on_put(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        path = _path(req)
        with spooled(req, self.spool, "cp-") as name:
            self.calls.container.archive_put(
                id=id, path=path, spool=name,
                no_overwrite_dir_non_dir=flag(req, "noOverwriteDirNonDir"),
                copy_uid_gid=flag(req, "copyUIDGID"))
        resp.status = falcon.HTTP_200


class Export:
    """A tar stream as long as the container's files: the container actor writes it."""

    def __init__(self, handoff_dir: Path) -> None:
        self.handoffs = Handoffs(Hijacker(handoff_dir))

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.handoffs.container.export(StreamRequest(req, StreamSpec("chunked", TAR)), id=id)


class Changes:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        # Written out: Falcon sends no body at all for media None, where dockerd says null.
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps(self.calls.container.changes(id=id))


def add_routes(app: falcon.App, calls: Calls, config: DaemonConfig) -> None:
    app.add_route("/containers/{id}/archive", Archive(calls, config.home_dir / "tmp"))
    app.add_route("/containers/{id}/export", Export(config.handoff_dir))
    app.add_route("/containers/{id}/changes", Changes(calls))
