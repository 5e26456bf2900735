"""Settings that change while pouchd runs: through POST /daemon/update, or when a SIGHUP
makes pouchd read its config file again.

The supervisor writes them to `<exec-root>/settings.json` when it starts and whenever
they change; an actor reads that file each time it uses them (the image actor, at each
pull, push or login). So a change applies to the next pull, an actor restarted after a
crash keeps it, and pouchd started anew begins from its flags and config file again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from urllib.parse import urlsplit

from pouch.actors.fsutil import atomic_write_json
from pouch.proto.config import DaemonConfig, check_labels
from pouch.proto.envelope import invalid

log = logging.getLogger("pouch.settings")

SETTINGS_FILE = "settings.json"
# What may change at run time: the image actor's registry settings, and the daemon's
# labels (which /info lists).
RELOADABLE = ("image_proxy", "insecure_registries", "registry_mirrors",
              "registry_config_path", "labels")


def _path(config: DaemonConfig) -> Path:
    return config.exec_root_dir / SETTINGS_FILE


def write_settings(config: DaemonConfig) -> None:
    """Record the run-time settings of `config` for the actors to read."""
    atomic_write_json(_path(config), {name: _plain(getattr(config, name))
                                      for name in RELOADABLE}, durable=False)


def _plain(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


def current(config: DaemonConfig) -> DaemonConfig:
    """`config` with the run-time settings the supervisor wrote last (as it is, if none)."""
    try:
        recorded = json.loads(_path(config).read_text())
    except FileNotFoundError:
        return config
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", _path(config), exc)
        return config
    changes: dict[str, object] = {}
    for name in RELOADABLE:
        if name not in recorded:
            continue
        value = recorded[name]
        default = getattr(config, name)
        changes[name] = (Path(value) if isinstance(default, Path) else
                         tuple(value) if isinstance(default, tuple) else value)
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def check_proxy(url: str) -> str:
    """An image proxy as given, once it is one: "" (none: the environment's) or an
    http(s) URL with a host. Errors: invalid."""
    if not url:
        return ""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise invalid(f"image proxy {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(f"image proxy {url!r} is not an http:// or https:// URL with a host")
    return url


def update_labels(labels: tuple[str, ...], changes: list[str]) -> tuple[str, ...]:
    """`labels` with `changes` (key=value each) applied as pouchd's /daemon/update applies
    them: a key already there takes the new value in its place, a new key comes last.
    Errors: invalid, naming a label that is not key=value or a key given twice."""
    try:
        new = check_labels(changes)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    values = {key: value for key, _, value in (label.partition("=") for label in new)}
    kept = []
    for label in labels:
        key = label.partition("=")[0]
        kept.append(f"{key}={values.pop(key)}" if key in values else label)
    return (*kept, *(f"{key}={value}" for key, value in values.items()))
