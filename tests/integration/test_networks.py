"""docker network create/ls/inspect/rm/prune against pouch: bridges and iptables rules
made, repaired and removed as a user of dockerd would expect."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import subprocess
import urllib.request
import uuid
from pathlib import Path

import docker as docker_py
import pytest
from pyroute2 import IPRoute

from pouch.actors.network import links, sandbox
from pouch.actors.network.iptables import Chains
from pouch.tests.support import netclean
from pouch.tests.support.daemon import DockerError, PouchDaemon
from pouch.tests.support.wait import wait_for


def addresses(link: str) -> list[str]:
    """The IPv4 addresses (with length) of a link; [] when there is no such link."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=link)
        if not found:
            return []
        return sorted(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                      for a in ipr.get_addr(family=2, index=found[0]))


def rules(table: str) -> list[str]:
    return subprocess.run(["iptables", "-w", "10", "-t", table, "-S"], capture_output=True,
                          text=True, check=True).stdout.splitlines()


def free_net(prefix: int = 24) -> ipaddress.IPv4Network:
    """A random subnet of 10.128.0.0/9 no route of the host overlaps: test sessions run
    side by side, each with its daemons' networks."""
    busy = [net for net in links.networks_in_use() if net.prefixlen > 0]
    space = ipaddress.IPv4Network("10.128.0.0/9")
    for _ in range(200):
        candidate = random.choice(list(space.subnets(new_prefix=16)))
        candidate = random.choice(list(candidate.subnets(new_prefix=prefix)))
        if not any(candidate.overlaps(net) for net in busy):
            return candidate
    raise AssertionError("no free subnet in 10.128.0.0/9")


def host(net: ipaddress.IPv4Network, n: int) -> str:
    return str(net.network_address + n)


def inspect(daemon: PouchDaemon, name: str) -> dict:
    return json.loads(daemon.docker("network", "inspect", name))[0]


def test_every_daemon_has_bridge_host_and_none(daemon: PouchDaemon):
    listed = daemon.docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
    assert {"bridge bridge local", "host host local", "none null local"} <= \
        set(listed.splitlines())
    bridge = inspect(daemon, "bridge")
    gateway = ipaddress.IPv4Interface(daemon.bip)
    assert bridge["IPAM"]["Config"] == [{"Subnet": str(gateway.network),
                                         "Gateway": str(gateway.ip)}]
    assert bridge["Options"]["com.docker.network.bridge.name"] == daemon.bridge
    assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    assert inspect(daemon, "host")["IPAM"]["Config"] == []
    # The default bridge is a Linux bridge with --bip, masqueraded and forwarded.
    assert addresses(daemon.bridge) == [daemon.bip]
    chains = Chains(daemon.bridge)
    assert f"-A {chains.nat} -s {gateway.network} ! -o {daemon.bridge} -j MASQUERADE" in \
        rules("nat")
    assert f"-A FORWARD -j {chains.forward}" in rules("filter")


def test_create_inspect_and_remove_a_network(daemon: PouchDaemon, networks):
    name, net = networks(), free_net(16)
    rng = list(net.subnets(new_prefix=24))[7]
    made = daemon.docker("network", "create", "--subnet", str(net),
                         "--gateway", host(net, 254), "--ip-range", str(rng),
                         "--label", "team=blue", "--opt", "com.docker.network.driver.mtu=1400",
                         name)
    found = inspect(daemon, name)
    assert found["Id"] == made and found["Name"] == name
    assert (found["Driver"], found["Scope"], found["Internal"]) == ("bridge", "local", False)
    assert found["IPAM"] == {"Driver": "default", "Options": {}, "Config": [
        {"Subnet": str(net), "Gateway": host(net, 254), "IPRange": str(rng)}]}
    assert found["Labels"] == {"team": "blue"}
    assert found["Options"] == {"com.docker.network.driver.mtu": "1400"}
    assert found["Containers"] == {}
    assert inspect(daemon, made[:12])["Id"] == made  # by a unique ID prefix too

    bridge = f"br-{made[:12]}"
    assert addresses(bridge) == [f"{host(net, 254)}/16"]
    with IPRoute() as ipr:
        assert ipr.get_links(ipr.link_lookup(ifname=bridge)[0])[0].get_attr("IFLA_MTU") == 1400
    masquerade = f"-s {net} ! -o {bridge} -j MASQUERADE"
    assert any(masquerade in line for line in rules("nat"))

    assert daemon.docker("network", "rm", name) == name
    assert addresses(bridge) == []
    assert not any(bridge in line for line in rules("nat") + rules("filter"))
    with pytest.raises(DockerError, match=f"network {name} not found"):
        daemon.docker("network", "inspect", name)


