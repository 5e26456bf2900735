"""CNI plugins called directly, as the CNI specification (0.4.0 / 1.0.0) has a runtime
call them: the plugin's binary from the bin dir, its command and container in CNI_*
variables, the network configuration on stdin, a JSON result (or error) on stdout.

A network configuration list runs its plugins in order for ADD, each given the
previous one's result, and in reverse for DEL.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pouch.actors import mountpoints
from pouch.proto.envelope import PouchError

DEFAULT_NAME = "pouch-cri"
DEFAULT_FILE = "10-pouch-cri.conflist"
DEFAULT_SUBNET = "10.88.0.0/16"
DEFAULT_BRIDGE = "pcni0"
PLUGIN_TIMEOUT = 60.0


@dataclass(frozen=True)
class NetConf:
    """A network configuration list (a single .conf is read as a list of one)."""

    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.raw.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.raw.get("cniVersion", "0.4.0"))

    @property
    def plugins(self) -> list[dict[str, Any]]:
        return list(self.raw.get("plugins") or [])


def default_config(subnet: str = "") -> dict[str, Any]:
    """A bridge with host-local addresses and a default route, and portmap for hostPorts."""
    return {
        "cniVersion": "0.4.0", "name": DEFAULT_NAME,
        "plugins": [
            {"type": "bridge", "bridge": DEFAULT_BRIDGE, "isGateway": True, "ipMasq": True,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet or DEFAULT_SUBNET}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_default_config(conf_dir: Path, subnet: str = "") -> None:
    """Write the default list if the folder has no configuration (or only ours, which a
    new pod CIDR rewrites)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    others = [p for p in _config_files(conf_dir) if p.name != DEFAULT_FILE]
    ours = conf_dir / DEFAULT_FILE
    if others or (ours.exists() and not subnet):
        return
    tmp = ours.with_suffix(".tmp")
    tmp.write_text(json.dumps(default_config(subnet), indent=2) + "\n")
    os.replace(tmp, ours)


def _config_files(conf_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in conf_dir.iterdir()
                      if p.suffix in (".conflist", ".conf", ".json") and p.is_file())
    except FileNotFoundError:
        return []


def load_config(conf_dir: Path, bin_dir: Path) -> NetConf:
    """The first configuration of the folder (by name), its plugins all found.
    Errors: unavailable, saying what is missing."""
    for path in _config_files(conf_dir):
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(raw, dict):
            continue
        if "plugins" not in raw:  # a single plugin's .conf
            raw = {"cniVersion": raw.get("cniVersion", "0.4.0"), "name": raw.get("name", ""),
                   "plugins": [raw]}
        conf = NetConf(raw)
        for plugin in conf.plugins:
            if not (bin_dir / str(plugin.get("type", ""))).is_file():
                raise PouchError("unavailable", f"cni plugin {plugin.get('type')!r} of "
                                 f"{path} is not in {bin_dir}")
        if conf.plugins:
            return conf
    raise PouchError("unavailable", f"cni config uninitialized: no network config in {conf_dir}")


def pod_args(name: str, namespace: str, pod: str) -> str:
    return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};"
            f"K8S_POD_INFRA_CONTAINER_ID={pod}")


def add(conf: NetConf, bin_dir: Path, container: str, netns: str, ifname: str, args: str,
        runtime: dict[str, Any]) -> dict[str, Any]:
    """ADD through the list; the last plugin's result. Errors: internal (a plugin's)."""
    result: dict[str, Any] | None = None
    for plugin in conf.plugins:
        netconf = _plugin_conf(conf, plugin, result, runtime)
        result = _run(bin_dir, "ADD", container, netns, ifname, args, netconf) or result
    return result or {}


def delete(conf: NetConf, bin_dir: Path, container: str, netns: str, ifname: str, args: str,
           runtime: dict[str, Any]) -> None:
    """DEL through the list in reverse; every plugin is called even if one fails (the
    first error is raised after)."""
    failure: PouchError | None = None
    for plugin in reversed(conf.plugins):
        try:
            _run(bin_dir, "DEL", container, netns, ifname, args,
                 _plugin_conf(conf, plugin, None, runtime))
        except PouchError as error:
            failure = failure or error
    if failure:
        raise failure


def ip_of(result: dict[str, Any]) -> str:
    """The first IPv4 address of a result (0.4.0/1.0.0 `ips`, or 0.2.0 `ip4`)."""
    for entry in result.get("ips") or []:
        address = str(entry.get("address", ""))
        if entry.get("version", "4") == "4" and ":" not in address:
            return address.partition("/")[0]
    return str((result.get("ip4") or {}).get("ip", "")).partition("/")[0]


def _plugin_conf(conf: NetConf, plugin: dict[str, Any], prev: dict[str, Any] | None,
                 runtime: dict[str, Any]) -> dict[str, Any]:
    netconf = {**plugin, "cniVersion": conf.version, "name": conf.name}
    if prev is not None:
        netconf["prevResult"] = prev
    capabilities = plugin.get("capabilities") or {}
    wanted = {k: v for k, v in runtime.items() if capabilities.get(k)}
    if wanted:
        netconf["runtimeConfig"] = wanted
    return netconf


def _run(bin_dir: Path, command: str, container: str, netns: str, ifname: str, args: str,
         netconf: dict[str, Any]) -> dict[str, Any] | None:
    plugin = str(netconf.get("type", ""))
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": str(bin_dir),
           "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    try:
        done = subprocess.run([str(bin_dir / plugin)], input=json.dumps(netconf).encode(),
                              env=env, capture_output=True, timeout=PLUGIN_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PouchError("internal", f"cni plugin {plugin} {command}: {error}") from None
    output = done.stdout.strip()
    parsed: Any = None
    with contextlib.suppress(ValueError):
        parsed = json.loads(output) if output else None
    if done.returncode != 0:
        message = parsed.get("msg", "") if isinstance(parsed, dict) else ""
        details = parsed.get("details", "") if isinstance(parsed, dict) else ""
        text = message or done.stderr.decode(errors="replace").strip() or output.decode(
            errors="replace")
        raise PouchError("internal", f"cni plugin {plugin} {command} failed: {text}"
                         + (f" ({details})" if details else ""))
    return parsed if isinstance(parsed, dict) else None


def bind_mount(source: str, target: Path) -> None:
    try:
        mountpoints.mount(source, target, flags=4096)  # MS_BIND
    except OSError as error:
        raise PouchError("internal", str(error)) from None


def unmount(target: Path) -> None:
    with contextlib.suppress(OSError):
        mountpoints.unmount(target)
