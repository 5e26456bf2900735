"""Network sandboxes and published ports on the real kernel: namespaces at paths, a
bridge, veth pairs, iptables rules in chains of the test's own (all named "ptst"+hex,
all removed, and checked gone, after every test, failed or not)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pyroute2 import IPRoute

from pouch.actors.netns import in_netns
from pouch.actors.network import ports, sandbox
from pouch.proto.envelope import PouchError
from pouch.tests.support.wait import wait_for


@dataclass
class Net:
    tag: str
    folder: str
    bridge: str
    subnet: ipaddress.IPv4Network
    chains: ports.Chains

    def netns(self, name: str) -> str:
        return os.path.join(self.folder, "netns", name)

    def ip(self, host: int) -> str:
        return str(self.subnet.network_address + host)

    def cidr(self, host: int) -> str:
        return f"{self.ip(host)}/{self.subnet.prefixlen}"


JUMPS = (("nat", "PREROUTING", "nat"), ("nat", "OUTPUT", "nat"),
         ("nat", "POSTROUTING", "postrouting"), ("filter", "FORWARD", "filter"))


def _jump(chains: ports.Chains, builtin: str, which: str) -> list[str]:
    rule = ["-j", getattr(chains, which)]
    return ["-m", "addrtype", "--dst-type", "LOCAL", *rule] if which == "nat" else rule


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.251.0.0/16 that no route of the host's touches."""
    with IPRoute() as ipr:
        used = [ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", strict=False)
                for r in ipr.get_routes(family=socket.AF_INET) if r.get_attr("RTA_DST")]
    for _ in range(50):
        net = ipaddress.IPv4Network(f"10.251.{random.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise AssertionError("no free /24 in 10.251.0.0/16")


def _leftovers(tag: str, folder: str) -> list[str]:
    found = []
    with IPRoute() as ipr:
        found += [f"link {link.get_attr('IFLA_IFNAME')}" for link in ipr.get_links()
                  if link.get_attr("IFLA_IFNAME").startswith(tag)]
    with open("/proc/self/mountinfo") as mounts:
        found += [f"mount {line.split()[4]}" for line in mounts if folder in line]
    for table in ("nat", "filter"):
        listing = ports.iptables(table, "-S").stdout
        found += [f"{table}: {line}" for line in listing.splitlines() if tag in line]
    return found


@pytest.fixture
def net() -> Iterator[Net]:
    tag = "ptst" + uuid.uuid4().hex[:6]
    folder = tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp")
    chains = ports.Chains(nat=f"{tag}-NAT", filter=f"{tag}-FWD", postrouting=f"{tag}-POST")
    made = Net(tag, folder, f"{tag}br", _free_subnet(), chains)
    for table, chain in (("nat", chains.nat), ("filter", chains.filter),
                         ("nat", chains.postrouting)):
        assert ports.iptables(table, "-N", chain).returncode == 0
    for table, builtin, which in JUMPS:
        assert ports.iptables(table, "-I", builtin, *_jump(chains, builtin, which)).returncode == 0
    try:
        yield made
    finally:
        with IPRoute() as ipr:
            for link in ipr.get_links():
                name = link.get_attr("IFLA_IFNAME")
                if name.startswith(tag) and name != made.bridge:
                    sandbox.disconnect(name)
        sandbox.release_netns_dir(made.netns(""))
        ports.release_bridge(chains, made.bridge)
        sandbox.remove_bridge(made.bridge)
        for table, builtin, which in JUMPS:
            ports.iptables(table, "-D", builtin, *_jump(chains, builtin, which))
        # the test's own chains: flushing them touches nobody else's rules
        for table, chain in (("nat", chains.nat), ("filter", chains.filter),
                             ("nat", chains.postrouting)):
            ports.iptables(table, "-F", chain)
            ports.iptables(table, "-X", chain)
        shutil.rmtree(folder, ignore_errors=True)
        assert _leftovers(tag, folder) == []


@contextlib.contextmanager
def tcp_server(path: str, port: int, reply: bytes) -> Iterator[None]:
    """A TCP server on 0.0.0.0:`port` inside the namespace: every client gets `reply`."""
    def listen() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("0.0.0.0", port))
        sock.listen(8)
        return sock

    server = in_netns(path, listen)

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed: the test is over
            with client:
                client.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(timeout=10)