def test_a_bridge_name_can_be_chosen(daemon: PouchDaemon, networks):
    name, bridge = networks(), f"ptdn{uuid.uuid4().hex[:6]}"
    daemon.docker("network", "create", "-o", f"com.docker.network.bridge.name={bridge}",
                  "--subnet", str(net := free_net()), name)
    try:
        assert addresses(bridge) == [f"{host(net, 1)}/24"]
        assert links.marked(daemon.bridge).count(bridge) == 1
    finally:
        daemon.docker("network", "rm", name)
    assert addresses(bridge) == []


def test_a_subnet_is_chosen_clear_of_the_hosts_routes_and_other_networks(
        daemon: PouchDaemon, networks):
    first, second = networks(), networks()
    daemon.docker("network", "create", first)
    daemon.docker("network", "create", second)
    subnets = [ipaddress.IPv4Network(inspect(daemon, n)["IPAM"]["Config"][0]["Subnet"])
               for n in (first, second)]
    assert not subnets[0].overlaps(subnets[1])
    mine = {f"br-{inspect(daemon, n)['Id'][:12]}" for n in (first, second)}
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        others = [ipaddress.IPv4Network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}")
                  for r in ipr.get_routes(family=2, table=254)
                  if r["dst_len"] and names.get(r.get_attr("RTA_OIF")) not in mine]
    assert not [(s, o) for s in subnets for o in others if s.overlaps(o)]


def test_an_internal_network_is_neither_masqueraded_nor_forwarded_out(
        daemon: PouchDaemon, networks):
    name = networks()
    net = free_net()
    made = daemon.docker("network", "create", "--internal", "--subnet", str(net), name)
    bridge = f"br-{made[:12]}"
    assert inspect(daemon, name)["Internal"] is True
    assert not any(str(net) in line for line in rules("nat"))
    iso1 = Chains(daemon.bridge).iso1
    assert f"-A {iso1} -i {bridge} ! -o {bridge} -j DROP" in rules("filter")
    assert f"-A {iso1} ! -i {bridge} -o {bridge} -j DROP" in rules("filter")


def test_bad_input_is_refused_as_dockerd_refuses_it(daemon: PouchDaemon, api, networks):
    name, other = networks(), networks()
    net, spare = free_net(16), free_net()
    daemon.docker("network", "create", "--subnet", str(net), name)
    for body, status, message in [
        ({"Name": other, "IPAM": {"Config": [{"Subnet": "foo"}]}}, 400,
         "invalid CIDR address: foo"),
        ({"Name": other, "IPAM": {"Config": [{"Subnet": host(net, 5 * 256) + "/24"}]}}, 403,
         "Pool overlaps with other one on this address space"),
        ({"Name": other, "IPAM": {"Config": [{"Subnet": str(spare),
                                             "Gateway": "10.9.9.9"}]}}, 400, "Invalid gateway"),
        ({"Name": name}, 409, f"network with name {name} already exists"),
        ({"Name": other, "Driver": "overlay2x"}, 404, 'plugin "overlay2x" not found'),
        ({"Name": other, "Driver": "host"}, 403, 'only one instance of "host"'),
        ({"Name": "bad name!"}, 400, "Invalid network name"),
        ({"Name": other, "Internal": "yes"}, 400, "Internal"),
    ]:
        response = api._post_json(api._url("/networks/create"), data=body)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["message"], (body, response.text)
    assert other not in daemon.docker("network", "ls", "--format", "{{.Name}}")


def test_predefined_networks_cannot_be_removed(daemon: PouchDaemon, api):
    for name in ("bridge", "host", "none"):
        response = api._delete(api._url("/networks/{0}", name))
        assert response.status_code == 403
        assert response.json()["message"] == \
            f"{name} is a pre-defined network and cannot be removed"
    with pytest.raises(docker_py.errors.NotFound):
        api.remove_network("no-such-network")


def test_list_filters(daemon: PouchDaemon, networks):
    red, blue = networks("red"), networks("blue")
    daemon.docker("network", "create", "--label", "colour=red", red)
    daemon.docker("network", "create", "--label", "colour=blue", "--label", "x", blue)

    def names(*filters: str) -> set[str]:
        args = [a for f in filters for a in ("--filter", f)]
        return set(daemon.docker("network", "ls", *args, "--format", "{{.Name}}").split())

    assert names(f"name={red}") == {red}
    assert names("label=colour=blue") >= {blue} and red not in names("label=colour=blue")
    assert blue in names("label=x") and red not in names("label=x")
    assert names("type=builtin") == {"bridge", "host", "none"}
    assert {red, blue} <= names("type=custom") and "bridge" not in names("type=custom")
    assert names("driver=null") == {"none"}
    assert {red, blue} <= names("dangling=true") and "host" not in names("dangling=true")
    assert names(f"id={inspect(daemon, red)['Id'][:10]}") == {red}
    bad = daemon.docker_result("network", "ls", "--filter", "type=weird")
    assert bad.returncode != 0 and "invalid filter" in bad.stderr


