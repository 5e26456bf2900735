"""Networks and their endpoint leases on disk: one JSON file per network under
`<home>/network/networks/`, written atomically before an answer is sent, so a
network actor killed at any moment loses nothing it answered and rebuilds
everything from these files at start."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pouch.actors.fsutil import atomic_write, atomic_write_json
from pouch.actors.network.ipam import Pool

log = logging.getLogger("pouch.network")

BUILTIN_DRIVERS = ("bridge", "host", "null")


@dataclass
class Endpoint:
    """A container's place on a network: its lease and its link."""

    container: str      # the container's full ID
    name: str           # its name, as /etc/hosts of its neighbours show it
    endpoint_id: str
    address: str        # IPv4, without length
    mac: str
    aliases: list[str] = field(default_factory=list)
    host_ifname: str = ""  # the veth's host end ("" until connected)
    ifname: str = "eth0"
    static: bool = False   # given by --ip: kept across restarts as it was asked
    hostname: str = ""
    hosts_path: str = ""   # the container's /etc/hosts, whose peers section we keep current
    dns: list[str] = field(default_factory=list)  # its --dns: its DNS server's upstreams
    # Published ports in force (ports.Binding's fields), while the container runs.
    ports: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Network:
    id: str
    name: str
    driver: str              # bridge, host or null
    created: str             # RFC 3339, as inspect shows it
    builtin: bool = False
    bridge: str = ""         # the Linux bridge of a bridge network
    pool: Pool | None = None
    internal: bool = False
    attachable: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ipam_options: dict[str, str] = field(default_factory=dict)
    mtu: int = 0             # 0: the daemon's
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # by container ID

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["pool"] = self.pool.to_json() if self.pool else None
        data["endpoints"] = {cid: asdict(ep) for cid, ep in self.endpoints.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["pool"] = Pool.from_json(data["pool"]) if data.get("pool") else None
        known["endpoints"] = {cid: Endpoint.from_json(ep)
                              for cid, ep in (data.get("endpoints") or {}).items()}
        return cls(**known)


class NetworkStore:
    def __init__(self, home: Path) -> None:
        self.folder = home / "network" / "networks"
        # One empty file per container that has a sandbox (a netns) of ours, made before
        # the netns and removed after it: a netns of no container's is an orphan.
        self.sandboxes = home / "network" / "sandboxes"

    def add_sandbox(self, container: str) -> None:
        self.sandboxes.mkdir(parents=True, exist_ok=True)
        atomic_write(self.sandboxes / container, b"")

    def drop_sandbox(self, container: str) -> None:
        (self.sandboxes / container).unlink(missing_ok=True)

    def sandbox_owners(self) -> set[str]:
        return {path.name for path in self.sandboxes.iterdir()} if self.sandboxes.is_dir() \
            else set()

    def load(self) -> list[Network]:
        self.folder.mkdir(parents=True, exist_ok=True)
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                found.append(Network.from_json(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # A torn file cannot be (writes are atomic): this is someone's hand edit.
                log.error("skipping unreadable network %s: %s", path.name, exc)
        return found

    def save(self, network: Network) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / f"{network.id}.json", network.to_json())

    def delete(self, network_id: str) -> None:
        (self.folder / f"{network_id}.json").unlink(missing_ok=True)
