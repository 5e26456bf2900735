"""The network actor's packet filter rules, through the iptables command line, in chains
of pouch's own only.

Chains are named `POUCH-<KIND>-<tag>` (`tag`: the daemon's default bridge name), so
daemons running side by side never share one. The built-in chains get one jump
each into ours (checked before inserted; a stale duplicate from an earlier run is
removed first); nothing built-in or foreign is ever flushed or reordered.

    nat    POSTROUTING -> POUCH-NAT   masquerade of each non-internal subnet going out
    filter FORWARD     -> POUCH-FWD   first -> POUCH-ISO1 (isolation), then per network:
                                      replies in, traffic out, traffic within
           POUCH-ISO1: a packet from one of our bridges to another goes on to POUCH-ISO2,
                       which drops it if it leaves by one of our bridges; an internal
                       network's traffic that leaves or enters it from anywhere is dropped.
    nat    PREROUTING, OUTPUT -> POUCH-DNAT, POSTROUTING -> POUCH-HAIR, filter POUCH-FWD
           -> POUCH-PUB: published ports (the rules are the ports module's; the chains,
           jumps and their life ours).

In a container's own namespace (redirect_dns), for the embedded DNS server:

    nat    OUTPUT -> POUCH-DNS-OUT, POSTROUTING -> POUCH-DNS-POST: its port 53 (UDP, TCP)
           led to the ports the server listens on, as dockerd's DOCKER_OUTPUT and
           DOCKER_POSTROUTING.

The per-network chains are written whole, from the networks the actor knows, in one
`iptables-restore --noflush` (declaring a chain there empties it): one process per
change, no half-written state, and a stale set from a previous run is replaced, not
added to. The port chains are left as they are, their rules belong to running
containers.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

log = logging.getLogger("pouch.network")

PREFIX = "POUCH-"
IPTABLES = "iptables"
WAIT = ("-w", "10")  # the xtables lock: other daemons and tools change rules too
# (args, input) -> (exit status, stdout, stderr)
Runner = Callable[[Sequence[str], str | None], tuple[int, str, str]]


def run(args: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
    done = subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr.strip()


@dataclass(frozen=True)
class BridgeRules:
    """What the rules need to know of one bridge network."""

    bridge: str
    subnet: str
    internal: bool = False
    masquerade: bool = True


class Chains:
    """Our chains of one daemon (`tag`, at most 15 characters: a link name)."""

    def __init__(self, tag: str, runner: Runner = run) -> None:
        if not tag or len(tag) > 15:
            raise ValueError(f"chain tag {tag!r} must be 1-15 characters")
        self.tag = tag
        self._run = runner
        self.nat = f"{PREFIX}NAT-{tag}"
        self.forward = f"{PREFIX}FWD-{tag}"
        self.iso1 = f"{PREFIX}ISO1-{tag}"
        self.iso2 = f"{PREFIX}ISO2-{tag}"
        self.dnat = f"{PREFIX}DNAT-{tag}"      # published ports: nat
        self.published = f"{PREFIX}PUB-{tag}"  # published ports: filter accepts
        self.hairpin = f"{PREFIX}HAIR-{tag}"   # published ports: nat, on the way out

    # table -> chains; (table, built-in chain, match before the jump, our chain)
    def chains(self) -> dict[str, tuple[str, ...]]:
        return {"nat": (self.nat, self.dnat, self.hairpin),
                "filter": (self.forward, self.iso1, self.iso2, self.published)}

    def jumps(self) -> list[tuple[str, str, tuple[str, ...], str]]:
        return [
            ("filter", "FORWARD", (), self.forward),
            ("nat", "POSTROUTING", (), self.nat),
            ("nat", "POSTROUTING", (), self.hairpin),
            ("nat", "PREROUTING", ("-m", "addrtype", "--dst-type", "LOCAL"), self.dnat),
            ("nat", "OUTPUT", ("-m", "addrtype", "--dst-type", "LOCAL"), self.dnat),
        ]

    # -- the rules, pure -----------------------------------------------------

    def restore_text(self, networks: Iterable[BridgeRules]) -> str:
        """Input for `iptables-restore --noflush` that rewrites the per-network chains
        (not the port chains) to hold exactly the rules of `networks`."""
        nets = list(networks)
        nat = [f"-A {self.nat} -s {n.subnet} ! -o {n.bridge} -j MASQUERADE"
               for n in nets if n.masquerade and not n.internal]
        forward = [f"-A {self.forward} -j {self.iso1}", f"-A {self.forward} -j {self.published}"]
        iso1: list[str] = []
        iso2: list[str] = []
        for n in nets:
            forward.append(f"-A {self.forward} -i {n.bridge} -o {n.bridge} -j ACCEPT")
            if n.internal:
                iso1.append(f"-A {self.iso1} -i {n.bridge} ! -o {n.bridge} -j DROP")
                iso1.append(f"-A {self.iso1} ! -i {n.bridge} -o {n.bridge} -j DROP")
                continue
            forward.append(f"-A {self.forward} -o {n.bridge} -m conntrack "
                           "--ctstate RELATED,ESTABLISHED -j ACCEPT")
            forward.append(f"-A {self.forward} -i {n.bridge} ! -o {n.bridge} -j ACCEPT")
            iso1.append(f"-A {self.iso1} -i {n.bridge} ! -o {n.bridge} -j {self.iso2}")
            iso2.append(f"-A {self.iso2} -o {n.bridge} -j DROP")
        lines = ["*nat", f":{self.nat} - [0:0]", *nat, "COMMIT",
                 "*filter", f":{self.forward} - [0:0]", f":{self.iso1} - [0:0]",
                 f":{self.iso2} - [0:0]", *iso1, *iso2, *forward, "COMMIT"]
        return "\n".join(lines) + "\n"

    # -- effects -------------------------------------------------------------

    def _iptables(self, table: str, *args: str) -> tuple[int, str, str]:
        return self._run([IPTABLES, *WAIT, "-t", table, *args], None)

    def _must(self, table: str, *args: str) -> None:
        status, _, err = self._iptables(table, *args)
        if status != 0:
            raise RuntimeError(f"iptables -t {table} {' '.join(args)}: {err}")

    def _exists(self, table: str, chain: str) -> bool:
        return self._iptables(table, "-S", chain)[0] == 0

    def apply(self, networks: Iterable[BridgeRules]) -> None:
        """Our chains and jumps in place, the per-network chains holding exactly the
        rules of `networks` (a stale set repaired, not duplicated)."""
        for table, names in self.chains().items():
            for chain in names:
                if not self._exists(table, chain):
                    self._must(table, "-N", chain)
        status, _, err = self._run([f"{IPTABLES}-restore", *WAIT, "--noflush"],
                                self.restore_text(networks))
        if status != 0:
            raise RuntimeError(f"iptables-restore: {err}")
        for table, builtin, match, chain in self.jumps():
            rule = (*match, "-j", chain)
            _, out, _ = self._iptables(table, "-S", builtin)
            copies = sum(line.split()[2:] == list(rule) for line in out.splitlines())
            if copies == 1:
                continue
            # Stale copies from an earlier run: all go, then one comes back.
            while self._iptables(table, "-D", builtin, *rule)[0] == 0:
                pass
            self._must(table, "-I", builtin, "1", *rule)

    def remove(self) -> None:
        """Every jump into our chains and the chains themselves; idempotent."""
        for table, builtin, match, chain in self.jumps():
            while self._iptables(table, "-D", builtin, *match, "-j", chain)[0] == 0:
                pass
        for table, names in self.chains().items():
            for chain in names:
                self._iptables(table, "-F", chain)
            for chain in names:
                self._iptables(table, "-X", chain)

    def leftovers(self) -> list[str]:
        """Lines of `iptables -S` that name one of our chains: none after remove()."""
        ours = {c for names in self.chains().values() for c in names}
        found: list[str] = []
        for table in self.chains():
            _, out, _ = self._iptables(table, "-S")
            found += [f"{table}: {line}" for line in out.splitlines()
                      if ours.intersection(line.split())]
        return found


# -- the embedded DNS's port 53, in a container's namespace ------------------------------

DNS_OUT, DNS_POST = PREFIX + "DNS-OUT", PREFIX + "DNS-POST"


def dns_redirect_rules(address: str, port: int, ports: tuple[int, int] | None,
                       jumps: bool) -> str:
    """`iptables-restore --noflush` input that leads `address`:`port` (UDP, TCP) to
    `ports` (None: nowhere, the chains emptied); `jumps`: the built-in chains' jumps into
    ours are added too (they are not there yet)."""
    lines = ["*nat", f":{DNS_OUT} - [0:0]", f":{DNS_POST} - [0:0]"]
    for proto, to in zip(("udp", "tcp"), ports or (), strict=False):
        lines += [f"-A {DNS_OUT} -d {address}/32 -p {proto} --dport {port} "
                  f"-j DNAT --to-destination {address}:{to}",
                  f"-A {DNS_POST} -s {address}/32 -p {proto} --sport {to} "
                  f"-j SNAT --to-source :{port}"]
    if jumps:
        lines += [f"-A OUTPUT -d {address}/32 -j {DNS_OUT}",
                  f"-A POSTROUTING -s {address}/32 -j {DNS_POST}"]
    return "\n".join([*lines, "COMMIT", ""])


def redirect_dns(address: str, port: int, ports: tuple[int, int] | None,
                 runner: Runner = run) -> None:
    """Lead `address`:`port` to `ports` in the calling thread's network namespace (the
    commands run there too; see dns_redirect_rules). Errors: OSError."""
    status, saved, err = runner([f"{IPTABLES}-save", "-t", "nat"], None)
    if status != 0:
        raise OSError(f"iptables-save: {err}")
    jumps = f"-A OUTPUT -d {address}/32 -j {DNS_OUT}" not in saved.splitlines()
    if ports is None and jumps:
        return  # never led anywhere
    status, _, err = runner([f"{IPTABLES}-restore", *WAIT, "--noflush"],
                            dns_redirect_rules(address, port, ports, jumps))
    if status != 0:
        raise OSError(f"iptables-restore: {err}")
