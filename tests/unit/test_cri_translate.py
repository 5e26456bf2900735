"""CRI's vocabulary to Docker's and back, the error mapping and the CNI plumbing: pure."""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2 as cri

from pouch.actors.container.jsonlog import Entry, LogConfig, LogWriter, cri_line, log_config
from pouch.actors.cri import cni
from pouch.actors.cri import translate as tr
from pouch.actors.cri.errors import precondition, status_of
from pouch.actors.cri.execsync import read_frames
from pouch.actors.cri.images import registry_auth
from pouch.proto.envelope import PouchError


def pod(network: cri.NamespaceMode.ValueType = cri.NODE) -> cri.PodSandboxConfig:
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="web", namespace="ns", uid="u1", attempt=2),
        labels={"app": "web"}, annotations={"a": "b"}, hostname="web-0",
        log_directory="/var/log/pods/u1",
        dns_config=cri.DNSConfig(servers=["10.0.0.10"], searches=["svc"], options=["ndots:5"]))
    config.linux.security_context.namespace_options.network = network
    return config


def test_sandbox_body_keeps_what_docker_has_no_field_for() -> None:
    body = tr.sandbox_body(pod(), "pause:1")
    labels = body["Labels"]
    assert labels[tr.KIND] == tr.SANDBOX_KIND
    assert labels[tr.LABEL + "app"] == "web" and labels[tr.ANNOTATION + "a"] == "b"
    assert tr.sandbox_metadata(labels) == pod().metadata
    host = body["HostConfig"]
    assert host["NetworkMode"] == "host" and host["UTSMode"] == "host"
    assert tr.resolv_conf(pod().dns_config) == (
        "nameserver 10.0.0.10\nsearch svc\noptions ndots:5\n")
    assert tr.resolv_conf(cri.DNSConfig()) == ""
    assert "Hostname" not in body  # the host's, with the host's UTS namespace


def test_sandbox_of_a_pod_network_has_its_hostname_and_no_network_yet() -> None:
    body = tr.sandbox_body(pod(cri.POD), "pause:1")
    assert body["Hostname"] == "web-0"
    assert body["HostConfig"]["NetworkMode"] == "none"
    assert body["Labels"][tr.NETWORK] == "pod"


def test_container_body_joins_its_pod() -> None:
    sandbox = {"Id": "p" * 64, "Config": {"Labels": tr.sandbox_body(pod(cri.POD), "x")["Labels"]},
               "HostConfig": {"IpcMode": "shareable"}}
    config = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name="app", attempt=1), image=cri.ImageSpec(image="bb"),
        command=["sh"], args=["-c", "true"], working_dir="/w", log_path="app/1.log",
        envs=[cri.KeyValue(key="A", value="1")],
        mounts=[cri.Mount(container_path="/d", host_path="/h", readonly=True,
                          propagation=cri.PROPAGATION_HOST_TO_CONTAINER)])
    config.linux.security_context.run_as_user.value = 1000
    config.linux.security_context.capabilities.add_capabilities.append("NET_ADMIN")
    config.linux.resources.memory_limit_in_bytes = 64 << 20
    body = tr.container_body(config, sandbox, "sha256:img", pod(cri.POD))
    host = body["HostConfig"]
    assert host["NetworkMode"] == host["IpcMode"] == f"container:{'p' * 64}"
    assert host["Binds"] == ["/h:/d:ro,rslave"]
    assert host["CapAdd"] == ["NET_ADMIN"] and host["Memory"] == 64 << 20
    assert host["MemorySwap"] == 64 << 20  # no swap, as containerd's CRI
    assert (body["Entrypoint"], body["Cmd"], body["Env"], body["WorkingDir"], body["User"]) == (
        ["sh"], ["-c", "true"], ["A=1"], "/w", "1000")
    assert body["Labels"][tr.LOG_PATH] == "/var/log/pods/u1/app/1.log"
    assert body["Labels"][tr.SANDBOX] == "p" * 64
    assert tr.container_metadata(body["Labels"]) == config.metadata


