"""IP address management for bridge networks: pools, gateways, ranges, leases.

Pure: the actor reads the host's routes and addresses and the other networks'
subnets, and passes them in; nothing here touches the system, so every rule is
unit-tested with plain values. IPv4 only, as pouch's bridges are.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pouch.proto.envelope import conflict, forbidden, invalid

# Where a network without --subnet takes its subnet from, in order (dockerd's defaults):
# 172.17-31.0.0/16, then the /20s of 192.168.0.0/16.
DEFAULT_POOLS: tuple[IPv4Network, ...] = (
    *(IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)),
    *IPv4Network("192.168.0.0/16").subnets(new_prefix=20),
)


@dataclass(frozen=True)
class Pool:
    """A network's addresses: leases come from `ip_range` (the whole subnet if None),
    never the subnet's first and last address or the gateway."""

    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None
    # Chosen by the daemon: a static --ip needs a subnet the user configured (as dockerd).
    auto: bool = False

    def to_json(self) -> dict[str, str | bool]:
        return {"subnet": str(self.subnet), "gateway": str(self.gateway),
                "ip_range": str(self.ip_range) if self.ip_range else "", "auto": self.auto}

    @classmethod
    def from_json(cls, data: dict[str, str | bool]) -> Pool:
        return cls(IPv4Network(str(data["subnet"])), IPv4Address(str(data["gateway"])),
                   IPv4Network(str(data["ip_range"])) if data.get("ip_range") else None,
                   bool(data.get("auto", False)))

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def gateway_cidr(self) -> str:
        """The bridge's own address: the gateway with the subnet's length."""
        return f"{self.gateway}/{self.subnet.prefixlen}"


def _network(text: str, what: str) -> IPv4Network:
    try:
        return IPv4Network(text, strict=False)
    except ValueError:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise invalid(f"invalid CIDR address: {text}") from None
        raise invalid(f"invalid {what} {text}: only IPv4 is supported") from None


def _address(text: str, what: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise invalid(f"invalid {what} address: {text}") from None


def pool_from(subnet: str, gateway: str = "", ip_range: str = "") -> Pool:
    """A pool the user configured (`--subnet`, `--gateway`, `--ip-range`). A subnet with
    host bits set is taken as its network. Errors: invalid."""
    net = _network(subnet, "subnet")
    if net.is_multicast or net.is_reserved or net.is_loopback or net.is_link_local or \
            net.overlaps(IPv4Network("0.0.0.0/8")):
        raise invalid(f"invalid subnet {subnet}: not a range of unicast addresses")
    if net.prefixlen > 30:
        raise invalid(f"invalid subnet {subnet}: too small for a gateway and an address")
    rng = None
    if ip_range:
        rng = _network(ip_range, "ip-range")
        if not rng.subnet_of(net):
            raise invalid(f"Invalid range {ip_range} : it must be within subnet {net}")
    gw = _address(gateway, "gateway") if gateway else first_host(net)
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise invalid(f"Invalid gateway {gateway} : it must be a host address of subnet {net}")
    return Pool(net, gw, rng)


def pool_from_bip(bip: str, fixed_cidr: str = "") -> Pool:
    """The default bridge's pool: `--bip` is the bridge's address with its length
    (the gateway), `--fixed-cidr` the range containers get addresses from. Errors: invalid."""
    try:
        if "/" not in bip:
            raise ValueError(bip)
        interface = ipaddress.IPv4Interface(bip)
    except ValueError:
        raise invalid(f"invalid --bip {bip}: it must be an IPv4 address with a "
                      "prefix length, as 192.168.5.1/24") from None
    return pool_from(str(interface.network), str(interface.ip), fixed_cidr)


def first_host(net: IPv4Network) -> IPv4Address:
    return net.network_address + 1


def check_overlap(subnet: IPv4Network, others: Iterable[IPv4Network],
                  host: Iterable[IPv4Network] = ()) -> None:
    """A subnet given by the user may not share an address with another network's
    (errors: forbidden, in dockerd's words), nor with a route or an address of the
    host's (the default route aside): a bridge there would take the host's traffic."""
    for other in others:
        if subnet.overlaps(other):
            raise forbidden("Pool overlaps with other one on this address space")
    for route in host:
        if route.prefixlen > 0 and subnet.overlaps(route):
            raise forbidden(f"subnet {subnet} overlaps the host's network {route}")


def choose_subnet(taken: Iterable[IPv4Network],
                  pools: Iterable[IPv4Network] = DEFAULT_POOLS) -> IPv4Network:
    """The first default pool that overlaps nothing taken: the host's routes and
    addresses (a default route is not taken: it covers everything) and the other
    networks. Errors: forbidden."""
    busy = [net for net in taken if net.prefixlen > 0]
    for candidate in pools:
        if not any(candidate.overlaps(net) for net in busy):
            return candidate
    raise forbidden("could not find an available, non-overlapping IPv4 address pool among "
                    "the defaults to assign to the network")


def auto_pool(taken: Iterable[IPv4Network]) -> Pool:
    subnet = choose_subnet(taken)
    return Pool(subnet, first_host(subnet), None, auto=True)


def allocate(pool: Pool, leased: Iterable[IPv4Address], wanted: str = "") -> IPv4Address:
    """An address for an endpoint: `wanted` (a static --ip) if it is free and in the
    subnet, else the lowest free one of the range. Errors: invalid, conflict, forbidden."""
    used = set(leased) | {pool.gateway}
    reserved = (pool.subnet.network_address, pool.subnet.broadcast_address)
    if wanted:
        address = _address(wanted, "IPv4")
        if pool.auto:
            raise invalid("user specified IP address is supported only when connecting to "
                          "networks with user configured subnets")
        if address not in pool.subnet or address in reserved:
            raise invalid(f"no configured subnet or ip-range contain the IP address {wanted}")
        if address in used:
            raise conflict(f"Address already in use: {wanted}")
        return address
    span = pool.ip_range or pool.subnet
    for address in span.hosts() if span.prefixlen < 31 else iter(span):
        if address not in used and address not in reserved:
            return address
    raise forbidden(f"no available IPv4 addresses on this network's address pools: "
                    f"{pool.subnet}")


def mac_for(address: IPv4Address) -> str:
    """The MAC an endpoint gets from its address, as dockerd derives it (02:42 and the
    four bytes), so a re-made endpoint keeps its MAC."""
    return "02:42:" + ":".join(f"{b:02x}" for b in address.packed)
