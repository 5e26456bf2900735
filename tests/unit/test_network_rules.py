"""Pure parts of the network actor: its iptables rule text, the hosts section it keeps,
the inspect document and the list filters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from pouch.actors.network import describe, hosts, ipam, iptables
from pouch.actors.network.iptables import BridgeRules, Chains
from pouch.actors.network.store import Endpoint, Network
from pouch.proto.envelope import PouchError


def test_chain_names_carry_the_tag_and_fit_iptables():
    chains = Chains("ptd123456789abc")
    names = [c for group in chains.chains().values() for c in group]
    assert all(name.endswith("-ptd123456789abc") and len(name) <= 28 for name in names)
    assert len(set(names)) == len(names)
    with pytest.raises(ValueError):
        Chains("a-name-too-long-for-a-link")


def test_rules_masquerade_forward_and_isolate_each_network():
    chains = Chains("t0")
    text = chains.restore_text([BridgeRules("br-a", "10.1.0.0/16"),
                                BridgeRules("br-i", "10.2.0.0/16", internal=True),
                                BridgeRules("br-n", "10.3.0.0/16", masquerade=False)])
    lines = text.splitlines()
    assert "-A POUCH-NAT-t0 -s 10.1.0.0/16 ! -o br-a -j MASQUERADE" in lines
    assert not any("10.2.0.0/16" in line or "10.3.0.0/16" in line for line in lines)
    assert "-A POUCH-ISO1-t0 -i br-a ! -o br-a -j POUCH-ISO2-t0" in lines
    assert "-A POUCH-ISO2-t0 -o br-a -j DROP" in lines
    assert "-A POUCH-ISO1-t0 -i br-i ! -o br-i -j DROP" in lines
    assert "-A POUCH-ISO1-t0 ! -i br-i -o br-i -j DROP" in lines
    assert "-A POUCH-FWD-t0 -i br-i ! -o br-i -j ACCEPT" not in lines
    # Isolation first, then published ports, then each network's accepts.
    forward = [line for line in lines if line.startswith("-A POUCH-FWD-t0")]
    assert forward[:2] == ["-A POUCH-FWD-t0 -j POUCH-ISO1-t0", "-A POUCH-FWD-t0 -j POUCH-PUB-t0"]
    # The port chains are never declared: declaring would empty them.
    assert ":POUCH-DNAT-t0" not in text and ":POUCH-PUB-t0" not in text
    assert ":POUCH-HAIR-t0" not in text


def test_the_hosts_section_follows_the_marker_and_keeps_what_is_above():
    base = "127.0.0.1\tlocalhost\n127.0.1.1\tabc\n"
    first = hosts.render(base, [("10.0.0.2", "abc")], [("10.0.0.3", ["db", "data", "db"])])
    assert first.startswith(base)
    assert first.endswith(f"{hosts.MARKER}\n10.0.0.2\tabc\n10.0.0.3\tdb data\n")
    again = hosts.render(first, [("10.0.0.2", "abc")], [])
    assert again == f"{base}{hosts.MARKER}\n10.0.0.2\tabc\n"


def test_a_name_of_several_addresses_is_left_to_the_dns_server():
    text = hosts.render("", [], [("10.0.0.3", ["web"]), ("10.0.1.3", ["web", "www"]),
                                 ("10.0.0.3", ["web"])])
    assert text.splitlines()[1:] == ["10.0.1.3\twww"]


def test_the_hosts_file_is_rewritten_in_place(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1\tlocalhost\n")
    inode = path.stat().st_ino
    hosts.rewrite(str(path), [("10.0.0.2", "me")], [])
    assert path.stat().st_ino == inode and "10.0.0.2\tme" in path.read_text()
    hosts.rewrite(str(tmp_path / "gone" / "hosts"), [], [])  # a removed container: fine


def network(**fields: Any) -> Network:
    base: dict[str, Any] = {"id": "f" * 64, "name": "n1", "driver": "bridge",
                            "created": "2026-01-01T00:00:00Z", "bridge": "br-ffffffffffff",
                            "pool": ipam.pool_from("10.5.0.0/24")}
    return Network(**(base | fields))


def test_inspect_has_dockerds_shape():
    net = network(labels={"a": "b"})
    net.endpoints["c" * 64] = Endpoint("c" * 64, "web", "e" * 64, "10.5.0.2",
                                       "02:42:0a:05:00:02")
    shown = describe.inspect(net)
    assert shown["IPAM"] == {"Driver": "default", "Options": {},
                             "Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1"}]}
    assert shown["Containers"] == {"c" * 64: {
        "Name": "web", "EndpointID": "e" * 64, "MacAddress": "02:42:0a:05:00:02",
        "IPv4Address": "10.5.0.2/24", "IPv6Address": ""}}
    assert (shown["Scope"], shown["Labels"], shown["EnableIPv6"]) == ("local", {"a": "b"}, False)
    assert describe.inspect(network(builtin=True, name="bridge"))["IPAM"]["Options"] is None


def test_filters_as_dockerd_reads_them():
    custom, builtin = network(labels={"k": "v"}), network(name="host", builtin=True,
                                                         driver="host", pool=None)
    assert describe.matches(custom, {"type": ["custom"], "label": ["k=v"], "name": ["n"]})
    assert not describe.matches(builtin, {"type": ["custom"]})
    assert describe.matches(builtin, {"driver": ["host"]})
    assert not describe.matches(builtin, {"driver": ["hos"]})  # a driver is matched whole
    assert describe.matches(custom, {"dangling": ["true"]})
    assert not describe.matches(builtin, {"dangling": ["true"]})
    assert describe.matches(builtin, {"dangling": ["false"]})
    for bad in ({"type": ["weird"]}, {"dangling": ["maybe"]}, {"colour": ["x"]}):
        with pytest.raises(PouchError):
            describe.check_list_filters(bad)


def test_a_network_round_trips_through_its_file():
    net = network(options={"o": "1"}, internal=True)
    net.endpoints["c" * 64] = Endpoint("c" * 64, "web", "e" * 64, "10.5.0.2", "m",
                                       aliases=["w"], ports=[{"port": 80, "proto": "tcp",
                                                              "host_ip": "", "host_port": 8080}])
    assert Network.from_json(net.to_json()) == net


def test_dns_port_rules_add_the_jumps_once_and_empty_the_chains_when_led_nowhere():
    calls: list[tuple[list[str], str | None]] = []
    saved = ""

    def runner(args: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        calls.append((list(args), stdin))
        return 0, saved if args[0].endswith("-save") else "", ""

    iptables.redirect_dns("127.0.0.11", 53, (4001, 4002), runner)
    text = calls[-1][1] or ""
    assert "-A POUCH-DNS-OUT -d 127.0.0.11/32 -p udp --dport 53 -j DNAT " \
           "--to-destination 127.0.0.11:4001" in text
    assert "-A POUCH-DNS-POST -s 127.0.0.11/32 -p tcp --sport 4002 -j SNAT " \
           "--to-source :53" in text
    assert "-A OUTPUT -d 127.0.0.11/32 -j POUCH-DNS-OUT" in text
    saved = "-A OUTPUT -d 127.0.0.11/32 -j POUCH-DNS-OUT\n"  # a namespace served before
    iptables.redirect_dns("127.0.0.11", 53, None, runner)
    assert calls[-1][1] == "*nat\n:POUCH-DNS-OUT - [0:0]\n:POUCH-DNS-POST - [0:0]\nCOMMIT\n"
    saved, before = "", len(calls)
    iptables.redirect_dns("127.0.0.11", 53, None, runner)  # never led: nothing to empty
    assert [args[0] for args, _ in calls[before:]] == ["iptables-save"]
