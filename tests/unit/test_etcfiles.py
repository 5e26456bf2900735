"""A container's resolv.conf and extra hosts, as dockerd writes them."""

from __future__ import annotations

import pytest

from pouch.actors.container.etcfiles import Dns, extra_hosts, hosts_lines, own_names, resolv_conf
from pouch.proto.envelope import PouchError

HOST = "# made by hand\nsearch corp.example\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n" \
       "options edns0\n"


def test_asked_nothing_a_container_gets_the_hosts_file_without_loopback_servers():
    assert resolv_conf(HOST, Dns(), host_network=False) == \
        "# made by hand\nsearch corp.example\nnameserver 10.0.0.2\noptions edns0\n"
    assert resolv_conf(HOST, Dns(), host_network=True) == HOST


def test_what_is_asked_replaces_the_hosts_and_the_rest_is_the_hosts():
    assert resolv_conf(HOST, Dns(servers=("9.9.9.9",)), host_network=False) == \
        "search corp.example\nnameserver 9.9.9.9\noptions edns0\n"
    assert resolv_conf(HOST, Dns(search=("a.example", "b.example"), options=("ndots:2",)),
                       host_network=False) == \
        "search a.example b.example\nnameserver 10.0.0.2\noptions ndots:2\n"


def test_a_search_of_dot_is_none_and_the_last_of_search_and_domain_counts():
    assert resolv_conf(HOST, Dns(search=(".",)), host_network=False) == \
        "nameserver 10.0.0.2\noptions edns0\n"
    assert resolv_conf("search a\ndomain b\n", Dns(servers=("1.1.1.1",)), False) == \
        "search b\nnameserver 1.1.1.1\n"


def test_on_a_user_network_the_embedded_server_is_the_only_one_with_ndots_0():
    assert resolv_conf(HOST, Dns(), False, embedded=True) == \
        "search corp.example\nnameserver 127.0.0.11\noptions edns0 ndots:0\n"
    # Its upstreams (--dns) are not the container's to see; an ndots asked for is kept.
    assert resolv_conf(HOST, Dns(servers=("9.9.9.9",), options=("ndots:3",)), False,
                       embedded=True) == \
        "search corp.example\nnameserver 127.0.0.11\noptions ndots:3\n"


def test_dns_servers_must_be_addresses():
    assert Dns.of({"Dns": ["1.1.1.1", "::1"], "DnsSearch": None}) == Dns(("1.1.1.1", "::1"))
    with pytest.raises(PouchError) as caught:
        Dns.of({"Dns": ["bogus"]})
    assert caught.value.code == "invalid" and "HostConfig.Dns" in caught.value.message
    with pytest.raises(PouchError):
        Dns.of({"DnsOptions": "ndots:2"})


def test_extra_hosts_are_name_and_address_or_host_gateway():
    entries = extra_hosts({"ExtraHosts": ["x:1.2.3.4", "y:::1", "gw:host-gateway"]})
    assert entries == [("x", "1.2.3.4"), ("y", "::1"), ("gw", "host-gateway")]
    assert hosts_lines(entries, "172.17.0.1") == "1.2.3.4\tx\n::1\ty\n172.17.0.1\tgw\n"
    for bad in ("bad", "x:not-an-ip", ":1.2.3.4"):
        with pytest.raises(PouchError) as caught:
            extra_hosts({"ExtraHosts": [bad]})
        assert repr(bad) in caught.value.message


def test_own_names_are_the_full_name_and_its_first_label() -> None:
    assert own_names("h1", "example.com") == "h1.example.com h1"
    assert own_names("h2.sub.example.com", "") == "h2.sub.example.com h2"
    assert own_names("abc123", "") == "abc123"
