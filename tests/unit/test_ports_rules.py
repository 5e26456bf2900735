"""Published ports, the pure part: PortBindings parsed, rules written, ports shown,
held ports found in a chain listing."""

from __future__ import annotations

import pytest

from pouch.actors.network.ports import (
    Allocation,
    Binding,
    Chains,
    PortSpec,
    allocations,
    bridge_rule,
    clashes,
    ours,
    parse_port_key,
    ports_view,
    restore_input,
    rules_for,
    specs,
)
from pouch.proto.envelope import PouchError

CHAINS = Chains(nat="PT-NAT", filter="PT-FWD", postrouting="PT-POST")


def test_port_bindings_as_the_cli_sends_them() -> None:
    # docker run -p 8080:80 -p 127.0.0.1::53/udp -p 9000-9005:90
    wanted = specs({"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                    "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                    "90/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9000-9005"}]})
    assert wanted == [PortSpec(80, "tcp", "", 8080), PortSpec(53, "udp", "127.0.0.1", 0),
                      PortSpec(90, "tcp", "", 9000, 9005)]


def test_publish_all_adds_every_exposed_port_not_bound() -> None:
    wanted = specs({"80/tcp": [{"HostPort": "8080"}]}, exposed=["80/tcp", "443", "53/udp"],
                   publish_all=True)
    assert wanted == [PortSpec(80, "tcp", "", 8080), PortSpec(443), PortSpec(53, "udp")]
    assert specs(None, exposed=["80/tcp"]) == []


@pytest.mark.parametrize("bindings, message", [
    ({"80/sctp": [{}]}, "invalid proto: sctp"),
    ({"x/tcp": [{}]}, "invalid containerPort: x"),
    ({"0/tcp": [{}]}, "invalid containerPort: 0"),
    ({"80/tcp": [{"HostPort": "70000"}]}, "invalid hostPort: 70000"),
    ({"80/tcp": [{"HostPort": "9005-9000"}]}, "invalid hostPort: 9005-9000"),
    ({"80/tcp": [{"HostIp": "300.1.1.1"}]}, "invalid IP address: 300.1.1.1"),
    ({"80/tcp": [{"HostIp": "::1"}]}, "IPv6 host addresses are not supported"),
])
def test_bad_bindings_are_invalid(bindings: dict, message: str) -> None:
    with pytest.raises(PouchError, match=message) as caught:
        specs(bindings)
    assert caught.value.code == "invalid"


def test_port_keys() -> None:
    assert parse_port_key("80") == (80, "tcp")
    assert parse_port_key("53/UDP") == (53, "udp")


def test_rules_for_a_binding_on_one_address() -> None:
    rules = rules_for(CHAINS, "p0", "192.168.5.2", Binding(80, "tcp", "127.0.0.1", 32768))
    assert [(r.table, r.chain, " ".join(r.args)) for r in rules] == [
        ("nat", "PT-NAT", "-d 127.0.0.1/32 -p tcp -m tcp --dport 32768 -j DNAT "
                          "--to-destination 192.168.5.2:80"),
        ("filter", "PT-FWD", "-d 192.168.5.2/32 ! -i p0 -o p0 -p tcp -m tcp --dport 80 "
                             "-j ACCEPT"),
        ("nat", "PT-POST", "-s 192.168.5.2/32 -d 192.168.5.2/32 -p tcp -m tcp --dport 80 "
                           "-j MASQUERADE"),
    ]


def test_rules_for_every_address_match_any_destination() -> None:
    [dnat, *_] = rules_for(CHAINS, "p0", "192.168.5.2", Binding(53, "udp", "", 5353))
    assert dnat.line == ("PT-NAT -p udp -m udp --dport 5353 -j DNAT "
                         "--to-destination 192.168.5.2:53")
    assert " ".join(bridge_rule(CHAINS, "p0").args) == "-s 127.0.0.0/8 -o p0 -j MASQUERADE"


def test_ports_view_as_dockerd_shows_it() -> None:
    view = ports_view(["80/tcp", "443/tcp"], [Binding(80, "tcp", "", 8080),
                                              Binding(80, "tcp", "127.0.0.1", 8081),
                                              Binding(53, "udp", "", 5353)])
    assert view == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"},
                   {"HostIp": "127.0.0.1", "HostPort": "8081"}],
        "443/tcp": None,
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
    }


LISTING = """\
-N PT-NAT
-A PT-NAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.5.2:80
-A PT-NAT -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 192.168.5.3:53
-A PT-NAT -i p0 -j RETURN
"""


def test_allocations_are_read_from_the_chain_listing() -> None:
    assert allocations(LISTING) == [
        Allocation("0.0.0.0", "tcp", 8080, "192.168.5.2:80"),
        Allocation("127.0.0.1", "udp", 5353, "192.168.5.3:53"),
    ]


def test_a_port_held_elsewhere_clashes_on_overlapping_addresses_only() -> None:
    held = allocations(LISTING)
    # 0.0.0.0:8080 is held: every address of the host clashes
    assert clashes(held, "127.0.0.1", "tcp", 8080, "192.168.5.9:80")
    assert clashes(held, "", "tcp", 8080, "192.168.5.9:80")
    # the same binding again (a restore) is no clash
    assert not clashes(held, "", "tcp", 8080, "192.168.5.2:80")
    # 127.0.0.1:5353/udp: another address or protocol is free
    assert not clashes(held, "10.0.0.1", "udp", 5353, "192.168.5.9:53")
    assert not clashes(held, "127.0.0.1", "tcp", 5353, "192.168.5.9:53")
    assert clashes(held, "", "udp", 5353, "192.168.5.9:53")


def test_restore_input_deletes_then_appends_table_by_table() -> None:
    [dnat, accept, hairpin] = rules_for(CHAINS, "p0", "192.168.5.2",
                                        Binding(80, "tcp", "", 8080))
    assert restore_input(append=[dnat, accept], delete=[hairpin]) == (
        "*nat\n"
        "-D PT-POST -s 192.168.5.2/32 -d 192.168.5.2/32 -p tcp -m tcp --dport 80 "
        "-j MASQUERADE\n"
        "-A PT-NAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.5.2:80\n"
        "COMMIT\n"
        "*filter\n"
        "-A PT-FWD -d 192.168.5.2/32 ! -i p0 -o p0 -p tcp -m tcp --dport 80 -j ACCEPT\n"
        "COMMIT\n")


def test_our_rules_are_picked_from_iptables_save_by_table_and_chain() -> None:
    saved = """\
*filter
:PT-FWD - [0:0]
-A FORWARD -j PT-FWD
-A PT-FWD -d 192.168.5.2/32 ! -i p0 -o p0 -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
*nat
:PT-NAT - [0:0]
-A PT-NAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.5.2:80
-A PT-POST -s 127.0.0.0/8 -o p0 -j MASQUERADE
-A PT-FWD -j RETURN
-A OTHER -j RETURN
COMMIT
"""
    assert ours(saved, CHAINS) == [
        "PT-FWD -d 192.168.5.2/32 ! -i p0 -o p0 -p tcp -m tcp --dport 80 -j ACCEPT",
        "PT-NAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.5.2:80",
        "PT-POST -s 127.0.0.0/8 -o p0 -j MASQUERADE",
    ]
