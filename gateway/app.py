"""The Falcon app serving Docker Engine API 1.41 on versioned and plain paths."""

from __future__ import annotations

import re
from typing import Any

import falcon

from pouch.actors import plugins  # self-contained: it imports nothing of the actors
from pouch.broker.client import ClientPool
from pouch.gateway import (
    build,
    container_files,
    container_stats,
    containers,
    errors,
    images,
    system,
)
from pouch.gateway import exec as exec_routes
from pouch.gateway import networks as network_routes
from pouch.gateway import volumes as volume_routes
from pouch.proto.config import DaemonConfig
from pouch.proto.docker import API_VERSION, MIN_API_VERSION
from pouch.proto.stubs import Calls

_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def _as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


_NEWEST, _OLDEST = _as_tuple(API_VERSION), _as_tuple(MIN_API_VERSION)


class ApiVersion:
    """Strips `/v1.NN` from the path (after checking it) and adds Docker's headers."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        match = _VERSIONED.match(req.path)
        req.context.api_version = API_VERSION
        if not match:
            return
        major, minor, rest = match.groups()
        version = (int(major), int(minor))
        asked = f"{version[0]}.{version[1]}"
        if version > _NEWEST:
            raise falcon.HTTPBadRequest(description=(
                f"client version {asked} is too new. Maximum supported API version is "
                f"{API_VERSION}"))
        if version < _OLDEST:
            raise falcon.HTTPBadRequest(description=(
                f"client version {asked} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version"))
        req.context.api_version = asked
        req.path = rest

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        resp.set_header("Api-Version", API_VERSION)
        resp.set_header("Docker-Experimental", "false")
        resp.set_header("Ostype", "linux")
        resp.set_header("Server", "pouch (linux)")


def _page_not_found(req: falcon.Request, resp: falcon.Response, **_: str) -> None:
    raise falcon.HTTPNotFound(description="page not found")


def create_app(config: DaemonConfig, calls: ClientPool | None = None) -> falcon.App:
    typed = Calls(calls or ClientPool(config.broker_endpoint, direct_dir=config.direct_dir))
    app = falcon.App(middleware=[ApiVersion()])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    errors.register(app)
    app.add_sink(_page_not_found, "/")
    system.add_routes(app, typed, config.handoff_dir)
    images.add_routes(app, typed, config)
    containers.add_routes(app, typed, config)
    container_files.add_routes(app, typed, config)
    container_stats.add_routes(app, typed, config)
    build.add_routes(app, typed, config)
    exec_routes.add_routes(app, typed, config)
    volume_routes.add_routes(app, typed)
    network_routes.add_routes(app, typed)
    # Last: a plugin's route may replace (wrap) one of ours.
    plugins.loaded().update_api(plugins.ApiExtension(app, typed, config))
    return app