def test_prune_removes_unused_user_networks_only(daemon: PouchDaemon, networks):
    kept, pruned = networks("kept"), networks("pruned")
    daemon.docker("network", "create", "--label", "keep=yes", kept)
    made = daemon.docker("network", "create", pruned)
    out = daemon.docker("network", "prune", "-f", "--filter", "label!=keep=yes")
    assert pruned in out.split() and kept not in out.split()
    assert addresses(f"br-{made[:12]}") == []
    listed = daemon.docker("network", "ls", "--format", "{{.Name}}").split()
    assert {"bridge", "host", "none", kept} <= set(listed) and pruned not in listed


def test_docker_py_sees_networks_as_from_dockerd(client: docker_py.DockerClient, networks):
    name, net = networks(), free_net()
    made = client.networks.create(name, driver="bridge", labels={"k": "v"},
                                  ipam=docker_py.types.IPAMConfig(pool_configs=[
                                      docker_py.types.IPAMPool(subnet=str(net))]))
    assert client.networks.get(made.id).attrs["IPAM"]["Config"][0]["Gateway"] == host(net, 1)
    assert name in [n.name for n in client.networks.list(names=[name])]
    made.remove()
    with pytest.raises(docker_py.errors.NotFound):
        client.networks.get(made.id)


# -- restarts and cleanup ------------------------------------------------------------


def kill_network_actor(daemon: PouchDaemon) -> None:
    old = daemon.pid_of("network")
    os.kill(old, signal.SIGKILL)

    def back() -> bool:
        try:
            return daemon.pid_of("network") != old and \
                daemon.docker_result("network", "ls", timeout=10).returncode == 0
        except (OSError, ValueError):
            return False
    wait_for(back, 30, "a new network actor answering")


def our_lines(tag: str) -> list[str]:
    chains = Chains(tag)
    ours = {c for names in chains.chains().values() for c in names}
    return sorted(line for line in rules("nat") + rules("filter")
                  if ours.intersection(line.split()))


def test_networks_survive_a_killed_network_actor(pouchd: PouchDaemon):
    net = free_net()
    made = pouchd.docker("network", "create", "--subnet", str(net), "survivor")
    before = (inspect(pouchd, "survivor"), our_lines(pouchd.bridge))
    kill_network_actor(pouchd)
    after = (inspect(pouchd, "survivor"), our_lines(pouchd.bridge))
    assert after == before
    assert addresses(f"br-{made[:12]}") == [f"{host(net, 1)}/24"]


def test_a_restarted_pouchd_repairs_a_stale_bridge_and_stale_rules(busybox_tarball: Path):
    first = PouchDaemon()
    second = PouchDaemon(base=first.base)
    try:
        first.start()
        net = free_net()
        made = first.docker("network", "create", "--subnet", str(net), "kept")
        ids = {n: inspect(first, n)["Id"] for n in ("bridge", "host", "none", "kept")}
        rules_before = our_lines(first.bridge)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(30) == 0
        # What a crash or a hand may leave: a wrong address, duplicated jumps, a stray rule.
        bridge = f"br-{made[:12]}"
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=bridge)[0]
            ipr.addr("del", index=index, address=host(net, 1), prefixlen=24)
            ipr.addr("add", index=index, address="10.99.99.1", prefixlen=24)
        chains = Chains(first.bridge)
        subprocess.run(["iptables", "-w", "10", "-I", "FORWARD", "-j", chains.forward],
                       check=True)
        subprocess.run(["iptables", "-w", "10", "-A", chains.forward, "-s", "10.1.2.3",
                        "-j", "ACCEPT"], check=True)

        second.bip = first.bip
        second.start()
        assert {n: inspect(second, n)["Id"] for n in ids} == ids
        assert addresses(bridge) == [f"{host(net, 1)}/24"]
        assert our_lines(second.bridge) == rules_before
        second.docker("network", "rm", "kept")
    finally:
        (second if second.proc else first).stop()  # one folder: one cleanup


def test_nothing_of_a_daemons_network_outlives_it(busybox_tarball: Path):
    daemon = PouchDaemon()
    try:
        daemon.start()
        made = daemon.docker("network", "create", "left")
        assert addresses(daemon.bridge) and addresses(f"br-{made[:12]}")
        assert netclean.leftovers(daemon.bridge)  # there while it runs
    finally:
        daemon.stop()
    assert netclean.leftovers(daemon.bridge) == []
    assert addresses(f"br-{made[:12]}") == []


# -- containers on networks ------------------------------------------------------------


def veths(daemon: PouchDaemon) -> dict[str, str]:
    """Links enslaved to one of the daemon's bridges: name -> bridge."""
    return links.bridge_members(set(links.marked(daemon.bridge)) | {daemon.bridge})


