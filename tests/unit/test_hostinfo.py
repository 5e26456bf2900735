"""What /info reads of the host, on made-up hosts: cgroup controls, sysctls, security
options, warnings, runc's and tini's versions, pouch's commit; and how /daemon/update
changes the daemon's labels."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pouch.actors import hostinfo
from pouch.actors.settings import update_labels
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError


def touch(root: Path, *paths: str, text: str = "") -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


V1_FULL = ("memory/memory.limit_in_bytes", "memory/memory.memsw.limit_in_bytes",
           "memory/memory.kmem.limit_in_bytes", "memory/memory.kmem.tcp.limit_in_bytes",
           "memory/memory.oom_control", "cpu/cpu.cfs_period_us", "cpu/cpu.cfs_quota_us",
           "cpu/cpu.shares", "cpuset/cpuset.cpus", "pids/cgroup.procs")


def v1_host(root: Path, *files: str) -> Path:
    touch(root, *(f"sys/fs/cgroup/{f}" for f in files))
    touch(root, "proc/sys/net/ipv4/ip_forward", text="1\n")
    touch(root, "proc/sys/net/bridge/bridge-nf-call-iptables", text="1\n")
    return root


def test_a_cgroup_v1_host_offers_what_its_files_show(tmp_path: Path):
    root = v1_host(tmp_path, *V1_FULL)
    assert hostinfo.cgroup_version(root) == "1"
    assert all(hostinfo.cgroup_support(root).fields().values())
    assert hostinfo.host_warnings(DaemonConfig(), hostinfo.cgroup_support(root), root) == []


def test_a_kernel_without_swap_accounting_is_warned_of(tmp_path: Path):
    root = v1_host(tmp_path, *(f for f in V1_FULL if "memsw" not in f))
    support = hostinfo.cgroup_support(root)
    assert support.MemoryLimit and not support.SwapLimit
    assert hostinfo.host_warnings(DaemonConfig(), support, root) == [
        "WARNING: No swap limit support"]


def test_a_cgroup_v2_host_offers_its_controllers(tmp_path: Path):
    touch(tmp_path, "sys/fs/cgroup/cgroup.controllers", text="cpuset cpu io memory pids\n")
    touch(tmp_path, "proc/self/cgroup", text="0::/system.slice/pouch.service\n")
    touch(tmp_path, "sys/fs/cgroup/system.slice/pouch.service/memory.swap.max")
    support = hostinfo.cgroup_support(tmp_path)
    assert hostinfo.cgroup_version(tmp_path) == "2"
    assert support.MemoryLimit and support.SwapLimit and support.CPUSet and support.PidsLimit
    assert not support.KernelMemory and not support.OomKillDisable  # no such thing in v2


def test_bridged_traffic_unseen_by_iptables_and_no_forwarding_are_warned_of(tmp_path: Path):
    root = v1_host(tmp_path, *V1_FULL)
    touch(root, "proc/sys/net/ipv4/ip_forward", text="0\n")
    (root / "proc/sys/net/bridge/bridge-nf-call-iptables").unlink()  # br_netfilter not loaded
    support = hostinfo.cgroup_support(root)
    assert hostinfo.host_warnings(DaemonConfig(), support, root) == [
        "WARNING: bridge-nf-call-iptables is disabled", "WARNING: IPv4 forwarding is disabled"]
    # Without pouch's iptables rules there is nothing for bridged traffic to pass.
    assert hostinfo.host_warnings(DaemonConfig(iptables=False), support, root) == [
        "WARNING: IPv4 forwarding is disabled"]


def test_tcp_listeners_without_client_verification_are_warned_of():
    unix = "unix:///run/pouchd.sock"
    assert hostinfo.api_warnings(DaemonConfig(listen=(unix,))) == []
    plain = hostinfo.api_warnings(DaemonConfig(listen=(unix, "tcp://127.0.0.1:2375")))
    assert len(plain) == 1
    assert plain[0].startswith("WARNING: API is accessible on http://127.0.0.1:2375 without "
                               "encryption.")
    tls = hostinfo.api_warnings(DaemonConfig(listen=("tcp://127.0.0.1:2376",), tls=True))
    assert tls[0].startswith("WARNING: API is accessible on https://127.0.0.1:2376 without "
                             "TLS client verification.")
    assert hostinfo.api_warnings(DaemonConfig(listen=("tcp://0.0.0.0:2376",), tls=True,
                                              tlsverify=True)) == []


def test_seccomp_is_listed_builtin_only_where_the_kernel_has_it(tmp_path: Path):
    touch(tmp_path, "proc/self/status", text="Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n")
    assert hostinfo.security_options(tmp_path) == ["name=seccomp,profile=builtin"]
    touch(tmp_path, "proc/self/status", text="Name:\tx\n")
    assert hostinfo.security_options(tmp_path) == []


def test_runc_version_and_commit_are_read_from_its_output():
    text = "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\n"
    assert hostinfo.parse_runc_version(text) == hostinfo.RuncVersion(
        "1.1.5+ds1", "1.1.5+ds1-1+deb12u1")
    assert hostinfo.parse_runc_version("") == hostinfo.RuncVersion()


@pytest.mark.parametrize(("output", "commit"), [
    ("tini version 0.19.0 - git.de40ad0", "de40ad0"),
    ("tini version 0.19.0", "0.19.0"),
])
def test_the_inits_commit_or_else_its_version(tmp_path: Path, output: str, commit: str):
    init = tmp_path / "tini"
    init.write_text(f"#!/bin/sh\necho '{output}'\n")
    init.chmod(init.stat().st_mode | stat.S_IXUSR)
    assert hostinfo.init_version(str(init)) == commit
    assert hostinfo.init_version(str(tmp_path / "none")) == ""


def test_the_source_commit_is_read_from_git_files(tmp_path: Path):
    git = tmp_path / ".git"
    touch(tmp_path, ".git/HEAD", text="ref: refs/heads/main\n")
    assert hostinfo.source_commit(tmp_path) == ""  # a branch with no commit yet
    touch(tmp_path, ".git/packed-refs", text="# pack-refs\n" + "ab" * 20 + " refs/heads/main\n")
    assert hostinfo.source_commit(tmp_path) == "ab" * 6
    touch(tmp_path, ".git/refs/heads/main", text="cd" * 20 + "\n")
    assert hostinfo.source_commit(tmp_path) == "cd" * 6
    (git / "HEAD").write_text("ef" * 20 + "\n")  # detached
    assert hostinfo.source_commit(tmp_path) == "ef" * 6
    assert hostinfo.source_commit(tmp_path / "elsewhere") == ""


def test_process_load_counts_descriptors_and_threads_of_live_processes():
    gone = 2**22 + 7  # above pid_max's default: no such process
    assert hostinfo.process_load([gone]) == (0, 0)
    fds, threads = hostinfo.process_load([os.getpid(), gone])
    assert fds >= 3 and threads >= 1  # stdin, stdout, stderr at least


def test_an_update_replaces_a_labels_value_in_place_and_appends_new_keys():
    assert update_labels(("zone=eu", "rack=7"), ["rack=9", "team=core"]) == (
        "zone=eu", "rack=9", "team=core")
    assert update_labels((), ["a=b"]) == ("a=b",)
    assert update_labels(("a=b",), ["a="]) == ("a=",)


@pytest.mark.parametrize(("changes", "words"), [
    (["novalue"], "label 'novalue' is not key=value"),
    (["=v"], "is not key=value"),
    (["a=1", "a=2"], "give 'a' two values"),
])
def test_a_bad_label_update_is_invalid(changes: list[str], words: str):
    with pytest.raises(PouchError) as raised:
        update_labels(("a=0",), changes)
    assert raised.value.code == "invalid" and words in raised.value.message
