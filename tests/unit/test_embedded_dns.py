"""The embedded DNS server, in a real network namespace of the test's own: a container
(a thread that entered the namespace) asks 127.0.0.11 as its resolver would, over UDP
or TCP, and fake upstreams in the host's namespace answer (127.77.0.1, UDP and TCP),
stay silent (127.77.0.3) or are not there at all (127.77.0.2: port unreachable)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pouch.actors.netns import in_netns
from pouch.actors.network.dns import EmbeddedDns

ANSWERING, REFUSING, SILENT = "127.77.0.1", "127.77.0.2", "127.77.0.3"
UPSTREAM_ANSWER = "192.0.2.1"
BIG = "big.example."  # the upstreams answer it with MANY addresses: too big for UDP
MANY = [f"198.51.100.{i}" for i in range(1, 81)]
C1, C2 = "c1" * 32, "c2" * 32

# -- fixtures -------------------------------------------------------------------------

def _make_netns(lo_up: bool) -> Iterator[str]:
    name = f"pouchdns-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        if lo_up:
            subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                           check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    yield from _make_netns(lo_up=True)


@pytest.fixture
def netns_lo_down() -> Iterator[str]:
    yield from _make_netns(lo_up=False)


@pytest.fixture
def server() -> Iterator[EmbeddedDns]:
    embedded = EmbeddedDns()
    try:
        yield embedded
    finally:
        embedded.stop()


class FakeUpstream:
    """Answers every A query with UPSTREAM_ANSWER (BIG: MANY, truncated over UDP) and
    anything else with NXDOMAIN at ANSWERING:53, over UDP and TCP; takes queries and
    never answers at SILENT:53."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self.sockets: list[socket.socket] = []
        for address, kind in ((ANSWERING, socket.SOCK_DGRAM), (SILENT, socket.SOCK_DGRAM),
                              (ANSWERING, socket.SOCK_STREAM)):
            sock = socket.socket(socket.AF_INET, kind)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, 53))
                if kind == socket.SOCK_STREAM:
                    sock.listen(8)
            except OSError as err:
                sock.close()
                self.close()
                pytest.fail(f"cannot bind the fake upstream at {address}:53: {err}")
            sock.settimeout(0.1)
            self.sockets.append(sock)
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run_udp, daemon=True),
                         threading.Thread(target=self._run_tcp, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _answer(self, wire: bytes, max_size: int) -> bytes:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        self.seen.append((query.id, question.name.to_text()))
        response = dns.message.make_response(query, recursion_available=True)
        if question.rdtype == dns.rdatatype.A:
            found = MANY if question.name.to_text() == BIG else [UPSTREAM_ANSWER]
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "A",
                                                            found))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            response.answer = []
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _run_udp(self) -> None:
        sock = self.sockets[0]
        while not self._stopping.is_set():
            try:
                wire, asker = sock.recvfrom(65535)
            except TimeoutError:
                continue
            sock.sendto(self._answer(wire, 512), asker)

    def _run_tcp(self) -> None:
        listener = self.sockets[2]
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                wire, _ = dns.query.receive_tcp(conn, expiration=time.time() + 2)
                dns.query.send_tcp(conn, self._answer(wire.to_wire(), 65535))

    def close(self) -> None:
        if hasattr(self, "_threads"):
            self._stopping.set()
            for thread in self._threads:
                thread.join()
        for sock in self.sockets:
            sock.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    try:
        yield fake
    finally:
        fake.close()


# -- a container's side ---------------------------------------------------------------

def ask(path: str, name: str, rdtype: str = "A", *, query_id: int | None = None,
        use_edns: bool = False, timeout: float = 2.0) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0 if use_edns else False,
                                   payload=4096)
    if query_id is not None:
        query.id = query_id
    return in_netns(path, lambda: dns.query.udp(query, "127.0.0.11", timeout=timeout))


def ask_tcp(path: str, *names: str, timeout: float = 2.0) -> list[dns.message.Message]:
    """Each name asked in turn on one TCP connection, as a resolver retrying after a
    truncated answer does."""
    def run() -> list[dns.message.Message]:
        with socket.create_connection(("127.0.0.11", 53), timeout=timeout) as sock:
            return [dns.query.tcp(dns.message.make_query(name, "A"), "127.0.0.11",
                                  timeout=timeout, sock=sock) for name in names]
    return in_netns(path, run)


