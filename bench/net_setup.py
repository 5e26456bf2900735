"""What a container's network costs pouch, step by step: create_netns + connect
(+ one published port) + teardown, timed inside actors/network/sandbox.py and ports.py.

    sudo python -m pouch.bench.net_setup [--runs N] [--json PATH]

Every run makes a namespace under a temp folder, puts it on a bridge of the benchmark's
own ("pbench" + hex, on a free 10.252.x.0/24), publishes one TCP port in iptables chains
of its own, and takes it all down again; the bridge, chains and folder go at the end,
even on Ctrl-C. The steps: netns (unshare + bind mount + lo up), veth (the pair, its
peer made in the namespace with name, MAC and MTU, host end in the bridge and up),
hairpin (the host end's bridge port mode), enter (a thread joins the namespace and
opens netlink there), address, up, route, then iptables publish/unpublish of one port
(iptables-save + iptables-restore each), disconnect, remove netns.
"""

from __future__ import annotations

import ipaddress
import random
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute

from pouch.actors.network import ports, sandbox
from pouch.bench.common import MS, parser, require, run_main, summarize, table, write_json

T = TypeVar("T")
STEPS = ("netns", "veth", "hairpin", "enter", "address", "up", "route", "iptables publish",
         "iptables unpublish", "disconnect", "remove netns", "total")


def _subnet() -> ipaddress.IPv4Network:
    with IPRoute() as ipr:
        used = [ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", strict=False)
                for r in ipr.get_routes(family=socket.AF_INET) if r.get_attr("RTA_DST")]
    for _ in range(50):
        net = ipaddress.IPv4Network(f"10.252.{random.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise SystemExit("no free /24 in 10.252.0.0/16")


def _timed(samples: dict[str, list[float]], step: str, work: Callable[[], T]) -> T:
    started = time.perf_counter()
    value = work()
    samples[step].append(time.perf_counter() - started)
    return value


def one_run(folder: str, bridge: str, subnet: ipaddress.IPv4Network, chains: ports.Chains,
            index: int, samples: dict[str, list[float]]) -> None:
    path = f"{folder}/netns/b{index}"
    address = subnet.network_address + 2 + index % 250
    started = time.perf_counter()
    samples["netns"].append(sandbox.create_netns(path)["netns"])
    endpoint = sandbox.connect(path, bridge, address_cidr=f"{address}/{subnet.prefixlen}",
                               gateway=str(subnet.network_address + 1),
                               host_ifname=f"{bridge}v")
    for step, seconds in endpoint.timings.items():
        samples[step].append(seconds)
    bindings = _timed(samples, "iptables publish", lambda: ports.publish(
        chains, bridge, str(address), [ports.PortSpec(80, host_ip="127.0.0.1")]))
    _timed(samples, "iptables unpublish",
           lambda: ports.unpublish(chains, bridge, str(address), bindings))
    _timed(samples, "disconnect", lambda: sandbox.disconnect(endpoint.host_ifname))
    _timed(samples, "remove netns", lambda: sandbox.remove_netns(path))
    samples["total"].append(time.perf_counter() - started)


def main(argv: list[str] | None) -> int:
    args = parser(__doc__.splitlines()[0], default_runs=50).parse_args(argv)
    require("iptables")
    tag = "pbench" + uuid.uuid4().hex[:4]
    bridge, subnet = tag, _subnet()
    chains = ports.Chains(nat=f"{tag}-NAT", filter=f"{tag}-FWD", postrouting=f"{tag}-POST")
    folder = tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp")
    samples: dict[str, list[float]] = {step: [] for step in STEPS}
    made_chains: list[tuple[str, str]] = []
    try:
        sandbox.ensure_bridge(bridge, f"{subnet.network_address + 1}/{subnet.prefixlen}")
        for table_name, chain in (("nat", chains.nat), ("filter", chains.filter),
                                  ("nat", chains.postrouting)):
            if ports.iptables(table_name, "-N", chain).returncode == 0:
                made_chains.append((table_name, chain))
        one_run(folder, bridge, subnet, chains, 0, {step: [] for step in STEPS})  # warm-up
        for index in range(args.runs):
            one_run(folder, bridge, subnet, chains, index + 1, samples)
    finally:
        sandbox.disconnect(f"{bridge}v")
        sandbox.release_netns_dir(f"{folder}/netns")
        ports.release_bridge(chains, bridge)
        sandbox.remove_bridge(bridge)
        for table_name, chain in made_chains:  # the benchmark's own chains only
            ports.iptables(table_name, "-F", chain)
            ports.iptables(table_name, "-X", chain)
        shutil.rmtree(folder, ignore_errors=True)
    summary = {step: summarize(values) for step, values in samples.items()}
    rows: list[list[Any]] = [[step, s["median"] * MS, s["p90"] * MS, s["max"] * MS]
                             for step, s in summary.items()]
    print(table(["step", "median ms", "p90 ms", "max ms"], rows))
    write_json(args.json, {"runs": args.runs, "steps": summary})
    return 0


if __name__ == "__main__":
    run_main(main)
