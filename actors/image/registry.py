"""A client of the Distribution API v2 (Docker Registry HTTP API, OCI distribution spec).

One ``Registry`` speaks for one repository: it resolves a name to the image
manifest of a platform, streams and verifies blobs, and pushes blobs and
manifests. Where it connects follows dockerd (``--registry-mirror``,
``--insecure-registry``, loopback registries over plain HTTP) and containerd
(``hosts.toml`` under a hosts folder). Authentication answers the registry's
challenge: Basic, or a Bearer token from the token server it names.

Errors are PouchErrors: not_found for a name, manifest or blob the registry
does not have (and, as dockerd words it, for pulls it refuses), invalid for
content that is not what it claims, wrong credentials or refused pushes,
unavailable and timeout for registries that cannot be reached.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import re
import socket
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from pouch.actors.containerd.types import Descriptor
from pouch.actors.fsutil import atomic_write
from pouch.actors.image.reference import DOCKER_HUB, Reference
from pouch.proto.envelope import PouchError, invalid, not_found, unavailable

DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
IMAGE_MANIFESTS: Final = frozenset((DOCKER_MANIFEST, OCI_MANIFEST))
INDEXES: Final = frozenset((DOCKER_MANIFEST_LIST, OCI_INDEX))
_ACCEPT: Final = ", ".join((DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX))

DOCKER_HUB_URL: Final = "https://registry-1.docker.io"
ALL_CAPABILITIES: Final = frozenset(("pull", "resolve", "push"))
MIRROR_CAPABILITIES: Final = frozenset(("pull", "resolve"))
# containerd refuses manifests above 4 MiB: a registry that sends more is not sending one.
MANIFEST_MAX: Final = 4 << 20
# Docker's token spec: a token without expires_in lives 60 s.
TOKEN_DEFAULT_LIFETIME: Final = 60.0
_TOKEN_MARGIN: Final = 5.0
_POOL_SIZE: Final = 8
_CLIENT_ID: Final = "pouch"
LOGIN_SUCCEEDED: Final = "Login Succeeded"
INCORRECT_CREDENTIALS: Final = "unauthorized: incorrect username or password"
PUSH_DENIED: Final = "denied: requested access to the resource is denied"

_CHALLENGE_PARAM = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # Docker's identitytoken: a refresh token for the token server
    registry_token: str = ""  # Docker's registrytoken: a bearer token used as is

    @classmethod
    def from_header(cls, value: str) -> Credentials | None:
        """Decode X-Registry-Auth: base64url JSON, padding optional. Errors: invalid."""
        value = value.strip()
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            fields = json.loads(raw)
        except (binascii.Error, ValueError) as error:
            raise invalid(f"invalid X-Registry-Auth header: {error}") from None
        if not isinstance(fields, dict):
            raise invalid("invalid X-Registry-Auth header: not a JSON object")
        names = {"username": "username", "password": "password",
                 "identitytoken": "identity_token", "registrytoken": "registry_token"}
        values: dict[str, str] = {}
        for key, name in names.items():
            found = fields.get(key)
            if found is None:
                continue
            if not isinstance(found, str):
                raise invalid(f"invalid X-Registry-Auth header: {key} is not a string")
            values[name] = found
        credentials = cls(**values)
        return credentials if credentials != cls() else None

    @property
    def has_password(self) -> bool:
        return bool(self.username or self.password)


@dataclass(frozen=True)
class RegistryConfig:
    insecure: tuple[str, ...] = ()  # "host[:port]" or CIDR like "10.0.0.0/8": plain HTTP allowed
    mirrors: tuple[str, ...] = ()  # URLs tried first for docker.io names
    hosts_dir: Path | None = None  # folder of <host>/hosts.toml, as containerd reads them
    proxy: str = ""  # HTTP(S) proxy for registries; "" = the environment's
    timeout: float = 30.0
    # Where a bundle joined from several `ca` files of a hosts.toml goes (pouchd: its exec
    # root); None: the system's temporary folder.
    bundle_dir: Path | None = None


@dataclass(frozen=True)
class Endpoint:
    url: str  # "https://registry-1.docker.io", "http://127.0.0.1:5000"
    verify: bool | str  # requests' verify: False for skip_verify, a CA bundle path for `ca`
    capabilities: frozenset[str]  # {"pull", "resolve", "push"}
    mirror: bool  # tried before the registry itself; a failure falls through to the next
    # hosts.toml's override_path: the URL's path is the API root, without "/v2".
    override_path: bool = False

    @property
    def api(self) -> str:
        return self.url if self.override_path else self.url + "/v2"


@dataclass(frozen=True)
class Resolved:
    digest: str  # digest of the image manifest chosen (the platform's, for an index)
    media_type: str  # its media type (docker schema2 manifest or OCI manifest)
    manifest: bytes  # its bytes, digest verified
    index_digest: str | None  # what the name pointed at, when that was a list or index
    endpoint: Endpoint  # where it came from (blobs are fetched from the same one first)


# --- where to connect -------------------------------------------------------------------


def endpoints(config: RegistryConfig, registry: str) -> list[Endpoint]:
    """The endpoints to try for `registry`, mirrors first and the registry itself last."""
    found: list[Endpoint] = []
    hosts, folder = _hosts_file(config.hosts_dir, registry)
    for key, table in _tables(hosts.get("host", {})).items():
        found.append(_host_endpoint(config, key, table, folder, mirror=True))
    if registry == DOCKER_HUB:
        for url in config.mirrors:
            found.append(Endpoint(url.rstrip("/"), True, MIRROR_CAPABILITIES, mirror=True))
    server = hosts.get("server")
    if isinstance(server, str) and server:
        found.append(_host_endpoint(config, server, hosts, folder, mirror=False))
    else:
        url = DOCKER_HUB_URL if registry == DOCKER_HUB else f"{_scheme(config, registry)}://{registry}"
        found.append(_host_endpoint(config, url, hosts, folder, mirror=False))
    return found


def _hosts_file(hosts_dir: Path | None, registry: str) -> tuple[dict[str, Any], Path]:
    """The parsed hosts.toml containerd would read for `registry` (empty if none), its folder."""
    if hosts_dir is None:
        return {}, Path()
    host, port = _split_host_port(registry)
    # containerd's order: "host_port_" (a name any file system takes), "host:port", _default.
    names = [f"{host}_{port}_", registry] if port else [registry]
    for name in [*names, "_default"]:
        path = hosts_dir / name / "hosts.toml"
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise invalid(f"cannot read {path}: {error.strerror}") from None
        try:
            return tomllib.loads(text), path.parent
        except tomllib.TOMLDecodeError as error:
            raise invalid(f"invalid {path}: {error}") from None
    return {}, Path()


def _tables(value: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(value, dict):
        return {}
    return {key: table for key, table in value.items() if isinstance(table, dict)}


def _host_endpoint(
    config: RegistryConfig, host: str, table: Mapping[str, Any], folder: Path, mirror: bool
) -> Endpoint:
    if "://" not in host:
        host = f"{_scheme(config, host.split('/', 1)[0])}://{host}"
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(f"invalid registry host {host!r} in {folder / 'hosts.toml'}")
    netloc = "registry-1.docker.io" if parts.netloc == DOCKER_HUB else parts.netloc
    url = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
    capabilities = table.get("capabilities")
    verify: bool | str = not table.get("skip_verify", False)
    ca = table.get("ca")
    if verify and ca:
        verify = _ca_bundle([ca] if isinstance(ca, str) else list(ca), folder,
                            config.bundle_dir)
    return Endpoint(
        url=url,
        verify=verify,
        capabilities=frozenset(capabilities) if capabilities is not None else ALL_CAPABILITIES,
        mirror=mirror,
        override_path=bool(table.get("override_path", False)),
    )


def _ca_bundle(paths: list[str], folder: Path, bundle_dir: Path | None) -> str:
    """requests takes one CA file: several are joined into a bundle named by their content."""
    files = [path if path.is_absolute() else folder / path for path in map(Path, paths)]
    if len(files) == 1:
        return str(files[0])
    try:
        text = "\n".join(path.read_text() for path in files)
    except OSError as error:
        raise invalid(f"cannot read CA file {error.filename}: {error.strerror}") from None
    into = bundle_dir or Path(tempfile.gettempdir())
    bundle = into / f"pouch-ca-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pem"
    if not bundle.exists():
        into.mkdir(parents=True, exist_ok=True)
        atomic_write(bundle, text.encode(), durable=False)
    return str(bundle)


def _split_host_port(address: str) -> tuple[str, str]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, rest.removeprefix(":")
    host, colon, port = address.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host, port
    return address, ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scheme(config: RegistryConfig, registry: str) -> str:
    """dockerd's rule: HTTPS, unless the registry is insecure or on loopback."""
    host, _ = _split_host_port(registry)
    if _is_loopback(host) or registry in config.insecure or host in config.insecure:
        return "http"
    networks = []
    for entry in config.insecure:
        with contextlib.suppress(ValueError):
            if "/" in entry:
                networks.append(ipaddress.ip_network(entry, strict=False))
    if networks and any(address in network for address in _addresses(host) for network in networks):
        return "http"
    return "https"


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    # dockerd resolves a registry's name to match it against insecure CIDRs.
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def proxies(config: RegistryConfig, url: str) -> dict[str, str]:
    """requests' proxies for `url`: none for loopback (as Go's ProxyFromEnvironment), else
    the configured proxy, else the environment's HTTP(S)_PROXY less its NO_PROXY."""
    if _is_loopback(urlsplit(url).hostname or ""):
        return {}
    if config.proxy:
        return {"http": config.proxy, "https": config.proxy}
    return dict(get_environ_proxies(url))


