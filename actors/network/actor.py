"""The network actor: networks (none, host, the default bridge and user bridge
networks), their addresses (`ipam`), their Linux bridges (`sandbox`) and packet
filter rules (`iptables`), kept on disk (`store`) and rebuilt from it at start.

Every change runs on a thread of its own under one lock (netlink and iptables
take milliseconds; the actor's thread keeps answering and heartbeating), and is
on disk before it is answered.
"""

from __future__ import annotations

import builtins
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

from pouch.actors.host import ActorBase, ActorContext, Reply
from pouch.actors.network import describe, hosts, ipam, links, ports, sandbox
from pouch.actors.network.dns import EmbeddedDns
from pouch.actors.network.iptables import BridgeRules, Chains
from pouch.actors.network.store import Endpoint, Network, NetworkStore
from pouch.actors.timefmt import ZERO_TIME, parse_timestamp, rfc3339_nano
from pouch.proto.contract import method
from pouch.proto.docker import Filters, check_filters, check_name, is_hex_id, labels_match
from pouch.proto.envelope import PouchError, conflict, forbidden, invalid, not_found
from pouch.proto.shapes import (
    EndpointSettings,
    NetworkCreated,
    NetworkInspect,
    NetworksPruned,
    PortMap,
)

log = logging.getLogger("pouch.network")
# Its debug output is every netlink message, whole: too much even for pouchd --debug.
logging.getLogger("pyroute2").setLevel(logging.INFO)
T = TypeVar("T")

# The API's names of the networks every daemon has (dockerd's).
BRIDGE, HOST, NONE = "bridge", "host", "none"
PREDEFINED = {BRIDGE: "bridge", HOST: "host", NONE: "null"}
# Host ends of our veths: "pv", the container's ID, 4 characters of the network's.
VETH_PREFIX = "pv"
# How long a restored actor waits for the container actor to say which containers exist.
RECONCILE_TIMEOUT = 120.0
# How long after it passed check() a container that the container actor does not list as
# running may still be starting (its task on the way), for a network's removal.
STARTING_FOR = 60.0


def _new_id() -> str:
    return secrets.token_hex(32)