def netns_files(daemon: PouchDaemon) -> list[Path]:
    folder = daemon.run_dir / "netns"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def pings(daemon: PouchDaemon, container: str, target: str) -> bool:
    return daemon.docker_result("exec", container, "ping", "-c", "1", "-W", "2",
                                target).returncode == 0


def test_containers_on_a_user_network_reach_each_other_by_name_and_alias(
        daemon: PouchDaemon, names, networks):
    net, first, second, subnet = networks(), names("web"), names("db"), free_net()
    daemon.docker("network", "create", "--subnet", str(subnet), net)
    daemon.docker("run", "-d", "--name", first, "--network", net, "--network-alias", "www",
                  "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", second, "--network", net, "busybox", "sleep", "600")
    assert pings(daemon, second, first) and pings(daemon, second, "www")
    assert pings(daemon, first, second)  # its hosts file was kept current
    settings = daemon.inspect(first)["NetworkSettings"]["Networks"][net]
    assert ipaddress.IPv4Address(settings["IPAddress"]) in subnet
    assert settings["IPPrefixLen"] == 24
    assert settings["Gateway"] == host(subnet, 1) and "www" in settings["Aliases"]
    assert settings["NetworkID"] == inspect(daemon, net)["Id"]
    route = daemon.docker("exec", first, "ip", "route")
    assert f"default via {host(subnet, 1)} dev eth0" in route
    shown = inspect(daemon, net)["Containers"]
    assert {c["Name"] for c in shown.values()} == {first, second}
    conflict = daemon.docker_result("network", "rm", net)
    assert conflict.returncode != 0 and "has active endpoints" in conflict.stderr
    # Gone from the other's hosts file once removed.
    daemon.docker("rm", "-f", first)
    assert first not in daemon.docker("exec", second, "cat", "/etc/hosts")
    assert not pings(daemon, second, first)


def test_a_network_whose_containers_are_stopped_can_be_removed_as_with_dockerd(
        daemon: PouchDaemon, names, networks):
    net, pruned, running, stopped, created = (networks(), networks("pruned"), names("run"),
                                              names("stop"), names("new"))
    daemon.docker("network", "create", net)
    daemon.docker("run", "-d", "--name", running, "--network", net, "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", stopped, "--network", net, "busybox", "sleep", "600")
    daemon.docker("create", "--name", created, "--network", net, "busybox", "true")
    daemon.docker("stop", "-t", "0", stopped)
    # One running container keeps it; the stopped and never started ones do not.
    conflict = daemon.docker_result("network", "rm", net)
    assert conflict.returncode != 0 and "has active endpoints" in conflict.stderr
    assert net not in daemon.docker("network", "prune", "-f").split()
    daemon.docker("stop", "-t", "0", running)
    net_id = inspect(daemon, net)["Id"]
    daemon.docker("network", "rm", net)
    assert net not in daemon.docker("network", "ls", "--format", "{{.Name}}").split()
    for name in (running, stopped, created):
        failed = daemon.docker_result("start", name)
        assert failed.returncode != 0 and f"network {net_id} not found" in failed.stderr
        state = daemon.inspect(name)["State"]
        assert (state["Running"], state["ExitCode"]) == (False, 128)
        assert f"network {net_id} not found" in state["Error"]
    # A network pruned under a stopped container, likewise.
    daemon.docker("network", "create", pruned)
    daemon.docker("rm", "-f", stopped)
    daemon.docker("run", "-d", "--name", stopped, "--network", pruned, "busybox", "sleep",
                  "600")
    daemon.docker("stop", "-t", "0", stopped)
    assert pruned in daemon.docker("network", "prune", "-f").split()
    assert daemon.docker_result("start", stopped).returncode != 0


def test_a_link_on_a_user_network_is_an_alias_for_the_linking_container_only(
        daemon: PouchDaemon, names, networks):
    net, db, web, other = networks(), names("db"), names("web"), names("other")
    daemon.docker("network", "create", net)
    daemon.docker("run", "-d", "--name", db, "--network", net, "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", web, "--network", net, "--link", f"{db}:data",
                  "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", other, "--network", net, "busybox", "sleep", "600")
    assert pings(daemon, web, "data")
    assert not pings(daemon, other, "data")
    # No environment of the link there, and inspect shows it on the endpoint, as dockerd.
    assert "DATA_" not in daemon.docker("exec", web, "env")
    shown = daemon.inspect(web)
    assert shown["HostConfig"]["Links"] is None
    assert shown["NetworkSettings"]["Networks"][net]["Links"] == [f"{db}:data"]