# --- auth and requests ------------------------------------------------------------------


@dataclass(frozen=True)
class _Challenge:
    """What a 401 asks for. A Bearer challenge also names the scope and error of the
    request that got it: those change from request to request, the server does not."""

    scheme: str  # "basic" or "bearer"
    realm: str = ""
    service: str = ""


def _parse_challenge(header: str) -> _Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("basic", "bearer"):
        return None
    params = {
        match.group(1).lower(): (
            re.sub(r"\\(.)", r"\1", match.group(2)) if match.group(2) is not None
            else match.group(3)
        )
        for match in _CHALLENGE_PARAM.finditer(rest)
    }
    return _Challenge(scheme.lower(), params.get("realm", ""), params.get("service", ""))


@dataclass
class _Client:
    """One requests session and the auth state of the endpoints it talks to."""

    config: RegistryConfig
    credentials: Credentials | None
    session: requests.Session = field(default_factory=requests.Session)
    _challenges: dict[str, _Challenge] = field(default_factory=dict)
    _tokens: dict[tuple[str, str, tuple[str, ...]], tuple[str, float]] = field(
        default_factory=dict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # Proxies are chosen per URL below (loopback never goes through one); netrc and
        # the environment's CA bundle are not the registry configuration's.
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=_POOL_SIZE, pool_maxsize=_POOL_SIZE)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def send(
        self,
        endpoint: Endpoint,
        method: str,
        url: str,
        scopes: tuple[str, ...],
        *,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request, answering a 401 challenge once. Errors: unavailable, timeout, and
        invalid for credentials the registry or its token server rejects."""
        retry = data is None or isinstance(data, bytes)
        while True:
            sent = dict(headers or {})
            authorization = self._authorization(endpoint, scopes)
            if authorization:
                sent["Authorization"] = authorization
            response = self._request(
                endpoint, method, url, headers=sent, data=data, params=params, stream=stream
            )
            if response.status_code != 401:
                return response
            challenge = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
            known = self._challenges.get(endpoint.url)
            if challenge is None:
                return response
            if authorization and challenge.scheme == "basic" and known == challenge:
                response.close()
                raise invalid(INCORRECT_CREDENTIALS)
            if not retry or (authorization and known == challenge):
                return response
            with self._lock:
                self._challenges[endpoint.url] = challenge
            if not self._authorization(endpoint, scopes):
                return response
            response.close()
            retry = False

    def _request(
        self, endpoint: Endpoint, method: str, url: str, **kwargs: Any
    ) -> requests.Response:
        through = proxies(self.config, url)
        try:
            return self.session.request(
                method,
                url,
                verify=endpoint.verify,
                proxies=through,
                timeout=self.config.timeout,
                allow_redirects=True,
                **kwargs,
            )
        except requests.Timeout:
            raise PouchError("timeout", f"{endpoint.url} did not answer within "
                             f"{self.config.timeout:g} s") from None
        except requests.RequestException as error:
            proxy = through.get(urlsplit(url).scheme)
            via = f" through proxy {proxy}" if proxy else ""
            raise unavailable(f"cannot reach registry {endpoint.url}{via}: "
                              f"{_reason(error)}") from None

    def _authorization(self, endpoint: Endpoint, scopes: tuple[str, ...]) -> str:
        credentials = self.credentials
        if credentials and credentials.registry_token:
            return f"Bearer {credentials.registry_token}"
        challenge = self._challenges.get(endpoint.url)
        if challenge is None:
            return ""
        if challenge.scheme == "basic":
            if credentials is None or not credentials.has_password:
                return ""
            pair = f"{credentials.username}:{credentials.password}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        token = self._token(endpoint, challenge, scopes)
        return f"Bearer {token}" if token else ""

    def _token(self, endpoint: Endpoint, challenge: _Challenge, scopes: tuple[str, ...]) -> str:
        realm, service = challenge.realm, challenge.service
        key = (realm, service, scopes)
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        if not realm.startswith(("http://", "https://")):
            raise invalid(f"registry {endpoint.url} names no usable token realm: {realm!r}")
        token, lifetime = self._fetch_token(endpoint, realm, service, scopes)
        if token:
            with self._lock:
                self._tokens[key] = (token, time.monotonic() + lifetime - _TOKEN_MARGIN)
        return token

    def _fetch_token(
        self, endpoint: Endpoint, realm: str, service: str, scopes: tuple[str, ...]
    ) -> tuple[str, float]:
        """Docker's token spec: a GET with Basic credentials, or the OAuth2 POST of a
        refresh token. An anonymous client the token server refuses gets no token."""
        credentials = self.credentials or Credentials()
        token_endpoint = Endpoint(realm, endpoint.verify, frozenset(), mirror=False)
        if credentials.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token,
                    "service": service, "client_id": _CLIENT_ID, "scope": " ".join(scopes)}
            response = self._request(token_endpoint, "POST", realm, data=form)
        else:
            query: list[tuple[str, str]] = [("service", service)]
            query += [("scope", scope) for scope in scopes]
            if credentials.username:
                query.append(("account", credentials.username))
            auth = None
            if credentials.has_password:
                auth = (credentials.username, credentials.password)
            response = self._request(token_endpoint, "GET", realm, params=query, auth=auth)
        with response:
            if response.status_code in (401, 403):
                if credentials.has_password or credentials.identity_token:
                    raise invalid(INCORRECT_CREDENTIALS)
                return "", 0.0
            if response.status_code != 200:
                raise unavailable(
                    f"token server {realm} answered {response.status_code} {response.reason}"
                )
            try:
                body = response.json()
            except ValueError:
                raise invalid(f"token server {realm} answered something other than JSON") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise invalid(f"token server {realm} answered no token")
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = TOKEN_DEFAULT_LIFETIME
        return token, float(max(lifetime, 2 * _TOKEN_MARGIN))


def _reason(error: requests.RequestException) -> str:
    """The cause inside requests' and urllib3's wrapping: "Connection refused"."""
    text = str(error)
    for pattern in (r"\[Errno -?\d+\] ([^'\")\]]+)", r"(\[SSL[^\]]*\][^'\")]*)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip()
    return text


def _registry_errors(response: requests.Response) -> list[tuple[str, str]]:
    """The errors array a registry puts in a failure's body: (code, message) pairs."""
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [(str(item.get("code", "")), str(item.get("message", "")))
            for item in errors if isinstance(item, dict)]


def _describe(response: requests.Response) -> str:
    errors = _registry_errors(response)
    if errors:
        return "; ".join(f"{code.lower()}: {message}" if code else message
                         for code, message in errors)
    return f"{response.status_code} {response.reason}"


def _digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _read_limited(response: requests.Response, limit: int, what: str) -> bytes:
    chunks = []
    size = 0
    try:
        for chunk in response.iter_content(64 << 10):
            size += len(chunk)
            if size > limit:
                raise invalid(f"{what} is larger than {limit} bytes")
            chunks.append(chunk)
    except requests.RequestException as error:
        raise unavailable(f"reading {what}: {_reason(error)}") from None
    return b"".join(chunks)


# --- platforms --------------------------------------------------------------------------

_ARCH_ALIASES: Final = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64",
                        "armhf": "arm", "armel": "arm", "i386": "386"}
