"""The CRI as a kubelet or crictl drives it: gRPC clients from the same runtime.v1 stubs
against a real pouchd started with --enable-cri, real containerd and runc."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc

from pouch.actors.container.actor import SWEEP_FIRST
from pouch.actors.containerd import shims
from pouch.tests.images import BUSYBOX, PAUSE_CMD, build_busybox_tarball
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.registry import Registry, image_config, layer, publish
from pouch.tests.support.wait import wait_for

PAUSE = "pouch/pause:latest"
NAMESPACE = "pouch"  # containerd's, pouchd's default
CRI_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [PF] .*$")


class Cri:
    """A CRI client, as crictl holds one: both services on one channel."""

    def __init__(self, socket: Path) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(scope="module")
def cri_daemon(busybox_tarball: Path, tmp_path_factory: pytest.TempPathFactory,
               ) -> Iterator[PouchDaemon]:
    folder = tmp_path_factory.mktemp("cri")
    pause = folder / "pause.tar"
    build_busybox_tarball(pause, tag=PAUSE, cmd=PAUSE_CMD)
    daemon = PouchDaemon(extra_args=[])
    daemon.extra_args += ["--enable-cri", "--listen-cri", str(daemon.base / "cri.sock"),
                          "--sandbox-image", PAUSE,
                          "--cni-conf-dir", str(daemon.base / "net.d"),
                          "--stream-server-port", "0"]
    try:
        daemon.start()
        daemon.docker("load", "-i", str(busybox_tarball))
        daemon.docker("load", "-i", str(pause))
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def crictl(cri_daemon: PouchDaemon) -> Iterator[Cri]:
    client = Cri(cri_daemon.base / "cri.sock")
    yield client
    client.close()


@pytest.fixture
def pods(crictl: Cri) -> Iterator[Callable[..., str]]:
    """Runs host-network pods for a test; removes them after, whatever happened."""
    made: list[str] = []

    def run(name: str, **config: Any) -> str:
        pod = crictl.runtime.RunPodSandbox(cri.RunPodSandboxRequest(
            config=pod_config(name, **config))).pod_sandbox_id
        made.append(pod)
        return pod

    yield run
    for pod in made:
        crictl.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))


def pod_config(name: str, *, log_directory: str = "", labels: dict[str, str] | None = None,
               hostname: str = "", dns: cri.DNSConfig | None = None) -> cri.PodSandboxConfig:
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="default", uid=f"uid-{name}"),
        labels=labels or {}, annotations={"note": f"pod {name}"}, log_directory=log_directory,
        hostname=hostname)
    config.linux.security_context.namespace_options.network = cri.NODE
    if dns is not None:
        config.dns_config.CopyFrom(dns)
    return config


def container_config(name: str, *args: str, log_path: str = "") -> cri.ContainerConfig:
    return cri.ContainerConfig(metadata=cri.ContainerMetadata(name=name),
                               image=cri.ImageSpec(image="busybox"), command=["sh", "-c"],
                               args=list(args), labels={"app": name}, log_path=log_path)


def run_container(crictl: Cri, pod: str, name: str, *args: str, log_path: str = "",
                  pod_name: str = "") -> str:
    created = crictl.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod, config=container_config(name, *args, log_path=log_path),
        sandbox_config=pod_config(pod_name or name)))
    crictl.runtime.StartContainer(cri.StartContainerRequest(container_id=created.container_id))
    return created.container_id


def state_of(crictl: Cri, container: str) -> int:
    return crictl.runtime.ContainerStatus(
        cri.ContainerStatusRequest(container_id=container)).status.state


# -- the runtime -------------------------------------------------------------------


def test_version_names_the_runtime_and_the_api(crictl: Cri) -> None:
    version = crictl.runtime.Version(cri.VersionRequest())
    assert version.runtime_name == "pouch"
    assert version.runtime_api_version == "v1"
    assert version.runtime_version


def test_status_reports_runtime_and_network_ready(crictl: Cri) -> None:
    conditions = {c.type: c for c in crictl.runtime.Status(cri.StatusRequest()).status.conditions}
    assert conditions["RuntimeReady"].status is True
    # The default bridge conflist was written into the empty conf dir; its plugins exist.
    assert conditions["NetworkReady"].status is True, conditions["NetworkReady"].message


# -- images ------------------------------------------------------------------------


def test_images_listed_with_their_tags(crictl: Cri) -> None:
    images = crictl.images.ListImages(cri.ListImagesRequest()).images
    tags = {tag for image in images for tag in image.repo_tags}
    # Named in full, as containerd's CRI names them.
    assert {"docker.io/library/busybox:latest", f"docker.io/{PAUSE}"} <= tags
    only = crictl.images.ListImages(cri.ListImagesRequest(
        filter=cri.ImageFilter(image=cri.ImageSpec(image="busybox")))).images
    assert [image.repo_tags[:] for image in only] == [["docker.io/library/busybox:latest"]]


def test_image_status_and_verbose_info(crictl: Cri) -> None:
    status = crictl.images.ImageStatus(cri.ImageStatusRequest(
        image=cri.ImageSpec(image="busybox"), verbose=True))
    assert status.image.id.startswith("sha256:")
    assert status.image.size > 0
    assert '"imageSpec"' in status.info["info"]
    missing = crictl.images.ImageStatus(cri.ImageStatusRequest(
        image=cri.ImageSpec(image="no-such-image:1")))
    assert not missing.HasField("image")


def test_remove_image_and_remove_it_again(crictl: Cri, cri_daemon: PouchDaemon,
                                          tmp_path: Path) -> None:
    build_busybox_tarball(tmp_path / "doomed.tar", tag="doomed:1",
                          extra_files={"doomed": b"1"})
    cri_daemon.docker("load", "-i", str(tmp_path / "doomed.tar"))
    crictl.images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image="doomed:1")))
    crictl.images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image="doomed:1")))
    assert cri_daemon.docker_result("image", "inspect", "doomed:1").returncode != 0
    assert crictl.images.ImageStatus(cri.ImageStatusRequest(
        image=cri.ImageSpec(image="busybox"))).image.id


def test_image_fs_info(crictl: Cri) -> None:
    fs = crictl.images.ImageFsInfo(cri.ImageFsInfoRequest()).image_filesystems
    assert fs[0].used_bytes.value > 0
    assert fs[0].fs_id.mountpoint


# -- pods --------------------------------------------------------------------------


def test_host_network_pod_lifecycle(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("web", labels={"tier": "front"})
    status = crictl.runtime.PodSandboxStatus(
        cri.PodSandboxStatusRequest(pod_sandbox_id=pod)).status
    assert status.state == cri.SANDBOX_READY
    assert status.metadata.name == "web" and status.metadata.namespace == "default"
    assert status.labels["tier"] == "front"
    assert status.annotations["note"] == "pod web"
    assert status.linux.namespaces.options.network == cri.NODE
    verbose = crictl.runtime.PodSandboxStatus(
        cri.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True))
    shown = json.loads(verbose.info["info"])  # crictl reads each value as JSON
    assert shown["pid"] > 0
    assert {"type": "network"} not in shown["runtimeSpec"]["linux"]["namespaces"]  # host's

    listed = crictl.runtime.ListPodSandbox(cri.ListPodSandboxRequest(
        filter=cri.PodSandboxFilter(label_selector={"tier": "front"}))).items
    assert [p.id for p in listed] == [pod]
    assert listed[0].created_at == status.created_at  # to the nanosecond

    crictl.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    crictl.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    ready = cri.PodSandboxStateValue(state=cri.SANDBOX_READY)
    assert pod not in [p.id for p in crictl.runtime.ListPodSandbox(cri.ListPodSandboxRequest(
        filter=cri.PodSandboxFilter(state=ready))).items]
    crictl.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
    crictl.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
    with pytest.raises(grpc.RpcError) as gone:
        crictl.runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_pods_pause_is_made_as_containerd_s_sandbox(
        crictl: Cri, cri_daemon: PouchDaemon, pods: Callable[..., str]) -> None:
    """No output streams (the shim's /dev/null), no cgroup hierarchies or hosts files of
    its own; a container of the pod has them all."""
    pod = pods("bare")
    container = run_container(crictl, pod, "app", "sleep 60", pod_name="bare")
    pause_pid = json.loads(crictl.runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(
        pod_sandbox_id=pod, verbose=True)).info["info"])["pid"]
    app_pid = json.loads(crictl.runtime.ContainerStatus(cri.ContainerStatusRequest(
        container_id=container, verbose=True)).info["info"])["pid"]
    made = {"/sys/fs/cgroup", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
    assert [os.readlink(f"/proc/{pause_pid}/fd/{fd}") for fd in (1, 2)] == ["/dev/null"] * 2
    assert mount_points(pause_pid) & made == {"/etc/resolv.conf"}
    assert all(os.readlink(f"/proc/{app_pid}/fd/{fd}").startswith("pipe:") for fd in (1, 2))
    assert mount_points(app_pid) >= made
    # To docker it is a container like any other, with nothing logged.
    assert cri_daemon.docker("logs", pod) == ""
    crictl.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    assert cri_daemon.inspect(pod)["State"]["Status"] == "exited"


def mount_points(pid: int) -> set[str]:
    with open(f"/proc/{pid}/mountinfo") as info:
        return {line.split()[4] for line in info}


def test_remove_a_pod_that_never_was(crictl: Cri) -> None:
    crictl.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id="f" * 64))
    crictl.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id="f" * 64))


def test_pod_dns_config_in_resolv_conf(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("dns", dns=cri.DNSConfig(servers=["10.0.0.10"], searches=["svc.local"],
                                        options=["ndots:5"]))
    container = run_container(crictl, pod, "dns", "cat /etc/resolv.conf; sleep 60",
                              pod_name="dns")
    out = crictl.runtime.ExecSync(cri.ExecSyncRequest(
        container_id=container, cmd=["cat", "/etc/resolv.conf"], timeout=10)).stdout.decode()
    assert "nameserver 10.0.0.10" in out
    assert "search svc.local" in out
    assert "ndots:5" in out


# -- containers --------------------------------------------------------------------


def test_container_lifecycle(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("life")
    # A kubelet creates a container from the image's ID (what ImageStatus said).
    image_id = crictl.images.ImageStatus(cri.ImageStatusRequest(
        image=cri.ImageSpec(image="busybox"))).image.id
    config = container_config("main", "sleep 60")
    config.image.image = image_id
    created = crictl.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod, config=config, sandbox_config=pod_config("life"))).container_id
    assert state_of(crictl, created) == cri.CONTAINER_CREATED
    crictl.runtime.StartContainer(cri.StartContainerRequest(container_id=created))
    assert state_of(crictl, created) == cri.CONTAINER_RUNNING
    status = crictl.runtime.ContainerStatus(
        cri.ContainerStatusRequest(container_id=created)).status
    # What a kubelet shows of the pod: the image's name, as containerd's CRI gives it.
    assert (status.image.image, status.image_ref) == (
        "docker.io/library/busybox:latest", image_id)

    listed = crictl.runtime.ListContainers(cri.ListContainersRequest(
        filter=cri.ContainerFilter(pod_sandbox_id=pod))).containers
    assert [(c.id, c.metadata.name, c.labels["app"]) for c in listed] == [
        (created, "main", "main")]
    # To the nanosecond, as the status has it: a kubelet orders attempts by it.
    assert listed[0].created_at == status.created_at
    running = cri.ContainerStateValue(state=cri.CONTAINER_RUNNING)
    assert created in [c.id for c in crictl.runtime.ListContainers(cri.ListContainersRequest(
        filter=cri.ContainerFilter(state=running))).containers]

    started = time.monotonic()
    crictl.runtime.StopContainer(cri.StopContainerRequest(container_id=created, timeout=1))
    crictl.runtime.StopContainer(cri.StopContainerRequest(container_id=created, timeout=1))
    assert time.monotonic() - started < 30
    status = crictl.runtime.ContainerStatus(
        cri.ContainerStatusRequest(container_id=created)).status
    assert status.state == cri.CONTAINER_EXITED
    assert status.finished_at >= status.started_at > 0
    assert status.exit_code in (137, 143)  # by the stop signal, or killed after the timeout

    crictl.runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=created))
    crictl.runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=created))
    assert not crictl.runtime.ListContainers(cri.ListContainersRequest(
        filter=cri.ContainerFilter(pod_sandbox_id=pod))).containers


def test_a_stop_with_no_grace_is_one_sigkill_as_containerd_s(
        crictl: Cri, pods: Callable[..., str], cri_daemon: PouchDaemon) -> None:
    """containerd's CRI sends the stop signal only with a grace period: a kubelet's
    forced stop (timeout 0) and StopPodSandbox kill at once, one SIGKILL each."""
    pod = pods("nograce")
    container = run_container(crictl, pod, "nograce", "trap '' TERM; sleep 60",
                              pod_name="nograce")
    since = time.time()
    crictl.runtime.StopContainer(cri.StopContainerRequest(container_id=container, timeout=0))
    assert crictl.runtime.ContainerStatus(cri.ContainerStatusRequest(
        container_id=container)).status.exit_code == 137
    crictl.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    signals = cri_daemon.docker(
        "events", "--since", f"{since:.6f}", "--until", f"{time.time():.6f}",
        "--filter", "event=kill", "--format", "{{.Actor.ID}} {{.Actor.Attributes.signal}}")
    assert sorted(signals.split()) == sorted([container, "9", pod, "9"])


def test_removing_a_pod_takes_its_containers(crictl: Cri, cri_daemon: PouchDaemon) -> None:
    pod = crictl.runtime.RunPodSandbox(cri.RunPodSandboxRequest(
        config=pod_config("takes"))).pod_sandbox_id
    container = run_container(crictl, pod, "c1", "sleep 60", pod_name="takes")
    crictl.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
    assert cri_daemon.docker_result("inspect", container).returncode != 0
    assert cri_daemon.docker_result("inspect", pod).returncode != 0


def test_exec_sync_output_and_exit_codes(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("exec")
    container = run_container(crictl, pod, "exec", "sleep 60", pod_name="exec")
    done = crictl.runtime.ExecSync(cri.ExecSyncRequest(
        container_id=container, cmd=["sh", "-c", "echo out; echo err >&2; exit 3"],
        timeout=10))
    assert (done.stdout, done.stderr, done.exit_code) == (b"out\n", b"err\n", 3)
    ok = crictl.runtime.ExecSync(cri.ExecSyncRequest(container_id=container,
                                                     cmd=["true"]))
    assert ok.exit_code == 0


def test_exec_sync_timeout(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("slow")
    container = run_container(crictl, pod, "slow", "sleep 60", pod_name="slow")
    with pytest.raises(grpc.RpcError) as late:
        crictl.runtime.ExecSync(cri.ExecSyncRequest(container_id=container,
                                                    cmd=["sleep", "30"], timeout=1))
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_exec_sync_in_a_missing_container(crictl: Cri) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        crictl.runtime.ExecSync(cri.ExecSyncRequest(container_id="e" * 64, cmd=["true"]))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_logs_in_cri_format(crictl: Cri, pods: Callable[..., str], tmp_path: Path) -> None:
    logs = tmp_path / "pods" / "logs"
    pod = crictl.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config(
        "logs", log_directory=str(logs)))).pod_sandbox_id
    try:
        container = run_container(crictl, pod, "talk",
                                  "echo one; echo two >&2; printf three", log_path="talk/0.log",
                                  pod_name="logs")
        wait_for(lambda: state_of(crictl, container) == cri.CONTAINER_EXITED, 20,
                 "the container to exit")
        status = crictl.runtime.ContainerStatus(
            cri.ContainerStatusRequest(container_id=container)).status
        assert status.log_path == str(logs / "talk" / "0.log")
        lines = (logs / "talk" / "0.log").read_bytes().splitlines()
        assert all(CRI_LINE.match(line) for line in lines), lines
        tails = sorted(line.split(b" ", 1)[1] for line in lines)
        assert tails == [b"stderr F two", b"stdout F one", b"stdout F three"]
    finally:
        crictl.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))


def test_start_a_running_container_is_refused(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("twice")
    container = run_container(crictl, pod, "twice", "sleep 60", pod_name="twice")
    with pytest.raises(grpc.RpcError) as again:
        crictl.runtime.StartContainer(cri.StartContainerRequest(container_id=container))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_stats_of_containers_and_pods(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("stats", labels={"stats": "yes"})
    container = run_container(crictl, pod, "busy",
                              "head -c 300000 /dev/zero > /written; sleep 60", pod_name="stats")
    wait_for(lambda: crictl.runtime.ContainerStats(cri.ContainerStatsRequest(
        container_id=container)).stats.writable_layer.used_bytes.value >= 300000, timeout=10,
        what="the written file counted")
    one = crictl.runtime.ContainerStats(cri.ContainerStatsRequest(container_id=container)).stats
    assert one.attributes.id == container and one.attributes.metadata.name == "busy"
    assert one.cpu.usage_core_nano_seconds.value > 0
    assert one.memory.usage_bytes.value > 0 and one.memory.page_faults.value > 0
    # What a kubelet counts against the pod's ephemeral storage: the file it wrote.
    assert 300000 <= one.writable_layer.used_bytes.value < 400000
    listed = crictl.runtime.ListContainerStats(cri.ListContainerStatsRequest(
        filter=cri.ContainerStatsFilter(pod_sandbox_id=pod))).stats
    assert [s.attributes.id for s in listed] == [container]
    pod_stats = crictl.runtime.PodSandboxStats(
        cri.PodSandboxStatsRequest(pod_sandbox_id=pod)).stats
    assert [c.attributes.id for c in pod_stats.linux.containers] == [container]
    # Against the container's figure of the same reading: a container's memory may shrink
    # between two readings (it did once in CI).
    member = pod_stats.linux.containers[0]
    assert member.memory.usage_bytes.value > 0
    assert pod_stats.linux.memory.usage_bytes.value >= member.memory.usage_bytes.value
    assert pod_stats.linux.cpu.usage_core_nano_seconds.value >= \
        member.cpu.usage_core_nano_seconds.value


def test_reopen_container_log(crictl: Cri, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    pod = crictl.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config(
        "rotate", log_directory=str(logs)))).pod_sandbox_id
    try:
        container = run_container(
            crictl, pod, "tick", "while :; do echo tick; sleep 0.1; done",
            log_path="tick.log", pod_name="rotate")
        log = logs / "tick.log"
        wait_for(lambda: log.exists() and log.stat().st_size > 0, 20, "the first lines")
        log.rename(logs / "tick.log.1")  # as the kubelet's rotation does
        crictl.runtime.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=container))
        wait_for(lambda: log.exists() and b"stdout F tick" in log.read_bytes(), 20,
                 "lines in the reopened log")
    finally:
        crictl.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))


def test_update_container_resources(crictl: Cri, pods: Callable[..., str],
                                    cri_daemon: PouchDaemon) -> None:
    pod = pods("limits")
    container = run_container(crictl, pod, "limited", "sleep 60", pod_name="limits")
    crictl.runtime.UpdateContainerResources(cri.UpdateContainerResourcesRequest(
        container_id=container, linux=cri.LinuxContainerResources(
            memory_limit_in_bytes=64 << 20, cpu_shares=512)))
    host = cri_daemon.inspect(container)["HostConfig"]
    # No swap beyond the limit, as containerd's CRI sets it.
    assert (host["Memory"], host["MemorySwap"], host["CpuShares"]) == (
        64 << 20, 64 << 20, 512)
    resources = crictl.runtime.ContainerStatus(
        cri.ContainerStatusRequest(container_id=container)).status.resources.linux
    assert (resources.memory_limit_in_bytes, resources.memory_swap_limit_in_bytes,
            resources.cpu_shares) == (64 << 20, 64 << 20, 512)


def test_a_start_that_fails_is_a_start_error(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("nostart")
    config = container_config("missing")
    config.command[:] = ["/no/such/program"]
    created = crictl.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod, config=config, sandbox_config=pod_config("nostart"))).container_id
    with pytest.raises(grpc.RpcError):
        crictl.runtime.StartContainer(cri.StartContainerRequest(container_id=created))
    status = crictl.runtime.ContainerStatus(
        cri.ContainerStatusRequest(container_id=created)).status
    # What a kubelet shows as the container's last state, as with containerd's CRI.
    assert (status.state, status.reason, status.exit_code) == (
        cri.CONTAINER_EXITED, "StartError", 128)
    assert "/no/such/program" in status.message


def test_no_container_is_made_in_a_stopped_pod(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("stopped")
    crictl.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod))
    with pytest.raises(grpc.RpcError) as refused:
        crictl.runtime.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=pod, config=container_config("late", "true"),
            sandbox_config=pod_config("stopped")))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not ready" in str(refused.value.details())
    assert not crictl.runtime.ListContainers(cri.ListContainersRequest(
        filter=cri.ContainerFilter(pod_sandbox_id=pod))).containers


def test_exec_and_attach_answer_stream_urls(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("urls")
    container = run_container(crictl, pod, "urls", "sleep 60", pod_name="urls")
    url = crictl.runtime.Exec(cri.ExecRequest(container_id=container, cmd=["sh"],
                                              stdout=True)).url
    assert url.startswith("http://127.0.0.1:")
    assert crictl.runtime.Attach(cri.AttachRequest(container_id=container,
                                                   stdout=True)).url.startswith("http://")
    with pytest.raises(grpc.RpcError) as bad:
        crictl.runtime.Exec(cri.ExecRequest(container_id=container, cmd=["sh"]))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_pods_survive_a_killed_cri_actor(crictl: Cri, pods: Callable[..., str],
                                         cri_daemon: PouchDaemon) -> None:
    pod = pods("survivor")
    container = run_container(crictl, pod, "survivor", "sleep 60", pod_name="survivor")
    before = cri_daemon.pid_of("cri")
    os.kill(before, signal.SIGKILL)

    def answers_again() -> bool:
        try:
            return crictl.runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(
                pod_sandbox_id=pod), timeout=2).status.state == cri.SANDBOX_READY
        except grpc.RpcError:
            return False

    wait_for(answers_again, 30, "the restarted CRI actor")
    assert cri_daemon.pid_of("cri") != before
    assert state_of(crictl, container) == cri.CONTAINER_RUNNING


def test_pull_image_with_auth_from_a_registry(crictl: Cri) -> None:
    with Registry(auth="htpasswd", users={"alice": "pw"}) as registry:
        layers = [layer({"bin/sh": BUSYBOX.read_bytes()}, executable=("bin/sh",))]
        digest = publish(registry.url, "team/app", "v1", layers, image_config(layers),
                         auth=("alice", "pw"))
        name = f"{registry.host}/team/app:v1"
        with pytest.raises(grpc.RpcError):  # no credentials: refused by the registry
            crictl.images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=name)))
        pulled = crictl.images.PullImage(cri.PullImageRequest(
            image=cri.ImageSpec(image=name),
            auth=cri.AuthConfig(username="alice", password="pw")))
        status = crictl.images.ImageStatus(cri.ImageStatusRequest(
            image=cri.ImageSpec(image=name))).image
        assert status.id == pulled.image_ref
        assert status.repo_tags == [name]
        assert f"{registry.host}/team/app@{digest}" in status.repo_digests
        crictl.images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=name)))


def test_container_events_for_the_evented_pleg(crictl: Cri, pods: Callable[..., str]) -> None:
    events = crictl.runtime.GetContainerEvents(cri.GetEventsRequest())
    try:
        pod = pods("events")
        container = run_container(crictl, pod, "ev", "sleep 60", pod_name="events")
        wanted = {(pod, cri.CONTAINER_STARTED_EVENT), (container, cri.CONTAINER_CREATED_EVENT),
                  (container, cri.CONTAINER_STARTED_EVENT)}
        seen: set[tuple[str, int]] = set()
        for event in events:
            seen.add((event.container_id, event.container_event_type))
            if event.container_id == container:
                assert event.pod_sandbox_status.id == pod
            if wanted <= seen:
                break
    finally:
        events.cancel()


def test_security_context(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("secure")
    config = container_config("secure", "sleep 60")
    ctx = config.linux.security_context
    ctx.run_as_user.value = 65534
    ctx.run_as_group.value = 65534
    ctx.supplemental_groups.append(100)
    ctx.readonly_rootfs = True
    ctx.no_new_privs = True
    ctx.capabilities.drop_capabilities.append("ALL")
    ctx.masked_paths.append("/etc/group")
    ctx.namespace_options.pid = cri.CONTAINER  # its pid 1 its own, not the pod's pause
    created = crictl.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod, config=config, sandbox_config=pod_config("secure"))).container_id
    crictl.runtime.StartContainer(cri.StartContainerRequest(container_id=created))

    def run(*cmd: str) -> cri.ExecSyncResponse:
        return crictl.runtime.ExecSync(cri.ExecSyncRequest(container_id=created, cmd=list(cmd),
                                                           timeout=10))

    assert run("id", "-u").stdout == b"65534\n"
    assert run("id", "-g").stdout == b"65534\n"
    main = run("cat", "/proc/1/status").stdout.decode()  # the container's own process
    assert "100" in next(line for line in main.splitlines() if line.startswith("Groups:"))
    assert run("touch", "/written").exit_code != 0
    status = run("cat", "/proc/self/status").stdout.decode()
    assert "NoNewPrivs:\t1" in status
    assert "CapEff:\t0000000000000000" in status
    assert run("cat", "/etc/group").stdout == b""


def test_containers_share_the_pods_pid_namespace(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("pidns")
    container = run_container(crictl, pod, "pidns", "sleep 60", pod_name="pidns")
    # The pod's pid 1 is its pause process, which reaps what is orphaned in the pod.
    cmdline = crictl.runtime.ExecSync(cri.ExecSyncRequest(
        container_id=container, cmd=["cat", "/proc/1/cmdline"], timeout=10)).stdout
    assert b"trap" in cmdline


def test_pod_cgroup_parent(crictl: Cri) -> None:
    parent = f"/pouch/cri-test-{os.getpid()}"
    config = pod_config("cgroup")
    config.linux.cgroup_parent = parent
    pod = crictl.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        created = crictl.runtime.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=pod, config=container_config("cg", "sleep 60"),
            sandbox_config=config)).container_id
        crictl.runtime.StartContainer(cri.StartContainerRequest(container_id=created))
        info = crictl.runtime.ContainerStatus(cri.ContainerStatusRequest(
            container_id=created, verbose=True)).info["info"]
        shown = json.loads(info)
        cgroups = Path(f"/proc/{shown['pid']}/cgroup").read_text()
        assert f"{parent}/{created}" in cgroups
        # Where containerd's CRI has them, for crictl inspect users.
        assert shown["sandboxID"] == pod
        assert shown["runtimeSpec"]["linux"]["cgroupsPath"] == f"{parent}/{created}"
    finally:
        crictl.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
        # runc leaves the parents it made, as for any --cgroup-parent: ours to remove.
        for folder in sorted(Path("/sys/fs/cgroup").glob(f"*{parent}"), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()


def test_kubelet_resources_with_a_clamped_oom_score(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("guaranteed")
    config = container_config("g", "sleep 60")
    res = config.linux.resources
    res.cpu_period, res.cpu_quota, res.cpu_shares = 100000, 50000, 512
    res.memory_limit_in_bytes = 128 << 20
    res.oom_score_adj = -997  # below what this machine allows: clamped, as containerd's
    config.linux.security_context.namespace_options.pid = cri.CONTAINER
    created = crictl.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod, config=config, sandbox_config=pod_config("guaranteed"))
    ).container_id
    crictl.runtime.StartContainer(cri.StartContainerRequest(container_id=created))
    assert state_of(crictl, created) == cri.CONTAINER_RUNNING
    score = crictl.runtime.ExecSync(cri.ExecSyncRequest(
        container_id=created, cmd=["cat", "/proc/1/oom_score_adj"], timeout=10)).stdout
    assert -997 <= int(score) <= 0


def test_a_pods_shim_serves_its_containers_after_its_sandbox_is_gone(
        crictl: Cri, cri_daemon: PouchDaemon) -> None:
    pod = crictl.runtime.RunPodSandbox(cri.RunPodSandboxRequest(
        config=pod_config("grouped"))).pod_sandbox_id
    config = container_config("grouped", "sleep 600")
    config.linux.security_context.namespace_options.pid = cri.CONTAINER  # outlives the pause
    created = crictl.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod, config=config, sandbox_config=pod_config("grouped"))
    ).container_id
    try:
        crictl.runtime.StartContainer(cri.StartContainerRequest(container_id=created))

        def pod_shims() -> list[str]:
            return [s.id for s in shims.find(str(cri_daemon.containerd_socket), NAMESPACE)
                    if s.id in (pod, created)]

        assert pod_shims() == [pod]  # the pause's shim runs the container too, as containerd's
        # Its first task gone, the shim is no leftover: not at a clean stop, not by the sweep
        # after the restore, nor when the pause container goes.
        cri_daemon.docker("stop", "-t", "0", pod)
        assert cri_daemon.proc is not None
        cri_daemon.proc.send_signal(signal.SIGTERM)
        assert cri_daemon.proc.wait(30) == 0
        cri_daemon.start()
        wait_for(lambda: state_of(crictl, created) == cri.CONTAINER_RUNNING, 30,
                 "the container, restored")
        actor = cri_daemon.pid_of("container")
        wait_for(lambda: re.search(rf"container\[{actor}\].*swept containerd's leftovers",
                                   cri_daemon.log_tail(2000)), SWEEP_FIRST + 20,
                 "the first sweep after the restore")
        cri_daemon.docker("rm", pod)
        assert state_of(crictl, created) == cri.CONTAINER_RUNNING
        assert crictl.runtime.ExecSync(cri.ExecSyncRequest(
            container_id=created, cmd=["echo", "alive"], timeout=10)).stdout == b"alive\n"
        assert pod_shims() == [pod]
    finally:
        crictl.runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=created))
        crictl.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod))
    wait_for(lambda: not pod_shims(), 10, "the shim ending with the pod's last task")
