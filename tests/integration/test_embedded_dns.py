"""The embedded DNS server of user networks, as compose's service discovery uses it
against dockerd: 127.0.0.11 in each container's resolv.conf answers the names and
aliases of the containers on its networks (every address of a shared alias) and asks
the container's --dns (else the host's nameservers) for the rest."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rrset
import pytest

from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for

# An upstream nameserver of the test's own, in the host's namespace, where the network
# actor forwards from: a loopback address nothing else uses, DNS's fixed port.
UPSTREAM = "127.77.0.9"
EXTERNAL, EXTERNAL_ADDRESS = "ext.pouch.test.", "192.0.2.7"
BACK_WITHIN = 20.0


def addresses(text: str) -> set[str]:
    """The addresses busybox nslookup printed for the name (not the server's)."""
    answer = text.split("Name:", 1)[1] if "Name:" in text else ""
    return set(re.findall(r"Address(?: \d+)?:\s*([0-9.]+)\s*$", answer, re.M))


def nslookup(daemon: PouchDaemon, container: str, name: str) -> str:
    return daemon.docker_result("exec", container, "nslookup", name).stdout


@pytest.fixture
def upstream() -> Iterator[None]:
    """A nameserver at UPSTREAM that knows EXTERNAL and nothing else."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((UPSTREAM, 53))
    sock.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            answer = dns.message.make_response(query)
            question = query.question[0]
            if question.name.to_text().lower() == EXTERNAL and question.rdtype == 1:
                answer.answer.append(dns.rrset.from_text(EXTERNAL, 60, "IN", "A",
                                                         EXTERNAL_ADDRESS))
            elif question.name.to_text().lower() != EXTERNAL:
                answer.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(answer.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield
    done.set()
    thread.join(timeout=5)
    sock.close()


def test_a_container_on_a_user_network_is_served_dns_as_with_dockerd(
        daemon: PouchDaemon, names, networks, upstream):
    net, web1, web2, client, plain = (networks(), names("web1"), names("web2"),
                                      names("client"), names("plain"))
    daemon.docker("network", "create", net)
    for name in (web1, web2):
        daemon.docker("run", "-d", "--name", name, "--network", net, "--network-alias", "web",
                      "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", client, "--network", net, "--dns", UPSTREAM,
                  "busybox", "sleep", "600")
    resolv = daemon.docker("exec", client, "cat", "/etc/resolv.conf")
    assert "nameserver 127.0.0.11" in resolv.splitlines()
    assert "ndots:0" in resolv and UPSTREAM not in resolv
    ips = {name: daemon.inspect(name)["NetworkSettings"]["Networks"][net]["IPAddress"]
           for name in (web1, web2)}
    assert addresses(nslookup(daemon, client, web1)) == {ips[web1]}
    assert addresses(nslookup(daemon, client, web2.upper())) == {ips[web2]}
    # A shared alias (a scaled compose service) has every address, and is left out of
    # the hosts file, which would give programs the first one only.
    assert addresses(nslookup(daemon, client, "web")) == set(ips.values())
    hosts = daemon.docker("exec", client, "cat", "/etc/hosts").split()
    assert "web" not in hosts and web1 in hosts
    assert daemon.docker_result("exec", client, "ping", "-c1", "-W5", "web").returncode == 0
    assert addresses(nslookup(daemon, client, EXTERNAL.rstrip("."))) == {EXTERNAL_ADDRESS}
    assert not addresses(nslookup(daemon, client, "nothing.pouch.test"))
    # Gone with the container.
    daemon.docker("rm", "-f", web2)
    assert addresses(nslookup(daemon, client, "web")) == {ips[web1]}
    # The default bridge has none, as with dockerd.
    daemon.docker("run", "-d", "--name", plain, "busybox", "sleep", "600")
    assert "127.0.0.11" not in daemon.docker("exec", plain, "cat", "/etc/resolv.conf")


def test_a_container_may_serve_port_53_itself_on_a_user_network(
        daemon: PouchDaemon, names, networks):
    """dockerd's resolver listens on ports of its own, port 53 led to them: a server
    in the container binds 0.0.0.0:53 as it would anywhere (TCP here: busybox has no
    UDP server; the unit tests bind both), and the container still has its
    neighbours' names."""
    net, server, peer = networks(), names("server"), names("peer")
    daemon.docker("network", "create", net)
    daemon.docker("run", "-d", "--name", peer, "--network", net, "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", server, "--network", net, "busybox", "sh", "-c",
                  "nc -ll -p 53 -e echo served & sleep 600")
    ip = daemon.inspect(peer)["NetworkSettings"]["Networks"][net]["IPAddress"]

    wait_for(lambda: re.search(r"^tcp .* (0\.0\.0\.0|::):53 .*LISTEN", daemon.docker(
        "exec", server, "netstat", "-ltn"), re.M), 10, "the container's own server")
    assert daemon.docker("exec", server, "nc", "127.0.0.1", "53") == "served"
    assert addresses(nslookup(daemon, server, peer)) == {ip}


def test_the_dns_server_is_back_with_a_restarted_network_actor(pouchd: PouchDaemon):
    pouchd.docker("network", "create", "dnsnet")
    pouchd.docker("run", "-d", "--name", "target", "--network", "dnsnet", "busybox", "sleep",
                  "600")
    pouchd.docker("run", "-d", "--name", "asker", "--network", "dnsnet", "busybox", "sleep",
                  "600")
    ip = pouchd.inspect("target")["NetworkSettings"]["Networks"]["dnsnet"]["IPAddress"]
    assert addresses(nslookup(pouchd, "asker", "target")) == {ip}
    old = pouchd.pid_of("network")
    os.kill(old, signal.SIGKILL)

    def replaced() -> bool:
        try:
            return pouchd.pid_of("network") != old
        except (OSError, ValueError):  # its pid file being written
            return False

    wait_for(replaced, BACK_WITHIN, "a new network actor")
    wait_for(lambda: addresses(nslookup(pouchd, "asker", "target")) == {ip}, BACK_WITHIN,
             "the name answered again")
    pouchd.docker("rm", "-f", "target", "asker")
    pouchd.docker("network", "rm", "dnsnet")
