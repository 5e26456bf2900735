"""The specs we build run under the real runc: a busybox rootfs, one container each."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pouch.actors.container.spec.merge import effective_process
from pouch.actors.container.spec.oci import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    SpecInput,
    build_spec,
)
from pouch.actors.container.spec.user import resolve_user
from pouch.tests.support.tools import require

RUNC = shutil.which("runc")
BUSYBOX = shutil.which("busybox")


@pytest.fixture(autouse=True)
def _tools() -> None:
    """runc runs the bundles, busybox fills them; the tests run as root (make test)."""
    assert os.geteuid() == 0, "these tests run runc: run them as root"
    require("runc", "runc")
    require("busybox", "busybox-static")

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cap_mask(names: Any) -> int:
    return sum(1 << ALL_CAPABILITIES.index(n) for n in names)


def daemon_caps() -> frozenset[str]:
    """What this process may hand on: its own bounding set."""
    status = Path("/proc/self/status").read_text()
    mask = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd")), 16
    )
    return frozenset(c for i, c in enumerate(ALL_CAPABILITIES) if mask >> i & 1)


def status_field(output: str, field: str) -> int:
    line = next(line for line in output.splitlines() if line.startswith(field + ":"))
    return int(line.split()[1], 16)


class Bundle:
    def __init__(self, root: Path) -> None:
        self.dir = root / "bundle"
        rootfs = self.dir / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        assert BUSYBOX is not None
        shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
        (rootfs / "bin/sh").symlink_to("busybox")
        self.files = root / "container"
        self.files.mkdir()
        (self.files / "hosts").write_text("127.0.0.1\tlocalhost\n")
        (self.files / "resolv.conf").write_text("nameserver 127.0.0.53\n")
        (self.files / "hostname").write_text("spec-test\n")
        self.cgroup_parent = f"/pouch-spec-test-{uuid.uuid4().hex[:8]}"

    def run(
        self,
        script: str,
        host_config: dict[str, Any] | None = None,
        user: str = "",
        network_mode: str = "none",
    ) -> subprocess.CompletedProcess[str]:
        container_id = f"pouch-spec-{uuid.uuid4().hex[:12]}"
        process = effective_process(
            {"Cmd": ["/bin/sh", "-c", script]}, {"Hostname": "spec-test", "User": user}
        )
        spec = build_spec(
            SpecInput(
                container_id=container_id,
                process=process,
                user=resolve_user(process.user, None, None),
                hostname="spec-test",
                network_mode=network_mode,
                netns_path=None,
                hosts_path=str(self.files / "hosts"),
                resolv_conf_path=str(self.files / "resolv.conf"),
                hostname_path=str(self.files / "hostname"),
                cgroup_parent=self.cgroup_parent,
                host_config=host_config or {},
                labels={"test": "spec"},
                grantable_caps=daemon_caps(),
                nofile_ceiling=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            )
        )
        (self.dir / "config.json").write_text(json.dumps(spec))
        assert RUNC is not None
        try:
            return subprocess.run(
                [RUNC, "run", "--bundle", str(self.dir), container_id],
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
        finally:
            subprocess.run([RUNC, "delete", "-f", container_id], capture_output=True, timeout=60)

    def remove_cgroups(self) -> None:
        if not CGROUP_ROOT.is_dir():
            return
        for hierarchy in CGROUP_ROOT.iterdir():
            with contextlib.suppress(OSError):
                (hierarchy / self.cgroup_parent.lstrip("/")).rmdir()


@pytest.fixture
def bundle(tmp_path: Path) -> Iterator[Bundle]:
    b = Bundle(tmp_path)
    try:
        yield b
    finally:
        b.remove_cgroups()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_default_container_runs_as_root_with_dockers_capabilities(bundle: Bundle) -> None:
    out = ok(
        bundle.run(
            "busybox id -u; busybox hostname; busybox cat /etc/hostname; echo HOSTNAME=$HOSTNAME;"
            " ulimit -n; busybox cat /proc/self/status;"
            " busybox touch /sys/x 2>/dev/null || echo sys-readonly;"
            " busybox cat /proc/sys/net/ipv4/ping_group_range"
        )
    )
    lines = out.splitlines()
    assert lines[:4] == ["0", "spec-test", "spec-test", "HOSTNAME=spec-test"]
    assert int(lines[4]) == min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    assert status_field(out, "CapEff") == cap_mask(DEFAULT_CAPABILITIES)
    assert status_field(out, "CapBnd") == cap_mask(DEFAULT_CAPABILITIES)
    assert "sys-readonly" in lines
    assert lines[-1].split() == ["0", "2147483647"]


def test_a_non_root_user_runs_without_effective_capabilities(bundle: Bundle) -> None:
    out = ok(
        bundle.run("busybox id -u; busybox id -g; busybox cat /proc/self/status", user="1000:1000")
    )
    assert out.splitlines()[:2] == ["1000", "1000"]
    assert status_field(out, "CapEff") == 0
    assert status_field(out, "CapBnd") == cap_mask(DEFAULT_CAPABILITIES)


def test_a_readonly_rootfs_with_a_tmpfs_and_a_memory_limit(bundle: Bundle) -> None:
    out = ok(
        bundle.run(
            "busybox touch /x 2>/dev/null || echo root-readonly;"
            " busybox touch /run/x && echo run-writable;"
            " busybox cat /sys/fs/cgroup/memory/memory.limit_in_bytes;"
            " busybox cat /sys/fs/cgroup/pids/pids.max",
            {
                "ReadonlyRootfs": True,
                "Tmpfs": {"/run": "size=1m"},
                "Memory": 64 << 20,
                "PidsLimit": 50,
            },
        )
    )
    assert out.splitlines() == ["root-readonly", "run-writable", str(64 << 20), "50"]


def test_a_privileged_container_gets_all_the_daemon_can_grant(bundle: Bundle) -> None:
    out = ok(
        bundle.run(
            "busybox cat /proc/self/status; busybox touch /sys/fs/cgroup/x 2>&1 | busybox head -1",
            {"Privileged": True, "OomScoreAdj": -500},
        )
    )
    assert status_field(out, "CapEff") == cap_mask(daemon_caps())


def test_host_network_keeps_the_hosts_name(bundle: Bundle) -> None:
    out = ok(bundle.run("busybox hostname", network_mode="host"))
    assert out.strip() == socket.gethostname()
