"""A container's networks, through the network actor's messages: its endpoint made at
create (a netns the spec joins), released at remove (or with a network removed while it
was stopped: its next start fails, as with dockerd), and NetworkSettings as dockerd
shows them. `none` and `host` need no network actor: runc makes a loopback-only
namespace, or none at all."""

from __future__ import annotations

import logging
from typing import Any

from pouch.actors.container import etcfiles
from pouch.proto.envelope import PouchError, conflict, invalid
from pouch.proto.shapes import EndpointSettings
from pouch.proto.stubs import Calls

log = logging.getLogger("pouch.container")
# Modes that are no network of the network actor's.
LOCAL_MODES = ("none", "host")


def on_network(mode: str) -> bool:
    """Whether the mode names a bridge network (bridge, or a user network's name or ID)."""
    return mode not in LOCAL_MODES and not mode.startswith("container:")


def _endpoint_config(body: dict[str, Any], mode: str) -> dict[str, Any]:
    configs = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if not isinstance(configs, dict):
        return {}
    found = configs.get(mode) or (next(iter(configs.values())) if len(configs) == 1 else {})
    return found if isinstance(found, dict) else {}


def attach(calls: Calls, cid: str, name: str, body: dict[str, Any], mode: str,
           hostname: str, hosts_path: str) -> EndpointSettings | None:
    """The container's endpoint on its network (None for none and host), with the
    aliases and static address of the body's NetworkingConfig (`--network-alias`,
    `--ip`). Errors: the network actor's; a network that is not there is invalid (400):
    a 404 to a create makes the docker CLI pull the image and report that instead."""
    if not on_network(mode):
        return None
    config = _endpoint_config(body, mode)
    aliases = [a for a in config.get("Aliases") or [] if isinstance(a, str)]
    ip = (config.get("IPAMConfig") or {}).get("IPv4Address") or ""
    try:
        return calls.network.attach(
            container=cid, network=mode, name=name, aliases=aliases,
            ip=ip if isinstance(ip, str) else "", hosts_path=hosts_path,
            hostname=etcfiles.own_names(hostname, str(body.get("Domainname") or "")),
            dns=_upstreams(body.get("HostConfig") or {}))
    except PouchError as exc:
        if exc.code == "not_found":
            raise invalid(exc.message) from None
        raise


def is_user_network(mode: str) -> bool:
    """Whether the mode names a user network, whose containers get the embedded DNS
    server (not the default bridge's, as with dockerd)."""
    return on_network(mode) and mode not in ("default", "bridge")


def _upstreams(host_config: dict[str, Any]) -> list[str]:
    """What the embedded DNS server asks for the names it does not know: --dns."""
    return list(etcfiles.Dns.of(host_config).servers)


def release(calls: Calls, cid: str, mode: str) -> None:
    """Its endpoints and netns gone (at remove, or a create undone). A network actor that
    cannot be reached leaves them to its restore, which removes what no endpoint names."""
    if not on_network(mode):
        return
    try:
        calls.network.release(container=cid)
    except PouchError as exc:
        log.warning("releasing the network of %s: %s", cid[:12], exc.message)


def record(rec: dict[str, Any], mode: str, settings: EndpointSettings | None,
           static_ip: str = "") -> None:
    """NetworkSettings of the inspect document, as dockerd 20.10 fills them."""
    if settings is None:
        return
    ns = rec["NetworkSettings"]
    ns["SandboxKey"] = settings["SandboxKey"]
    ns["SandboxID"] = rec["Id"]
    if mode != settings["NetworkName"]:  # the mode named it by ID: shown by its name
        ns["Networks"].pop(mode, None)
        mode = settings["NetworkName"]
    ns["Networks"][mode] = {
        "IPAMConfig": {"IPv4Address": static_ip} if static_ip else None, "Links": None,
        "Aliases": settings["Aliases"] or None, "NetworkID": settings["NetworkID"],
        "EndpointID": settings["EndpointID"], "Gateway": settings["Gateway"],
        "IPAddress": settings["IPAddress"], "IPPrefixLen": settings["IPPrefixLen"],
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "MacAddress": settings["MacAddress"], "DriverOpts": None}
    if mode == "bridge":  # dockerd's top-level fields tell of the default bridge only
        ns.update(EndpointID=settings["EndpointID"], Gateway=settings["Gateway"],
                  IPAddress=settings["IPAddress"], IPPrefixLen=settings["IPPrefixLen"],
                  MacAddress=settings["MacAddress"])


