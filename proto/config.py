"""The daemon's configuration: pouchd's flags and config file, shared by every role.

The supervisor resolves it once (defaults < config file < flags) and starts
each child with the same flags, so a child run by hand or by systemd sees
exactly what it would under the supervisor.
"""

from __future__ import annotations

import argparse
import grp
import ipaddress
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_FILE = "/etc/pouch/config.json"
# In --zmq-keys: the broker's CURVE secret key, and the authorized clients' public keys.
ZMQ_SERVER_SECRET = "server.key_secret"
ZMQ_CLIENT_KEYS = "clients"
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
    # The default bridge network ("bridge" in the API): its Linux link, address (gateway
    # and subnet), the range containers get addresses from, MTU; and whether pouch writes
    # iptables rules (NAT, isolation, ports) and turns on IPv4 forwarding, as dockerd's.
    bridge_name: str = "p0"
    bip: str = "192.168.5.1/24"
    fixed_cidr: str = ""
    mtu: int = 1500
    iptables: bool = True
    ip_forward: bool = True
    # The API over TCP: TLS with these files; `tlsverify` also asks clients for a
    # certificate signed by `tlscacert`. The unix sockets' group (mode 0660).
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    group: str = ""
    # Remote ZeroMQ clients: a tcp:// endpoint of the broker, CURVE keys in a folder
    # (pouch.broker.curve).
    zmq_listen: str = ""
    zmq_keys: str = ""
    # The CRI (Kubernetes' runtime.v1 over gRPC): served only with --enable-cri, on a unix
    # socket; pods' pause containers run the sandbox image; CNI plugins and their configs.
    enable_cri: bool = False
    listen_cri: str = "/var/run/pouchcri.sock"
    sandbox_image: str = "pouch/pause:latest"
    cni_conf_dir: Path = Path("/etc/cni/net.d")
    cni_bin_dir: Path = Path("/usr/lib/cni")
    # Where CRI Exec/Attach/PortForward URLs point: the streaming server (SPDY, WebSocket).
    stream_server_address: str = "127.0.0.1"
    stream_server_port: int = 10010
    # Tests and benchmarks set these; users have no reason to.
    gateway_workers: int = 2
    gateway_threads: int = 16

    @property
    def containerd_socket(self) -> Path:
        return Path(self.containerd) if self.containerd else self.exec_root_dir / "containerd.sock"

    @property
    def containerd_state_dir(self) -> Path:
        """The state folder of the containerd pouchd runs itself (unless --containerd)."""
        return self.exec_root_dir / "containerd"

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
    def direct_dir(self) -> Path:
        """Where each actor listens for local clients' direct calls (pouch.broker.direct)."""
        return self.exec_root_dir / "direct"

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
            "--bridge-name", self.bridge_name, "--bip", self.bip,
            "--fixed-cidr", self.fixed_cidr, "--mtu", str(self.mtu),
            f"--iptables={str(self.iptables).lower()}",
            f"--ip-forward={str(self.ip_forward).lower()}",
            "--config-file", "",
            "--listen-cri", self.listen_cri, "--sandbox-image", self.sandbox_image,
            "--cni-conf-dir", str(self.cni_conf_dir), "--cni-bin-dir", str(self.cni_bin_dir),
            "--stream-server-address", self.stream_server_address,
            "--stream-server-port", str(self.stream_server_port),
        ]
        if self.enable_cri:
            args.append("--enable-cri")
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
        if self.tls:
            args.append("--tls")
        if self.tlsverify:
            args.append("--tlsverify")
        for flag in ("tlscacert", "tlscert", "tlskey", "group", "zmq_listen", "zmq_keys"):
            if getattr(self, flag):
                args += [f"--{flag.replace('_', '-')}", getattr(self, flag)]
        return args

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tlsverify


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
    "tls": ("tls", bool),
    "tlsverify": ("tlsverify", bool),
    "tlscacert": ("tlscacert", str),
    "tlscert": ("tlscert", str),
    "tlskey": ("tlskey", str),
    "group": ("group", str),
    "zmq-listen": ("zmq_listen", str),
    "zmq-keys": ("zmq_keys", str),
    "enable-cri": ("enable_cri", bool),
    "listen-cri": ("listen_cri", str),
    "sandbox-image": ("sandbox_image", str),
    "cni-conf-dir": ("cni_conf_dir", Path),
    "cni-bin-dir": ("cni_bin_dir", Path),
    "stream-server-address": ("stream_server_address", str),
    "stream-server-port": ("stream_server_port", int),
    "gateway-workers": ("gateway_workers", int),
    "gateway-threads": ("gateway_threads", int),
    "bridge-name": ("bridge_name", str),
    "bip": ("bip", str),
    "fixed-cidr": ("fixed_cidr", str),
    "mtu": ("mtu", int),
    "iptables": ("iptables", bool),
    "ip-forward": ("ip_forward", bool),
}