_DEFAULT_VARIANT: Final = {"arm64": "v8", "arm": "v7"}


def _platform(text: str) -> tuple[str, str, str]:
    parts = text.lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise invalid(f"invalid platform {text!r}: want os/arch[/variant]")
    os_name, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else ""
    return os_name, arch, variant


def _matches(want: tuple[str, str, str], entry: Mapping[str, Any]) -> bool:
    os_name, arch, variant = want
    have_arch = _ARCH_ALIASES.get(str(entry.get("architecture", "")), entry.get("architecture"))
    if entry.get("os") != os_name or have_arch != arch:
        return False
    if not variant:
        return True
    default = _DEFAULT_VARIANT.get(arch, "")
    return (entry.get("variant") or default) == (variant or default)


# --- one repository ---------------------------------------------------------------------


class Registry:
    """One repository on one registry, with its endpoints and auth; thread-safe enough that
    several threads may call fetch_blob at once (layers are fetched concurrently)."""

    def __init__(
        self, config: RegistryConfig, ref: Reference, credentials: Credentials | None = None
    ) -> None:
        self._ref = ref
        self._endpoints = endpoints(config, ref.registry)
        self._client = _Client(config, credentials)
        self._resolved_from: Endpoint | None = None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints)

    # -- pull --

    def resolve(self, platform: str = "linux/amd64") -> Resolved:
        """The image manifest the reference names, for `platform` when it names an index.
        Errors: not_found, invalid, unavailable, timeout."""
        want = _platform(platform)
        reference = self._ref.digest or self._ref.tag or "latest"
        failure: PouchError | None = None
        for endpoint in self._capable("resolve"):
            try:
                resolved = self._resolve_at(endpoint, reference, want, platform)
            except PouchError as error:
                if not endpoint.mirror:
                    raise
                failure = failure or error
                continue
            self._resolved_from = endpoint
            return resolved
        raise failure or unavailable(f"no endpoint of {self._ref.registry} may resolve names")

    def _resolve_at(
        self, endpoint: Endpoint, reference: str, want: tuple[str, str, str], platform: str
    ) -> Resolved:
        media_type, body, digest = self._manifest(endpoint, reference, self._ref.digest)
        if media_type in IMAGE_MANIFESTS:
            return Resolved(digest, media_type, body, None, endpoint)
        entries = self._index_entries(body, digest)
        chosen = next((entry for entry in entries if _matches(want, entry["platform"])), None)
        if chosen is None:
            raise not_found(f"no matching manifest for {platform} in the manifest list entries")
        child_type, child, child_digest = self._manifest(endpoint, chosen["digest"],
                                                         chosen["digest"])
        if child_type not in IMAGE_MANIFESTS:
            raise invalid(f"manifest {child_digest} in index {digest} is a {child_type}, "
                          "not an image manifest")
        if len(child) != chosen["size"]:
            raise invalid(f"manifest {child_digest} is {len(child)} bytes, not the "
                          f"{chosen['size']} its index names")
        return Resolved(child_digest, child_type, child, digest, endpoint)

    def _index_entries(self, body: bytes, digest: str) -> list[dict[str, Any]]:
        index = json.loads(body)
        entries = index.get("manifests")
        if not isinstance(entries, list):
            raise invalid(f"manifest list {digest} has no manifests array")
        valid = []
        for entry in entries:
            if not (isinstance(entry, dict) and isinstance(entry.get("digest"), str)
                    and isinstance(entry.get("size"), int)):
                raise invalid(f"manifest list {digest} has a malformed entry: {entry!r}")
            if isinstance(entry.get("platform"), dict):
                valid.append(entry)
        return valid

    def _manifest(
        self, endpoint: Endpoint, reference: str, expected: str | None
    ) -> tuple[str, bytes, str]:
        url = f"{endpoint.api}/{self._ref.repository}/manifests/{reference}"
        response = self._client.send(endpoint, "GET", url, self._scopes("pull"),
                                     headers={"Accept": _ACCEPT}, stream=True)
        with response:
            if response.status_code != 200:
                raise self._pull_error(endpoint, response, f"manifest for {self._shown()}")
            what = f"manifest {reference} from {endpoint.url}"
            body = _read_limited(response, MANIFEST_MAX, what)
            header_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = response.headers.get("Docker-Content-Digest", "")
        try:
            document = json.loads(body)
        except ValueError:
            raise invalid(f"{what} is not valid JSON") from None
        if not isinstance(document, dict):
            raise invalid(f"{what} is not a JSON object")
        media_type = header_type
        if media_type not in IMAGE_MANIFESTS | INDEXES:
            media_type = str(document.get("mediaType", ""))
        if media_type not in IMAGE_MANIFESTS | INDEXES:
            raise invalid(f"{what} has unsupported media type {header_type or media_type!r}")
        algorithm = (expected or "sha256:").split(":", 1)[0]
        digest = _digest_of(body, algorithm)
        if expected and digest != expected:
            raise invalid(f"{what} has digest {digest}, not the one asked for")
        if header_digest.startswith(f"{algorithm}:") and header_digest != digest:
            raise invalid(f"{what} has digest {digest}, not the {header_digest} "
                          "the registry names")
        return media_type, body, digest

    def fetch_blob(
        self, descriptor: Descriptor, chunk_size: int = 1 << 20, *, verify_digest: bool = True
    ) -> Iterator[bytes]:
        """The blob's bytes in chunks; verified after the last one (a mismatch raises
        invalid: discard what was stored). Errors: not_found, invalid, unavailable, timeout.

        `verify_digest=False` leaves the digest, not the size, to a caller that stores
        the bytes where it is checked anyway (containerd's content store does at commit):
        hashing them here as well would be one more pass over every byte of a pull."""
        digest = descriptor["digest"]
        algorithm, _, _ = digest.partition(":")
        if algorithm not in ("sha256", "sha384", "sha512"):
            raise invalid(f"blob digest {digest!r} uses an unsupported algorithm")
        response = self._open_blob(digest)
        hasher = hashlib.new(algorithm) if verify_digest else None
        size = 0
        expected_size = descriptor["size"]
        with response:
            try:
                for chunk in response.iter_content(chunk_size):
                    size += len(chunk)
                    if 0 <= expected_size < size:
                        raise invalid(f"blob {digest} is larger than the {expected_size} bytes "
                                      "its manifest names")
                    if hasher is not None:
                        hasher.update(chunk)
                    yield chunk
            except requests.RequestException as error:
                raise unavailable(f"reading blob {digest}: {_reason(error)}") from None
        if 0 <= expected_size != size:
            raise invalid(f"blob {digest} is {size} bytes, not the {expected_size} its "
                          "manifest names")
        if hasher is None:
            return
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if actual != digest:
            raise invalid(f"blob {digest} has digest {actual}, not the one its manifest names")

    def _open_blob(self, digest: str) -> requests.Response:
        ordered = self._capable("pull")
        if self._resolved_from in ordered:
            ordered.remove(self._resolved_from)
            ordered.insert(0, self._resolved_from)
        failure: PouchError | None = None
        for index, endpoint in enumerate(ordered):
            last = index == len(ordered) - 1
            try:
                response = self._client.send(
                    endpoint, "GET", self._blob_url(endpoint, digest), self._scopes("pull"),
                    stream=True,
                )
                if response.status_code == 200:
                    return response
                with response:
                    raise self._pull_error(endpoint, response, f"blob {digest}")
            except PouchError as error:
                if not endpoint.mirror and last:
                    raise
                failure = failure or error
        raise failure or unavailable(f"no endpoint of {self._ref.registry} may pull blobs")

    # -- push --

    def blob_exists(self, digest: str) -> bool:
        """Whether the repository has the blob. Errors: invalid, unavailable, timeout."""
        endpoint = self._push_endpoint()
        response = self._client.send(endpoint, "HEAD", self._blob_url(endpoint, digest),
                                     self._scopes("pull", "push"))
        with response:
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            raise self._push_error(endpoint, response, f"checking blob {digest}")

    def mount_blob(self, digest: str, from_repository: str) -> bool:
        """Mount a blob of another repository of the same registry; False if the registry
        would have it uploaded instead. Errors: invalid, unavailable, timeout."""
        endpoint = self._push_endpoint()
        scopes = (*self._scopes("pull", "push"), f"repository:{from_repository}:pull")
        response = self._client.send(endpoint, "POST", self._uploads_url(endpoint), scopes,
                                     params={"mount": digest, "from": from_repository})
        with response:
            if response.status_code == 201:
                return True
            if response.status_code != 202:
                raise self._push_error(endpoint, response, f"mounting blob {digest}")
            location = response.headers.get("Location")
        if location:
            # The registry opened an upload session instead: leave none behind.
            with contextlib.suppress(PouchError):
                self._client.send(endpoint, "DELETE", urljoin(response.url, location),
                                  scopes).close()
        return False

    def push_blob(self, descriptor: Descriptor, chunks: Iterable[bytes]) -> None:
        """Upload a blob: open a session, stream the chunks in one PATCH, close it with the
        digest. Errors: invalid (the registry's verdict on the digest), unavailable, timeout."""
        endpoint = self._push_endpoint()
        scopes = self._scopes("pull", "push")
        digest = descriptor["digest"]
        response = self._client.send(endpoint, "POST", self._uploads_url(endpoint), scopes)
        with response:
            if response.status_code != 202:
                raise self._push_error(endpoint, response, f"starting the upload of {digest}")
            location = urljoin(response.url, response.headers.get("Location", ""))
        counted = _Counter(chunks)
        response = self._client.send(
            endpoint, "PATCH", location, scopes, data=iter(counted),
            headers={"Content-Type": "application/octet-stream"},
        )
        with response:
            if response.status_code != 202:
                raise self._push_error(endpoint, response, f"uploading {digest}")
            location = urljoin(response.url, response.headers.get("Location", ""))
        if 0 <= descriptor["size"] != counted.size:
            with contextlib.suppress(PouchError):
                self._client.send(endpoint, "DELETE", location, scopes).close()
            raise invalid(f"blob {digest} is {counted.size} bytes, not the "
                          f"{descriptor['size']} its descriptor names")
        response = self._client.send(endpoint, "PUT", location, scopes, params={"digest": digest},
                                     data=b"")
        with response:
            if response.status_code != 201:
                raise self._push_error(endpoint, response, f"finishing the upload of {digest}")

    def put_manifest(self, reference: str, media_type: str, body: bytes) -> str:
        """Store a manifest under a tag or its digest; its digest. Errors: invalid,
        unavailable, timeout."""
        endpoint = self._push_endpoint()
        digest = _digest_of(body)
        url = f"{endpoint.api}/{self._ref.repository}/manifests/{reference}"
        response = self._client.send(endpoint, "PUT", url, self._scopes("pull", "push"),
                                     headers={"Content-Type": media_type}, data=body)
        with response:
            if response.status_code != 201:
                raise self._push_error(endpoint, response, f"putting manifest {reference}")
            named = response.headers.get("Docker-Content-Digest", "")
        if named.startswith("sha256:") and named != digest:
            raise invalid(f"registry {endpoint.url} stored manifest {reference} as {named}, "
                          f"not {digest}")
        return digest

    # -- helpers --

    def _capable(self, capability: str) -> list[Endpoint]:
        return [endpoint for endpoint in self._endpoints if capability in endpoint.capabilities]

    def _push_endpoint(self) -> Endpoint:
        capable = self._capable("push")
        if not capable:
            raise invalid(f"no endpoint of {self._ref.registry} accepts pushes")
        return capable[0]

    def _scopes(self, *actions: str) -> tuple[str, ...]:
        return (f"repository:{self._ref.repository}:{','.join(actions)}",)

    def _blob_url(self, endpoint: Endpoint, digest: str) -> str:
        return f"{endpoint.api}/{self._ref.repository}/blobs/{digest}"

    def _uploads_url(self, endpoint: Endpoint) -> str:
        return f"{endpoint.api}/{self._ref.repository}/blobs/uploads/"

    def _shown(self) -> str:
        return self._ref.familiar()

    def _pull_error(self, endpoint: Endpoint, response: requests.Response, what: str) -> PouchError:
        status = response.status_code
        codes = {code for code, _ in _registry_errors(response)}
        if status == 404 or codes & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"}:
            return not_found(f"{what} not found: "
                             f"{'manifest' if 'manifest' in what else 'blob'} unknown")
        if status in (401, 403) or codes & {"UNAUTHORIZED", "DENIED"}:
            name = Reference(self._ref.registry, self._ref.repository, None, None).familiar()
            return not_found(f"pull access denied for {name}, repository does not exist or "
                             "may require 'docker login'")
        if 400 <= status < 500:
            return invalid(f"registry {endpoint.url} refused {what}: {_describe(response)}")
        return unavailable(f"registry {endpoint.url} failed on {what}: {_describe(response)}")

    def _push_error(self, endpoint: Endpoint, response: requests.Response, what: str) -> PouchError:
        status = response.status_code
        if status in (401, 403):
            return invalid(PUSH_DENIED)
        if status == 404:
            return not_found(f"{what} on {endpoint.url}: {_describe(response)}")
        if 400 <= status < 500:
            return invalid(f"{what} on {endpoint.url}: {_describe(response)}")
        return unavailable(f"{what} on {endpoint.url}: {_describe(response)}")


class _Counter:
    """Counts the bytes of a stream as requests sends it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            yield chunk


def login(config: RegistryConfig, registry: str, credentials: Credentials) -> str:
    """Check credentials as ``docker login`` does: GET /v2/ through the registry's
    challenge. Errors: invalid (wrong credentials), unavailable, timeout."""
    endpoint = endpoints(config, registry)[-1]
    client = _Client(config, credentials)
    try:
        response = client.send(endpoint, "GET", endpoint.api + "/", ())
        with response:
            if response.status_code == 200:
                return LOGIN_SUCCEEDED
            if response.status_code in (401, 403):
                raise invalid(INCORRECT_CREDENTIALS)
            raise unavailable(f"registry {endpoint.url} answered {_describe(response)} "
                              "to a login")
    finally:
        client.close()
