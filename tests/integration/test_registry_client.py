"""The registry client against real registries: docker-registry 2.8 on loopback, open,
behind Basic auth and behind a token server; and a server that answers garbage."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pouch.actors.containerd.types import Descriptor
from pouch.actors.image.reference import parse
from pouch.actors.image.registry import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    Credentials,
    Registry,
    RegistryConfig,
    Resolved,
    login,
)
from pouch.proto.envelope import PouchError
from pouch.tests.support import registry as test_registry
from pouch.tests.support.registry import free_port, image_config, layer, publish

USERS = {"alice": "wonderland"}
ALICE = Credentials("alice", "wonderland")
ALICE_AUTH = ("alice", "wonderland")
WRONG_CREDENTIALS = "unauthorized: incorrect username or password"
LAYERS = [layer({"etc/hello": b"hello\n"}), layer({"bin/tool": b"#!/bin/sh\necho tool\n" * 50})]
CONFIG = image_config(LAYERS)


@pytest.fixture(scope="module")
def open_registry() -> Iterator[test_registry.Registry]:
    with test_registry.Registry() as registry:
        publish(registry.url, "team/app", "v1", LAYERS, CONFIG)
        yield registry


@pytest.fixture(scope="module")
def basic_registry() -> Iterator[test_registry.Registry]:
    with test_registry.Registry(auth="htpasswd", users=USERS) as registry:
        publish(registry.url, "private/app", "v1", LAYERS, CONFIG, auth=ALICE_AUTH)
        yield registry


@pytest.fixture(scope="module")
def token_registry() -> Iterator[test_registry.Registry]:
    with test_registry.Registry(auth="token", users=USERS) as registry:
        publish(registry.url, "private/app", "v1", LAYERS, CONFIG, auth=ALICE_AUTH)
        yield registry


def client(name: str, credentials: Credentials | None = None,
           config: RegistryConfig | None = None) -> Registry:
    return Registry(config or RegistryConfig(timeout=10), parse(name), credentials)


def pull(registry: Registry, platform: str = "linux/amd64") -> tuple[Resolved, dict[str, Any]]:
    """Resolve and fetch every blob, as a pull does; the manifest and the image config."""
    resolved = registry.resolve(platform)
    manifest = json.loads(resolved.manifest)
    for described in manifest["layers"]:
        blob = b"".join(registry.fetch_blob(descriptor(described)))
        assert hashlib.sha256(blob).hexdigest() == described["digest"].removeprefix("sha256:")
    config = b"".join(registry.fetch_blob(descriptor(manifest["config"])))
    return resolved, json.loads(config)


def descriptor(described: dict[str, Any]) -> Descriptor:
    return {"media_type": described["mediaType"], "digest": described["digest"],
            "size": described["size"]}


def error_of(call: Callable[[], object]) -> PouchError:
    with pytest.raises(PouchError) as caught:
        call()
    return caught.value


# --- pulling ---------------------------------------------------------------------------


def test_anonymous_pull_resolves_and_fetches_verified_blobs(open_registry):
    with client(f"{open_registry.host}/team/app:v1") as registry:
        resolved, config = pull(registry)
    assert resolved.media_type == DOCKER_MANIFEST
    assert resolved.index_digest is None
    assert resolved.endpoint.url == open_registry.url
    assert resolved.digest == "sha256:" + hashlib.sha256(resolved.manifest).hexdigest()
    assert config["rootfs"] == CONFIG["rootfs"]


def test_pull_by_digest_checks_what_comes_back(open_registry):
    with client(f"{open_registry.host}/team/app:v1") as registry:
        digest = registry.resolve().digest
    with client(f"{open_registry.host}/team/app@{digest}") as registry:
        assert registry.resolve().digest == digest
    absent = "sha256:" + "0" * 64
    with client(f"{open_registry.host}/team/app@{absent}") as registry:
        error = error_of(registry.resolve)
    assert error.code == "not_found"
    assert "not found: manifest unknown" in error.message


def test_unknown_tag_and_repository_are_not_found(open_registry):
    for name in ("team/app:nope", "team/nothing:v1"):
        with client(f"{open_registry.host}/{name}") as registry:
            error = error_of(registry.resolve)
        assert error.code == "not_found"
        assert error.message == (
            f"manifest for {open_registry.host}/{name} not found: manifest unknown"
        )


def test_manifest_list_picks_the_platform(open_registry):
    digest = publish(open_registry.url, "multi/app", "v1", LAYERS, CONFIG,
                     manifest_list_platforms=["linux/arm64/v8", "linux/amd64"])
    with client(f"{open_registry.host}/multi/app:v1") as registry:
        resolved, config = pull(registry)
        arm, arm_config = pull(registry, "linux/arm64")
        error = error_of(lambda: registry.resolve("linux/s390x"))
    assert resolved.index_digest == digest
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert arm.index_digest == digest and arm.digest != resolved.digest
    assert (arm_config["architecture"], arm_config["variant"]) == ("arm64", "v8")
    assert error.code == "not_found"
    assert error.message == "no matching manifest for linux/s390x in the manifest list entries"


def test_oci_index_picks_the_platform(open_registry):
    digest = publish(open_registry.url, "multi/oci", "v1", LAYERS, CONFIG, oci=True,
                     manifest_list_platforms=["linux/amd64", "linux/arm/v7"])
    with client(f"{open_registry.host}/multi/oci:v1") as registry:
        resolved, config = pull(registry, "linux/arm/v7")
    assert resolved.index_digest == digest
    assert resolved.media_type == OCI_MANIFEST
    assert (config["architecture"], config["variant"]) == ("arm", "v7")


def test_corrupted_blob_is_invalid_after_its_last_chunk(open_registry):
    layers = [layer({"corrupt/me": b"payload" * 1000})]
    publish(open_registry.url, "team/corrupt", "v1", layers, image_config(layers))
    with client(f"{open_registry.host}/team/corrupt:v1") as registry:
        described = json.loads(registry.resolve().manifest)["layers"][0]
        open_registry.corrupt_blob(described["digest"])
        chunks = registry.fetch_blob(descriptor(described), chunk_size=1024)
        received = next(chunks)
        error = error_of(lambda: list(chunks))
    assert received
    assert error.code == "invalid"
    assert error.message.startswith(f"blob {described['digest']} has digest sha256:")
    assert error.message.endswith("not the one its manifest names")


def test_loopback_registry_is_reached_past_a_dead_proxy(open_registry, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    config = RegistryConfig(proxy=dead, timeout=10)
    with client(f"{open_registry.host}/team/app:v1", config=config) as registry:
        _, image = pull(registry)
    assert image["rootfs"] == CONFIG["rootfs"]


def test_unreachable_registry_is_unavailable_naming_it():
    port = free_port()
    with client(f"127.0.0.1:{port}/team/app:v1") as registry:
        error = error_of(registry.resolve)
    assert error.code == "unavailable"
    assert f"http://127.0.0.1:{port}" in error.message
    assert "Connection refused" in error.message


# --- auth ------------------------------------------------------------------------------


def test_basic_auth_with_right_credentials_pulls(basic_registry):
    with client(f"{basic_registry.host}/private/app:v1", ALICE) as registry:
        _, config = pull(registry)
    assert config["rootfs"] == CONFIG["rootfs"]


def test_basic_auth_without_credentials_is_denied_like_dockerd(basic_registry):
    with client(f"{basic_registry.host}/private/app:v1") as registry:
        error = error_of(registry.resolve)
    assert error.code == "not_found"
    assert error.message == (
        f"pull access denied for {basic_registry.host}/private/app, repository does not "
        "exist or may require 'docker login'"
    )


def test_basic_auth_with_wrong_credentials_says_so(basic_registry):
    with client(f"{basic_registry.host}/private/app:v1", Credentials("alice", "no")) as registry:
        error = error_of(registry.resolve)
    assert (error.code, error.message) == ("invalid", WRONG_CREDENTIALS)


def test_bearer_token_pull_asks_the_token_server_for_the_pull_scope(token_registry):
    assert token_registry.tokens is not None
    token_registry.tokens.requests.clear()
    with client(f"{token_registry.host}/private/app:v1", ALICE) as registry:
        _, config = pull(registry)
    assert config["rootfs"] == CONFIG["rootfs"]
    asked = token_registry.tokens.requests
    assert asked[0]["user"] == "alice"
    assert asked[0]["scopes"] == ["repository:private/app:pull"]
    assert len(asked) == 1, "the token is cached for the blobs"


def test_bearer_token_refused_to_anonymous_and_wrong_credentials(token_registry):
    with client(f"{token_registry.host}/private/app:v1") as registry:
        error = error_of(registry.resolve)
    assert error.code == "not_found"
    assert error.message.startswith(f"pull access denied for {token_registry.host}/private/app")
    with client(f"{token_registry.host}/private/app:v1", Credentials("alice", "x")) as registry:
        error = error_of(registry.resolve)
    assert (error.code, error.message) == ("invalid", WRONG_CREDENTIALS)


def test_identity_token_and_registry_token_are_honoured(token_registry):
    tokens = token_registry.tokens
    assert tokens is not None
    refresh = Credentials(identity_token=tokens.refresh_token_for("alice"))
    with client(f"{token_registry.host}/private/app:v1", refresh) as registry:
        assert registry.resolve().media_type == DOCKER_MANIFEST
    assert tokens.requests[-1]["method"] == "POST"
    bearer = Credentials(registry_token=tokens.issue("alice", ["repository:private/app:pull"]))
    with client(f"{token_registry.host}/private/app:v1", bearer) as registry:
        _, config = pull(registry)
    assert config["rootfs"] == CONFIG["rootfs"]


def test_login_checks_credentials(basic_registry, token_registry, open_registry):
    config = RegistryConfig(timeout=10)
    for registry in (basic_registry, token_registry):
        assert login(config, registry.host, ALICE) == "Login Succeeded"
        with pytest.raises(PouchError) as caught:
            login(config, registry.host, Credentials("alice", "no"))
        assert (caught.value.code, caught.value.message) == ("invalid", WRONG_CREDENTIALS)
    assert login(config, open_registry.host, ALICE) == "Login Succeeded"


# --- mirrors ---------------------------------------------------------------------------


def test_registry_mirror_serves_docker_hub_names(open_registry):
    publish(open_registry.url, "library/mirrored", "latest", LAYERS, CONFIG)
    dead = f"http://127.0.0.1:{free_port()}"
    config = RegistryConfig(mirrors=(dead, open_registry.url), timeout=10)
    with client("mirrored", config=config) as registry:
        resolved, _ = pull(registry)
    assert resolved.endpoint.url == open_registry.url
    assert resolved.endpoint.mirror


def test_hosts_toml_mirror_serves_another_registry(open_registry, tmp_path):
    publish(open_registry.url, "pause", "3.9", LAYERS, CONFIG)
    folder = tmp_path / "registry.k8s.io"
    folder.mkdir()
    (folder / "hosts.toml").write_text(
        f'[host."{open_registry.url}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    config = RegistryConfig(hosts_dir=tmp_path, timeout=10)
    with client("registry.k8s.io/pause:3.9", config=config) as registry:
        resolved, _ = pull(registry)
    assert resolved.endpoint.url == open_registry.url


def test_a_mirror_without_the_image_falls_through_to_the_server(open_registry, tmp_path):
    with test_registry.Registry() as upstream:
        publish(upstream.url, "only/upstream", "v1", LAYERS, CONFIG)
        folder = tmp_path / "quay.io"
        folder.mkdir()
        (folder / "hosts.toml").write_text(
            f'server = "{upstream.url}"\n[host."{open_registry.url}"]\n'
        )
        config = RegistryConfig(hosts_dir=tmp_path, timeout=10)
        with client("quay.io/only/upstream:v1", config=config) as registry:
            resolved, _ = pull(registry)
    assert resolved.endpoint.url == upstream.url
    assert not resolved.endpoint.mirror


# --- pushing ---------------------------------------------------------------------------


def push_image(registry: Registry, layers: list[bytes]) -> bytes:
    config_bytes = json.dumps(image_config(layers)).encode()
    described = []
    for blob, media_type in [(config_bytes, test_registry.DOCKER_CONFIG),
                             *[(data, test_registry.DOCKER_LAYER) for data in layers]]:
        item: Descriptor = {"media_type": media_type, "digest": test_registry.digest_of(blob),
                            "size": len(blob)}
        if not registry.blob_exists(item["digest"]):
            registry.push_blob(item, [blob[i:i + 100] for i in range(0, len(blob), 100)])
        assert registry.blob_exists(item["digest"])
        described.append({"mediaType": media_type, "digest": item["digest"],
                          "size": item["size"]})
    return json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                       "config": described[0], "layers": described[1:]}).encode()


@pytest.mark.parametrize("mode", ["open", "token"])
def test_push_mount_and_pull_back(mode, open_registry, token_registry):
    server = open_registry if mode == "open" else token_registry
    credentials = ALICE if mode == "token" else None
    layers = [layer({"pushed/file": f"pushed by {mode}".encode()})]
    with client(f"{server.host}/pushed/app:v1", credentials) as registry:
        body = push_image(registry, layers)
        digest = registry.put_manifest("v1", DOCKER_MANIFEST, body)
    assert digest == test_registry.digest_of(body)
    with client(f"{server.host}/pushed/other:v1", credentials) as registry:
        layer_digest = test_registry.digest_of(layers[0])
        assert not registry.blob_exists(layer_digest)
        assert registry.mount_blob(layer_digest, "pushed/app")
        assert registry.blob_exists(layer_digest)
    with client(f"{server.host}/pushed/app:v1", credentials) as registry:
        resolved, _ = pull(registry)
    assert (resolved.digest, resolved.manifest) == (digest, body)


def test_push_with_a_wrong_digest_is_refused(open_registry):
    with client(f"{open_registry.host}/pushed/bad:v1") as registry:
        item: Descriptor = {"media_type": "x", "digest": "sha256:" + "1" * 64, "size": 5}
        error = error_of(lambda: registry.push_blob(item, [b"hello"]))
        assert error.code == "invalid"
        error = error_of(lambda: registry.put_manifest("v1", DOCKER_MANIFEST, b"{}"))
        assert error.code == "invalid"


def test_anonymous_push_to_a_token_registry_is_denied(token_registry):
    with client(f"{token_registry.host}/pushed/denied:v1") as registry:
        error = error_of(lambda: registry.push_blob(
            {"media_type": "x", "digest": test_registry.digest_of(b"x"), "size": 1}, [b"x"]))
    assert (error.code, error.message) == ("invalid", "denied: requested access to the "
                                           "resource is denied")


# --- a registry that answers garbage ---------------------------------------------------


class Garbage:
    """A tiny server that speaks /v2/ and then answers `responses[path]`."""

    def __init__(self) -> None:
        self.responses: dict[str, tuple[int, dict[str, str], bytes]] = {}
        responses = self.responses

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, headers, body = responses.get(self.path.split("?")[0],
                                                      (404, {}, b'{"errors": []}'))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Garbage:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def garbage() -> Iterator[Garbage]:
    with Garbage() as server:
        yield server


def test_garbage_manifests_are_invalid(garbage):
    manifest = {"Content-Type": DOCKER_MANIFEST}
    garbage.responses["/v2/bad/json/manifests/v1"] = (200, manifest, b"<html>nope</html>")
    garbage.responses["/v2/bad/type/manifests/v1"] = (
        200, {"Content-Type": "text/plain"}, b'{"schemaVersion": 1}')
    body = b'{"schemaVersion": 2, "mediaType": "%s"}' % DOCKER_MANIFEST.encode()
    asked = "sha256:" + "2" * 64
    garbage.responses[f"/v2/bad/digest/manifests/{asked}"] = (200, manifest, body)
    garbage.responses["/v2/bad/list/manifests/v1"] = (
        200, {"Content-Type": test_registry.DOCKER_LIST}, b'{"manifests": "no"}')
    for name, expected in [("bad/json:v1", "is not valid JSON"),
                           ("bad/type:v1", "unsupported media type 'text/plain'"),
                           (f"bad/digest@{asked}", "not the one asked for"),
                           ("bad/list:v1", "has no manifests array")]:
        with client(f"{garbage.host}/{name}") as registry:
            error = error_of(registry.resolve)
        assert error.code == "invalid", error
        assert expected in error.message


def test_a_registry_failing_with_500_is_unavailable(garbage):
    garbage.responses["/v2/broken/app/manifests/v1"] = (500, {}, b"oops")
    with client(f"{garbage.host}/broken/app:v1") as registry:
        error = error_of(registry.resolve)
    assert error.code == "unavailable"
    assert garbage.host in error.message


def test_blobs_live_where_corrupt_blob_looks_for_them(open_registry):
    digest = test_registry.digest_of(LAYERS[0])
    assert open_registry.blob_path(digest).read_bytes() == LAYERS[0]
    assert isinstance(open_registry.blob_path(digest), Path)
