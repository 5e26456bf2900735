"""Pods on a CNI network: the real bridge and host-local plugins of Debian's
containernetworking-plugins, configured in a conf dir of the test's own (its own
bridge, subnet and address store), run by a pouchd with --enable-cri."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc
from pyroute2 import IPRoute

from pouch.tests.images import PAUSE_CMD, build_busybox_tarball
from pouch.tests.support import netclean
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.registry import free_port
from pouch.tests.support.wait import wait_for

PAUSE = "pouch/pause:latest"
CNI_BIN = Path("/usr/lib/cni")


@pytest.fixture(scope="module")
def net(busybox_tarball: Path, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[tuple[PouchDaemon, api_pb2_grpc.RuntimeServiceStub, ipaddress.IPv4Network,
                            Path]]:
    if not (CNI_BIN / "bridge").is_file():
        pytest.fail("containernetworking-plugins is not installed (deploy/install.sh)")
    folder = tmp_path_factory.mktemp("cri-net")
    pause = folder / "pause.tar"
    build_busybox_tarball(pause, tag=PAUSE, cmd=PAUSE_CMD)
    daemon = PouchDaemon()
    bridge = "pcri" + hashlib.sha256(str(daemon.base).encode()).hexdigest()[:6]
    subnet = ipaddress.IPv4Network(netclean.free_bip(), strict=False)
    conf_dir, store = daemon.base / "net.d", daemon.base / "ipam"
    conf_dir.mkdir()
    (conf_dir / "10-test.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "crit", "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": str(subnet)}]],
                      "dataDir": str(store)}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}))
    # portmap's chains shared by every pod (a pod's own go with it), unless they were here.
    shared = [] if portmap_chains() else PORTMAP_CHAINS
    daemon.extra_args += ["--enable-cri", "--listen-cri", str(daemon.base / "cri.sock"),
                          "--sandbox-image", PAUSE, "--cni-conf-dir", str(conf_dir),
                          "--stream-server-port", "0"]
    channel = grpc.insecure_channel(f"unix://{daemon.base / 'cri.sock'}")
    try:
        daemon.start()
        daemon.docker("load", "-i", str(busybox_tarball))
        daemon.docker("load", "-i", str(pause))
        yield daemon, api_pb2_grpc.RuntimeServiceStub(channel), subnet, store
    finally:
        channel.close()
        daemon.stop()
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=bridge):
                ipr.link("del", index=index)
        remove_chains(shared)


PORTMAP_CHAINS = ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SNAT", "CNI-HOSTPORT-MASQ",
                  "CNI-HOSTPORT-SETMARK"]


def portmap_chains() -> list[str]:
    listed = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True,
                            check=True).stdout
    return [c for c in PORTMAP_CHAINS if f"-N {c}" in listed.splitlines()]


def remove_chains(chains: list[str]) -> None:
    """The jumps to `chains` from nat's built-in chains, then the chains themselves."""
    if not chains:
        return
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for rule in rules:
        parts = shlex.split(rule)
        if parts[:1] == ["-A"] and parts[1] in ("PREROUTING", "OUTPUT", "POSTROUTING") \
                and any(f"-j {c}" in rule for c in chains):
            subprocess.run(["iptables", "-t", "nat", "-D", *parts[1:]], check=False,
                           capture_output=True)
    for chain in chains:
        subprocess.run(["iptables", "-t", "nat", "-F", chain], check=False, capture_output=True)
        subprocess.run(["iptables", "-t", "nat", "-X", chain], check=False, capture_output=True)


def pod_config(name: str) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"),
        hostname=name)


