"""Real registries for tests: Debian's docker-registry (distribution 2.8) on loopback.

    with Registry() as registry:                                    # anonymous
    with Registry(auth="htpasswd", users={"alice": "pw"}) as registry:  # Basic
    with Registry(auth="token", users={"alice": "pw"}) as registry:     # Bearer
        digest = publish(registry.url, "team/app", "v1", [layer(...)], config(...),
                         auth=("alice", "pw"))

Each registry has its own port, config and storage under a temporary folder,
and is stopped by pid and deleted at exit. ``publish`` uploads with plain
HTTP calls of its own, so it vouches for what the client under test reads.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import bcrypt
import requests
import yaml

from pouch.actors.image.dockersave import MEDIA_TYPE_TAR_GZIP as OCI_LAYER
from pouch.actors.image.registry import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from pouch.actors.image.registry import DOCKER_MANIFEST_LIST as DOCKER_LIST
from pouch.actors.image.store import CONFIG_MEDIA_TYPE as OCI_CONFIG
from pouch.tests.support.tokenserver import TokenServer
from pouch.tests.support.tools import require_file
from pouch.tests.support.wait import wait_for

DOCKER_REGISTRY: Final = Path("/usr/bin/docker-registry")
START_TIMEOUT: Final = 15.0
STOP_GRACE: Final = 5.0
# The registry binds a port the kernel picks and names it in its log: a port probed free
# beforehand could be taken by a process beside ours (another xdist worker) meanwhile.
LISTENING: Final = re.compile(r'msg="listening on 127\.0\.0\.1:(\d+)"')

DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"

Auth = Literal["open", "htpasswd", "token"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Registry:
    """One docker-registry process; `auth` picks anonymous, Basic or Bearer token access."""

    def __init__(self, auth: Auth = "open", users: Mapping[str, str] | None = None,
                 anonymous: tuple[str, ...] = ()) -> None:
        self.auth = auth
        self.users = dict(users or {})
        self.anonymous = anonymous  # actions the token server grants anonymous clients
        self.port = 0
        self.base = Path()
        self.tokens: TokenServer | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def root(self) -> Path:
        return self.base / "storage"

    def __enter__(self) -> Registry:
        require_file(DOCKER_REGISTRY, "docker-registry")
        self.base = Path(tempfile.mkdtemp(prefix="pouch-registry-"))
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},  # info: LISTENING
            "storage": {"filesystem": {"rootdirectory": str(self.root)},
                        "delete": {"enabled": True}},
            "http": {"addr": "127.0.0.1:0", "secret": "pouch-test"},
        }
        if self.auth == "htpasswd":
            htpasswd = self.base / "htpasswd"
            htpasswd.write_text("".join(
                # Cost 4, bcrypt's least: the registry checks a hash on every request.
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n"
                for user, password in self.users.items()
            ))
            config["auth"] = {"htpasswd": {"realm": "pouch-test", "path": str(htpasswd)}}
        elif self.auth == "token":
            self.tokens = TokenServer(self.base, self.users, self.anonymous).__enter__()
            config["auth"] = {"token": {
                "realm": self.tokens.realm, "service": self.tokens.service,
                "issuer": self.tokens.issuer, "rootcertbundle": str(self.tokens.certificate),
            }}
        path = self.base / "config.yml"
        path.write_text(yaml.safe_dump(config))
        with open(self.base / "registry.log", "ab") as log:
            self._process = subprocess.Popen(
                [str(DOCKER_REGISTRY), "serve", str(path)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.port = wait_for(self._listening, START_TIMEOUT, "docker-registry listening")
        wait_for(self._answering, START_TIMEOUT, f"docker-registry on {self.host}")

    def _check_running(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {self._process.returncode}:\n"
                               f"{self.log_tail()}")

    def _listening(self) -> int | None:
        self._check_running()
        found = LISTENING.search((self.base / "registry.log").read_text(errors="replace"))
        return int(found[1]) if found else None

    def _answering(self) -> bool:
        self._check_running()
        try:
            requests.get(f"{self.url}/v2/", timeout=1).close()
        except requests.ConnectionError:
            return False
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.base / "registry.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __exit__(self, *exc_info: object) -> None:
        try:
            process = self._process
            if process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
            if self.tokens is not None:
                self.tokens.__exit__()
        finally:
            self._process = None
            self.tokens = None
            shutil.rmtree(self.base, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the registry (a server dying mid-transfer); __exit__ still cleans up."""
        assert self._process is not None
        self._process.kill()
        self._process.wait()

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hex_digest = digest.partition(":")
        blobs = self.root / "docker/registry/v2/blobs" / algorithm
        return blobs / hex_digest[:2] / hex_digest / "data"

    def corrupt_blob(self, digest: str) -> None:
        """Flip the blob's bytes in storage, keeping its length: the registry still serves
        it under the old digest (it trusts its storage), the content no longer matches."""
        path = self.blob_path(digest)
        path.write_bytes(bytes(byte ^ 0xFF for byte in path.read_bytes()))


