"""What the network actor reads and marks on the host's links, with pyroute2: the
networks already in use (routes, addresses), and its own bridges, recognised by an
alias it sets (`pouch:<tag>`) so that several daemons on one host never take each
other's bridges for orphans. Sandboxes, veths and bridges are made by `sandbox`."""

from __future__ import annotations

import socket
from ipaddress import IPv4Network
from pathlib import Path

from pyroute2 import IPRoute

MAIN_TABLE = 254
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def alias_of(tag: str) -> str:
    return f"pouch:{tag}"


def networks_in_use() -> list[IPv4Network]:
    """Every IPv4 route of the main table and every address's network on the host."""
    found: list[IPv4Network] = []
    with IPRoute() as ipr:
        for route in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            dst = route.get_attr("RTA_DST") or "0.0.0.0"
            found.append(IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
        for addr in ipr.get_addr(family=socket.AF_INET):
            found.append(IPv4Network(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}",
                                     strict=False))
    return found


def exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def mark(name: str, tag: str) -> None:
    """Alias the link `name` as one of this daemon's."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("set", index=found[0], ifalias=alias_of(tag))


def marked(tag: str) -> list[str]:
    """Names of the links this daemon marked."""
    with IPRoute() as ipr:
        return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                      if link.get_attr("IFLA_IFALIAS") == alias_of(tag))


def bridge_members(bridges: set[str]) -> dict[str, str]:
    """Links enslaved to one of `bridges`: name -> bridge."""
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        return {names[link["index"]]: names[master]
                for link in ipr.get_links()
                if (master := link.get_attr("IFLA_MASTER")) in names
                and names[master] in bridges}


def enable_ip_forward() -> None:
    if IP_FORWARD.read_text().strip() != "1":
        IP_FORWARD.write_text("1\n")
