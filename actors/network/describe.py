"""Networks as Docker shows them: inspect's document (dockerd 20.10's shape) and the
list filters. Pure."""

from __future__ import annotations

from typing import Any

from pouch.actors.network.store import Network
from pouch.proto.docker import Filters, check_filters, labels_match, pattern_matches
from pouch.proto.envelope import invalid
from pouch.proto.shapes import NetworkInspect

LIST_FILTERS = ("name", "id", "label", "driver", "type", "dangling", "scope")
PRUNE_FILTERS = ("until", "label", "label!")
BRIDGE_NAME = "com.docker.network.bridge.name"
MTU = "com.docker.network.driver.mtu"
MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"


def default_bridge_options(bridge: str, mtu: int) -> dict[str, str]:
    """The options dockerd shows on its default bridge."""
    return {"com.docker.network.bridge.default_bridge": "true",
            "com.docker.network.bridge.enable_icc": "true",
            MASQUERADE: "true",
            "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
            BRIDGE_NAME: bridge, MTU: str(mtu)}


def inspect(net: Network, with_containers: bool = True) -> NetworkInspect:
    config: list[dict[str, str]] = []
    if net.pool is not None:
        entry = {"Subnet": str(net.pool.subnet), "Gateway": str(net.pool.gateway)}
        if net.pool.ip_range is not None:
            entry["IPRange"] = str(net.pool.ip_range)
        config.append(entry)
    containers: dict[str, Any] = {}
    if with_containers and net.pool is not None:
        for cid, ep in net.endpoints.items():
            containers[cid] = {"Name": ep.name, "EndpointID": ep.endpoint_id,
                               "MacAddress": ep.mac,
                               "IPv4Address": f"{ep.address}/{net.pool.prefixlen}",
                               "IPv6Address": ""}
    elif with_containers:
        for cid, ep in net.endpoints.items():
            containers[cid] = {"Name": ep.name, "EndpointID": ep.endpoint_id,
                               "MacAddress": "", "IPv4Address": "", "IPv6Address": ""}
    return {
        "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local",
        "Driver": net.driver, "EnableIPv6": False,
        "IPAM": {"Driver": "default",
                 "Options": None if net.builtin else dict(net.ipam_options),
                 "Config": config},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": containers, "Options": dict(net.options), "Labels": dict(net.labels),
    }


def check_list_filters(filters: Filters | None) -> Filters:
    """Errors: invalid, in dockerd's words for a bad `type` or `dangling`."""
    checked = check_filters(filters, LIST_FILTERS)
    for value in checked.get("type", []):
        if value not in ("custom", "builtin"):
            raise invalid(f"invalid filter: 'type'='{value}'")
    for value in checked.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise invalid(f"invalid filter 'dangling={value}'")
    return checked


def matches(net: Network, filters: Filters) -> bool:
    """Values of one key OR-ed, keys AND-ed; `name`, `id` and `driver` as regular
    expressions (dockerd's), `type` custom or builtin, `dangling`: no container and
    not predefined."""
    tests = {
        "name": lambda v: pattern_matches(v, net.name),
        "id": lambda v: pattern_matches(v, net.id),
        "driver": lambda v: pattern_matches(f"^{v}$", net.driver),
        "type": lambda v: (v == "builtin") == net.builtin,
        "scope": lambda v: v in ("local", "swarm") and v == "local",
        "dangling": lambda v: (v.lower() in ("true", "1"))
        == (not net.builtin and not net.endpoints),
    }
    for key, values in filters.items():
        if key == "label":
            if not labels_match(values, net.labels):
                return False
        elif key in tests and not any(tests[key](v) for v in values):
            return False
    return True