def nat_rules(path: str) -> list[str]:
    return subprocess.run(["ip", "netns", "exec", os.path.basename(path), "iptables-save",
                           "-t", "nat"], check=True, capture_output=True,
                          text=True).stdout.splitlines()


def refused(path: str) -> bool:
    """Whether nothing listens at 127.0.0.11:53 (a connected socket hears the port
    unreachable at once)."""
    def probe() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.connect(("127.0.0.11", 53))
            sock.send(dns.message.make_query("x", "A").to_wire())
            try:
                sock.recv(65535)
            except ConnectionRefusedError:
                return True
            return False
    return in_netns(path, probe)


def addresses(response: dns.message.Message) -> list[str]:
    return [rdata.to_text() for rrset in response.answer for rdata in rrset]


# -- names of ours --------------------------------------------------------------------

def test_a_shared_alias_answers_every_address(server: EmbeddedDns, netns: str) -> None:
    server.set_records({C1: {"web": ["10.0.0.2", "10.0.0.3"]}})
    server.serve(C1, netns, [])
    response = ask(netns, "web")
    assert sorted(addresses(response)) == ["10.0.0.2", "10.0.0.3"]
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA and response.flags & dns.flags.RA
    assert response.answer[0].ttl == 600


def test_names_ignore_case_and_a_trailing_dot(server: EmbeddedDns, netns: str) -> None:
    server.set_records({C1: {"db": ["10.0.0.4"]}})
    server.serve(C1, netns, [])
    assert addresses(ask(netns, "DB.")) == ["10.0.0.4"]
    assert addresses(ask(netns, "Db")) == ["10.0.0.4"]


def test_aaaa_of_a_known_name_is_empty_not_forwarded(server: EmbeddedDns, netns: str,
                                                      upstream: FakeUpstream) -> None:
    server.set_records({C1: {"web": ["10.0.0.2"]}})
    server.serve(C1, netns, [ANSWERING])
    for rdtype in ("AAAA", "MX"):
        response = ask(netns, "web", rdtype)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.answer == []
    assert not any(name == "web." for _id, name in upstream.seen)


def test_ptr_of_a_known_address_is_its_first_name(server: EmbeddedDns, netns: str) -> None:
    server.set_records({C1: {"web": ["10.0.0.2"], "alias": ["10.0.0.2"]}})
    server.serve(C1, netns, [])
    response = ask(netns, "2.0.0.10.in-addr.arpa", "PTR")
    assert addresses(response) == ["web."]


def test_names_are_per_container(server: EmbeddedDns, netns: str) -> None:
    server.set_records({C1: {"web": ["10.0.0.2"]}, C2: {"db": ["10.0.1.2"]}})
    server.serve(C1, netns, [])
    # Not C1's: for the upstreams, and there are none.
    assert ask(netns, "db").rcode() == dns.rcode.SERVFAIL


def test_records_swapped_take_effect(server: EmbeddedDns, netns: str) -> None:
    server.set_records({C1: {"old": ["10.0.0.2"]}})
    server.serve(C1, netns, [])
    assert addresses(ask(netns, "old")) == ["10.0.0.2"]
    server.set_records({C1: {"new": ["10.0.0.9"]}})
    assert addresses(ask(netns, "new")) == ["10.0.0.9"]
    assert ask(netns, "old").rcode() == dns.rcode.SERVFAIL


def test_too_big_for_plain_udp_is_truncated(server: EmbeddedDns, netns: str) -> None:
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(80)]
    server.set_records({C1: {"web": many}})
    server.serve(C1, netns, [])
    plain = ask(netns, "web")
    assert plain.flags & dns.flags.TC and plain.answer == []
    assert sorted(addresses(ask(netns, "web", use_edns=True))) == sorted(many)


# -- forwarding -----------------------------------------------------------------------

def test_unknown_name_is_forwarded_and_relayed(server: EmbeddedDns, netns: str,
                                               upstream: FakeUpstream) -> None:
    server.set_records({C1: {"web": ["10.0.0.2"]}})
    server.serve(C1, netns, [ANSWERING])
    response = ask(netns, "example.org", query_id=4242)
    assert response.id == 4242
    assert addresses(response) == [UPSTREAM_ANSWER]
    assert (4242, "example.org.") in upstream.seen


