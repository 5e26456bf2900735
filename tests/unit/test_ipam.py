"""IPAM rules with plain values: pools, gateways, ranges, subnet choice, leases."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from pouch.actors.network import ipam
from pouch.proto.envelope import PouchError


def refused(code: str, fn, *args, **kwargs) -> str:
    with pytest.raises(PouchError) as caught:
        fn(*args, **kwargs)
    assert caught.value.code == code, caught.value
    return caught.value.message


def test_a_subnet_alone_gets_its_first_host_as_gateway():
    pool = ipam.pool_from("10.20.0.0/16")
    assert pool.subnet == IPv4Network("10.20.0.0/16")
    assert pool.gateway == IPv4Address("10.20.0.1")
    assert pool.gateway_cidr() == "10.20.0.1/16"
    assert not pool.auto


def test_host_bits_in_a_subnet_are_dropped():
    assert ipam.pool_from("10.20.3.4/16").subnet == IPv4Network("10.20.0.0/16")


def test_gateway_and_range_must_be_inside_the_subnet():
    pool = ipam.pool_from("10.20.0.0/16", "10.20.9.9", "10.20.5.0/24")
    assert pool.gateway == IPv4Address("10.20.9.9")
    assert pool.ip_range == IPv4Network("10.20.5.0/24")
    assert "Invalid gateway" in refused("invalid", ipam.pool_from, "10.20.0.0/16", "10.21.0.1")
    assert "Invalid gateway" in refused("invalid", ipam.pool_from, "10.20.0.0/16", "10.20.0.0")
    assert "Invalid range" in refused("invalid", ipam.pool_from, "10.20.0.0/16", "",
                                      "10.0.0.0/8")


@pytest.mark.parametrize("text", ["foo", "10.0.0.300/8", "10.0.0.0/33", ""])
def test_bad_cidr_is_invalid(text):
    assert refused("invalid", ipam.pool_from, text) == f"invalid CIDR address: {text}"


@pytest.mark.parametrize("text", ["224.1.0.0/16", "240.0.0.0/8", "127.5.0.0/16",
                                  "169.254.0.0/16", "0.0.0.0/1", "0.0.0.0/0"])
def test_subnets_of_no_unicast_use_are_refused(text):
    assert "unicast" in refused("invalid", ipam.pool_from, text)


def test_a_subnet_over_the_hosts_routes_is_forbidden():
    host = [IPv4Network("0.0.0.0/0"), IPv4Network("192.0.2.0/24")]
    ipam.check_overlap(IPv4Network("10.0.0.0/8"), [], host)
    assert "host" in refused("forbidden", ipam.check_overlap, IPv4Network("192.0.0.0/16"),
                             [], host)


def test_ipv6_and_tiny_subnets_are_refused():
    assert "IPv4" in refused("invalid", ipam.pool_from, "fd00::/64")
    assert "too small" in refused("invalid", ipam.pool_from, "10.0.0.0/31")


def test_bad_gateway_text_is_invalid():
    assert "gateway" in refused("invalid", ipam.pool_from, "10.0.0.0/8", "ten")


def test_bip_is_the_gateway_and_fixed_cidr_the_range():
    pool = ipam.pool_from_bip("192.168.5.1/24", "192.168.5.128/25")
    assert pool.subnet == IPv4Network("192.168.5.0/24")
    assert pool.gateway == IPv4Address("192.168.5.1")
    assert pool.ip_range == IPv4Network("192.168.5.128/25")
    assert "--bip" in refused("invalid", ipam.pool_from_bip, "192.168.5.1")


def test_overlapping_subnets_are_forbidden_as_dockerd_says():
    ipam.check_overlap(IPv4Network("10.1.0.0/16"), [IPv4Network("10.2.0.0/16")])
    message = refused("forbidden", ipam.check_overlap, IPv4Network("10.1.0.0/16"),
                      [IPv4Network("10.1.2.0/24")])
    assert message == "Pool overlaps with other one on this address space"


def test_subnet_choice_skips_routes_addresses_and_networks_but_not_the_default_route():
    taken = [IPv4Network("0.0.0.0/0"), IPv4Network("172.17.0.0/16"),
             IPv4Network("172.18.3.0/24"), IPv4Network("172.19.0.7/32")]
    assert ipam.choose_subnet(taken) == IPv4Network("172.20.0.0/16")
    pool = ipam.auto_pool(taken)
    assert pool.auto and pool.gateway == IPv4Address("172.20.0.1")


def test_subnet_choice_falls_back_to_192_168_then_gives_up():
    taken = [IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/20")]
    assert ipam.choose_subnet(taken) == IPv4Network("192.168.16.0/20")
    assert "non-overlapping" in refused("forbidden", ipam.choose_subnet,
                                        [*taken, IPv4Network("192.168.0.0/16")])


def test_leases_skip_network_gateway_and_leased_addresses():
    pool = ipam.pool_from("10.9.0.0/29")
    first = ipam.allocate(pool, [])
    assert first == IPv4Address("10.9.0.2")
    assert ipam.allocate(pool, [first]) == IPv4Address("10.9.0.3")
    leased = [IPv4Address(f"10.9.0.{n}") for n in range(2, 7)]
    assert "no available IPv4" in refused("forbidden", ipam.allocate, pool, leased)


def test_leases_come_from_the_range():
    pool = ipam.pool_from("10.9.0.0/16", "", "10.9.4.0/30")
    assert ipam.allocate(pool, []) == IPv4Address("10.9.4.1")
    assert ipam.allocate(pool, [IPv4Address("10.9.4.1")]) == IPv4Address("10.9.4.2")


def test_a_static_address_must_be_free_and_in_a_user_subnet():
    pool = ipam.pool_from("10.9.0.0/24")
    assert ipam.allocate(pool, [], "10.9.0.77") == IPv4Address("10.9.0.77")
    assert "in use" in refused("conflict", ipam.allocate, pool, [IPv4Address("10.9.0.77")],
                               "10.9.0.77")
    assert "in use" in refused("conflict", ipam.allocate, pool, [], "10.9.0.1")
    assert "contain" in refused("invalid", ipam.allocate, pool, [], "10.8.0.5")
    assert "contain" in refused("invalid", ipam.allocate, pool, [], "10.9.0.255")
    auto = ipam.auto_pool([])
    assert "user configured" in refused("invalid", ipam.allocate, auto, [], "172.17.0.9")


def test_pool_round_trips_through_json():
    for pool in (ipam.pool_from("10.9.0.0/16", "10.9.0.254", "10.9.8.0/24"),
                 ipam.auto_pool([])):
        assert ipam.Pool.from_json(pool.to_json()) == pool


def test_mac_follows_the_address():
    assert ipam.mac_for(IPv4Address("172.17.0.2")) == "02:42:ac:11:00:02"
