"""The embedded DNS server, in a real network namespace of the test's own: a container
(a thread that entered the namespace) asks 127.0.0.11 as its resolver would, and fake
upstreams in the host's namespace answer (127.77.0.1), stay silent (127.77.0.3) or are
not there at all (127.77.0.2: port unreachable)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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
    """Answers every A query with UPSTREAM_ANSWER and anything else with NXDOMAIN at
    ANSWERING:53; takes queries and never answers at SILENT:53."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self.sockets: list[socket.socket] = []
        for address in (ANSWERING, SILENT):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((address, 53))
            except OSError as err:
                sock.close()
                self.close()
                pytest.fail(f"cannot bind the fake upstream at {address}:53: {err}")
            sock.settimeout(0.1)
            self.sockets.append(sock)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self.sockets[0]
        while not self._stopping.is_set():
            try:
                wire, asker = sock.recvfrom(65535)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            question = query.question[0]
            self.seen.append((query.id, question.name.to_text()))
            response = dns.message.make_response(query, recursion_available=True)
            if question.rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(
                    question.name, 60, "IN", "A", UPSTREAM_ANSWER))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(response.to_wire(), asker)

    def close(self) -> None:
        if hasattr(self, "_thread"):
            self._stopping.set()
            self._thread.join()
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
        ["ip", "netns", "exec", os.path.basename(netns), "ss", "-Hlun", "sport", "= :53"],
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