def test_ptr_of_an_unknown_address_is_forwarded(server: EmbeddedDns, netns: str,
                                                upstream: FakeUpstream) -> None:
    server.set_records({C1: {"web": ["10.0.0.2"]}})
    server.serve(C1, netns, [ANSWERING])
    assert ask(netns, "9.0.0.10.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN
    assert any(name == "9.0.0.10.in-addr.arpa." for _id, name in upstream.seen)


def test_a_refusing_upstream_is_passed_at_once(server: EmbeddedDns, netns: str,
                                               upstream: FakeUpstream) -> None:
    server.serve(C1, netns, [REFUSING, ANSWERING])
    started = time.monotonic()
    assert addresses(ask(netns, "example.org")) == [UPSTREAM_ANSWER]
    assert time.monotonic() - started < 1.0


def test_a_silent_upstream_ends_in_servfail(server: EmbeddedDns, netns: str,
                                            upstream: FakeUpstream) -> None:
    server.serve(C1, netns, [SILENT])
    started = time.monotonic()
    response = ask(netns, "example.org", timeout=4)
    elapsed = time.monotonic() - started
    assert response.rcode() == dns.rcode.SERVFAIL
    assert 1.8 < elapsed < 2.8


def test_no_upstreams_is_servfail_at_once(server: EmbeddedDns, netns: str) -> None:
    server.serve(C1, netns, [])
    started = time.monotonic()
    assert ask(netns, "example.org").rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - started < 1.0


# -- the socket's life ----------------------------------------------------------------

def test_serve_twice_only_updates_upstreams(server: EmbeddedDns, netns: str,
                                            upstream: FakeUpstream) -> None:
    server.serve(C1, netns, [SILENT])
    server.serve(C1, netns, [ANSWERING])
    assert addresses(ask(netns, "example.org")) == [UPSTREAM_ANSWER]
    listening = subprocess.run(
        ["ip", "netns", "exec", os.path.basename(netns), "ss", "-Hlun", "src", "127.0.0.11"],
        check=True, capture_output=True, text=True).stdout.splitlines()
    assert len(listening) == 1


def test_forget_closes_the_socket(server: EmbeddedDns, netns: str) -> None:
    server.set_records({C1: {"web": ["10.0.0.2"]}})
    server.serve(C1, netns, [])
    server.forget(C1)
    assert refused(netns)
    server.forget(C1)  # unknown by now: fine
    server.serve(C1, netns, [])  # and the port is free again
    assert addresses(ask(netns, "web")) == ["10.0.0.2"]


def test_a_new_namespace_at_the_same_path_is_served_anew(server: EmbeddedDns,
                                                         netns: str) -> None:
    server.set_records({C1: {"web": ["10.0.0.2"]}})
    server.serve(C1, netns, [])
    name = os.path.basename(netns)
    subprocess.run(["ip", "netns", "del", name], check=True)
    subprocess.run(["ip", "netns", "add", name], check=True)  # a restarted sandbox
    server.serve(C1, netns, [])
    assert addresses(ask(netns, "web")) == ["10.0.0.2"]


def test_stop_closes_every_socket(netns: str) -> None:
    embedded = EmbeddedDns()
    embedded.serve(C1, netns, [])
    embedded.stop()
    assert refused(netns)
    embedded.stop()  # again: fine


def test_garbage_is_dropped_and_answers_go_on(server: EmbeddedDns, netns: str) -> None:
    server.set_records({C1: {"web": ["10.0.0.2"]}})
    server.serve(C1, netns, [])

    def send_garbage() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"\x12\x34 not a DNS message", ("127.0.0.11", 53))
    in_netns(netns, send_garbage)
    assert addresses(ask(netns, "web")) == ["10.0.0.2"]


def test_a_namespace_with_lo_down_gets_it_up(server: EmbeddedDns, netns_lo_down: str) -> None:
    server.set_records({C1: {"web": ["10.0.0.2"]}})
    server.serve(C1, netns_lo_down, [])
    assert addresses(ask(netns_lo_down, "web")) == ["10.0.0.2"]


def test_no_namespace_there_is_an_oserror(server: EmbeddedDns, tmp_path: Path) -> None:
    plain = str(tmp_path / "not-a-netns")
    open(plain, "w").close()
    for path in (plain, plain + "-missing"):
        with pytest.raises(OSError):
            server.serve(C1, path, [])
    server.forget(C1)  # never served: fine