class NetworkActor(ActorBase):
    service = "network"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        config = ctx.config
        self._store = NetworkStore(config.home_dir)
        self._tag = config.bridge_name
        self._chains = Chains(self._tag) if config.iptables else None
        self._port_chains = ports.Chains(self._chains.dnat, self._chains.published,
                                         self._chains.hairpin) if self._chains else None
        self._lock = threading.RLock()
        self._networks: dict[str, Network] = {}
        self._netns_dir = config.exec_root_dir / "netns"
        self._starting: dict[str, float] = {}  # container -> when it passed check() (epoch)
        self._dns: EmbeddedDns | None = None
        self._dns_served: set[str] = set()

    # -- start: rebuilt from disk, the host repaired to match -----------------

    def on_start(self) -> None:
        with self._lock:
            for net in self._store.load():
                self._networks[net.id] = net
            self._ensure_predefined()
            if self.ctx.config.ip_forward:
                links.enable_ip_forward()
            wanted = {net.bridge for net in self._bridges()}
            for name in links.marked(self._tag):
                if name not in wanted:  # its network was removed when we were cut short
                    log.warning("removing bridge %s of no network", name)
                    sandbox.remove_bridge(name)
            for net in self._bridges():
                self._make_bridge(net)
            self._apply_rules()
            self._restore_endpoints()
            self._dns = EmbeddedDns()
            self._sync_dns()
            held = self._holders()
        if held:
            threading.Thread(target=self._release_unknown, args=(held,),
                             name="reconcile", daemon=True).start()

    def on_stop(self) -> None:
        # The folder's own bind mount (see sandbox) outlives a clean stop only while it
        # holds a namespace a container still needs; the next start makes it again.
        with self._lock:
            if self._dns is not None:
                self._dns.stop()
            if not sandbox.list_netns(str(self._netns_dir)):
                sandbox.release_netns_dir(str(self._netns_dir))

    def _restore_endpoints(self) -> None:
        """Sandboxes and endpoints kept, or made again where the host lost them (a
        reboot, a cut attach); veths and namespaces of ours that nothing names removed."""
        owners = self._store.sandbox_owners()
        for net in self._networks.values():
            for ep in net.endpoints.values():
                if ep.container not in owners:
                    self._store.add_sandbox(ep.container)
                    owners.add(ep.container)
        for owner in owners:
            path = self._netns_path(owner)
            try:
                if not sandbox.is_netns(path):
                    sandbox.create_netns(path)
            except OSError as exc:
                log.error("restoring the network namespace %s: %s", path, exc)
        wanted: set[str] = set()
        for net in self._bridges():
            for ep in list(net.endpoints.values()):
                wanted.add(ep.host_ifname)
                try:
                    if not links.exists(ep.host_ifname):
                        log.warning("reconnecting %s to %s", ep.container[:12], net.name)
                        self._connect(net, ep)
                    if ep.ports and self._port_chains is not None:
                        # Rules still in place are kept as they are (after a reboot: made).
                        ports.publish(self._port_chains, net.bridge, ep.address, [
                            ports.PortSpec(b["port"], b["proto"], b["host_ip"],
                                           b["host_port"]) for b in ep.ports])
                except (PouchError, OSError) as exc:
                    log.error("restoring the endpoint of %s on %s: %s", ep.container[:12],
                              net.name, exc)
        bridges = {net.bridge for net in self._bridges()}
        for veth in links.bridge_members(bridges):
            if veth.startswith(VETH_PREFIX) and veth not in wanted:
                log.warning("removing veth %s of no endpoint", veth)
                sandbox.disconnect(veth)
        held = {self._netns_path(ep.container) for net in self._networks.values()
                for ep in net.endpoints.values()}
        held |= {self._netns_path(owner) for owner in self._store.sandbox_owners()}
        for path in sandbox.list_netns(str(self._netns_dir)):
            if path not in held:
                log.warning("removing network namespace %s of no endpoint", path)
                sandbox.remove_netns(path)

    def _holders(self) -> set[str]:
        """The containers with an endpoint or a sandbox of ours."""
        return {ep.container for net in self._networks.values()
                for ep in net.endpoints.values()} | self._store.sandbox_owners()

    def _release_unknown(self, held: set[str]) -> None:
        """After a restore: the endpoints, ports and sandboxes of the containers among
        `held` that the container actor no longer has (removed while this actor was
        down) released. On a thread of its own: at a daemon's start the container actor
        comes up after this one, and its answer is waited for."""
        try:
            # Not the typed stub: its deadline is for a container actor that is up.
            known = set(self.ctx.pool.call("container", "known", {"ids": sorted(held)},
                                           timeout=RECONCILE_TIMEOUT))
        except PouchError as exc:
            log.warning("containers unknown (%s): their endpoints kept", exc.message)
            return
        with self._lock:
            for cid in sorted(held - known):
                log.warning("releasing the network of %s: no container has it", cid[:12])
                try:
                    self._release(cid)
                except (PouchError, OSError) as exc:
                    log.error("releasing the network of %s: %s", cid[:12], exc)

    def _ensure_predefined(self) -> None:
        config = self.ctx.config
        pool = ipam.pool_from_bip(config.bip, config.fixed_cidr)
        by_name = {net.name: net for net in self._networks.values() if net.builtin}
        for name, driver in PREDEFINED.items():
            net = by_name.get(name) or Network(_new_id(), name, driver, rfc3339_nano(),
                                               builtin=True)
            if name == BRIDGE:
                # The flags win over what was kept: --bip or --bridge-name may have changed.
                if net.bridge and net.bridge != config.bridge_name:
                    sandbox.remove_bridge(net.bridge)
                net.bridge, net.pool, net.mtu = config.bridge_name, pool, config.mtu
                net.options = describe.default_bridge_options(config.bridge_name, config.mtu)
            self._store.save(net)
            self._networks[net.id] = net

    # -- the contract --------------------------------------------------------

    @method(idempotent=True, errors=("invalid",))
    def list(self, filters: dict[str, builtins.list[str]] | None = None
             ) -> builtins.list[NetworkInspect]:
        """Every network, as inspect shows it, that passes Docker's filters (name, id,
        label, driver, type custom|builtin, dangling, scope)."""
        checked = describe.check_list_filters(filters)
        with self._lock:
            return [describe.inspect(net) for net in self._ordered()
                    if describe.matches(net, checked)]

    @method(idempotent=True, errors=("not_found", "invalid"))
    def inspect(self, ref: str) -> NetworkInspect:
        """One network by full ID, name or unique ID prefix, as dockerd 20.10 shows it."""
        with self._lock:
            return describe.inspect(self._find(ref))

    @method(idempotent=False, returns=NetworkCreated,
            errors=("invalid", "conflict", "forbidden", "not_found"))
    def create(self, reply: Reply, name: str, driver: str = "bridge", internal: bool = False,
               attachable: bool = False, ipam_config: builtins.list[dict[str, str]] | None = None,
               ipam_options: dict[str, str] | None = None,
               options: dict[str, str] | None = None, labels: dict[str, str] | None = None,
               enable_ipv6: bool = False) -> None:
        """Create a bridge network. `ipam_config`: at most one {Subnet, Gateway, IPRange}
        (a subnet is chosen among dockerd's default pools, avoiding the host's routes and
        the other networks, when none is given). `options`: the driver's, among them
        com.docker.network.bridge.name and com.docker.network.driver.mtu."""
        self._in_thread(reply, self._create, name, driver or "bridge", internal, attachable,
                        ipam_config or [], ipam_options or {}, options or {}, labels or {},
                        enable_ipv6)

    @method(idempotent=False, returns=None, errors=("not_found", "conflict", "forbidden"))
    def remove(self, reply: Reply, ref: str) -> None:
        """Remove a network: forbidden for a predefined one, conflict while a running
        container is connected to it. The endpoints of containers that do not run are
        released with it, as dockerd has none for them: their next start fails."""
        self._in_thread(reply, self._remove, ref)

    @method(idempotent=True, returns=NetworksPruned, errors=("invalid",), timeout=120.0)
    def prune(self, reply: Reply, filters: dict[str, builtins.list[str]] | None = None) -> None:
        """Remove every user network no running container is connected to (filters:
        until, label, label!)."""
        checked = check_filters(filters, describe.PRUNE_FILTERS)
        until = None
        for value in checked.get("until", []):
            try:
                until = parse_timestamp(value)
            except ValueError:
                raise invalid(f"invalid filter 'until={value}'") from None
        self._in_thread(reply, self._prune, checked, until)

    @method(idempotent=True, returns=EndpointSettings, timeout=60.0,
            errors=("not_found", "invalid", "conflict", "forbidden"))
    def attach(self, reply: Reply, container: str, network: str, name: str = "",
               aliases: builtins.list[str] | None = None, ip: str = "", hostname: str = "",
               hosts_path: str = "", dns: builtins.list[str] | None = None) -> None:
        """Connect a container (full ID; `name` as its neighbours resolve it) to a bridge
        network: its sandbox (a netns) made on its first attach, an address (`ip`, if
        given, on a user network with a configured subnet), a veth into the bridge, the
        default route through its first network's gateway. `hosts_path`: the container's
        /etc/hosts, whose section of addresses is kept current as containers come and go
        on its user networks; `hostname`: the names its own address has there
        ("web.example.com web"). On a user network, the container is served DNS at
        127.0.0.11 (see dns), which answers the names there and asks `dns` (its --dns;
        none: the host's nameservers) for the others. A retry answers the endpoint
        already made."""
        self._in_thread(reply, self._attach, container, network, name, aliases or [], ip,
                        hostname, hosts_path, dns or [])

    @method(idempotent=True, returns=None, errors=("not_found",))
    def detach(self, reply: Reply, container: str, network: str) -> None:
        """Disconnect a container from a network (its lease released); not connected
        is fine. Its sandbox stays until release."""
        self._in_thread(reply, self._detach, container, network)

    @method(idempotent=True, returns=None, errors=("not_found",))
    def check(self, reply: Reply, container: str, networks: builtins.list[str]) -> None:
        """A container is about to start: each of its `networks` (IDs) is still there
        with its endpoint (not_found, in dockerd's words, if one was removed while it
        was stopped), and none of them is removed under it while it starts."""
        self._in_thread(reply, self._check, container, networks)

    @method(idempotent=True, returns=None)
    def release(self, reply: Reply, container: str) -> None:
        """Everything of a container's (it is being removed): its endpoints, leases and
        sandbox. Idempotent."""
        self.ctx.faults.hit("network.container.leaving")
        self._in_thread(reply, self._release, container)

    @method(idempotent=True, returns=str)
    def sandbox(self, reply: Reply, container: str) -> None:
        """The path of a container's network namespace, made (loopback only) if it has
        none yet."""
        self._in_thread(reply, self._sandbox, container)

    @method(idempotent=True, returns=PortMap, errors=("not_found", "invalid", "conflict"))
    def publish_ports(self, reply: Reply, container: str,
                      port_bindings: dict[str, Any] | None = None,
                      exposed: builtins.list[str] | None = None,
                      publish_all: bool = False) -> None:
        """Publish a container's ports (HostConfig.PortBindings; with `publish_all`, -P,
        every `exposed` port too) on its first network's address: host ports chosen
        where 0, reachable from the host's addresses and 127.0.0.1 as well. Answers
        NetworkSettings.Ports. A retry answers the bindings in force."""
        self._in_thread(reply, self._publish_ports, container, port_bindings or {},
                        exposed or [], publish_all)

    @method(idempotent=True, returns=None)
    def unpublish_ports(self, reply: Reply, container: str) -> None:
        """Release a container's published ports (it stopped); none is fine."""
        self.ctx.faults.hit("network.container.leaving")
        self._in_thread(reply, self._unpublish_ports, container)

    # -- changes, on a thread of their own, one at a time --------------------

    def _in_thread(self, reply: Reply, fn: Callable[..., T], *args: Any) -> None:
        def locked() -> T:
            with self._lock:
                return fn(*args)
        reply.run_in_thread(locked)

    def _create(self, name: str, driver: str, internal: bool, attachable: bool,
                config: builtins.list[dict[str, str]], ipam_options: dict[str, str],
                options: dict[str, str], labels: dict[str, str],
                enable_ipv6: bool) -> NetworkCreated:
        check_name(name, "network")
        if any(net.name == name for net in self._networks.values()):
            raise conflict(f"network with name {name} already exists")
        if driver in ("host", "null"):
            raise forbidden(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise not_found(f'plugin "{driver}" not found')
        if enable_ipv6:
            raise invalid("IPv6 networks are not supported by pouch")
        pool = self._pool(config)
        net_id = _new_id()
        bridge = options.get(describe.BRIDGE_NAME) or f"br-{net_id[:12]}"
        if len(bridge) > 15 or "/" in bridge or not bridge.strip():
            raise invalid(f"invalid bridge name {bridge!r}: 1-15 characters")
        if any(net.bridge == bridge for net in self._networks.values()) or \
                links.exists(bridge):
            # Never taken over: it may be the host's own link or another daemon's bridge.
            raise conflict(f"a link named {bridge} exists already")
        mtu = self._mtu(options)
        net = Network(net_id, name, driver, rfc3339_nano(), bridge=bridge, pool=pool,
                      internal=internal, attachable=attachable, options=dict(options),
                      labels=dict(labels), ipam_options=dict(ipam_options), mtu=mtu)
        self._store.save(net)
        self._networks[net_id] = net
        try:
            self._make_bridge(net)
            self._apply_rules()
        except BaseException:
            self._networks.pop(net_id, None)
            self._store.delete(net_id)
            sandbox.remove_bridge(bridge)  # no link had its name before: ours
            self._apply_rules()
            raise
        self.publish("network", "create", net_id, {"name": name, "type": driver})
        return {"Id": net_id, "Warning": ""}

    def _pool(self, config: builtins.list[dict[str, str]]) -> ipam.Pool:
        if len(config) > 1:
            raise invalid("pouch networks take one IPv4 subnet")
        others = [net.pool.subnet for net in self._networks.values() if net.pool]
        if not config or not config[0].get("Subnet"):
            if config and (config[0].get("Gateway") or config[0].get("IPRange")):
                raise invalid("a gateway or an ip-range needs a subnet")
            return ipam.auto_pool(others + links.networks_in_use())
        entry = config[0]
        pool = ipam.pool_from(entry.get("Subnet", ""), entry.get("Gateway", ""),
                              entry.get("IPRange", ""))
        ipam.check_overlap(pool.subnet, others, links.networks_in_use())
        return pool

    def _mtu(self, options: dict[str, str]) -> int:
        text = options.get(describe.MTU, "")
        if not text:
            return self.ctx.config.mtu
        try:
            mtu = int(text)
        except ValueError:
            raise invalid(f"invalid MTU {text!r}") from None
        if not 68 <= mtu <= 65535:
            raise invalid(f"invalid MTU {mtu}: it must be between 68 and 65535")
        return mtu

    def _remove(self, ref: str) -> None:
        net = self._find(ref)
        if net.builtin:
            raise forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        if net.endpoints:
            self._release_stopped(net)
        self._store.delete(net.id)
        del self._networks[net.id]
        self._apply_rules()
        if self._port_chains is not None:
            ports.release_bridge(self._port_chains, net.bridge)
        sandbox.remove_bridge(net.bridge)
        self.publish("network", "destroy", net.id, {"name": net.name, "type": net.driver})

    def _prune(self, filters: Filters, until: float | None) -> NetworksPruned:
        deleted: builtins.list[str] = []
        for net in self._ordered():
            if net.builtin:
                continue
            if until is not None and _created_at(net) >= until:
                continue
            if not labels_match(filters.get("label", []), net.labels):
                continue
            if any(labels_match([v], net.labels) for v in filters.get("label!", [])):
                continue
            try:
                self._remove(net.id)
            except PouchError as exc:
                if exc.code != "conflict":  # a running container's: kept, as it should be
                    log.warning("prune: %s", exc)
                continue
            deleted.append(net.name)
        if deleted:
            self.publish("network", "prune", "", {"reclaimed": "0"})
        return {"NetworksDeleted": deleted}

    def _check(self, container: str, networks: builtins.list[str]) -> None:
        for network in networks:
            net = self._networks.get(network)
            if net is None or container not in net.endpoints:
                raise not_found(f"network {network} not found")
        now = time.time()
        self._starting = {cid: at for cid, at in self._starting.items()
                          if now - at < STARTING_FOR}
        self._starting[container] = now

    def _release_stopped(self, net: Network) -> None:
        """Before a network goes: the endpoints of its containers that do not run
        released. Errors: conflict if one runs or starts (or the container actor cannot
        say which do)."""
        try:
            running = self._running_on(net)
        except PouchError as exc:
            log.warning("network %s: which containers run is unknown (%s)", net.name,
                        exc.message)
            running = set(net.endpoints)
        if running:
            raise conflict(f"error while removing network: network {net.name} id {net.id} "
                           "has active endpoints")
        for container in list(net.endpoints):
            self._detach(container, net.id)

    def _running_on(self, net: Network) -> set[str]:
        """The network's containers that run, or start: passed check() and have not
        stopped since, though the container actor lists them as running only once their
        task is made."""
        calls = self.ctx.calls.container
        running = {item["Id"] for item in calls.list(filters={"network": [net.id]})}
        now = time.time()
        for cid, at in self._starting.items():
            if cid in net.endpoints and cid not in running and now - at < STARTING_FOR:
                try:
                    finished = calls.inspect(id=cid)["State"]["FinishedAt"]
                except PouchError as exc:
                    if exc.code == "not_found":
                        continue
                    raise
                if finished == ZERO_TIME or parse_timestamp(finished) < at:
                    running.add(cid)
        return running & net.endpoints.keys()

    def _netns_path(self, container: str) -> str:
        return str(self._netns_dir / container)

    def _sandbox(self, container: str) -> str:
        if not is_hex_id(container):
            raise invalid(f"invalid container ID {container!r}: a full ID is needed")
        path = self._netns_path(container)
        if not sandbox.is_netns(path):
            self._store.add_sandbox(container)
            sandbox.create_netns(path)
        return path

    def _attach(self, container: str, network: str, name: str, aliases: builtins.list[str],
                ip: str, hostname: str, hosts_path: str, dns: builtins.list[str],
                ) -> EndpointSettings:
        net = self._find(network)
        if net.driver != "bridge" or net.pool is None:
            raise invalid(f"container cannot be connected to network {net.name} "
                          f"(driver {net.driver})")
        if container in net.endpoints:
            return self._settings(net, net.endpoints[container])
        if net.builtin and aliases:
            raise invalid("network-scoped alias is supported only for containers in user "
                          "defined networks")
        if net.builtin and ip:
            raise invalid("user specified IP address is supported on user defined networks "
                          "only")
        path = self._sandbox(container)
        leased = [IPv4Address(ep.address) for ep in net.endpoints.values()]
        address = ipam.allocate(net.pool, leased, ip)
        others = self._endpoints_of(container)
        ep = Endpoint(container=container, name=name, endpoint_id=_new_id(),
                      address=str(address), mac=ipam.mac_for(address),
                      aliases=list(dict.fromkeys(
                          [*aliases, *([] if net.builtin else [container[:12]])])),
                      host_ifname=sandbox.veth_name(VETH_PREFIX, container, net.id),
                      ifname=f"eth{len(others)}", static=bool(ip), hostname=hostname,
                      hosts_path=hosts_path, dns=list(dns))
        net.endpoints[container] = ep
        self._store.save(net)  # first: a cut attach is repaired at start, never leaked
        try:
            self._connect(net, ep)
        except BaseException:
            del net.endpoints[container]
            self._store.save(net)
            if not others:
                sandbox.remove_netns(path)
                self._store.drop_sandbox(container)
            raise
        self._refresh_hosts(container)
        self._sync_dns()
        self.publish("network", "connect", net.id,
                     {"container": container, "name": net.name, "type": net.driver})
        return self._settings(net, ep)

    def _connect(self, net: Network, ep: Endpoint) -> None:
        assert net.pool is not None
        # Only the first network's gateway is the way out; none for an internal network.
        gateway = "" if net.internal or ep.ifname != "eth0" else str(net.pool.gateway)
        made = sandbox.connect(self._netns_path(ep.container), net.bridge, ep.ifname,
                               address_cidr=f"{ep.address}/{net.pool.prefixlen}",
                               gateway=gateway, mtu=net.mtu or self.ctx.config.mtu,
                               mac=ep.mac, host_ifname=ep.host_ifname)
        log.debug("connected %s to %s: %s", ep.container[:12], net.name,
                  {k: round(v * 1000, 2) for k, v in made.timings.items()})

    def _detach(self, container: str, network: str) -> None:
        net = self._find(network)
        ep = net.endpoints.get(container)
        if ep is None:
            return
        sandbox.disconnect(ep.host_ifname)
        del net.endpoints[container]
        self._store.save(net)
        self._refresh_hosts(container, also=[net])
        self._sync_dns()
        self.publish("network", "disconnect", net.id,
                     {"container": container, "name": net.name, "type": net.driver})

    def _publish_ports(self, container: str, bindings: dict[str, Any],
                       exposed: builtins.list[str], publish_all: bool) -> PortMap:
        # `-p 127.0.0.1:0:80` sends HostPort "0": a random port, as an empty one.
        bindings = {key: [{**entry, "HostPort": "" if str(entry.get("HostPort") or "")
                           .strip() == "0" else entry.get("HostPort")}
                          for entry in entries if isinstance(entry, dict)]
                    if isinstance(entries, builtins.list) else entries
                    for key, entries in bindings.items()}
        wanted = ports.specs(bindings, exposed, publish_all)
        mine = self._endpoints_of(container)
        if not mine or not wanted:
            return ports.ports_view(exposed, [])
        net, ep = next(((n, e) for n, e in mine if e.ifname == "eth0"), mine[0])
        if ep.ports:  # a retry, or a start whose stop could not tell us
            return ports.ports_view(exposed, [ports.Binding(**b) for b in ep.ports])
        if self._port_chains is None:
            raise invalid("published ports need iptables rules: pouchd runs --iptables=false")
        made = ports.publish(self._port_chains, net.bridge, ep.address, wanted)
        ep.ports = [{"port": b.port, "proto": b.proto, "host_ip": b.host_ip,
                     "host_port": b.host_port} for b in made]
        try:
            self._store.save(net)
        except BaseException:
            ports.unpublish(self._port_chains, net.bridge, ep.address, made)
            ep.ports = []
            raise
        return ports.ports_view(exposed, made)

    def _unpublish_ports(self, container: str) -> None:
        for net, ep in self._endpoints_of(container):
            if ep.ports and self._port_chains is not None:
                ports.unpublish(self._port_chains, net.bridge, ep.address,
                                [ports.Binding(**b) for b in ep.ports])
            if ep.ports:
                ep.ports = []
                self._store.save(net)

    def _release(self, container: str) -> None:
        self._unpublish_ports(container)
        # The namespace first: the embedded DNS then knows its rules are gone with it
        # (the endpoints' veths go by their host ends).
        sandbox.remove_netns(self._netns_path(container))
        for net in self._networks.values():
            if container in net.endpoints:
                self._detach(container, net.id)
        self._store.drop_sandbox(container)

    def _endpoints_of(self, container: str) -> builtins.list[tuple[Network, Endpoint]]:
        return [(net, net.endpoints[container]) for net in self._ordered()
                if container in net.endpoints]

    def _settings(self, net: Network, ep: Endpoint) -> EndpointSettings:
        assert net.pool is not None
        return {"NetworkID": net.id, "NetworkName": net.name, "EndpointID": ep.endpoint_id,
                "IPAddress": ep.address,
                "IPPrefixLen": net.pool.prefixlen, "Gateway": str(net.pool.gateway),
                "MacAddress": ep.mac, "Aliases": list(ep.aliases), "Bridge": net.bridge,
                "Mtu": net.mtu or self.ctx.config.mtu,
                "SandboxKey": self._netns_path(ep.container)}

    def _refresh_hosts(self, container: str, also: Iterable[Network] = ()) -> None:
        """The hosts files of `container` and of every container sharing a user network
        with it (or one of `also`, networks it just left)."""
        nets = [net for net, _ in self._endpoints_of(container)] + list(also)
        touched = {container} | {cid for net in nets if not net.builtin
                                 for cid in net.endpoints}
        for cid in touched:
            mine = self._endpoints_of(cid)
            if not mine:
                continue
            own = [(ep.address, ep.hostname) for _, ep in mine if ep.hostname]
            peers = [(ep.address, [ep.name, *ep.aliases]) for net, _ in mine if not net.builtin
                     for other, ep in net.endpoints.items() if other != cid]
            path = next((ep.hosts_path for _, ep in mine if ep.hosts_path), "")
            if path:
                hosts.rewrite(path, own, peers)

    def _sync_dns(self) -> None:
        """The embedded DNS server made to match the endpoints: each container on a user
        network served, and answered the names (container name and aliases, dockerd's)
        of every container on its user networks, itself included."""
        if self._dns is None:
            return
        by_net: dict[str, dict[str, builtins.list[str]]] = {}
        for net in self._networks.values():
            if not net.builtin and net.endpoints:
                names: dict[str, builtins.list[str]] = {}
                for ep in net.endpoints.values():
                    for name in dict.fromkeys(n.lower() for n in (ep.name, *ep.aliases) if n):
                        names.setdefault(name, []).append(ep.address)
                by_net[net.id] = names
        records: dict[str, dict[str, builtins.list[str]]] = {}
        upstreams: dict[str, builtins.list[str]] = {}
        for net_id, names in by_net.items():
            for cid, ep in self._networks[net_id].endpoints.items():
                upstreams.setdefault(cid, ep.dns)
                mine = records.get(cid)
                if mine is None:
                    records[cid] = names  # shared, not copied: most are on one network
                else:
                    merged = {k: list(v) for k, v in mine.items()}
                    for name, addresses in names.items():
                        merged.setdefault(name, []).extend(addresses)
                    records[cid] = merged
        self._dns.set_records(records)
        host = _host_nameservers()
        for cid, servers in upstreams.items():
            try:
                self._dns.serve(cid, self._netns_path(cid), servers or host)
            except OSError as exc:
                log.warning("no DNS server for %s: %s", cid[:12], exc)
        for cid in self._dns_served - upstreams.keys():
            self._dns.forget(cid)
        self._dns_served = set(upstreams)

    # -- helpers -------------------------------------------------------------

    def _find(self, ref: str) -> Network:
        """As dockerd: the full ID, then the name, then a unique ID prefix."""
        if ref in self._networks:
            return self._networks[ref]
        for net in self._networks.values():
            if net.name == ref:
                return net
        found = [net for net in self._networks.values() if ref and net.id.startswith(ref)]
        if len(found) > 1:
            raise invalid(f"network {ref} is ambiguous ({len(found)} matches found based "
                          "on ID prefix)")
        if not found:
            raise not_found(f"network {ref} not found")
        return found[0]

    def _ordered(self) -> builtins.list[Network]:
        return sorted(self._networks.values(), key=lambda net: (net.created, net.name))

    def _bridges(self) -> builtins.list[Network]:
        return [net for net in self._ordered() if net.driver == "bridge" and net.pool]

    def _make_bridge(self, net: Network) -> None:
        assert net.pool is not None
        sandbox.ensure_bridge(net.bridge, net.pool.gateway_cidr(), net.mtu or
                              self.ctx.config.mtu)
        links.mark(net.bridge, self._tag)

    def _apply_rules(self) -> None:
        if self._chains is None:
            return
        self._chains.apply(
            BridgeRules(net.bridge, str(net.pool.subnet), net.internal,
                        net.options.get(describe.MASQUERADE, "true") != "false")
            for net in self._bridges() if net.pool is not None)


def _host_nameservers() -> builtins.list[str]:
    """The host's nameservers: what an embedded DNS server (in this, the host's network
    namespace) asks for names that are not the containers'."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return []
    return [fields[1] for fields in map(str.split, lines)
            if len(fields) > 1 and fields[0] == "nameserver"]


def _created_at(net: Network) -> float:
    try:
        return parse_timestamp(net.created)
    except ValueError:
        return time.time()

