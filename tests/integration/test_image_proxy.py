"""The image proxy: pulls go through it, and it changes while pouchd runs, through
pouchd's POST /daemon/update or a SIGHUP that reads the config file again; a change
outlives a crash of the image actor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import docker
import pytest

from pouch.tests.integration.test_image_pull import publish_busybox
from pouch.tests.support.daemon import CLOSED_PROXY, PouchDaemon, running
from pouch.tests.support.forward import recording_proxy
from pouch.tests.support.registry import Registry
from pouch.tests.support.wait import wait_for

# A name that resolves nowhere: only a proxy reaches the registry by it.
REGISTRY = "registry.pouch.test:5000"
IMAGE = f"{REGISTRY}/demo/proxied:v1"


def update(api: docker.APIClient, body: dict[str, object]) -> tuple[int, str]:
    reply = api.post(api._url("/daemon/update"), json=body)
    return reply.status_code, reply.text


def info_proxy(api: docker.APIClient) -> str:
    return str(api.info()["HttpProxy"])


def pull_through(pouchd: PouchDaemon, seen: bytearray) -> None:
    """Pull IMAGE, which must go through the proxy that recorded `seen`, then drop it."""
    before = len(seen)
    pulled = pouchd.docker_result("pull", IMAGE)
    assert pulled.returncode == 0, pulled.stderr
    assert f"GET http://{REGISTRY}/v2/demo/proxied/manifests/v1".encode() in seen[before:]
    pouchd.docker("rmi", IMAGE)


def test_the_image_proxy_changes_at_run_time_and_outlives_an_actor_crash(
        busybox_tarball: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"insecure-registry": [REGISTRY]}))
    daemon = PouchDaemon(extra_args=["--config-file", str(config)])
    with contextlib.ExitStack() as stack:
        registry = stack.enter_context(Registry())
        publish_busybox(registry, "demo/proxied", "v1")
        first, seen_first = stack.enter_context(recording_proxy(registry.port))
        second, seen_second = stack.enter_context(recording_proxy(registry.port))
        pouchd = stack.enter_context(running(busybox_tarball, daemon))
        api = stack.enter_context(docker.APIClient(base_url=pouchd.host, version="1.41"))

        # No proxy of its own: the environment's, a closed port here.
        failed = pouchd.docker_result("pull", IMAGE)
        assert failed.returncode != 0 and CLOSED_PROXY in failed.stderr, failed.stderr
        assert info_proxy(api) == CLOSED_PROXY

        assert update(api, {"ImageProxy": first}) == (200, "")
        assert info_proxy(api) == first
        pull_through(pouchd, seen_first)

        old = pouchd.pid_of("image")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: pouchd.pid_of("image") != old and api.images() is not None, 30,
                 "a new image actor")
        pull_through(pouchd, seen_first)

        # A SIGHUP reads the config file again: its proxy replaces the one set at run time.
        config.write_text(json.dumps({"insecure-registry": [REGISTRY], "image-proxy": second}))
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: info_proxy(api) == second, 10, "the reloaded proxy in /info")
        pull_through(pouchd, seen_second)

        assert update(api, {"ImageProxy": ""}) == (200, "")
        assert info_proxy(api) == CLOSED_PROXY
        assert pouchd.docker_result("pull", IMAGE).returncode != 0


@pytest.mark.parametrize(("body", "named"), [
    ({"ImageProxy": "ftp://proxy.example:21"}, "is not an http:// or https:// URL"),
    ({"ImageProxy": "http://proxy.example:port"}, "proxy.example:port"),
    ({"ImageProxy": 3128}, "ImageProxy must be a string"),
    ({"Debug": True}, "Debug cannot be changed at run time"),
    ({}, "daemon update config cannot be empty"),
])
def test_a_bad_update_is_refused_and_changes_nothing(pouchd: PouchDaemon,
                                                     body: dict[str, object], named: str):
    with docker.APIClient(base_url=pouchd.host, version="1.41") as api:
        before = info_proxy(api)
        status, text = update(api, body)
        assert status == 400 and named in json.loads(text)["message"], text
        assert info_proxy(api) == before