# --- images -----------------------------------------------------------------------------


def layer(files: Mapping[str, bytes], executable: Sequence[str] = ()) -> bytes:
    """A gzipped tar holding `files` (path -> content), made here: no network."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755 if name in executable else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def image_config(layers: Sequence[bytes], os_name: str = "linux",
                 architecture: str = "amd64", variant: str = "") -> dict[str, Any]:
    """A minimal image config whose rootfs lists the layers' uncompressed digests."""
    config: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [
            "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest() for data in layers
        ]},
    }
    if variant:
        config["variant"] = variant
    return config


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Uploader:
    """Plain HTTP calls to one repository, answering Basic and Bearer challenges itself."""

    def __init__(self, registry_url: str, repository: str,
                 auth: tuple[str, str] | None) -> None:
        self.base = f"{registry_url.rstrip('/')}/v2/{repository}"
        self.repository = repository
        self.credentials = auth
        self.session = requests.Session()
        self.session.trust_env = False

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, url, timeout=30, **kwargs)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge:
            return response
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            assert self.credentials, "the registry wants credentials"
            self.session.auth = self.credentials
        else:
            fields = dict(part.split("=", 1) for part in params.split(","))
            realm, service = fields["realm"].strip('"'), fields["service"].strip('"')
            answer = requests.get(realm, auth=self.credentials, timeout=30, params={
                "service": service, "scope": f"repository:{self.repository}:pull,push"})
            answer.raise_for_status()
            self.session.auth = None
            self.session.headers["Authorization"] = f"Bearer {answer.json()['token']}"
        return self.session.request(method, url, timeout=30, **kwargs)

    def blob(self, data: bytes) -> str:
        digest = digest_of(data)
        if self.request("HEAD", f"{self.base}/blobs/{digest}").status_code == 200:
            return digest
        started = self.request("POST", f"{self.base}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = requests.compat.urljoin(started.url, started.headers["Location"])
        done = self.request("PUT", location, params={"digest": digest}, data=data,
                            headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
        return digest

    def manifest(self, reference: str, media_type: str, body: bytes) -> str:
        done = self.request("PUT", f"{self.base}/manifests/{reference}", data=body,
                            headers={"Content-Type": media_type})
        assert done.status_code == 201, done.text
        return digest_of(body)


def _manifest(uploader: _Uploader, layers: Sequence[bytes], config: Mapping[str, Any],
              oci: bool) -> bytes:
    config_bytes = json.dumps(config, sort_keys=True).encode()
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
        "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                   "digest": uploader.blob(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER if oci else DOCKER_LAYER,
                    "digest": uploader.blob(data), "size": len(data)} for data in layers],
    }
    return json.dumps(body, indent=3).encode()


def publish(registry_url: str, repository: str, tag: str, layers: Sequence[bytes],
            config: Mapping[str, Any], *, auth: tuple[str, str] | None = None,
            manifest_list_platforms: Sequence[str] | None = None, oci: bool = False) -> str:
    """Upload an image under `tag`; the digest of what the tag names. With
    `manifest_list_platforms` ("os/arch[/variant]"), one image per platform (the config's
    os, architecture and variant set to it) behind a manifest list (an OCI index if `oci`)."""
    uploader = _Uploader(registry_url, repository, auth)
    manifest_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    if not manifest_list_platforms:
        return uploader.manifest(tag, manifest_type, _manifest(uploader, layers, config, oci))
    entries = []
    for platform in manifest_list_platforms:
        os_name, architecture, *variant = platform.split("/")
        specific = {**config, "os": os_name, "architecture": architecture}
        if variant:
            specific["variant"] = variant[0]
        body = _manifest(uploader, layers, specific, oci)
        digest = uploader.manifest(digest_of(body), manifest_type, body)
        described: dict[str, Any] = {"os": os_name, "architecture": architecture}
        if variant:
            described["variant"] = variant[0]
        entries.append({"mediaType": manifest_type, "digest": digest, "size": len(body),
                        "platform": described})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX if oci else DOCKER_LIST,
             "manifests": entries}
    return uploader.manifest(tag, OCI_INDEX if oci else DOCKER_LIST, json.dumps(index).encode())


def auth_header(username: str = "", password: str = "", **fields: str) -> str:
    """An X-Registry-Auth value, as the docker CLI encodes it."""
    body = {"username": username, "password": password, **fields}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
