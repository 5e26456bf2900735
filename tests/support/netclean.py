"""A test daemon's network, kept apart from every other daemon's and removed after it.

Each test daemon gets a bridge name of its own (`ptd` + 6 hex of its folder, so a
PouchDaemon made again on the same folder finds it), used as the tag of its links
and iptables chains, and a default-bridge subnet no route of the host uses. After
it stops, `remove` deletes its veths, bridges and chains; `leftovers` says what of
a tag is still there (nothing, after remove), checked at the session's end.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import random
from pathlib import Path

from pyroute2 import IPRoute

from pouch.actors.network import links, sandbox
from pouch.actors.network.iptables import Chains

PREFIX = "ptd"
# 100.64.0.0/10 (carrier-grade NAT) is unlikely to be routed on a test machine.
BIP_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
# Tags of the daemons this session started: all checked at its end.
SESSION_TAGS: set[str] = set()


def tag_for(base: Path) -> str:
    return PREFIX + hashlib.sha256(str(base).encode()).hexdigest()[:6]


def free_bip() -> str:
    """A /24 of BIP_SPACE that no route or address of the host overlaps, as
    `--bip` takes it (the gateway's address with its length)."""
    busy = [net for net in links.networks_in_use() if net.prefixlen > 0]
    subnets = list(BIP_SPACE.subnets(new_prefix=24))
    for _ in range(200):
        candidate = random.choice(subnets)
        if not any(candidate.overlaps(net) for net in busy):
            return f"{candidate.network_address + 1}/24"
    raise RuntimeError(f"no free /24 in {BIP_SPACE}")


def _tags(base: Path, tag: str) -> set[str]:
    """`tag` and the default bridge's name the daemon kept (a config file may have
    given it another), if it is a test daemon's (never a link of the host's)."""
    found = {tag}
    folder = base / "home" / "network" / "networks"
    for path in folder.glob("*.json") if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            bridge = data.get("bridge") or ""
            if data.get("builtin") and bridge.startswith(PREFIX):
                found.add(bridge)
    return found


def remove(base: Path, tag: str) -> None:
    """Every veth, bridge and iptables chain of the daemon in `base`; idempotent."""
    for each in _tags(base, tag):
        bridges = set(links.marked(each)) | {each}
        for veth in links.bridge_members(bridges):
            sandbox.disconnect(veth)
        for bridge in bridges:
            sandbox.remove_bridge(bridge)
        Chains(each).remove()


def leftovers(tag: str) -> list[str]:
    """What of `tag` remains: links (named or marked) and iptables lines."""
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                 if link.get_attr("IFLA_IFNAME") == tag
                 or link.get_attr("IFLA_IFALIAS") == links.alias_of(tag)]
    return [f"link {name}" for name in names] + Chains(tag).leftovers()