def test_status_from_inspect() -> None:
    labels = tr.kept_labels(tr.CONTAINER_KIND, {"k": "v"}, {})
    labels[tr.METADATA] = json.dumps({"name": "c", "attempt": 0})
    doc = {"Id": "c" * 64, "Created": "2026-01-02T03:04:05.123456789Z", "Image": "sha256:i",
           "Config": {"Labels": labels, "Image": "busybox"}, "Mounts": [],
           "State": {"Status": "exited", "ExitCode": 0,
                     "StartedAt": "2026-01-02T03:04:06Z", "FinishedAt": "2026-01-02T03:04:07Z"}}
    status = tr.container_status(doc)
    assert status.state == cri.CONTAINER_EXITED and status.reason == "Completed"
    assert status.created_at == 1767323045123456789
    assert status.finished_at - status.started_at == 1_000_000_000
    assert dict(status.labels) == {"k": "v"}


def test_status_tells_a_start_that_failed_and_the_resources() -> None:
    labels = {tr.METADATA: json.dumps({"name": "c", "attempt": 0})}
    doc = {"Id": "c" * 64, "Created": "2026-01-02T03:04:05Z", "Image": "sha256:i",
           "Config": {"Labels": labels}, "Mounts": [],
           "HostConfig": {"Memory": 64 << 20, "MemorySwap": 64 << 20, "CpuShares": 512,
                          "CpusetCpus": "0", "OomScoreAdj": 10, "CpuQuota": 0},
           "State": {"Status": "exited", "ExitCode": 127, "Error": "exec: no such file",
                     "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "2026-01-02T03:04:06Z"}}
    status = tr.container_status(doc)
    assert (status.reason, status.exit_code, status.message) == (
        "StartError", 128, "exec: no such file")
    assert status.resources.linux == cri.LinuxContainerResources(
        memory_limit_in_bytes=64 << 20, memory_swap_limit_in_bytes=64 << 20, cpu_shares=512,
        cpuset_cpus="0", oom_score_adj=10)
    update = cri.LinuxContainerResources(memory_limit_in_bytes=1 << 30,
                                         memory_swap_limit_in_bytes=2 << 30)
    assert tr.update_body(update) == {"Memory": 1 << 30, "MemorySwap": 2 << 30}


def test_nanos_of_go_zero_time() -> None:
    assert tr.nanos("0001-01-01T00:00:00Z") == 0
    assert tr.nanos("1970-01-01T00:00:01.5Z") == 1_500_000_000


def test_filters_narrow_to_one_kind() -> None:
    assert tr.list_filters(tr.CONTAINER_KIND, id="ab", sandbox="p", labels={"a": "b"}) == {
        "label": [f"{tr.KIND}=container", f"{tr.SANDBOX}=p", f"{tr.LABEL}a=b"], "id": ["ab"]}


def test_errors_map_once_to_grpc() -> None:
    assert status_of(PouchError("not_found", "x")) == (grpc.StatusCode.NOT_FOUND, "x")
    assert status_of(PouchError("invalid", "x"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(PouchError("conflict", "x"))[0] == grpc.StatusCode.ALREADY_EXISTS
    assert status_of(precondition("x")) == (grpc.StatusCode.FAILED_PRECONDITION, "x")
    assert status_of(PouchError("timeout", "x"))[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert status_of(PouchError("unavailable", "x"))[0] == grpc.StatusCode.UNAVAILABLE


def test_registry_auth_as_docker_header() -> None:
    import base64
    header = registry_auth(cri.AuthConfig(auth=base64.b64encode(b"u:p").decode()))
    assert json.loads(base64.urlsafe_b64decode(header)) == {"username": "u", "password": "p"}
    assert registry_auth(cri.AuthConfig()) == ""


def test_cri_log_lines(tmp_path: Path) -> None:
    assert cri_line(Entry("stdout", b"hi\n", "2026-01-01T00:00:00.5Z")) == \
        b"2026-01-01T00:00:00.5Z stdout F hi\n"
    assert cri_line(Entry("stderr", b"part", "T")) == b"T stderr P part\n"
    config = log_config({"Type": "cri", "Config": {"path": str(tmp_path / "c" / "0.log")}})
    assert config == LogConfig(driver="cri", cri_path=str(tmp_path / "c" / "0.log"))
    writer = LogWriter(tmp_path / "json.log", config)
    writer.write("stdout", b"one\ntw")
    writer.flush("stdout")
    writer.close()
    lines = (tmp_path / "c" / "0.log").read_bytes().splitlines()
    assert [line.split(b" ", 1)[1] for line in lines] == [b"stdout F one", b"stdout F tw"]
    assert len((tmp_path / "json.log").read_bytes().splitlines()) == 2


def test_cri_log_driver_needs_an_absolute_path() -> None:
    with pytest.raises(PouchError):
        log_config({"Type": "cri", "Config": {"path": "relative.log"}})


def test_exec_frames_after_the_head() -> None:
    mine, theirs = socket.socketpair()
    payload = (b"HTTP/1.1 101 UPGRADED\r\n\r\n" + struct.pack(">BxxxI", 1, 3) + b"out"
               + struct.pack(">BxxxI", 2, 3) + b"err")

    def send() -> None:
        for i in range(0, len(payload), 5):  # split anywhere
            theirs.sendall(payload[i:i + 5])
        theirs.close()

    thread = threading.Thread(target=send)
    thread.start()
    assert read_frames(mine, None) == (b"out", b"err")
    thread.join()
    mine.close()


def test_default_cni_config_written_once(tmp_path: Path) -> None:
    cni.write_default_config(tmp_path)
    written = json.loads((tmp_path / cni.DEFAULT_FILE).read_text())
    assert [p["type"] for p in written["plugins"]] == ["bridge", "portmap"]
    (tmp_path / "05-mine.conflist").write_text(json.dumps({"name": "mine", "plugins": [
        {"type": "bridge"}]}))
    cni.write_default_config(tmp_path, "10.99.0.0/16")  # a user's config: ours left as it was
    assert cni.DEFAULT_SUBNET in (tmp_path / cni.DEFAULT_FILE).read_text()


def test_cni_config_needs_its_plugins(tmp_path: Path) -> None:
    (tmp_path / "net.d").mkdir()
    cni.write_default_config(tmp_path / "net.d")
    with pytest.raises(PouchError) as missing:
        cni.load_config(tmp_path / "net.d", tmp_path / "bin")
    assert missing.value.code == "unavailable"
    (tmp_path / "bin").mkdir()
    for name in ("bridge", "portmap"):
        (tmp_path / "bin" / name).write_text("")
    assert cni.load_config(tmp_path / "net.d", tmp_path / "bin").name == cni.DEFAULT_NAME


def test_cni_plugin_conf_chains_results() -> None:
    conf = cni.NetConf(cni.default_config())
    portmap = cni._plugin_conf(conf, conf.plugins[1], {"ips": []},
                               {"portMappings": [{"hostPort": 80}], "other": 1})
    assert portmap["prevResult"] == {"ips": []}
    assert portmap["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}
    assert cni.ip_of({"ips": [{"address": "10.88.0.5/16"}]}) == "10.88.0.5"


def test_seccomp_profiles_become_security_options(tmp_path: Path) -> None:
    sandbox = {"Id": "p" * 64, "Config": {"Labels": {}}, "HostConfig": {}}
    config = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="c"))

    def options() -> list[str] | None:
        body = tr.container_body(config, sandbox, "img", cri.PodSandboxConfig())
        return body["HostConfig"].get("SecurityOpt")

    assert options() == ["seccomp=unconfined"]  # no profile at all, as containerd has it
    config.linux.security_context.seccomp_profile_path = "runtime/default"
    assert options() is None
    config.linux.security_context.seccomp.profile_type = cri.SecurityProfile.RuntimeDefault
    assert options() is None  # the container actor's default profile
    config.linux.security_context.seccomp.profile_type = cri.SecurityProfile.Unconfined
    assert options() == ["seccomp=unconfined"]
    config.linux.security_context.seccomp.profile_type = cri.SecurityProfile.Localhost
    config.linux.security_context.seccomp.localhost_ref = str(tmp_path / "missing.json")
    with pytest.raises(PouchError) as refused:
        options()
    assert refused.value.code == "invalid"
    (tmp_path / "p.json").write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    config.linux.security_context.seccomp.localhost_ref = str(tmp_path / "p.json")
    assert options() == ['seccomp={"defaultAction": "SCMP_ACT_ALLOW"}']
    config.linux.security_context.privileged = True
    assert options() is None
    config.linux.security_context.apparmor.profile_type = cri.SecurityProfile.Localhost
    with pytest.raises(PouchError):
        options()
    # The pod's own (its pause container's), as containerd reads it: unset is unconfined.
    pod = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(name="p", namespace="n"))
    assert tr.sandbox_body(pod, "pause")["HostConfig"]["SecurityOpt"] == ["seccomp=unconfined"]
    pod.linux.security_context.seccomp.profile_type = cri.SecurityProfile.RuntimeDefault
    assert "SecurityOpt" not in tr.sandbox_body(pod, "pause")["HostConfig"]


def test_pod_cidr_rewrites_only_our_default(tmp_path: Path) -> None:
    cni.write_default_config(tmp_path)
    cni.write_default_config(tmp_path, "10.99.0.0/16")  # UpdateRuntimeConfig's pod CIDR
    ranges = json.loads((tmp_path / cni.DEFAULT_FILE).read_text())["plugins"][0]["ipam"]
    assert ranges["ranges"] == [[{"subnet": "10.99.0.0/16"}]]


def test_oom_score_adj_clamped_to_what_the_machine_allows() -> None:
    sandbox = {"Id": "p" * 64, "Config": {"Labels": {}}, "HostConfig": {}}
    config = cri.ContainerConfig(metadata=cri.ContainerMetadata(name="c"))
    config.linux.resources.oom_score_adj = -997  # the kubelet's, for a guaranteed pod
    body = tr.container_body(config, sandbox, "img", cri.PodSandboxConfig(), oom_floor=0)
    assert body["HostConfig"]["OomScoreAdj"] == 0
    config.linux.resources.oom_score_adj = 1000
    body = tr.container_body(config, sandbox, "img", cri.PodSandboxConfig(), oom_floor=0)
    assert body["HostConfig"]["OomScoreAdj"] == 1000


def test_container_stats_from_dockers() -> None:
    from pouch.actors.cri.stats import container_stats

    doc = {"Id": "c" * 64, "Config": {"Labels": {}}, "HostConfig": {"Memory": 1000},
           "GraphDriver": {"Data": {"UpperDir": "/u"}}, "SizeRw": 42}
    stats = {"cpu_stats": {"cpu_usage": {"total_usage": 5}},
             "memory_stats": {"usage": 700, "stats": {"total_inactive_file": 100, "rss": 300,
                                                      "pgfault": 9, "pgmajfault": 1}}}
    out = container_stats(doc, stats, now=1)
    assert (out.memory.working_set_bytes.value, out.memory.available_bytes.value) == (600, 400)
    assert (out.memory.page_faults.value, out.memory.major_page_faults.value) == (9, 1)
    assert (out.writable_layer.used_bytes.value, out.writable_layer.fs_id.mountpoint) == (42, "/u")
    unlimited = container_stats({**doc, "HostConfig": {}}, stats, now=1)
    assert not unlimited.memory.HasField("available_bytes")