def test_a_link_given_at_network_connect_is_an_alias_there_as_compose_gives_it(
        daemon: PouchDaemon, names, networks):
    """compose creates a container on its first network, then connects it to the others
    with each endpoint's links and aliases (its short ID among them)."""
    front, back, db, web, late = networks("front"), networks("back"), names("db"), \
        names("web"), names("late")
    daemon.docker("network", "create", front)
    daemon.docker("network", "create", back)
    daemon.docker("run", "-d", "--name", db, "--network", back, "busybox", "sleep", "600")
    daemon.docker("create", "--name", web, "--network", front, "busybox", "sleep", "600")
    short = daemon.inspect(web)["Id"][:12]
    daemon.docker("network", "connect", "--link", f"{db}:data", "--alias", short,
                  "--alias", "www", back, web)
    settings = daemon.inspect(web)["NetworkSettings"]["Networks"][back]
    assert settings["Links"] == [f"{db}:data"]
    assert settings["Aliases"] == [short, "www"]
    daemon.docker("start", web)
    assert pings(daemon, web, "data")
    # Connected while it runs: the alias is there at once.
    daemon.docker("run", "-d", "--name", late, "--network", front, "busybox", "sleep", "600")
    daemon.docker("network", "connect", "--link", f"{db}:store", back, late)
    assert pings(daemon, late, "store") and not pings(daemon, web, "store")
    hosts = daemon.docker("exec", late, "cat", "/etc/hosts")
    assert hosts.index("store") < hosts.index("# pouch: addresses")


def test_a_link_on_a_user_network_may_name_a_container_still_to_come(
        daemon: PouchDaemon, names, networks):
    net, db, web = networks(), names("db"), names("web")
    daemon.docker("network", "create", net)
    daemon.docker("create", "--name", web, "--network", net, "--link", f"{db}:data",
                  "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", db, "--network", net, "busybox", "sleep", "600")
    daemon.docker("start", web)
    assert pings(daemon, web, "data")


def test_dns_settings_and_extra_hosts_reach_the_containers_files(daemon: PouchDaemon, names,
                                                                 networks):
    resolv = daemon.docker("run", "--rm", "--dns", "9.9.9.9", "--dns-search", "example.com",
                           "--dns-option", "ndots:2", "busybox", "cat", "/etc/resolv.conf")
    assert resolv == "search example.com\nnameserver 9.9.9.9\noptions ndots:2"
    assert daemon.docker("run", "--rm", "--network", "none", "--dns", "1.1.1.1", "busybox",
                         "grep", "nameserver", "/etc/resolv.conf") == "nameserver 1.1.1.1"
    gateway = inspect(daemon, "bridge")["IPAM"]["Config"][0]["Gateway"]
    hosts = daemon.docker("run", "--rm", "--add-host", "x:1.2.3.4", "--add-host",
                          "gw:host-gateway", "busybox", "cat", "/etc/hosts").splitlines()
    assert "1.2.3.4\tx" in hosts and f"{gateway}\tgw" in hosts
    # On a user network, the network actor's rewrites of the file keep the extra hosts.
    net, first, second = networks(), names("extra"), names("peer")
    daemon.docker("network", "create", "--subnet", str(free_net()), net)
    daemon.docker("run", "-d", "--name", first, "--network", net, "--add-host", "x:1.2.3.4",
                  "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", second, "--network", net, "busybox", "sleep", "600")
    seen = daemon.docker("exec", first, "cat", "/etc/hosts").splitlines()
    assert "1.2.3.4\tx" in seen and any(second in line.split() for line in seen)
    assert daemon.inspect(first)["HostConfig"]["ExtraHosts"] == ["x:1.2.3.4"]
    refused = daemon.docker_result("run", "--rm", "--network", f"container:{first}", "--dns",
                                   "1.1.1.1", "busybox", "true")
    assert "conflicting options: dns and the network mode" in refused.stderr


def test_a_container_on_another_network_cannot_reach_them(daemon: PouchDaemon, names,
                                                          networks):
    red, blue = networks("red"), networks("blue")
    daemon.docker("network", "create", "--subnet", str(free_net()), red)
    daemon.docker("network", "create", "--subnet", str(free_net()), blue)
    inside, outside, near = names("in"), names("out"), names("near")
    daemon.docker("run", "-d", "--name", inside, "--network", red, "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", near, "--network", red, "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", outside, "--network", blue, "busybox", "sleep", "600")
    address = daemon.inspect(inside)["NetworkSettings"]["Networks"][red]["IPAddress"]
    assert pings(daemon, near, address)
    assert not pings(daemon, outside, address)
    assert not pings(daemon, outside, inside)  # nor is its name known there


