"""A CRI container's seccomp profile (RuntimeDefault, Unconfined, Localhost) and its
exec's supplementary groups, told through runtime.v1 and checked from inside."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from cri_api.v1 import api_pb2 as cri

from pouch.tests.integration import test_cri_runtime as base
from pouch.tests.integration.test_cri_runtime import Cri, container_config, pod_config

# The CRI tests' fixtures: a pouchd with --enable-cri for this module, a client, pods.
cri_daemon = base.cri_daemon
crictl = base.crictl
pods = base.pods

MODE = "grep Seccomp: /proc/self/status | cut -f2"
USERNS = "unshare -U true 2>&1; echo $?"


def start(crictl: Cri, pod: str, config: cri.ContainerConfig) -> Callable[[str], str]:
    """Start the container; a function running a shell script in it (ExecSync)."""
    created = crictl.runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=pod, config=config, sandbox_config=pod_config("sec"))).container_id
    crictl.runtime.StartContainer(cri.StartContainerRequest(container_id=created))

    def sh(script: str) -> str:
        return crictl.runtime.ExecSync(cri.ExecSyncRequest(
            container_id=created, cmd=["sh", "-c", script], timeout=10)).stdout.decode()
    return sh


def test_runtime_default_denies_namespaces_and_mounts(crictl: Cri,
                                                      pods: Callable[..., str]) -> None:
    pod = pods("sec")
    config = container_config("default", "sleep 60")
    config.linux.security_context.seccomp.profile_type = cri.SecurityProfile.RuntimeDefault
    sh = start(crictl, pod, config)
    lines = sh(f"{MODE}; {USERNS}; mkdir -p /m; mount -t tmpfs none /m 2>&1; echo $?")
    out = lines.splitlines()
    assert out[0] == "2"
    assert "Operation not permitted" in out[1] and out[2] != "0"
    assert out[-1] != "0"


def test_unconfined_and_privileged_can(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("sec")
    config = container_config("free", "sleep 60")
    ctx = config.linux.security_context
    ctx.seccomp.profile_type = cri.SecurityProfile.Unconfined
    ctx.privileged = True
    sh = start(crictl, pod, config)
    out = sh(f"{MODE}; {USERNS}; mkdir -p /m; mount -t tmpfs none /m 2>&1; echo $?")
    assert out.splitlines() == ["0", "0", "0"]


def test_a_localhost_profile_denying_mkdir(crictl: Cri, pods: Callable[..., str],
                                           tmp_path: Path) -> None:
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    pod = pods("sec")
    config = container_config("local", "sleep 60")
    config.linux.security_context.seccomp.profile_type = cri.SecurityProfile.Localhost
    config.linux.security_context.seccomp.localhost_ref = str(profile)
    sh = start(crictl, pod, config)
    out = sh(f"{MODE}; mkdir /d 2>&1; echo $?; touch /f && echo touched").splitlines()
    assert out[0] == "2" and "Operation not permitted" in out[1]
    assert out[2] == "1" and out[3] == "touched"


def test_exec_sync_gets_the_supplemental_groups(crictl: Cri, pods: Callable[..., str]) -> None:
    pod = pods("sec")
    config = container_config("groups", "sleep 60")
    ctx = config.linux.security_context
    ctx.run_as_user.value = 65534
    ctx.run_as_group.value = 65534
    ctx.supplemental_groups.extend([100, 123])
    sh = start(crictl, pod, config)
    assert sh("id -G").split() == ["65534", "100", "123"]
    assert sh("id -u").strip() == "65534"
