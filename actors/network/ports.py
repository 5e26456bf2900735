"""Published ports (`-p [ip:]host:container[/udp]`, `-P`): iptables rules that send a
host port to a container's address on a bridge, in chains the caller owns.

The API the network actor calls (blocking, a few iptables runs: call it from a worker):

    Chains(nat, filter, postrouting)             the caller's chains (names <= 28 chars)
    specs(port_bindings, exposed=(), publish_all=False) -> list[PortSpec]
                                                 HostConfig.PortBindings (+ -P) parsed
    publish(chains, bridge, container_ip, specs) -> list[Binding]
    unpublish(chains, bridge, container_ip, bindings) -> None    idempotent
    ports_view(exposed, bindings) -> dict        NetworkSettings.Ports as dockerd shows it
    release_bridge(chains, bridge) -> None       the bridge's own rule, when it goes

Rules per binding, in the caller's chains (none of anybody else's is touched, and no
chain is ever flushed here):

    nat    <nat>:         [-d HOSTIP/32] -p P -m P --dport HP -j DNAT --to-destination CIP:CP
    filter <filter>:      -d CIP/32 ! -i BR -o BR -p P -m P --dport CP -j ACCEPT
    nat    <postrouting>: -s CIP/32 -d CIP/32 -p P -m P --dport CP -j MASQUERADE  (hairpin)
and once per bridge:
    nat    <postrouting>: -s 127.0.0.0/8 -o BR -j MASQUERADE   (+ route_localnet=1 on BR)

Check before insert, exact delete, in two runs: each rule is written exactly as
`iptables -S` prints it, so one `iptables-save` tells which are there; the missing ones
are appended (the present ones deleted, every copy) by one `iptables-restore
--noflush`. A publish or unpublish is 2 runs of iptables, not 2 per rule (a run costs
5-15 ms here: bench/net_setup.py).

The caller (who owns the chains) must jump into them, once:
    -t nat    -A PREROUTING  -m addrtype --dst-type LOCAL -j <nat>
    -t nat    -A OUTPUT      -m addrtype --dst-type LOCAL -j <nat>
              (every local address, 127.0.0.0/8 included: that is what makes
              127.0.0.1:HP work; dockerd's `! -d 127.0.0.0/8` would exclude it)
    -t nat    -A POSTROUTING -j <postrouting>
    -t filter -A FORWARD     -j <filter>   (before any DROP of its own)
All three chains hold port rules only, the rules of running containers: none of them may
be a chain the caller rewrites whole (an iptables-restore that declares it empties it);
in particular <postrouting> is a chain of its own, not the per-subnet MASQUERADE chain.

From the host on 127.0.0.1: route_localnet + OUTPUT DNAT, not a userland proxy.
dockerd's default is a proxy process per port; here a proxy would be a forwarding thread
in the network actor, and the issue asks that published ports of running containers
survive a kill -9 of that actor and its restart. Rules in the kernel keep forwarding
while the actor is dead; a proxy thread dies with it (every open connection cut, the
port refused until restore). The kernel also forwards without copying each byte
through Python, and UDP needs no per-client session table. The price, as for dockerd's
--userland-proxy=false: the bridge gets route_localnet=1 (a packet from 127.0.0.1 may
leave through it after DNAT) and a MASQUERADE of 127.0.0.0/8 on the way out, so the
container answers to the bridge's address; bridge ports in hairpin mode (sandbox.connect
sets it), so a container reaches its own published port through a host address; and a
host process listening on the same port goes unnoticed by the kernel, so `publish`
tries to bind the port first and refuses it when taken, as the proxy's bind would.

Host ports: 0 means a random free port: one the kernel hands out for (host ip, 0) that
no rule of ours uses, retried on conflict; a range (HostPort "8000-8010") takes the first
free one. A port another rule of ours already sends elsewhere is refused with dockerd's
"Bind for 0.0.0.0:8080 failed: port is already allocated" (conflict). IPv4 only:
an IPv6 host address is refused (invalid).
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import socket
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pouch.proto.envelope import conflict, invalid

PROTOS = ("tcp", "udp")
LOCALNET = "127.0.0.0/8"
RANDOM_TRIES = 20
_lock = threading.RLock()  # choosing a port and writing its rules is one step


@dataclass(frozen=True)
class Chains:
    """The caller's chains: `nat` (DNAT, jumped to from PREROUTING and OUTPUT),
    `filter` (jumped to from FORWARD), `postrouting` (nat, from POSTROUTING)."""

    nat: str
    filter: str
    postrouting: str


@dataclass(frozen=True)
class PortSpec:
    """One requested binding: container `port`/`proto` on `host_ip` ("" = every
    address) at `host_port` (0 = random; with `host_port_end`, the range's first free)."""

    port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0


@dataclass(frozen=True)
class Binding:
    """One binding in force."""

    port: int
    proto: str
    host_ip: str
    host_port: int

    @property
    def key(self) -> str:
        return f"{self.port}/{self.proto}"

    def view(self) -> dict[str, str]:
        """As dockerd shows it (NetworkSettings.Ports, `docker port`)."""
        return {"HostIp": self.host_ip or "0.0.0.0", "HostPort": str(self.host_port)}


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    args: tuple[str, ...]

    @property
    def line(self) -> str:
        """As `iptables -S` lists it, less the "-A ": "CHAIN ARGS..."."""
        return " ".join((self.chain, *self.args))


# -- parsing and shaping (pure) -------------------------------------------------------

def parse_port_key(key: str) -> tuple[int, str]:
    """"80/tcp" (or "80") as (80, "tcp")."""
    number, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise invalid(f"invalid proto: {proto}")
    return _port(number, f"invalid containerPort: {number}"), proto


def specs(port_bindings: Mapping[str, Sequence[Mapping[str, Any]] | None] | None,
          exposed: Iterable[str] = (), publish_all: bool = False) -> list[PortSpec]:
    """HostConfig.PortBindings ({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}) as
    specs; with `publish_all` (-P) every `exposed` port not bound otherwise gets a
    random host port, as dockerd does."""
    found: list[PortSpec] = []
    for key, entries in (port_bindings or {}).items():
        port, proto = parse_port_key(key)
        for entry in entries or [{}]:
            host_ip = _host_ip(str(entry.get("HostIp") or ""))
            low, high = _host_ports(str(entry.get("HostPort") or ""))
            found.append(PortSpec(port, proto, host_ip, low, high))
    if publish_all:
        bound = {(s.port, s.proto) for s in found}
        for key in exposed:
            port, proto = parse_port_key(key)
            if (port, proto) not in bound:
                found.append(PortSpec(port, proto))
                bound.add((port, proto))
    return found


def ports_view(exposed: Iterable[str], bindings: Iterable[Binding]
               ) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports: every exposed or published port, null when unpublished."""
    view: dict[str, list[dict[str, str]] | None] = {}
    for key in exposed:
        port, proto = parse_port_key(key)
        view.setdefault(f"{port}/{proto}", None)
    for binding in bindings:
        entries = view.get(binding.key) or []
        entries.append(binding.view())
        view[binding.key] = entries
    return view


def rules_for(chains: Chains, bridge: str, container_ip: str, binding: Binding
              ) -> list[Rule]:
    """The rules that publish `binding` (see the module docstring), each written as
    `iptables -S` prints it, so that a listing can be searched for it as text."""
    cip, proto = container_ip, binding.proto
    dnat = []
    if binding.host_ip and binding.host_ip != "0.0.0.0":
        dnat += ["-d", f"{binding.host_ip}/32"]
    dnat += ["-p", proto, "-m", proto, "--dport", str(binding.host_port), "-j", "DNAT",
             "--to-destination", f"{cip}:{binding.port}"]
    return [
        Rule("nat", chains.nat, tuple(dnat)),
        Rule("filter", chains.filter,
             ("-d", f"{cip}/32", "!", "-i", bridge, "-o", bridge, "-p", proto, "-m", proto,
              "--dport", str(binding.port), "-j", "ACCEPT")),
        Rule("nat", chains.postrouting,
             ("-s", f"{cip}/32", "-d", f"{cip}/32", "-p", proto, "-m", proto,
              "--dport", str(binding.port), "-j", "MASQUERADE")),
    ]


def bridge_rule(chains: Chains, bridge: str) -> Rule:
    """Replies to 127.0.0.1 cannot come back from a container: hide the source."""
    return Rule("nat", chains.postrouting,
                ("-s", LOCALNET, "-o", bridge, "-j", "MASQUERADE"))


def restore_input(append: Iterable[Rule], delete: Iterable[Rule]) -> str:
    """iptables-restore's input (used with --noflush: nothing else is touched) that
    deletes then appends the given rules, one table after the other."""
    lines: dict[str, list[str]] = {}
    for verb, rules in (("-D", delete), ("-A", append)):
        for rule in rules:
            lines.setdefault(rule.table, []).append(f"{verb} {rule.line}")
    return "".join(f"*{table}\n" + "\n".join(body) + "\nCOMMIT\n"
                   for table, body in lines.items())


@dataclass(frozen=True)
class Allocation:
    """A DNAT rule found in the nat chain: who holds which host port."""

    host_ip: str
    proto: str
    host_port: int
    destination: str


def allocations(listing: str) -> list[Allocation]:
    """The DNAT rules of an `iptables -t nat -S CHAIN` listing."""
    found = []
    for line in listing.splitlines():
        words = line.split()
        if "DNAT" not in words or "--dport" not in words:
            continue
        value = dict(itertools.pairwise(words))
        host_ip = value.get("-d", "0.0.0.0/0").split("/")[0]
        found.append(Allocation(host_ip, value.get("-p", "tcp"), int(value["--dport"]),
                                value.get("--to-destination", "")))
    return found


def clashes(taken: Iterable[Allocation], host_ip: str, proto: str, host_port: int,
            destination: str) -> bool:
    """Whether another destination already holds this host port on an overlapping
    address (0.0.0.0 overlaps every address)."""
    wanted = host_ip or "0.0.0.0"
    for held in taken:
        if held.proto != proto or held.host_port != host_port:
            continue
        if held.destination == destination and held.host_ip == wanted:
            continue  # this very binding, published before
        if "0.0.0.0" in (held.host_ip, wanted) or held.host_ip == wanted:
            return True
    return False


# -- effects --------------------------------------------------------------------------

def publish(chains: Chains, bridge: str, container_ip: str, wanted: Sequence[PortSpec]
            ) -> list[Binding]:
    """Publish every spec for the container at `container_ip` on `bridge`; the
    bindings made (host ports chosen). Rules already in place are not added again (a
    restore publishes the recorded bindings anew); on error nothing of this call's
    stays."""
    _ipv4(container_ip)
    with _lock:
        present = _present(chains)
        taken = allocations("\n".join(f"-A {line}" for line in present))
        made: list[Binding] = []
        for spec in wanted:
            binding = _choose(taken, container_ip, spec)
            made.append(binding)
            taken.append(Allocation(binding.host_ip or "0.0.0.0", binding.proto,
                                    binding.host_port, f"{container_ip}:{binding.port}"))
        missing = [rule for rule in _all_rules(chains, bridge, container_ip, made, True)
                   if rule.line not in present]
        _set_route_localnet(bridge)
        if missing:
            try:
                _restore(restore_input(append=_unique(missing), delete=()))
            except BaseException:
                _remove(chains, missing)  # restore commits table by table
                raise
    return made


def unpublish(chains: Chains, bridge: str, container_ip: str,
              bindings: Iterable[Binding]) -> None:
    """Delete the rules of `bindings` that are there (a missing chain is fine). The
    forward and hairpin rules of a container port stay while another binding still
    sends a host port to it; the bridge's own rule stays (see `release_bridge`)."""
    with _lock:
        present = _present(chains)
        doomed: list[Rule] = []
        shared: list[tuple[Binding, list[Rule]]] = []
        for binding in bindings:
            dnat, *rest = rules_for(chains, bridge, container_ip, binding)
            doomed.append(dnat)
            shared.append((binding, rest))
        dropped = {rule.line for rule in doomed}
        still = {(held.destination, held.proto) for held in allocations(
            "\n".join(f"-A {line}" for line in present if line not in dropped))}
        for binding, rest in shared:
            if (f"{container_ip}:{binding.port}", binding.proto) not in still:
                doomed += rest
        _remove_present(present, doomed)


def release_bridge(chains: Chains, bridge: str) -> None:
    """Delete the bridge's own rule (when the network goes); idempotent."""
    _remove(chains, [bridge_rule(chains, bridge)])


def iptables(table: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One run of iptables (waiting for the xtables lock other daemons hold)."""
    return subprocess.run(["iptables", "-w", "-t", table, *args],
                          capture_output=True, text=True, check=False)


def _all_rules(chains: Chains, bridge: str, container_ip: str,
               bindings: Iterable[Binding], with_bridge: bool) -> list[Rule]:
    rules = [bridge_rule(chains, bridge)] if with_bridge else []
    for binding in bindings:
        rules += rules_for(chains, bridge, container_ip, binding)
    return rules


def _unique(rules: Iterable[Rule]) -> list[Rule]:
    return list(dict.fromkeys(rules))


def _remove(chains: Chains, rules: Iterable[Rule]) -> None:
    with _lock:
        _remove_present(_present(chains), rules)


def _remove_present(present: list[str], rules: Iterable[Rule]) -> None:
    # a rule doubled (by hand, or by an older pouch) goes with every copy
    doomed = [rule for rule in _unique(rules) for _ in range(present.count(rule.line))]
    if doomed:
        _restore(restore_input(append=(), delete=doomed))


def _present(chains: Chains) -> list[str]:
    """The rules of our chains, as "CHAIN ARGS..." lines (one run of iptables-save)."""
    done = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"iptables-save: {done.stderr.strip()}")
    return ours(done.stdout, chains)


def ours(saved: str, chains: Chains) -> list[str]:
    """The rules of `chains` in iptables-save's output, as "CHAIN ARGS..." lines."""
    wanted = {"nat": (chains.nat, chains.postrouting), "filter": (chains.filter,)}
    table = ""
    lines = []
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and line.split()[1] in wanted.get(table, ()):
            lines.append(line[3:])
    return lines


def _restore(script: str) -> None:
    done = subprocess.run(["iptables-restore", "-w", "--noflush"], input=script,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"iptables-restore: {done.stderr.strip()}\n{script}")


def _choose(taken: list[Allocation], container_ip: str, spec: PortSpec) -> Binding:
    if spec.host_port:
        last = spec.host_port_end or spec.host_port
        for port in range(spec.host_port, last + 1):
            destination = f"{container_ip}:{spec.port}"
            if clashes(taken, spec.host_ip, spec.proto, port, destination):
                if port == last:
                    raise conflict(f"Bind for {spec.host_ip or '0.0.0.0'}:{port} failed: "
                                   "port is already allocated")
                continue
            if _published(taken, spec, port, destination) or _bindable(spec, port,
                                                                       port == last):
                return Binding(spec.port, spec.proto, spec.host_ip, port)
    for _ in range(RANDOM_TRIES):
        port = _free_port(spec)
        if not clashes(taken, spec.host_ip, spec.proto, port,
                       f"{container_ip}:{spec.port}"):
            return Binding(spec.port, spec.proto, spec.host_ip, port)
    raise conflict(f"no free host port for {spec.port}/{spec.proto}")


def _published(taken: list[Allocation], spec: PortSpec, port: int, destination: str
               ) -> bool:
    return any(a.proto == spec.proto and a.host_port == port and a.destination ==
               destination and a.host_ip == (spec.host_ip or "0.0.0.0") for a in taken)


def _bindable(spec: PortSpec, port: int, last: bool) -> bool:
    """Whether a host process leaves the port free (see the module docstring); on the
    range's last port, why not, as dockerd's proxy says it."""
    with _socket(spec.proto) as probe:
        try:
            probe.bind((spec.host_ip or "0.0.0.0", port))
            return True
        except OSError as err:
            if not last:
                return False
            address = f"{spec.host_ip or '0.0.0.0'}:{port}"
            if err.errno == errno.EADDRINUSE:
                raise conflict(f"Error starting userland proxy: listen {spec.proto}4 "
                               f"{address}: bind: address already in use") from err
            raise invalid(f"Error starting userland proxy: listen {spec.proto}4 "
                          f"{address}: bind: {(err.strerror or str(err)).lower()}") from err


def _free_port(spec: PortSpec) -> int:
    with _socket(spec.proto) as probe:
        try:
            probe.bind((spec.host_ip or "0.0.0.0", 0))
        except OSError as err:
            raise invalid(f"cannot publish on {spec.host_ip}: {err.strerror}") from err
        return int(probe.getsockname()[1])


def _socket(proto: str) -> socket.socket:
    if proto == "udp":
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # as a listener would: a connection in TIME_WAIT does not hold the port
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def _set_route_localnet(bridge: str) -> None:
    path = f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet"
    with open(path) as current:
        if current.read().strip() == "1":
            return
    with open(path, "w") as knob:
        knob.write("1")


def _ipv4(text: str) -> None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError as err:
        raise invalid(f"invalid container address {text!r}") from err


def _host_ip(text: str) -> str:
    if not text:
        return ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError as err:
        raise invalid(f"invalid IP address: {text}") from err
    if address.version != 4:
        raise invalid(f"IPv6 host addresses are not supported: {text}")
    return "" if text == "0.0.0.0" else text


def _host_ports(text: str) -> tuple[int, int]:
    if not text:
        return 0, 0
    low, sep, high = text.partition("-")
    first = _port(low, f"invalid hostPort: {text}")
    if not sep:
        return first, 0
    last = _port(high, f"invalid hostPort: {text}")
    if last < first:
        raise invalid(f"invalid hostPort: {text}")
    return first, last


def _port(text: str, message: str) -> int:
    try:
        number = int(text.strip())
    except ValueError as err:
        raise invalid(message) from err
    if not 0 < number < 65536:
        raise invalid(message)
    return number