def test_a_static_address_is_kept_and_not_given_twice(daemon: PouchDaemon, names, networks):
    net, first, second, subnet = networks(), names("static"), names("again"), free_net()
    wanted = host(subnet, 99)
    daemon.docker("network", "create", "--subnet", str(subnet), net)
    daemon.docker("run", "-d", "--name", first, "--network", net, "--ip", wanted,
                  "busybox", "sleep", "600")
    assert f"inet {wanted}/24" in daemon.docker("exec", first, "ip", "addr", "show", "eth0")
    settings = daemon.inspect(first)["NetworkSettings"]["Networks"][net]
    assert settings["IPAMConfig"] == {"IPv4Address": wanted}
    assert settings["MacAddress"] == "02:42:" + ":".join(
        f"{b:02x}" for b in ipaddress.IPv4Address(wanted).packed)
    taken = daemon.docker_result("run", "--name", second, "--network", net, "--ip",
                                 wanted, "busybox", "true")
    assert taken.returncode != 0 and "Address already in use" in taken.stderr
    outside = daemon.docker_result("run", "--rm", "--network", net, "--ip", "10.9.9.9",
                                   "busybox", "true")
    assert outside.returncode != 0 and "10.9.9.9" in outside.stderr


def test_the_default_bridge_gives_an_address_and_a_way_out(daemon: PouchDaemon):
    gateway = ipaddress.IPv4Interface(daemon.bip)
    shown = daemon.docker("run", "--rm", "--network", "bridge", "busybox", "sh", "-c",
                          "ip -o -4 addr show eth0; ip route")
    address = ipaddress.IPv4Interface(shown.split()[3])
    assert address.network == gateway.network and address.ip != gateway.ip
    assert f"default via {gateway.ip} dev eth0" in shown
    assert pings_host_side(daemon, str(gateway.ip))


def test_a_container_finds_its_own_address_by_its_names(daemon: PouchDaemon):
    # As dockerd writes /etc/hosts: the address, the full name and its first label.
    shown = daemon.docker("run", "--rm", "--hostname", "h1", "--domainname", "example.com",
                          "busybox", "sh", "-c",
                          "ip -o -4 addr show eth0; hostname -i; hostname -f; cat /etc/hosts")
    lines = shown.splitlines()
    address = lines[0].split()[3].split("/")[0]
    assert lines[1:3] == [address, "h1.example.com"]
    assert f"{address}\th1.example.com h1" in lines
    # No network, no address: the name resolves to nothing, as with dockerd.
    alone = daemon.docker_result("run", "--rm", "--network", "none", "--hostname", "h2",
                                 "busybox", "hostname", "-i")
    assert alone.returncode != 0


def pings_host_side(daemon: PouchDaemon, address: str) -> bool:
    return daemon.docker_result("run", "--rm", "--network", "bridge", "busybox", "ping",
                                "-c", "1", "-W", "2", address).returncode == 0


def test_an_unknown_network_is_refused(daemon: PouchDaemon, names):
    done = daemon.docker_result("run", "--name", names("lost"), "--network", "nosuch-net",
                                "busybox", "true")
    assert done.returncode != 0 and "network nosuch-net not found" in done.stderr


def test_nothing_of_a_removed_container_stays_on_the_host(daemon: PouchDaemon, names,
                                                          networks):
    net, name = networks(), names("gone")
    daemon.docker("network", "create", net)
    before = (veths(daemon), netns_files(daemon))
    cid = daemon.docker("run", "-d", "--name", name, "--network", net, "busybox", "sleep",
                        "600")
    assert Path(daemon.inspect(name)["NetworkSettings"]["SandboxKey"]).exists()
    assert any(v.startswith("pv" + cid[:4]) for v in veths(daemon))
    daemon.docker("rm", "-f", name)
    assert (veths(daemon), netns_files(daemon)) == before
    # --rm on the default bridge, too
    daemon.docker("run", "--rm", "--network", "bridge", "busybox", "true")
    assert (veths(daemon), netns_files(daemon)) == before


def test_endpoints_outlive_a_killed_network_actor(pouchd: PouchDaemon):
    pouchd.docker("network", "create", "--subnet", str(free_net()), "kept")
    pouchd.docker("run", "-d", "--name", "one", "--network", "kept", "busybox", "sleep", "600")
    pouchd.docker("run", "-d", "--name", "two", "--network", "kept", "busybox", "sleep", "600")
    before = (inspect(pouchd, "kept")["Containers"], veths(pouchd))
    kill_network_actor(pouchd)
    assert (inspect(pouchd, "kept")["Containers"], veths(pouchd)) == before
    assert pings(pouchd, "one", "two")
    pouchd.docker("run", "-d", "--name", "three", "--network", "kept", "busybox", "sleep",
                  "600")
    assert pings(pouchd, "three", "one") and pings(pouchd, "one", "three")
    pouchd.docker("rm", "-f", "one", "two", "three")
    assert veths(pouchd) == {} and netns_files(pouchd) == []


# -- published ports -------------------------------------------------------------------

HTTPD = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && " \
        "exec httpd -f -p 80 -h /www"


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return answer.read().decode()
    except OSError:
        return None


