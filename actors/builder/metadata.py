"""What the classic builder's metadata instructions (ENV, LABEL, EXPOSE, VOLUME, USER,
WORKDIR, STOPSIGNAL, CMD, ENTRYPOINT, SHELL, ONBUILD, HEALTHCHECK, MAINTAINER) do to an
image config; for a build's steps, and for the `changes` of docker commit and docker
import, which dockerd reads as a Dockerfile of their own (its BuildFromConfig: the same
parser and dispatchers, those ten instructions only, expanded with the config's
environment). Pure: a config in, a new one out."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pouch.actors.builder.dockerfile import (
    ESCAPE,
    DockerfileError,
    Instruction,
    expand,
    expand_words,
    health_config,
    pairs,
    parse_instruction,
)
from pouch.proto.envelope import invalid

METADATA: Final = ("env", "label", "expose", "volume", "user", "workdir", "cmd", "entrypoint",
                   "stopsignal", "healthcheck", "shell", "onbuild", "maintainer")
DEFAULT_SHELL: Final = ["/bin/sh", "-c"]
# dockerd 20.10's validCommitCommands: what commit and import take as changes.
CHANGES: Final = ("cmd", "entrypoint", "healthcheck", "env", "expose", "label", "onbuild",
                  "user", "volume", "workdir")


def env_map(config: Mapping[str, Any]) -> dict[str, str]:
    """The config's Env as a mapping (a later entry of a name wins)."""
    found: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        found[key] = value
    return found


def apply(config: Mapping[str, Any], ins: Instruction, env: Mapping[str, str],
          escape: str = ESCAPE, cmd_set: bool = False) -> tuple[dict[str, Any], bool]:
    """`config` after the metadata instruction `ins`, its words expanded with `env`
    (unless `ins` is one the build added itself), and whether CMD is set now: an
    ENTRYPOINT clears a CMD the same build (`cmd_set`) did not set, as dockerd's."""
    result: dict[str, Any] = json.loads(json.dumps(config))

    def word(text: str) -> str:
        return expand(text, env, escape) if ins.expand else text

    words = [word(w) for w in ins.args] if ins.command in (
        "volume", "user", "workdir", "stopsignal") else ins.args
    command = ins.command
    if command in ("env", "label"):
        found = {word(k): word(v) for k, v in pairs(ins)}
        if command == "env":
            kept = [e for e in result.get("Env") or [] if e.partition("=")[0] not in found]
            result["Env"] = kept + [f"{k}={v}" for k, v in found.items()]
        else:
            result["Labels"] = {**(result.get("Labels") or {}), **found}
    elif command == "expose":
        ports = [p if "/" in p else f"{p}/tcp" for p in expand_words(ins.args, env, escape)]
        result["ExposedPorts"] = {**(result.get("ExposedPorts") or {}),
                                  **{p: {} for p in ports}}
    elif command == "volume":
        result["Volumes"] = {**(result.get("Volumes") or {}), **{w: {} for w in words}}
    elif command == "user":
        result["User"] = words[0]
    elif command == "workdir":
        result["WorkingDir"] = posixpath.normpath(posixpath.join(
            result.get("WorkingDir") or "/", words[0]))
    elif command == "stopsignal":
        result["StopSignal"] = words[0]
    elif command in ("cmd", "entrypoint"):
        value = list(ins.args) if ins.json_form else [
            *(result.get("Shell") or DEFAULT_SHELL), " ".join(ins.args)]
        if command == "cmd":
            result["Cmd"] = value
            cmd_set = True
        else:
            result["Entrypoint"] = value
            if not cmd_set:
                result["Cmd"] = None
    elif command == "shell":
        result["Shell"] = list(ins.args)
    elif command == "onbuild":
        result["OnBuild"] = [*(result.get("OnBuild") or []), " ".join(ins.args)]
    elif command == "healthcheck":
        result["Healthcheck"] = health_config(ins)
    return result, cmd_set


def apply_changes(changes: Sequence[str], config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with commit's or import's `changes` applied, one instruction each, in
    order, as dockerd's BuildFromConfig. Errors: invalid, in dockerd's words."""
    instructions = []
    for line, change in enumerate(changes, start=1):
        try:
            ins = parse_instruction(change, line=line)
        except DockerfileError as error:
            raise invalid(str(error)) from None
        if ins.command not in CHANGES:
            raise invalid(f"{ins.command} is not a valid change command")
        instructions.append(ins)
    result, cmd_set = dict(config), False
    for ins in instructions:
        try:
            result, cmd_set = apply(result, ins, env_map(result), cmd_set=cmd_set)
        except DockerfileError as error:
            raise invalid(str(error)) from None
    return result