def connect(calls: Calls, rec: dict[str, Any], network: str, aliases: list[str],
            ip: str) -> EndpointSettings:
    """One more network for a container with a sandbox of ours; its endpoint. Errors:
    invalid (none, host), conflict (connected already), the network actor's."""
    mode = rec["HostConfig"].get("NetworkMode") or ""
    name = rec["Name"].lstrip("/")
    if not on_network(mode):
        raise invalid(f"container {name} is in network mode {mode}: it cannot be connected "
                      "to another network")
    known = {n["NetworkID"]: key for key, n in rec["NetworkSettings"]["Networks"].items()}
    settings = calls.network.attach(container=rec["Id"], network=network, name=name,
                                    aliases=aliases, ip=ip,
                                    hostname=etcfiles.own_names(
                                        rec["Config"].get("Hostname") or "",
                                        rec["Config"].get("Domainname") or ""),
                                    hosts_path=rec.get("HostsPath") or "",
                                    dns=_upstreams(rec["HostConfig"]))
    if settings["NetworkID"] in known:
        raise conflict(f"endpoint with name {name} already exists in network "
                       f"{settings['NetworkName']}")
    record(rec, settings["NetworkName"], settings, ip)
    return settings


def disconnect(calls: Calls, rec: dict[str, Any], network: str) -> None:
    """Errors: invalid when it is not connected to that network."""
    networks = rec["NetworkSettings"]["Networks"]
    key = next((key for key, n in networks.items()
                if network in (key, n["NetworkID"]) or
                (len(network) >= 3 and n["NetworkID"].startswith(network))), None)
    if key is None or not on_network(rec["HostConfig"].get("NetworkMode") or ""):
        raise invalid(f"container {rec['Id'][:12]} is not connected to network {network}")
    calls.network.detach(container=rec["Id"], network=networks[key]["NetworkID"])
    del networks[key]
    if key == "bridge":
        rec["NetworkSettings"].update(EndpointID="", Gateway="", IPAddress="", IPPrefixLen=0,
                                      MacAddress="")


def host_gateway(calls: Calls) -> str:
    """The address `--add-host name:host-gateway` names: the default bridge's gateway, as
    dockerd's default --host-gateway-ip. Errors: invalid (pouchd has no default bridge)."""
    try:
        configs = calls.network.inspect(ref="bridge")["IPAM"]["Config"] or []
    except PouchError as exc:
        if exc.code != "not_found":
            raise
        configs = []
    gateway = next((c.get("Gateway") for c in configs if c.get("Gateway")), "")
    if not gateway:
        raise invalid("invalid field HostConfig.ExtraHosts: host-gateway names the default "
                      "bridge's gateway, and pouchd has no default bridge")
    return str(gateway)


def static_ip(body: dict[str, Any], mode: str) -> str:
    ip = (_endpoint_config(body, mode).get("IPAMConfig") or {}).get("IPv4Address") or ""
    return ip if isinstance(ip, str) else ""


def check(calls: Calls, rec: dict[str, Any]) -> None:
    """Before a start: its networks are all still there. A network removed while it was
    stopped (which took its endpoint) fails the start, as with dockerd. Errors: not_found,
    the network actor's."""
    if on_network(rec["HostConfig"].get("NetworkMode") or ""):
        calls.network.check(container=rec["Id"], networks=[
            n["NetworkID"] for n in rec["NetworkSettings"]["Networks"].values()
            if n.get("NetworkID")])


def _published(rec: dict[str, Any]) -> bool:
    return any((rec["NetworkSettings"].get("Ports") or {}).values())


def publish_ports(calls: Calls, rec: dict[str, Any]) -> None:
    """Publish its ports (-p, -P) as it starts: NetworkSettings.Ports as dockerd shows
    them (an exposed port that is not published too, with no bindings). Errors: the
    network actor's (a host port taken: conflict), which fail the start."""
    host = rec["HostConfig"]
    mode = host.get("NetworkMode") or ""
    exposed = sorted((rec["Config"].get("ExposedPorts") or {}).keys())
    if not on_network(mode):
        return
    ports: dict[str, Any] = dict.fromkeys(exposed)
    if host.get("PortBindings") or (host.get("PublishAllPorts") and exposed):
        ports.update(calls.network.publish_ports(
            container=rec["Id"], port_bindings=host.get("PortBindings") or {},
            exposed=exposed, publish_all=bool(host.get("PublishAllPorts"))))
    rec["NetworkSettings"]["Ports"] = ports


def unpublish_ports(calls: Calls, rec: dict[str, Any]) -> None:
    """Release its published ports (it stopped, or its start failed): it shows none."""
    if not _published(rec):
        rec["NetworkSettings"]["Ports"] = {}
        return
    try:
        calls.network.unpublish_ports(container=rec["Id"])
    except PouchError as exc:
        log.warning("releasing the ports of %s: %s", rec["Id"][:12], exc.message)
        return
    rec["NetworkSettings"]["Ports"] = {}