def host_port(daemon: PouchDaemon, name: str, port: str = "80/tcp") -> tuple[str, int]:
    bound = daemon.inspect(name)["NetworkSettings"]["Ports"][port][0]
    return bound["HostIp"], int(bound["HostPort"])


def dnat_rules(daemon: PouchDaemon) -> list[str]:
    chain = Chains(daemon.bridge).dnat
    return [line for line in rules("nat") if line.startswith(f"-A {chain} ")]


def test_a_published_port_answers_from_the_host_on_loopback(daemon: PouchDaemon, names):
    name = names("web")
    # No --network, as a user types it: the default network is the bridge.
    ran = daemon.docker_result("run", "-d", "--name", name, "-p", "127.0.0.1:0:80",
                               "busybox", "sh", "-c", HTTPD)
    assert (ran.returncode, ran.stderr) == (0, "")
    address, port = host_port(daemon, name)
    assert address == "127.0.0.1" and port > 0
    assert daemon.docker("port", name, "80") == f"127.0.0.1:{port}"
    assert daemon.docker("ps", "--filter", f"name={name}", "--format", "{{.Ports}}") == \
        f"127.0.0.1:{port}->80/tcp"
    answer = wait_for(lambda: fetch(f"http://127.0.0.1:{port}/"), 20, "httpd answering")
    assert answer.startswith("hello from")
    assert any(f"--dport {port} " in line for line in dnat_rules(daemon))

    daemon.docker("stop", "-t", "1", name)
    assert fetch(f"http://127.0.0.1:{port}/") is None
    assert not any(f"--dport {port} " in line for line in dnat_rules(daemon))
    assert daemon.inspect(name)["NetworkSettings"]["Ports"] == {}


def test_publish_all_publishes_every_exposed_port(daemon: PouchDaemon, names):
    name = names("all")
    daemon.docker("run", "-d", "--name", name, "--network", "bridge", "-P", "--expose", "80",
                  "busybox", "sh", "-c", HTTPD)
    address, port = host_port(daemon, name)
    assert address == "0.0.0.0"
    answer = wait_for(lambda: fetch(f"http://127.0.0.1:{port}/"), 20, "httpd answering")
    assert answer.startswith("hello from")
    listed = daemon.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Ports}}")
    assert listed == f"0.0.0.0:{port}->80/tcp"
    daemon.docker("stop", "-t", "1", name)  # what a stopped one publishes: nothing
    assert daemon.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Ports}}") == ""


def test_an_exposed_port_that_is_not_published_is_shown_as_dockerd_shows_it(
        daemon: PouchDaemon, names):
    name = names("exposed")
    daemon.docker("run", "-d", "--name", name, "--expose", "80", "busybox", "sleep", "300")
    assert daemon.inspect(name)["NetworkSettings"]["Ports"] == {"80/tcp": None}
    assert daemon.docker("ps", "--filter", f"name={name}", "--format", "{{.Ports}}") == \
        "80/tcp"
    daemon.docker("stop", "-t", "0", name)
    assert daemon.inspect(name)["NetworkSettings"]["Ports"] == {}


def test_a_host_port_is_given_once(daemon: PouchDaemon, names):
    first, second = names("first"), names("second")
    daemon.docker("run", "-d", "--name", first, "--network", "bridge", "-p", "127.0.0.1:0:80",
                  "busybox", "sleep", "600")
    _, port = host_port(daemon, first)
    taken = daemon.docker_result("run", "-d", "--name", second, "--network", "bridge", "-p",
                                 f"127.0.0.1:{port}:80", "busybox", "sleep", "600")
    assert taken.returncode != 0 and "port is already allocated" in taken.stderr
    assert daemon.inspect(second)["State"]["Running"] is False


def test_published_ports_outlive_a_killed_network_actor(pouchd: PouchDaemon):
    pouchd.docker("run", "-d", "--name", "web", "--network", "bridge", "-p", "127.0.0.1:0:80",
                  "busybox", "sh", "-c", HTTPD)
    _, port = host_port(pouchd, "web")
    wait_for(lambda: fetch(f"http://127.0.0.1:{port}/"), 20, "httpd answering")
    kill_network_actor(pouchd)
    assert fetch(f"http://127.0.0.1:{port}/") is not None
    pouchd.docker("stop", "-t", "1", "web")  # released through the new actor
    assert dnat_rules(pouchd) == []
    pouchd.docker("start", "web")
    _, again = host_port(pouchd, "web")
    assert wait_for(lambda: fetch(f"http://127.0.0.1:{again}/"), 20, "httpd answering again")
    pouchd.docker("rm", "-f", "web")
    assert dnat_rules(pouchd) == []


