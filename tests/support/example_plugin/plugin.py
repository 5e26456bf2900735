"""The example plugin's hooks. What each does is what the tests look for."""

from __future__ import annotations

import json
import os
from typing import Any

from pouch.actors.plugins import (
    ApiExtension,
    ContainerCreate,
    ContainerStart,
    ContainerUpdate,
    ContainerUpdated,
    ImagePulled,
    VolumeCreate,
    set_env,
)
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import invalid
from pouch.tests.support.example_plugin.dist import FAIL_START_ENV, LOG_ENV

LABEL = "io.pouch.example.plugin"
MiB = 1024 * 1024


def record(hook: str, **details: Any) -> None:
    """One JSON line in the log the tests read (each process appends its own)."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    with open(path, "a") as log:
        log.write(json.dumps({"hook": hook, "pid": os.getpid(), **details}) + "\n")


class Ping:
    """GET /example/ping: the plugin is there, and may call the actors."""

    def __init__(self, api: ApiExtension) -> None:
        self.calls = api.calls

    def on_get(self, req: Any, resp: Any) -> None:
        resp.media = {"Ping": "pong", "Containers": self.calls.container.counts()["total"]}


class ExamplePlugin:
    def pre_create(self, request: ContainerCreate) -> None:
        labels = request.config.get("Labels") or {}
        if "example.refuse" in labels:
            raise invalid("containers labelled example.refuse are refused here")
        if "example.crash" in labels:
            raise RuntimeError("the example plugin broke")
        if not request.config.get("Image") and labels.get("example.image"):
            request.config["Image"] = labels["example.image"]  # before the body is checked
        request.config["Labels"] = {**labels, LABEL: "pre_create"}
        request.config["Env"] = [*(request.config.get("Env") or []), "EXAMPLE_PRE_CREATE=1"]
        record("pre_create", name=request.name)

    def pre_start(self, request: ContainerStart) -> None:
        set_env(request.spec, "EXAMPLE_PRE_START", request.id[:12])
        record("pre_start", id=request.id)

    def pre_update(self, request: ContainerUpdate) -> None:
        # A site's rule: memory limits are whole MiB, rounded up.
        memory = request.config.get("Memory") or 0
        if memory % MiB:
            request.config["Memory"] = (memory // MiB + 1) * MiB
        record("pre_update", id=request.id)

    def post_update(self, updated: ContainerUpdated) -> None:
        record("post_update", id=updated.id, rootfs=updated.rootfs, env=updated.env)

    def post_pull(self, image: ImagePulled) -> None:
        record("post_pull", reference=image.reference, image=image.id, digest=image.digest)

    def pre_volume_create(self, request: VolumeCreate) -> None:
        labels = request.config.get("Labels") or {}
        if "example.refuse" in labels:
            raise invalid("volumes labelled example.refuse are refused here")
        request.config["Labels"] = {**labels, LABEL: "pre_volume_create"}
        record("pre_volume_create", name=request.config.get("Name") or "")

    def daemon_pre_start(self, config: DaemonConfig) -> None:
        if os.environ.get(FAIL_START_ENV):
            raise RuntimeError("told not to let pouchd start")
        record("daemon_pre_start", home=str(config.home_dir))

    def daemon_pre_stop(self, config: DaemonConfig) -> None:
        record("daemon_pre_stop", home=str(config.home_dir))

    def update_api(self, api: ApiExtension) -> None:
        api.app.add_route("/example/ping", Ping(api))