def _flag_bool(text: str) -> bool:
    # dockerd's spelling of a flag that defaults to true: --iptables=false
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


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
    parser.add_argument("--tls", action="store_true", default=s,
                        help="serve tcp:// addresses over TLS (--tlscert, --tlskey)")
    parser.add_argument("--tlsverify", action="store_true", default=s,
                        help="TLS, and clients must show a certificate signed by --tlscacert "
                             "(needed to listen on TCP beyond loopback)")
    parser.add_argument("--tlscacert", default=s,
                        help="the CA that clients' certificates are checked against")
    parser.add_argument("--tlscert", default=s, help="the server's certificate (PEM)")
    parser.add_argument("--tlskey", default=s, help="the server's private key (PEM)")
    parser.add_argument("--zmq-listen", default=s,
                        help="a tcp://host:port for remote ZeroMQ clients, CURVE only")
    parser.add_argument("--zmq-keys", default=s,
                        help=f"the folder of CURVE keys: {ZMQ_SERVER_SECRET} and "
                             f"{ZMQ_CLIENT_KEYS}/*.key (the authorized clients)")
    parser.add_argument("-G", "--group", default=s,
                        help="the group of the unix sockets (default pouch when it exists, "
                             "else root's only)")
    parser.add_argument("-b", "--bridge-name", default=s,
                        help="the default bridge network's link (default p0)")
    parser.add_argument("--bip", default=s,
                        help="the default bridge's address and length (default 192.168.5.1/24)")
    parser.add_argument("--fixed-cidr", default=s,
                        help="the range within --bip containers get addresses from")
    parser.add_argument("--mtu", type=int, default=s,
                        help="the default bridge's MTU (default 1500)")
    parser.add_argument("--iptables", type=_flag_bool, nargs="?", const=True, default=s,
                        help="write iptables rules (default true; --iptables=false)")
    parser.add_argument("--ip-forward", "--ipforward", dest="ip_forward", type=_flag_bool,
                        nargs="?", const=True, default=s,
                        help="turn on IPv4 forwarding (default true; --ip-forward=false)")
    parser.add_argument("--enable-cri", action="store_true", default=s,
                        help="serve Kubernetes' CRI (runtime.v1) on --listen-cri")
    parser.add_argument("--listen-cri", default=s,
                        help="the CRI's unix socket (default /var/run/pouchcri.sock)")
    parser.add_argument("--sandbox-image", default=s,
                        help="the image of pods' pause containers (default pouch/pause:latest)")
    parser.add_argument("--cni-conf-dir", default=s,
                        help="the CNI network configurations (default /etc/cni/net.d)")
    parser.add_argument("--cni-bin-dir", default=s,
                        help="the CNI plugin binaries (default /usr/lib/cni)")
    parser.add_argument("--stream-server-address", default=s,
                        help="the CRI streaming server's address (default 127.0.0.1)")
    parser.add_argument("--stream-server-port", type=int, default=s,
                        help="the CRI streaming server's port (default 10010)")
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
    for name in ("home_dir", "exec_root_dir", "registry_config_path", "cni_conf_dir",
                 "cni_bin_dir"):
        if name in values:
            values[name] = Path(values[name]).absolute()
    known = {f.name for f in fields(DaemonConfig)}
    config = DaemonConfig(**{k: v for k, v in values.items() if k in known})
    check_entrances(config)
    return config


def check_entrances(config: DaemonConfig) -> None:
    """Nothing unauthenticated may reach the API from beyond this machine: a TCP address
    other than loopback needs --tlsverify. Raises ValueError naming the address or file."""
    for address in config.listen:
        if not address.startswith(("unix://", "tcp://")):
            raise ValueError(f"listen address {address!r}: use unix:///path or tcp://host:port")
        if address.startswith("tcp://") and not config.tlsverify \
                and not _loopback(address.removeprefix("tcp://").rpartition(":")[0]):
            raise ValueError(
                f"listen address {address}: the API beyond loopback needs --tlsverify with "
                "--tlscacert, --tlscert and --tlskey (whoever reaches it is root here)")
    if config.zmq_listen:
        check_zmq_entrance(config.zmq_listen, config.zmq_keys)
    if config.group:
        try:
            grp.getgrnam(config.group)
        except KeyError:
            raise ValueError(f"--group {config.group}: no such group") from None
    if config.uses_tls:
        needed = ("tlscert", "tlskey", "tlscacert") if config.tlsverify else ("tlscert", "tlskey")
        for flag in needed:
            if not getattr(config, flag):
                raise ValueError(f"--{'tlsverify' if config.tlsverify else 'tls'} needs --{flag}")
        for flag in needed:
            if not Path(getattr(config, flag)).is_file():
                raise ValueError(f"--{flag} {getattr(config, flag)}: no such file")


def check_zmq_entrance(listen: str, keys: str) -> None:
    if not listen.startswith("tcp://"):
        raise ValueError(f"--zmq-listen {listen}: use tcp://host:port (local clients use "
                         "the broker's ipc socket)")
    if not keys:
        raise ValueError("--zmq-listen needs --zmq-keys: remote clients are CURVE only")
    folder = Path(keys)
    if not (folder / ZMQ_SERVER_SECRET).is_file():
        raise ValueError(f"--zmq-keys {keys}: no {ZMQ_SERVER_SECRET} (the broker's secret "
                         "key, as zmq.auth.create_certificates writes it)")
    if not (folder / ZMQ_CLIENT_KEYS).is_dir():
        raise ValueError(f"--zmq-keys {keys}: no {ZMQ_CLIENT_KEYS}/ folder of the "
                         "authorized clients' public keys")


def _loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name may resolve to anything


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
