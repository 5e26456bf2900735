"""Legacy container links (`docker run --link <name or id>[:alias]`), as dockerd 20.10
gives them.

On the default bridge a link is recorded at create as dockerd's inspect shows it
("/db:/web/alias"), the linked container kept by ID beside it so that a rename of either
does not break it, and applied at each start, as dockerd applies it then (its
setupLinkedContainers and buildSandboxOptions): the linked container must run, and the
linking one gets a line of /etc/hosts naming it and environment variables telling of its
address, exposed ports and own environment. A container with no network (`none`) keeps
its links and gets nothing of them, as from dockerd.

On a user network a link is an alias of the linked container that only the linking
container knows: a line of its /etc/hosts, written at each start if the linked container
is on that network then (it need not exist at create). No environment: dockerd gives
none there.

The lines a start writes follow HOSTS_MARKER, which the create writes above the network
actor's section of the file (pouch.actors.network.hosts), where they stay.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pouch.actors.container.joins import CHAIN_MAX, donor_of, missing_is_invalid
from pouch.actors.container.networking import is_user_network
from pouch.actors.fsutil import rewrite_in_place
from pouch.actors.network.hosts import MARKER as NETWORK_SECTION
from pouch.proto.envelope import PouchError, conflict, invalid

HOSTS_MARKER = "# pouch: --link, written at each start"
HOST_NETWORK_CONFLICT = ("conflicting options: host type networking can't be used with "
                         "links. This would result in undefined behavior")
# What a linked container's environment keeps to itself (dockerd's Link.ToEnv).
_NOT_PASSED_ON = ("HOME", "PATH")

Inspect = Callable[[str], Mapping[str, Any]]


@dataclass(frozen=True)
class Link:
    name: str  # the linked container, as asked for: its name or ID
    alias: str


def parse(entry: Any) -> Link:
    """dockerd's ParseLink: "name:alias", "name" (the alias too), or "/db:/web/alias"
    as inspect shows a link. Errors: invalid."""
    if not isinstance(entry, str) or not entry:
        raise invalid("empty string specified for links")
    parts = entry.split(":")
    if len(parts) > 2 or not all(parts):
        raise invalid(f"bad format for links: {entry}")
    if len(parts) == 1:
        return Link(entry, entry)
    name, alias = parts
    if name.startswith("/"):
        return Link(name[1:], posixpath.basename(alias))
    return Link(name, alias)


def requested(body: Mapping[str, Any], network: str) -> list[Link]:
    """The links a create body asks for: HostConfig.Links, and on a user network
    `network` also its endpoint's Links (where the docker CLI puts them too, and compose
    alone). Errors: invalid."""
    entries = _strings((body.get("HostConfig") or {}).get("Links"), "HostConfig.Links")
    configs = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    endpoint = configs.get(network) if isinstance(configs, dict) else None
    if is_user_network(network) and isinstance(endpoint, dict):
        entries += _strings(endpoint.get("Links"), f"EndpointsConfig.{network}.Links")
    return [parse(entry) for entry in dict.fromkeys(entries)]


def _strings(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"invalid field {field}: must be a list of strings")
    return list(value)


def check(body: Mapping[str, Any]) -> None:
    """What a create body's links may not be, with dockerd's words (a `container:` mode
    is refused with the rest of what a joiner cannot have: spec/namespaces.py).
    Errors: invalid."""
    host = body.get("HostConfig") or {}
    mode = str(host.get("NetworkMode") or "default")
    if requested(body, mode) and mode == "host":
        raise invalid(HOST_NETWORK_CONFLICT)


def linked(ref: str, inspect: Inspect) -> Mapping[str, Any]:
    """The container a link to `ref` reaches, as dockerd's registerLinks finds it: one
    that joined another's network stands for that one. Errors: invalid (not there, a 400
    with dockerd's words; on the host's network)."""
    with missing_is_invalid(f"could not get container for {ref}:"):
        found = inspect(ref)
    for _ in range(CHAIN_MAX):
        donor = donor_of(str(found["HostConfig"].get("NetworkMode") or ""))
        if not donor:
            break
        with missing_is_invalid(f"Could not get container for {donor}:"):
            found = inspect(donor)
    if found["HostConfig"].get("NetworkMode") == "host":
        raise invalid(HOST_NETWORK_CONFLICT)
    return found


def recorded(own_name: str, links: Iterable[tuple[Link, Mapping[str, Any]]]
             ) -> list[dict[str, str]]:
    """What a record keeps of its bridge links (a link and the container it reaches):
    each linked container's ID and the link's full name; of two links with one alias, the
    first (dockerd's registerLink)."""
    kept: dict[str, str] = {}
    for link, other in links:
        kept.setdefault(f"{own_name}/{link.alias}", other["Id"])
    return [{"Id": cid, "Name": full} for full, cid in kept.items()]


def shown(kept: Iterable[Mapping[str, str]], names: Mapping[str, str]) -> list[str] | None:
    """HostConfig.Links as dockerd's inspect shows them ("/db:/web/alias"), `names`
    giving each linked container's name by ID."""
    return [f"{names[k['Id']]}:{k['Name']}" for k in kept if k["Id"] in names] or None


@dataclass(frozen=True)
class Applied:
    """What a start gives a container of its bridge links."""

    env: list[str]
    hosts: list[str]


def on_bridge(kept: Iterable[Mapping[str, str]], others: Mapping[str, Mapping[str, Any]]
              ) -> Applied:
    """The environment and hosts lines of the links `kept`, from the inspect documents
    of the linked containers by ID (`others`; one that is gone took its links with it,
    as in dockerd). Errors: conflict (one does not run, or is not on the default
    bridge), with dockerd's words."""
    env: list[str] = []
    hosts: list[str] = []
    for link in kept:
        other = others.get(link["Id"])
        if other is None:
            continue
        if not other["State"].get("Running"):
            raise conflict(f"Cannot link to a non running container: {other['Name']} AS "
                           f"{link['Name']}")
        bridge = ((other.get("NetworkSettings") or {}).get("Networks") or {}).get("bridge")
        if not bridge:
            raise conflict(f"Cannot link to {other['Name']}, as it does not belong to the "
                           "default network")
        config = other.get("Config") or {}
        address = str(bridge.get("IPAddress") or "")
        env += link_env(link["Name"], address, config.get("ExposedPorts") or {},
                        config.get("Env") or [])
        hosts.append(hosts_line(address, posixpath.basename(link["Name"]),
                                str(config.get("Hostname") or ""), other["Name"].lstrip("/")))
    return Applied(env=list(dict.fromkeys(env)), hosts=hosts)


def hosts_line(address: str, alias: str, hostname: str, name: str) -> str:
    """dockerd's line for a linked container: its alias, hostname and name (unless the
    alias is its name)."""
    names = [alias, hostname] + ([name] if alias != name else [])
    return f"{address}\t{' '.join(n for n in names if n)}"


def _port(port: str) -> tuple[int, str]:
    """"5432/tcp" as (5432, "tcp")."""
    number, _, proto = port.partition("/")
    return (int(number) if number.isdigit() else 0), proto or "tcp"


def link_env(full_name: str, address: str, exposed: Iterable[str], env: Iterable[str]
             ) -> list[str]:
    """dockerd 20.10's Link.ToEnv: the variables that tell a container of the one it
    links to as `full_name` ("/web/db"), at `address`, with its `exposed` ports
    ("5432/tcp") and its environment."""
    alias = posixpath.basename(full_name).upper().replace("-", "_")
    # By number, TCP first of one number (dockerd's order).
    ports = sorted((_port(p) for p in exposed), key=lambda p: (p[0], p[1] != "tcp", p[1]))

    def prefix(number: int, proto: str) -> str:
        return f"{alias}_PORT_{number}_{proto.upper()}"

    def url(number: int, proto: str) -> str:
        return f"{proto}://{address}:{number}"

    out = [f"{alias}_PORT={url(*ports[0])}"] if ports else []
    i = 0
    while i < len(ports):
        end = _run_end([number for number, _ in ports], i)
        if end <= i + 1:
            i += 1
            continue
        # Three ports or more in a row are told as a range too; dockerd names its end
        # after the first port, with the last one's protocol.
        (first, proto), (last, last_proto) = ports[i], ports[end]
        head, tail = prefix(first, proto), prefix(first, last_proto)
        out += [f"{head}_START={url(first, proto)}", f"{head}_ADDR={address}",
                f"{head}_PROTO={proto}", f"{head}_PORT_START={first}",
                f"{tail}_END={url(last, last_proto)}", f"{tail}_PORT_END={last}"]
        i = end + 1
    for number, proto in ports:
        head = prefix(number, proto)
        out += [f"{head}={url(number, proto)}", f"{head}_ADDR={address}",
                f"{head}_PORT={number}", f"{head}_PROTO={proto}"]
    out.append(f"{alias}_NAME={full_name}")
    for entry in env:
        key, sep, value = entry.partition("=")
        if sep and key not in _NOT_PASSED_ON:
            out.append(f"{alias}_ENV_{key}={value}")
    return out


def _run_end(numbers: list[int], start: int) -> int:
    """dockerd's nextContiguous: the index where the run of ports from `start` ends,
    each next one at most one above the count so far."""
    value, end = numbers[start], start
    while end + 1 < len(numbers) and numbers[end + 1] <= value + 1:
        end += 1
        value += 1
    return end


def alias_lines(network_id: str, links: Iterable[Link],
                find: Callable[[str], Mapping[str, Any] | None]) -> list[str]:
    """The hosts lines of a container's links on the user network `network_id`: each
    alias at the linked container's address there, for those found on it now."""
    lines = []
    for link in links:
        other = find(link.name)
        networks = ((other or {}).get("NetworkSettings") or {}).get("Networks") or {}
        address = next((n.get("IPAddress") for n in networks.values()
                        if n.get("NetworkID") == network_id and n.get("IPAddress")), "")
        if address:
            lines.append(f"{address}\t{link.alias}")
    return lines


def _split_hosts(current: str) -> tuple[str, list[str], str]:
    """An /etc/hosts as (what is above the links' lines, those lines, what follows
    them): they follow HOSTS_MARKER, up to the next comment line (the network actor's
    section begins with one) or the end. A file with no marker (its container had no
    links at create) gets its lines above the network actor's section."""
    before, found, after = current.partition(HOSTS_MARKER + "\n")
    if not found:
        head = current.splitlines(keepends=True)
        at = next((i for i, line in enumerate(head) if line.startswith(NETWORK_SECTION)),
                  len(head))
        return "".join(head[:at]), [], "".join(head[at:])
    rest = after.splitlines(keepends=True)
    kept_from = next((i for i, line in enumerate(rest) if line.startswith("#")), len(rest))
    return before, [line.rstrip("\n") for line in rest[:kept_from]], "".join(rest[kept_from:])


def with_hosts_lines(current: str, lines: Iterable[str]) -> str:
    """`current` (an /etc/hosts) with its links' lines made `lines`."""
    before, _, after = _split_hosts(current)
    return before + HOSTS_MARKER + "\n" + "".join(f"{line}\n" for line in lines) + after


def rewrite_hosts(path: str, lines: list[str]) -> None:
    """Write `lines` into the hosts file at `path`, in place (it is bind mounted, and the
    network actor rewrites its own section of it meanwhile)."""
    rewrite_in_place(path, lambda current: with_hosts_lines(current, lines))


def add_hosts_lines(path: str, lines: list[str]) -> None:
    """rewrite_hosts, keeping the lines there and adding `lines` (a running container
    connected to one more network with links)."""
    rewrite_in_place(path, lambda current: with_hosts_lines(
        current, list(dict.fromkeys(_split_hosts(current)[1] + lines))))


def finder(inspect: Inspect) -> Callable[[str], Mapping[str, Any] | None]:
    """`inspect`, with None for a container that is not there."""
    def find(ref: str) -> Mapping[str, Any] | None:
        try:
            return inspect(ref)
        except PouchError as exc:
            if exc.code != "not_found":
                raise
            return None
    return find