def test_pod_gets_an_address_its_containers_share(net: tuple[
        PouchDaemon, api_pb2_grpc.RuntimeServiceStub, ipaddress.IPv4Network, Path]) -> None:
    daemon, runtime, subnet, store = net
    pod = runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config("net1"))
                                ).pod_sandbox_id
    try:
        status = runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod)).status
        assert status.state == cri.SANDBOX_READY
        assert ipaddress.IPv4Address(status.network.ip) in subnet
        # What crictl inspectp shows, to nsenter: the pause's own namespace, pinned.
        shown = json.loads(runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(
            pod_sandbox_id=pod, verbose=True)).info["info"])
        pinned, own = os.stat(shown["netns"]), os.stat(f"/proc/{shown['pid']}/ns/net")
        assert (pinned.st_dev, pinned.st_ino) == (own.st_dev, own.st_ino)
        assert {"type": "network"} in shown["runtimeSpec"]["linux"]["namespaces"]
        container = runtime.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=pod, sandbox_config=pod_config("net1"),
            config=cri.ContainerConfig(metadata=cri.ContainerMetadata(name="c"),
                                       image=cri.ImageSpec(image="busybox"),
                                       command=["sleep", "60"]))).container_id
        runtime.StartContainer(cri.StartContainerRequest(container_id=container))
        seen = runtime.ExecSync(cri.ExecSyncRequest(
            container_id=container, cmd=["ip", "-4", "-o", "addr", "show", "eth0"],
            timeout=10)).stdout.decode()
        assert f"inet {status.network.ip}/" in seen
        assert runtime.ExecSync(cri.ExecSyncRequest(container_id=container, cmd=["hostname"],
                                                    timeout=10)).stdout == b"net1\n"
        ping = shutil.which("ping")
        if ping:  # the host reaches the pod over the bridge
            assert subprocess.run([ping, "-c1", "-W2", status.network.ip],
                                  capture_output=True).returncode == 0
        assert (store / "crit" / status.network.ip).exists()
    finally:
        runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
        runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
    # Nothing of it stays: its address is free again, its namespace unpinned.
    assert not (store / "crit" / status.network.ip).exists()
    assert not list((daemon.run_dir / "cri" / "pods").glob(f"{pod}*"))


def test_stop_then_remove_twice_with_a_network(net: tuple[
        PouchDaemon, api_pb2_grpc.RuntimeServiceStub, ipaddress.IPv4Network, Path]) -> None:
    _daemon, runtime, _subnet, _store = net
    pod = runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config("net2"))
                                ).pod_sandbox_id
    for _ in range(2):
        runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    status = runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod)).status
    assert status.state == cri.SANDBOX_NOTREADY and not status.network.ip
    for _ in range(2):
        runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))


def test_pods_after_a_pouchd_restart(net: tuple[
        PouchDaemon, api_pb2_grpc.RuntimeServiceStub, ipaddress.IPv4Network, Path]) -> None:
    daemon, runtime, _subnet, _store = net
    pod = runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config("net3"))
                                ).pod_sandbox_id
    try:
        ip = runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod)
                                      ).status.network.ip
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)  # pouchd stops; the pod's shim stays
        assert daemon.proc.wait(15) == 0
        daemon.start()  # the same home and exec root: it restores what it finds

        def ready() -> cri.PodSandboxStatus | None:
            try:
                status = runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(
                    pod_sandbox_id=pod), timeout=2).status
            except grpc.RpcError:
                return None
            return status if status.state == cri.SANDBOX_READY else None

        status = wait_for(ready, 30, "the pod, ready after the restart")
        assert status.network.ip == ip
    finally:
        runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))


def test_host_port_reaches_the_pod(net: tuple[
        PouchDaemon, api_pb2_grpc.RuntimeServiceStub, ipaddress.IPv4Network, Path]) -> None:
    _daemon, runtime, subnet, _store = net
    port = free_port()
    config = pod_config("web")
    config.port_mappings.append(cri.PortMapping(protocol=cri.TCP, container_port=8080,
                                                host_port=port))
    pod = runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        container = runtime.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=pod, sandbox_config=config, config=cri.ContainerConfig(
                metadata=cri.ContainerMetadata(name="web"), image=cri.ImageSpec(image="busybox"),
                command=["sh", "-c", "mkdir /www && echo hello > /www/index.html && "
                         "exec httpd -f -p 8080 -h /www"]))).container_id
        runtime.StartContainer(cri.StartContainerRequest(container_id=container))
        gateway = str(subnet.network_address + 1)  # the host's address on the bridge

        def fetch() -> bytes | None:
            try:
                with socket.create_connection((gateway, port), timeout=2) as conn:
                    conn.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                    answer = b""
                    while chunk := conn.recv(4096):
                        answer += chunk
                    return answer
            except OSError:
                return None

        assert b"hello" in wait_for(fetch, 20, f"the pod's port 8080 at {gateway}:{port}")
    finally:
        runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True,
                           check=True).stdout
    assert f"--dport {port}" not in rules  # the pod's own chain went with it
