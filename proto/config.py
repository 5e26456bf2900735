"""The daemon's configuration: pouchd's flags and config file, shared by every role.

The supervisor resolves it once (defaults < config file < flags) and starts
each child with the same flags, so a child run by hand or by systemd sees
exactly what it would under the supervisor.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_FILE = "/etc/pouch/config.json"
# Where pouchd's own processes register with the broker: see pouch.broker.trust.
PRIVATE_DIR = "private"
ACTOR_SOCKET = "actors.sock"


@dataclass(frozen=True)
class DaemonConfig:
    home_dir: Path = Path("/var/lib/pouch")
    exec_root_dir: Path = Path("/var/run/pouch")
    listen: tuple[str, ...] = ("unix:///var/run/pouchd.sock",)
    containerd_path: str = "/usr/bin/containerd"
    containerd: str = ""  # the socket; default <exec-root-dir>/containerd.sock
    pidfile: str = ""     # default <exec-root-dir>/pouchd.pid
    oom_score_adj: int = -500
    default_registry: str = "docker.io"
    # Registries: plain HTTP allowed (host[:port] or CIDR), mirrors of docker.io, a folder
    # of <host>/hosts.toml as containerd reads them, the proxy pulls and pushes go through.
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    registry_config_path: Path = Path("/etc/pouch/certs.d")
    image_proxy: str = ""
    # The daemon's labels (key=value), listed by /info as dockerd's --label.
    labels: tuple[str, ...] = ()
    debug: bool = False
    # Tests and benchmarks set these; users have no reason to.
    gateway_workers: int = 2
    gateway_threads: int = 16

    @property
    def containerd_socket(self) -> Path:
        return Path(self.containerd) if self.containerd else self.exec_root_dir / "containerd.sock"

    @property
    def broker_endpoint(self) -> str:
        return f"ipc://{self.exec_root_dir / 'broker.sock'}"

    @property
    def actor_endpoint(self) -> str:
        """Where actors register and pouchd's own processes call (not for clients)."""
        return f"ipc://{self.exec_root_dir / PRIVATE_DIR / ACTOR_SOCKET}"

    @property
    def handoff_dir(self) -> Path:
        return self.exec_root_dir / "handoff"

    @property
    def pidfile_path(self) -> Path:
        return Path(self.pidfile) if self.pidfile else self.exec_root_dir / "pouchd.pid"

    def pid_path(self, name: str) -> Path:
        return self.exec_root_dir / f"{name}.pid"

    def to_args(self) -> list[str]:
        """Flags that make a child resolve to this same configuration."""
        args = [
            "--home-dir", str(self.home_dir), "--exec-root-dir", str(self.exec_root_dir),
            "--containerd-path", self.containerd_path, "--containerd", str(self.containerd_socket),
            "--oom-score-adj", str(self.oom_score_adj),
            "--default-registry", self.default_registry,
            "--registry-config-path", str(self.registry_config_path),
            "--image-proxy", self.image_proxy,
            "--gateway-workers", str(self.gateway_workers),
            "--gateway-threads", str(self.gateway_threads),
            "--config-file", "",
        ]
        if self.pidfile:
            args += ["--pidfile", self.pidfile]
        for address in self.listen:
            args += ["--listen", address]
        for registry in self.insecure_registries:
            args += ["--insecure-registry", registry]
        for mirror in self.registry_mirrors:
            args += ["--registry-mirror", mirror]
        for label in self.labels:
            args += ["--label", label]
        if self.debug:
            args.append("--debug")
        return args