# -- TCP, and port 53 left to the container ------------------------------------------

def test_a_truncated_answer_comes_whole_over_tcp(server: EmbeddedDns, netns: str) -> None:
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(80)]
    server.set_records({C1: {"web": many, "db": ["10.0.9.9"]}})
    server.serve(C1, netns, [])
    assert ask(netns, "web").flags & dns.flags.TC
    web, db = ask_tcp(netns, "web", "db")  # both on one connection
    assert sorted(addresses(web)) == sorted(many) and not web.flags & dns.flags.TC
    assert addresses(db) == ["10.0.9.9"]


def test_a_query_over_tcp_goes_upstream_over_tcp(server: EmbeddedDns, netns: str,
                                                 upstream: FakeUpstream) -> None:
    server.serve(C1, netns, [REFUSING, ANSWERING])
    truncated = ask(netns, BIG)
    assert truncated.flags & dns.flags.TC and truncated.answer == []
    (whole,) = ask_tcp(netns, BIG)
    assert sorted(addresses(whole)) == sorted(MANY)


def test_a_server_in_the_container_may_bind_port_53_itself(server: EmbeddedDns,
                                                           netns: str) -> None:
    """As with dockerd, whose resolver listens elsewhere and has port 53 led to it:
    the container's own server binds 0.0.0.0:53 (UDP without SO_REUSEADDR, as Go's
    do, and TCP), and 127.0.0.11 still answers. Once forgotten, 127.0.0.11:53 is the
    container's own server's."""
    server.set_records({C1: {"web": ["10.0.0.2"]}})
    server.serve(C1, netns, [])

    def own_server() -> tuple[socket.socket, socket.socket]:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp.bind(("0.0.0.0", 53))
        tcp.bind(("0.0.0.0", 53))
        tcp.listen(1)
        return udp, tcp
    udp, tcp = in_netns(netns, own_server)
    try:
        assert addresses(ask(netns, "web")) == ["10.0.0.2"]
        assert addresses(ask_tcp(netns, "web")[0]) == ["10.0.0.2"]
        server.forget(C1)
        assert not any("POUCH-DNS-OUT -d" in rule for rule in nat_rules(netns))
        in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(
            b"mine", ("127.0.0.11", 53)))
        udp.settimeout(2)
        assert udp.recv(100) == b"mine"
    finally:
        udp.close()
        tcp.close()


def test_a_new_server_on_a_namespace_served_before_adds_no_second_jump(netns: str) -> None:
    """A restarted network actor serves its containers again: its ports are new, the
    jumps into our chains stay one each."""
    for _ in range(2):
        embedded = EmbeddedDns()
        try:
            embedded.set_records({C1: {"web": ["10.0.0.2"]}})
            embedded.serve(C1, netns, [])
            assert addresses(ask(netns, "web")) == ["10.0.0.2"]
        finally:
            embedded.stop()
    rules = nat_rules(netns)
    assert rules.count("-A OUTPUT -d 127.0.0.11/32 -j POUCH-DNS-OUT") == 1
    assert rules.count("-A POSTROUTING -s 127.0.0.11/32 -j POUCH-DNS-POST") == 1
    assert sum(rule.startswith("-A POUCH-DNS-OUT") for rule in rules) == 2  # UDP, TCP


def test_a_client_that_half_closes_after_its_query_still_gets_the_answer(
        server: EmbeddedDns, netns: str, upstream: FakeUpstream) -> None:
    """Some resolvers shut their side once the query is sent: the answer, asked of
    an upstream meanwhile, still comes, then the connection ends."""
    server.serve(C1, netns, [ANSWERING])

    def ask_and_shut() -> tuple[dns.message.Message, bytes]:
        with socket.create_connection(("127.0.0.11", 53), timeout=3) as sock:
            dns.query.send_tcp(sock, dns.message.make_query(BIG, "A"))
            sock.shutdown(socket.SHUT_WR)
            answer, _ = dns.query.receive_tcp(sock, expiration=time.time() + 3)
            return answer, sock.recv(1)
    answer, after = in_netns(netns, ask_and_shut)
    assert sorted(addresses(answer)) == sorted(MANY)
    assert after == b""  # closed by the server once answered