@contextlib.contextmanager
def udp_echo(path: str, port: int) -> Iterator[None]:
    server = in_netns(path, lambda: _bound_udp(port))
    server.settimeout(0.2)  # an unconnected UDP socket cannot be shut down: poll a flag
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = server.recvfrom(2048)
            except TimeoutError:
                continue
            server.sendto(b"echo " + data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        server.close()


def _bound_udp(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    return sock


def fetch(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=5) as sock:
        return sock.recv(100)


def ping(netns_path: str, address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={netns_path}", "busybox", "ping", "-c", "1",
                           "-W", "3", address], capture_output=True, text=True, timeout=30)


def sandboxed(net: Net, name: str, host: int) -> sandbox.Endpoint:
    sandbox.create_netns(net.netns(name))
    return sandbox.connect(net.netns(name), net.bridge, address_cidr=net.cidr(host),
                           gateway=net.ip(1), host_ifname=f"{net.tag}{name}")


# -- sandboxes --------------------------------------------------------------------------

def test_two_namespaces_on_a_bridge_ping_each_other(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    first = sandboxed(net, "a", 2)
    sandboxed(net, "b", 3)
    assert first.mac == sandbox.mac_for(net.ip(2))
    assert set(first.timings) == {"veth", "hairpin", "enter", "address", "up",
                                    "route"}
    done = ping(net.netns("a"), net.ip(3))
    assert done.returncode == 0, done.stdout + done.stderr
    done = ping(net.netns("b"), net.ip(1))  # the gateway, on the bridge
    assert done.returncode == 0, done.stdout + done.stderr


def test_inside_the_namespace_eth0_has_address_mtu_mac_and_default_route(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1400)
    sandbox.create_netns(net.netns("a"))
    endpoint = sandbox.connect(net.netns("a"), net.bridge, address_cidr=net.cidr(9),
                               gateway=net.ip(1), mtu=1400, mac="02:42:de:ad:be:ef",
                               host_ifname=f"{net.tag}a")
    shown = subprocess.run(["nsenter", f"--net={net.netns('a')}", "ip", "-o", "addr",
                            "show", "eth0"], capture_output=True, text=True).stdout
    assert f"inet {net.cidr(9)}" in shown
    link = subprocess.run(["nsenter", f"--net={net.netns('a')}", "ip", "-o", "link"],
                          capture_output=True, text=True).stdout
    assert "lo: <LOOPBACK,UP" in link
    assert "mtu 1400" in link and "02:42:de:ad:be:ef" in link
    route = subprocess.run(["nsenter", f"--net={net.netns('a')}", "ip", "route"],
                           capture_output=True, text=True).stdout
    assert f"default via {net.ip(1)} dev eth0" in route
    with IPRoute() as ipr:
        host = ipr.link("get", ifname=endpoint.host_ifname)[0]
        bridge = ipr.link_lookup(ifname=net.bridge)[0]
        assert host.get_attr("IFLA_MASTER") == bridge
        assert host.get_attr("IFLA_MTU") == 1400
        assert host["flags"] & 1  # IFF_UP


def test_bridge_is_repaired_not_duplicated(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    subprocess.run(["ip", "addr", "add", "192.0.2.7/24", "dev", net.bridge], check=True)
    subprocess.run(["ip", "link", "set", net.bridge, "down", "mtu", "1300"], check=True)
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", net.bridge],
                           capture_output=True, text=True, check=True).stdout
    assert [line.split()[3] for line in shown.splitlines()] == [net.cidr(1)]
    link = subprocess.run(["ip", "-o", "link", "show", net.bridge], capture_output=True,
                          text=True, check=True).stdout
    assert "mtu 1500" in link and ",UP" in link
    with IPRoute() as ipr:
        assert len(ipr.link_lookup(ifname=net.bridge)) == 1
    subprocess.run(["ip", "link", "add", f"{net.tag}d", "type", "veth", "peer", "name",
                    f"{net.tag}e"], check=True)
    with pytest.raises(PouchError, match="not a bridge"):
        sandbox.ensure_bridge(f"{net.tag}d", net.cidr(1), 1500)
    sandbox.remove_bridge(net.bridge)
    sandbox.remove_bridge(net.bridge)


def test_netns_removal_and_disconnect_are_idempotent(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    endpoint = sandboxed(net, "a", 2)
    path = net.netns("a")
    assert sandbox.list_netns(net.netns("")) == [path]
    again = sandbox.create_netns(path)  # kept, as at a restore
    assert set(again) == {"netns"} and sandbox.is_netns(path)
    sandbox.disconnect(endpoint.host_ifname)
    sandbox.disconnect(endpoint.host_ifname)
    sandbox.remove_netns(path)
    sandbox.remove_netns(path)
    assert not os.path.exists(path)
    assert sandbox.list_netns(net.netns("")) == []


def test_connect_refuses_bad_input_and_leaves_nothing(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    sandbox.create_netns(net.netns("a"))
    with pytest.raises(PouchError, match="invalid address"):
        sandbox.connect(net.netns("a"), net.bridge, address_cidr="10.0.0.300/24",
                        host_ifname=f"{net.tag}a")
    with pytest.raises(PouchError, match="not found"):
        sandbox.connect(net.netns("a"), f"{net.tag}x", address_cidr=net.cidr(2),
                        host_ifname=f"{net.tag}a")
    with pytest.raises(PouchError, match="no network namespace"):
        sandbox.connect(net.netns("zz"), net.bridge, address_cidr=net.cidr(2),
                        host_ifname=f"{net.tag}a")
    with pytest.raises(PouchError, match="not in subnet"):
        sandbox.connect(net.netns("a"), net.bridge, address_cidr=net.cidr(2),
                        gateway="192.0.2.1", host_ifname=f"{net.tag}a")
    first = sandbox.connect(net.netns("a"), net.bridge, address_cidr=net.cidr(2),
                            gateway=net.ip(1), host_ifname=f"{net.tag}a")
    # a second default route fails inside the namespace, after the pair was made:
    # the pair is undone
    with pytest.raises(PouchError, match="default route already"):
        sandbox.connect(net.netns("a"), net.bridge, "eth1", address_cidr=net.cidr(3),
                        gateway=net.ip(1), host_ifname=f"{net.tag}b")
    with IPRoute() as ipr:
        assert ipr.link_lookup(ifname=f"{net.tag}b") == []
    sandbox.disconnect(first.host_ifname)
    sandboxed_again = sandbox.connect(net.netns("a"), net.bridge, address_cidr=net.cidr(2),
                                      gateway=net.ip(1), host_ifname=f"{net.tag}a")
    assert sandboxed_again.host_ifname == f"{net.tag}a"


def test_orphans_are_veths_without_a_sandbox_of_ours(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    sandboxed(net, "a", 2)
    sandboxed(net, "b", 3)
    assert sandbox.orphans(net.tag, net.netns("")) == []
    # "b" unmounted while something else still holds its namespace: its veth lives on
    holder = os.open(net.netns("b"), os.O_RDONLY)
    try:
        sandbox.remove_netns(net.netns("b"))
        # cut halfway: a pair never moved into any namespace
        subprocess.run(["ip", "link", "add", f"{net.tag}h", "type", "veth", "peer", "name",
                        f"{net.tag}p"], check=True)
        found = sandbox.orphans(net.tag, net.netns(""))
        assert f"{net.tag}b" in found and f"{net.tag}h" in found
        assert f"{net.tag}a" not in found
        for name in found:
            sandbox.disconnect(name)
    finally:
        os.close(holder)
    assert sandbox.orphans(net.tag, net.netns("")) == []


def test_removing_the_netns_takes_its_pair_and_a_stale_pair_is_replaced(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    endpoint = sandboxed(net, "a", 2)
    # the same endpoint again, in a new sandbox, while the old pair is still there
    sandbox.create_netns(net.netns("a2"))
    again = sandbox.connect(net.netns("a2"), net.bridge, address_cidr=net.cidr(2),
                            gateway=net.ip(1), host_ifname=endpoint.host_ifname)
    done = ping(net.netns("a2"), net.ip(1))
    assert done.returncode == 0, done.stdout + done.stderr
    sandbox.remove_netns(net.netns("a"))
    sandbox.remove_netns(net.netns("a2"))

    def gone() -> bool:
        with IPRoute() as ipr:
            return not ipr.link_lookup(ifname=again.host_ifname)
    wait_for(gone, 30, "the veth of a removed namespace")


def test_veth_names_fit_and_say_whose_they_are() -> None:
    name = sandbox.veth_name("pv", "0123456789abcdef", "fedcba9876")
    assert len(name) <= 15 and name.startswith("pv0123456") and name.endswith("fedc")
    with pytest.raises(PouchError):
        sandbox.veth_name("a-prefix-much-too-long", "0123", "4567")


# -- published ports ----------------------------------------------------------------

def _rules(net: Net) -> list[str]:
    found = []
    for table, chain in (("nat", net.chains.nat), ("filter", net.chains.filter),
                         ("nat", net.chains.postrouting)):
        found += [line for line in ports.iptables(table, "-S", chain).stdout.splitlines()
                  if line.startswith("-A")]
    return found


def test_published_port_answers_on_localhost_and_bridge_address(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    sandboxed(net, "a", 2)
    with tcp_server(net.netns("a"), 80, b"hello from a"):
        local, anywhere = ports.publish(net.chains, net.bridge, net.ip(2), [
            ports.PortSpec(80, host_ip="127.0.0.1"), ports.PortSpec(80)])
        assert local.host_ip == "127.0.0.1" and local.host_port > 0
        assert anywhere.view() == {"HostIp": "0.0.0.0", "HostPort": str(anywhere.host_port)}
        assert fetch("127.0.0.1", local.host_port) == b"hello from a"
        assert fetch(net.ip(1), anywhere.host_port) == b"hello from a"
        assert fetch("127.0.0.1", anywhere.host_port) == b"hello from a"
        # hairpin: the container reaches its own published port through the host
        reached = subprocess.run(["nsenter", f"--net={net.netns('a')}", "busybox", "nc",
                                  "-w", "5", net.ip(1), str(anywhere.host_port)],
                                 stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        assert reached.stdout == b"hello from a", reached
        # bound to 127.0.0.1 only: not on the bridge address
        with pytest.raises(OSError):
            fetch(net.ip(1), local.host_port)
        before = _rules(net)
        again = ports.publish(net.chains, net.bridge, net.ip(2), [
            ports.PortSpec(80, host_ip="127.0.0.1", host_port=local.host_port)])
        assert again == [local] and _rules(net) == before  # nothing doubled
        # one of two bindings of port 80 goes: the other still answers
        ports.unpublish(net.chains, net.bridge, net.ip(2), [anywhere])
        assert fetch("127.0.0.1", local.host_port) == b"hello from a"
        with pytest.raises(ConnectionRefusedError):
            fetch("127.0.0.1", anywhere.host_port)
        ports.unpublish(net.chains, net.bridge, net.ip(2), [local, anywhere])
        ports.unpublish(net.chains, net.bridge, net.ip(2), [local, anywhere])
        assert _rules(net) == [f"-A {net.chains.postrouting} -s 127.0.0.0/8 -o {net.bridge}"
                               " -j MASQUERADE"]
        with pytest.raises(ConnectionRefusedError):
            fetch("127.0.0.1", local.host_port)
    ports.release_bridge(net.chains, net.bridge)
    assert _rules(net) == []


def test_udp_port_is_published(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    sandboxed(net, "a", 2)
    with udp_echo(net.netns("a"), 53):
        [binding] = ports.publish(net.chains, net.bridge, net.ip(2),
                                  ports.specs({"53/udp": [{"HostIp": "127.0.0.1"}]}))
        assert binding.proto == "udp"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(1)

            def answered() -> bytes | None:
                client.sendto(b"ping", ("127.0.0.1", binding.host_port))
                try:
                    return client.recv(100)
                except TimeoutError:
                    return None  # a datagram may be lost: ask again
            assert wait_for(answered, 20, "udp echo through the published port") == \
                b"echo ping"
        ports.unpublish(net.chains, net.bridge, net.ip(2), [binding])


def test_fixed_host_port_taken_is_refused_as_dockerd_says(net: Net) -> None:
    sandbox.ensure_bridge(net.bridge, net.cidr(1), 1500)
    sandboxed(net, "a", 2)
    sandboxed(net, "b", 3)
    [first] = ports.publish(net.chains, net.bridge, net.ip(2), [ports.PortSpec(80)])
    before = _rules(net)
    with pytest.raises(PouchError, match=f"Bind for 0.0.0.0:{first.host_port} failed: "
                                         "port is already allocated"):
        ports.publish(net.chains, net.bridge, net.ip(3), [
            ports.PortSpec(81), ports.PortSpec(80, host_port=first.host_port)])
    assert _rules(net) == before  # the failed call's first binding was undone too
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        busy = listener.getsockname()[1]
        with pytest.raises(PouchError, match="address already in use"):
            ports.publish(net.chains, net.bridge, net.ip(3), [
                ports.PortSpec(80, host_ip="127.0.0.1", host_port=busy)])
        # a range skips the busy port
        [ranged] = ports.publish(net.chains, net.bridge, net.ip(3), ports.specs(
            {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": f"{busy}-{busy + 5}"}]}))
    assert busy < ranged.host_port <= busy + 5
    ports.unpublish(net.chains, net.bridge, net.ip(2), [first])
    ports.unpublish(net.chains, net.bridge, net.ip(3), [ranged])