# flag name -> (dataclass field, type); the config file uses the flag names as keys.
_FLAGS: dict[str, tuple[str, Any]] = {
    "home-dir": ("home_dir", Path),
    "exec-root-dir": ("exec_root_dir", Path),
    "listen": ("listen", list),
    "containerd-path": ("containerd_path", str),
    "containerd": ("containerd", str),
    "pidfile": ("pidfile", str),
    "oom-score-adj": ("oom_score_adj", int),
    "default-registry": ("default_registry", str),
    "insecure-registry": ("insecure_registries", list),
    "registry-mirror": ("registry_mirrors", list),
    "registry-config-path": ("registry_config_path", Path),
    "image-proxy": ("image_proxy", str),
    "label": ("labels", list),
    "debug": ("debug", bool),
    "gateway-workers": ("gateway_workers", int),
    "gateway-threads": ("gateway_threads", int),
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS
    parser.add_argument("--home-dir", default=s, help="where state lives (default /var/lib/pouch)")
    parser.add_argument("--exec-root-dir", default=s,
                        help="where sockets and pid files live (default /var/run/pouch)")
    parser.add_argument("-l", "--listen", action="append", default=s,
                        help="an address to serve the Docker API on, repeatable "
                             "(default unix:///var/run/pouchd.sock)")
    parser.add_argument("--containerd-path", default=s, help="the containerd binary")
    parser.add_argument("--containerd", default=s,
                        help="the socket pouchd starts containerd on "
                             "(default <exec-root>/containerd.sock)")
    parser.add_argument("--pidfile", default=s, help="pouchd's pid file")
    parser.add_argument("--oom-score-adj", type=int, default=s,
                        help="oom_score_adj of pouchd and containerd (default -500)")
    parser.add_argument("--default-registry", default=s, help="registry of short image names")
    parser.add_argument("--insecure-registry", action="append", default=s,
                        help="a registry (host[:port] or CIDR) reached over plain HTTP, "
                             "repeatable (loopback always is)")
    parser.add_argument("--registry-mirror", action="append", default=s,
                        help="a mirror tried first for docker.io images, repeatable")
    parser.add_argument("--registry-config-path", default=s,
                        help="a folder of <host>/hosts.toml files, as containerd reads them "
                             "(default /etc/pouch/certs.d)")
    parser.add_argument("--image-proxy", default=s,
                        help="the HTTP(S) proxy for pulls and pushes (default: the environment's)")
    parser.add_argument("--label", action="append", default=s,
                        help="a label of the daemon (key=value), listed by `docker info`, "
                             "repeatable")
    parser.add_argument("--config-file", default=DEFAULT_CONFIG_FILE,
                        help="a JSON file of these settings; flags win "
                             f"(default {DEFAULT_CONFIG_FILE})")
    parser.add_argument("-D", "--debug", action="store_true", default=s, help="debug logging")
    parser.add_argument("--gateway-workers", type=int, default=s, help=argparse.SUPPRESS)
    parser.add_argument("--gateway-threads", type=int, default=s, help=argparse.SUPPRESS)


def resolve(opts: argparse.Namespace) -> DaemonConfig:
    """defaults < config file < flags. Raises ValueError naming a bad setting."""
    values: dict[str, Any] = {}
    path = getattr(opts, "config_file", "")
    if path:
        values.update(_read_file(Path(path), required=path != DEFAULT_CONFIG_FILE))
    for flag, (name, _) in _FLAGS.items():
        attr = flag.replace("-", "_")
        if hasattr(opts, attr):
            values[name] = getattr(opts, attr)
    for name in ("listen", "insecure_registries", "registry_mirrors"):
        if name in values:
            values[name] = tuple(values[name])
    if "labels" in values:
        values["labels"] = check_labels(values["labels"])
    for name in ("home_dir", "exec_root_dir", "registry_config_path"):
        if name in values:
            values[name] = Path(values[name]).absolute()
    known = {f.name for f in fields(DaemonConfig)}
    return DaemonConfig(**{k: v for k, v in values.items() if k in known})


def check_labels(labels: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The daemon's labels, each key=value, once each; as dockerd, one key given two
    values is refused. Raises ValueError naming the label."""
    kept: dict[str, str] = {}
    for label in labels:
        key, equals, value = label.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"label '{label}' is not key=value")
        if key in kept and kept[key] != value:
            raise ValueError(f"labels '{key}={kept[key]}' and '{label}' give '{key}' "
                             "two values")
        kept[key] = value
    return tuple(f"{key}={value}" for key, value in kept.items())


def _read_file(path: Path, required: bool) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise ValueError(f"config file {path} does not exist") from None
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config file {path} must hold a JSON object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _FLAGS:
            raise ValueError(f"config file {path}: unknown setting '{key}'")
        name, kind = _FLAGS[key]
        if kind is list:
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"config file {path}: '{key}' must be a list of strings")
        elif kind is Path:
            if not isinstance(value, str):
                raise ValueError(f"config file {path}: '{key}' must be a string")
            value = Path(value)
        elif kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"config file {path}: '{key}' must be an integer")
        elif not isinstance(value, kind):
            raise ValueError(f"config file {path}: '{key}' must be a {kind.__name__}")
        values[name] = value
    return values
