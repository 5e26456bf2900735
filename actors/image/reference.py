"""Docker image references: parse what a user typed, normalize it, print it back.

Follows the grammar of distribution/reference as dockerd applies it
(ParseNormalizedNamed): ``[registry[:port]/]path[:tag][@digest]``, where the
first path component names a registry only if it looks like a host (has a
'.' or ':', is 'localhost', or has uppercase letters, which a repository may
not). Images on Docker Hub live under ``library/`` when they have a single
component, so ``busybox`` means ``docker.io/library/busybox:latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pouch.proto.envelope import PouchError, invalid

DOCKER_HUB = "docker.io"
# Docker rewrites Hub's legacy names to the canonical one before anything else.
_HUB_ALIASES = frozenset(("index.docker.io", "registry-1.docker.io"))
_OFFICIAL_PREFIX = "library/"
NAME_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
# distribution's separator is `[_.]|__|[-]+`, a little looser than `[._-]`.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256|sha384|sha512):([a-f0-9]+)")
_IMAGE_ID_RE = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class Reference:
    """A normalized reference: always a registry, a repository and a tag or digest
    (unless parsed with ``default_tag=None``)."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def full(self) -> str:
        return self.name + self._suffix()

    def familiar(self, default_registry: str = DOCKER_HUB) -> str:
        """The short form docker shows: no default registry, no ``library/``."""
        return self._familiar_name(default_registry) + self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return tag + digest

    def _familiar_name(self, default_registry: str) -> str:
        if _canonical_registry(self.registry) != _canonical_registry(default_registry):
            return self.name
        short = self.repository
        if self.registry == DOCKER_HUB and short.startswith(_OFFICIAL_PREFIX):
            rest = short[len(_OFFICIAL_PREFIX) :]
            if "/" not in rest:
                short = rest
        # Dropping the registry must not make the first component read as one.
        head, slash, _ = short.partition("/")
        if slash and _looks_like_registry(head):
            return self.name
        return short


def parse(
    ref: str, default_registry: str = DOCKER_HUB, default_tag: str | None = "latest"
) -> Reference:
    """Parse and normalize an image reference. Errors: invalid.

    A reference with neither tag nor digest gets ``default_tag``.
    """
    if not ref:
        raise _bad("repository name must have at least one component")
    if _IMAGE_ID_RE.fullmatch(ref):
        raise _bad(f"repository name ({ref}) cannot be a 64-byte hexadecimal string")

    named, at, digest = ref.partition("@")
    registry, remainder = _split_registry(named, default_registry)
    path, colon, tag = remainder.partition(":")

    if not path:
        raise _bad(f"repository name must have at least one component: {ref!r}")
    if path.lower() != path:
        raise invalid("invalid reference format: repository name must be lowercase")
    if not _DOMAIN_RE.fullmatch(registry):
        raise _bad(f"invalid registry {registry!r} in {ref!r}")
    if not _PATH_RE.fullmatch(path):
        raise _bad(f"invalid repository name {path!r} in {ref!r}")
    if colon and not _TAG_RE.fullmatch(tag):
        raise _bad(f"invalid tag {tag!r} in {ref!r}")
    if at:
        _check_digest(digest, ref)

    if registry == DOCKER_HUB and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    if len(registry) + 1 + len(path) > NAME_MAX:
        raise _bad(f"repository name must not be more than {NAME_MAX} characters")

    final_tag = tag if colon else None
    if final_tag is None and not at:
        final_tag = default_tag
    return Reference(registry, path, final_tag, digest if at else None)


def familiar_name(full: str, default_registry: str = DOCKER_HUB) -> str:
    """``docker.io/library/busybox:latest`` -> ``busybox:latest``. Errors: invalid."""
    return parse(full, default_registry, default_tag=None).familiar(default_registry)


def _split_registry(named: str, default_registry: str) -> tuple[str, str]:
    head, slash, rest = named.partition("/")
    if slash and _looks_like_registry(head):
        registry, remainder = head, rest
    else:
        registry, remainder = default_registry, named
    return _canonical_registry(registry), remainder


def _looks_like_registry(component: str) -> bool:
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.lower() != component
    )


def _canonical_registry(registry: str) -> str:
    return DOCKER_HUB if registry in _HUB_ALIASES else registry


def _check_digest(digest: str, ref: str) -> None:
    match = _DIGEST_RE.fullmatch(digest)
    if not match or len(match.group(2)) != _DIGEST_HEX_LENGTH[match.group(1)]:
        raise _bad(f"invalid digest {digest!r} in {ref!r}")


def _bad(detail: str) -> PouchError:
    return invalid(f"invalid reference format: {detail}")
