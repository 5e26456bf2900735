"""A container removed while the network actor is down: what the network actor held
for it (address lease, veth, published ports, network namespace) is released as soon as
a network actor is back, by its restore asking the container actor which containers
still exist (not left for any later sweep).

The network actor is down for longer than a removal waits only when its supervisor has
given up on it for a while (it kept dying): calls to it then fail at once, and the
removal goes on without it. So here every network actor dies at the first call that
would release a container's ports or endpoints; the removal's calls, retried, kill it
past the restart intensity; once the cool-down ends, the next one's restore is what
releases the container's network."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pouch.actors.network import links
from pouch.actors.network.iptables import Chains
from pouch.actors.supervisor.policy import COOL_DOWN
from pouch.tests.faults.tree import broker
from pouch.tests.support.daemon import PouchDaemon, running
from pouch.tests.support.wait import wait_for

# Every network actor this daemon starts dies (kill -9) at its first call that would
# release a container's ports or endpoints.
LEAVING = "network.container.leaving=kill"
# After the cool-down: the restart, its restore, and the container actor's answer.
RELEASED_WITHIN = COOL_DOWN.first + 20.0


class FaultyDaemon(PouchDaemon):
    def env(self) -> dict[str, str]:
        return {**super().env(), "POUCH_FAULTS": LEAVING}


@pytest.fixture
def faulty(busybox_tarball: Path) -> Iterator[PouchDaemon]:
    with running(busybox_tarball, FaultyDaemon()) as daemon:
        yield daemon


def endpoints(daemon: PouchDaemon) -> dict[str, dict]:
    found = json.loads(daemon.docker("network", "inspect", "bridge"))[0]
    return found["Containers"] or {}


def veths(daemon: PouchDaemon) -> dict[str, str]:
    return links.bridge_members(set(links.marked(daemon.bridge)) | {daemon.bridge})


def rules(table: str) -> list[str]:
    return subprocess.run(["iptables", "-w", "10", "-t", table, "-S"], capture_output=True,
                          text=True, check=True).stdout.splitlines()


def dnat_rules(daemon: PouchDaemon, address: str) -> list[str]:
    chain = Chains(daemon.bridge).dnat
    return [line for line in rules("nat")
            if line.startswith(f"-A {chain} ") and address in line]


def supervised(daemon: PouchDaemon) -> dict[str, dict]:
    client = broker(daemon)
    try:
        return dict(client.call("supervisor", "status")["children"])
    finally:
        client.close()


def netns_of(daemon: PouchDaemon, cid: str) -> bool:
    return (daemon.run_dir / "netns" / cid).exists()


def test_a_container_removed_while_the_network_actor_is_down_leaves_nothing(
        faulty: PouchDaemon) -> None:
    docker = faulty.docker
    cid = docker("run", "-d", "--network", "bridge", "-p", "127.0.0.1:0:80", "busybox",
                 "sleep", "600")
    address = faulty.inspect(cid)["NetworkSettings"]["IPAddress"]
    assert cid in endpoints(faulty) and veths(faulty) and netns_of(faulty, cid)
    assert dnat_rules(faulty, address)
    first = faulty.pid_of("network")

    docker("rm", "-f", cid)  # done once the network actor's calls fail at once
    assert faulty.pid_of("network") != first
    assert supervised(faulty)["network"]["state"] == "cooling-down"

    def released() -> bool:
        try:
            return not (cid in endpoints(faulty) or veths(faulty) or netns_of(faulty, cid)
                        or dnat_rules(faulty, address))
        except Exception:  # a network actor not answering yet
            return False
    wait_for(released, RELEASED_WITHIN, "the removed container's network released")
    assert "no container has it" in faulty.log_path.read_text(errors="replace")
