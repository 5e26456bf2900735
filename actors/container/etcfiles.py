"""What a container's /etc/resolv.conf says, and the lines of its /etc/hosts that it asks
for itself (`--dns`, `--dns-search`, `--dns-option`, `--add-host`), as dockerd 20.10
writes them: pure functions.

Asked for nothing, a container gets the host's resolv.conf (less nameservers on the
host's loopback, which another network namespace cannot reach). Asked for any of the
three, its file is built: what it asked for, and the host's for the rest; a search of
"." means none. An extra host is "name:address", the address an IP or `host-gateway`
(the default bridge's gateway, dockerd's default --host-gateway-ip).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pouch.proto.envelope import invalid

HOST_GATEWAY = "host-gateway"
EMBEDDED_DNS = "127.0.0.11"  # where a container on a user network is served DNS


@dataclass(frozen=True)
class Dns:
    servers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    @classmethod
    def of(cls, host_config: Mapping[str, Any]) -> Dns:
        """HostConfig's Dns, DnsSearch and DnsOptions. Errors: invalid, naming the field."""
        servers, search, options = (_strings(host_config, key)
                                    for key in ("Dns", "DnsSearch", "DnsOptions"))
        for server in servers:
            if not _is_ip(server):
                raise invalid(f"invalid field HostConfig.Dns: {server!r} is not an IP address")
        return cls(servers, search, options)

    def __bool__(self) -> bool:
        return bool(self.servers or self.search or self.options)


def resolv_conf(host_text: str, dns: Dns, host_network: bool, embedded: bool = False) -> str:
    """The container's resolv.conf, from the host's (`host_text`). `embedded`: it is
    served DNS at EMBEDDED_DNS (on a user network), which asks its nameservers: that
    one alone, with ndots:0 unless an ndots is asked for, as dockerd writes it."""
    lines = host_text.splitlines()
    if not host_network:
        lines = [line for line in lines if not _loopback_nameserver(line)]
    if not dns and not embedded:
        return "\n".join(lines) + ("\n" if lines else "")
    servers = dns.servers or tuple(_values(lines, "nameserver"))
    search = dns.search or tuple(_last(lines, ("search", "domain")))
    options = dns.options or tuple(_values(lines, "options"))
    if embedded:
        servers = (EMBEDDED_DNS,)
        if not any(option.startswith("ndots:") for option in options):
            options = (*options, "ndots:0")
    out = []
    if search and search != (".",):
        out.append("search " + " ".join(s for s in search if s != "."))
    out += [f"nameserver {server}" for server in servers]
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"


def extra_hosts(host_config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """HostConfig.ExtraHosts as (name, address). Errors: invalid, naming the entry."""
    entries = []
    for entry in _strings(host_config, "ExtraHosts"):
        name, _, address = entry.partition(":")
        if not name or not (address == HOST_GATEWAY or _is_ip(address)):
            raise invalid(f"invalid field HostConfig.ExtraHosts: bad extra host {entry!r} "
                          f"(name:IP or name:{HOST_GATEWAY})")
        entries.append((name, address))
    return entries


def hosts_lines(entries: list[tuple[str, str]], gateway: str) -> str:
    """The extra hosts' lines of /etc/hosts, `host-gateway` given as `gateway`."""
    return "".join(f"{gateway if address == HOST_GATEWAY else address}\t{name}\n"
                   for name, address in entries)


def own_names(hostname: str, domainname: str) -> str:
    """The names a container's own address has in its /etc/hosts, as dockerd writes them:
    the full name, then its first label if it has more ("web.example.com web"), so that
    `hostname -f` and `hostname -i` answer."""
    full = f"{hostname}.{domainname}" if domainname else hostname
    short = full.split(".", 1)[0]
    return full if short == full else f"{full} {short}"


def _strings(host_config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = host_config.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"invalid field HostConfig.{key}: must be a list of strings")
    return tuple(value)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _loopback_nameserver(line: str) -> bool:
    fields = line.split()
    return fields[:1] == ["nameserver"] and len(fields) > 1 and \
        fields[1].startswith(("127.", "::1"))


def _values(lines: list[str], key: str) -> list[str]:
    """The words after `key` on every line that starts with it."""
    return [word for line in lines if line.split()[:1] == [key] for word in line.split()[1:]]


def _last(lines: list[str], keys: tuple[str, ...]) -> list[str]:
    """The words of the last line that starts with one of `keys` (resolv.conf's rule:
    of search and domain, the last one counts)."""
    found = [line.split()[1:] for line in lines if line.split()[:1] and line.split()[0] in keys]
    return found[-1] if found else []
