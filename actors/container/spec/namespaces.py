"""Which namespaces a container has of its own and which it shares with the host:
`--network`, `--ipc`, `--pid` and `--uts` as dockerd 20.10 applies them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pouch.actors.container.spec.fields import str_field
from pouch.proto.envelope import invalid

IPC_MODES = ("private", "shareable", "host", "none")


@dataclass(frozen=True)
class Namespaces:
    """The namespace entries of the spec, and what they mean for the rest of it."""

    entries: list[dict[str, str]]
    host_network: bool
    private_network: bool  # a network namespace of the container's own
    host_ipc: bool
    shm: bool  # the container gets a /dev/shm (not with --ipc none)
    host_uts: bool


def namespaces(hc: Mapping[str, Any], network_mode: str, netns_path: str | None) -> Namespaces:
    """Errors: invalid, naming the field and why."""
    ipc = ipc_mode(hc)
    pid = str_field(hc, "PidMode")
    uts = str_field(hc, "UTSMode")
    if pid not in ("", "host") and not _joins(pid):
        _refuse_mode("PidMode", "PID", pid)
    if uts not in ("", "host"):
        raise invalid(f"invalid HostConfig.UTSMode: invalid UTS mode: {uts}")
    cgroupns = str_field(hc, "CgroupnsMode")
    if cgroupns not in ("", "host", "private"):
        raise invalid(f"invalid HostConfig.CgroupnsMode: invalid cgroup namespace mode: "
                      f"{cgroupns}")
    host_network = network_mode == "host"
    if network_mode.startswith("container:") and not _joins(network_mode):
        raise invalid("invalid HostConfig.NetworkMode: invalid container format "
                      "container:<name|id>")
    # Joining another container's network: the path is that of its task, found at each
    # start (pouch.actors.container.joins).
    entries: list[dict[str, str]] = [{"type": "mount"}]
    if not host_network:
        netns = {"type": "network"}
        if netns_path:
            netns["path"] = netns_path
        entries.append(netns)
    if uts != "host":
        entries.append({"type": "uts"})
    if pid != "host":
        entries.append({"type": "pid"})
    if ipc != "host":
        entries.append({"type": "ipc"})
    if cgroupns == "private":  # the host's is the default, as dockerd's on cgroup v1
        entries.append({"type": "cgroup"})
    return Namespaces(
        entries=entries, host_network=host_network,
        private_network=not host_network and not network_mode.startswith("container:"),
        # Joining another container's IPC: its /dev/shm is bound in at each start
        # (pouch.actors.container.joins), as is the path of each namespace joined.
        host_ipc=ipc == "host", shm=ipc != "none" and not _joins(ipc), host_uts=uts == "host")


def ipc_mode(hc: Mapping[str, Any]) -> str:
    """The IPC mode asked for ("" is dockerd's default, private)."""
    mode = str_field(hc, "IpcMode") or "private"
    if mode not in IPC_MODES and not _joins(mode):
        _refuse_mode("IpcMode", "IPC", mode)
    return mode


def _joins(mode: str) -> bool:
    """`container:<id or name>`: another container's namespace, found at each start."""
    return mode.startswith("container:") and mode != "container:"


def _refuse_mode(field: str, what: str, mode: str) -> None:
    raise invalid(f"invalid HostConfig.{field}: invalid {what} mode: {mode}")


def check_hostname(config: Mapping[str, Any]) -> None:
    """dockerd's rule: a hostname of the container's own needs a UTS namespace of its own."""
    host = config.get("HostConfig") or {}
    if host.get("UTSMode") == "host" and config.get("Hostname"):
        raise invalid("invalid field Config.Hostname: conflicting options: hostname and the "
                      "UTS mode")


# What a container that joins another's network (`--network container:X`) cannot have
# of its own, with dockerd 20.10's words (runconfig/hostconfig_unix.go).
_JOINER_CONFLICTS = (
    ("Hostname", "hostname and the network mode"),
    ("Links", "container type network can't be used with links. This would result in "
              "undefined behavior"),
    ("Dns", "dns and the network mode"),
    ("ExtraHosts", "custom host-to-IP mapping and the network mode"),
    ("MacAddress", "mac-address and the network mode"),
    ("PortBindings", "port publishing and the container type network mode"),
    ("PublishAllPorts", "port publishing and the container type network mode"),
    ("ExposedPorts", "port exposing and the container type network mode"),
)


def check_network_join(config: Mapping[str, Any]) -> None:
    """dockerd's rules for `--network container:X`: no hostname, DNS, hosts, MAC or
    ports of the joiner's own (they are the other container's). Errors: invalid."""
    host = config.get("HostConfig") or {}
    mode = host.get("NetworkMode") or ""
    if not isinstance(mode, str) or not mode.startswith("container:"):
        return
    if not _joins(mode):
        raise invalid("invalid HostConfig.NetworkMode: invalid container format "
                      "container:<name|id>")
    for key, words in _JOINER_CONFLICTS:
        if config.get(key) or host.get(key):
            raise invalid(f"conflicting options: {words}")