def test_connect_and_disconnect_a_running_container(daemon: PouchDaemon, names, networks):
    home, extra = networks("home"), networks("extra")
    daemon.docker("network", "create", "--subnet", str(free_net()), home)
    daemon.docker("network", "create", "--subnet", str(subnet := free_net()), extra)
    roamer, local = names("roamer"), names("local")
    daemon.docker("run", "-d", "--name", roamer, "--network", home, "busybox", "sleep", "600")
    daemon.docker("run", "-d", "--name", local, "--network", extra, "busybox", "sleep", "600")
    assert not pings(daemon, local, roamer)

    wanted = host(subnet, 50)
    daemon.docker("network", "connect", "--alias", "wanderer", "--ip", wanted, extra, roamer)
    networks_now = daemon.inspect(roamer)["NetworkSettings"]["Networks"]
    assert set(networks_now) == {home, extra}
    assert networks_now[extra]["IPAddress"] == wanted
    assert f"inet {wanted}/24" in daemon.docker("exec", roamer, "ip", "addr", "show", "eth1")
    assert pings(daemon, local, roamer) and pings(daemon, local, "wanderer")
    assert roamer in inspect(daemon, extra)["Containers"][
        daemon.inspect(roamer)["Id"]]["Name"]
    again = daemon.docker_result("network", "connect", extra, roamer)
    assert again.returncode != 0 and "already exists in network" in again.stderr

    daemon.docker("network", "disconnect", extra, roamer)
    assert set(daemon.inspect(roamer)["NetworkSettings"]["Networks"]) == {home}
    assert "eth1" not in daemon.docker("exec", roamer, "ip", "link")
    assert not pings(daemon, local, roamer)
    assert inspect(daemon, extra)["Containers"].keys() == {daemon.inspect(local)["Id"]}
    gone = daemon.docker_result("network", "disconnect", extra, roamer)
    assert gone.returncode != 0 and "is not connected to network" in gone.stderr


def test_a_running_containers_lease_and_ports_outlive_a_pouchd_restart(busybox_tarball: Path):
    first = PouchDaemon()
    second = PouchDaemon(base=first.base)
    try:
        first.start()
        first.docker("load", "-i", str(busybox_tarball))
        first.docker("network", "create", "--subnet", str(free_net()), "stay")
        first.docker("run", "-d", "--name", "web", "--network", "stay", "-p", "127.0.0.1:0:80",
                     "busybox", "sh", "-c", HTTPD)
        first.docker("run", "-d", "--name", "peer", "--network", "stay", "busybox", "sleep",
                     "600")
        before = first.inspect("web")["NetworkSettings"]
        _, port = host_port(first, "web")
        wait_for(lambda: fetch(f"http://127.0.0.1:{port}/"), 20, "httpd answering")
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(30) == 0
        assert fetch(f"http://127.0.0.1:{port}/") is not None  # the kernel's rules stayed

        second.bip = first.bip
        second.start()
        after = second.inspect("web")["NetworkSettings"]
        assert (after["Networks"], after["Ports"]) == (before["Networks"], before["Ports"])
        assert pings(second, "peer", "web")
        second.docker("run", "-d", "--name", "late", "--network", "stay", "busybox", "sleep",
                      "600")
        late = second.inspect("late")["NetworkSettings"]["Networks"]["stay"]["IPAddress"]
        assert late != after["Networks"]["stay"]["IPAddress"]  # its lease was kept
        assert pings(second, "late", "web")
        second.docker("rm", "-f", "web", "peer", "late")
        assert dnat_rules(second) == [] and netns_files(second) == []
    finally:
        (second if second.proc else first).stop()


def test_a_restarted_network_actor_removes_orphans_of_ours_only(pouchd: PouchDaemon):
    stray_ns, foreign_ns = pouchd.run_dir / "netns" / ("1" * 64), Path(pouchd.base / "f-ns")
    foreign_bridge = f"ptdx{uuid.uuid4().hex[:6]}"  # another daemon's, say: not ours
    made: list[str] = []
    try:
        for path in (stray_ns, foreign_ns):
            sandbox.create_netns(str(path))
        sandbox.ensure_bridge(foreign_bridge, "10.255.254.1/30")
        for path, bridge in ((stray_ns, pouchd.bridge), (foreign_ns, foreign_bridge)):
            made.append(sandbox.connect(str(path), bridge, address_cidr="10.255.255.2/30",
                                        host_ifname="pv" + uuid.uuid4().hex[:8]).host_ifname)
        assert made[0] in veths(pouchd)
        kill_network_actor(pouchd)
        assert made[0] not in veths(pouchd) and not sandbox.is_netns(str(stray_ns))
        assert links.bridge_members({foreign_bridge}) == {made[1]: foreign_bridge}
        assert sandbox.is_netns(str(foreign_ns))
        assert pouchd.docker("run", "--rm", "--network", "bridge", "busybox", "true") == ""
    finally:
        for veth in made:
            sandbox.disconnect(veth)
        sandbox.remove_bridge(foreign_bridge)
        for path in (stray_ns, foreign_ns):
            sandbox.remove_netns(str(path))
