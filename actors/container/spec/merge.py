"""The process a container runs: Docker's merge of the create request over the image."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from pouch.proto.envelope import invalid

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Process:
    """The process a container runs, after Docker's merge rules."""

    args: list[str]
    env: list[str]
    cwd: str
    user: str
    tty: bool
    open_stdin: bool


def effective_process(image_config: dict, config: dict) -> Process:
    """Merge a create request's ``Config`` over the image's ``config`` as dockerd does.

    The caller fills ``Config.Hostname`` first (dockerd uses the short container
    id, or the host's name for host networking): it becomes ``HOSTNAME``.
    Errors: invalid (no command, a malformed Env entry, a relative WorkingDir).
    """
    image_config = image_config or {}
    entrypoint = _str_slice(config.get("Entrypoint"), "Config.Entrypoint")
    cmd = _str_slice(config.get("Cmd"), "Config.Cmd")
    # An empty (not absent) Entrypoint still keeps the image's Cmd but drops
    # its Entrypoint; any Entrypoint given drops the image's Cmd.
    if not entrypoint:
        if not cmd:
            cmd = _str_slice(image_config.get("Cmd"), "image Cmd")
        if entrypoint is None:
            entrypoint = _str_slice(image_config.get("Entrypoint"), "image Entrypoint")
    # `--entrypoint ""` arrives as [""]: it means "no entrypoint", after the merge.
    if entrypoint == [""]:
        entrypoint = None
    args = (entrypoint or []) + (cmd or [])
    if not args:
        raise invalid("No command specified")

    request_env = _str_slice(config.get("Env"), "Config.Env") or []
    for entry in request_env:
        if entry.partition("=")[0] == "":
            raise invalid(f"invalid environment variable: {entry}")
    image_env = _str_slice(image_config.get("Env"), "image Env") or []
    tty = bool(config.get("Tty"))
    env = daemon_env(str(config.get("Hostname") or ""), tty, [],
                     merge_env(request_env, image_env))

    workdir = config.get("WorkingDir") or image_config.get("WorkingDir") or "/"
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        raise invalid(
            f"the working directory '{workdir}' is invalid, it needs to be an absolute path"
        )
    user = config.get("User") or image_config.get("User") or ""
    if not isinstance(user, str):
        raise invalid(f"invalid Config.User {user!r}: must be a string")
    return Process(
        args=args,
        env=env,
        cwd=clean_abs(workdir),
        user=user,
        tty=tty,
        open_stdin=bool(config.get("OpenStdin")),
    )


def daemon_env(hostname: str, tty: bool, linked: list[str], env: list[str]) -> list[str]:
    """dockerd's CreateDaemonEnvironment: PATH, HOSTNAME, TERM with a terminal, the
    environment of its links (pouch.actors.container.links), and the container's own
    `env` (its Env over its image's) over all that."""
    defaults = [f"PATH={DEFAULT_PATH}"]
    if hostname:
        defaults.append(f"HOSTNAME={hostname}")
    if tty:
        defaults.append("TERM=xterm")
    return replace_or_append_env(defaults + linked, env)


def _str_slice(value: Any, field: str) -> list[str] | None:
    """Docker's strslice: null, one string, or a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"invalid {field}: must be a list of strings")
    for v in value:
        if "\0" in v:
            raise invalid(f"invalid {field}: {v!r} contains a NUL byte")
    return list(value)


def merge_env(request: list[str], image: list[str]) -> list[str]:
    """Request entries first, then the image's whose key the request does not name."""
    keys = {entry.split("=", 1)[0] for entry in request}
    return request + [entry for entry in image if entry.split("=", 1)[0] not in keys]


def replace_or_append_env(defaults: list[str], overrides: list[str]) -> list[str]:
    """dockerd's ReplaceOrAppendEnvValues: an override replaces a default with its key
    in place, or is appended; a bare ``KEY`` unsets it."""
    result: list[str | None] = list(defaults)
    index = {entry.split("=", 1)[0]: i for i, entry in enumerate(defaults)}
    for entry in overrides:
        key, sep, _ = entry.partition("=")
        if not sep:
            if key in index:
                result[index[key]] = None
            continue
        if key in index:
            result[index[key]] = entry
        else:
            result.append(entry)
    return [entry for entry in result if entry is not None]


def clean_abs(path: str) -> str:
    """Go's path.Clean of an absolute path."""
    cleaned = posixpath.normpath(path)
    # normpath keeps a leading "//" (POSIX allows it a meaning); Go's Clean does not.
    return "/" + cleaned.lstrip("/")
