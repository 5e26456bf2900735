"""What /info and /version tell of the host and of pouchd's own parts, read from the
kernel's files and the binaries: which cgroup controls the kernel offers, the security
options containers get, the warnings a user should see, runc's version and commit,
pouch's own commit, and how many descriptors and threads pouchd's processes hold.

Each reader takes the root it reads under (`/` by default), so a unit test can hand it a
folder laid out as a host would be. A file that cannot be read counts as what it would
have enabled being absent, as dockerd counts it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pouch.actors.container.spec.host import read_cgroup_support
from pouch.proto.config import DaemonConfig

ROOT = Path("/")
# Why an API open beyond TLS client verification matters; said after each such warning.
ROOT_EQUIVALENT = ("\n         Whoever can reach it controls the host as root: use "
                   "--tlsverify with client certificates, or the unix socket.")


@dataclass(frozen=True)
class CgroupSupport:
    """The cgroup controls the kernel offers containers, named as Docker's /info names them."""

    MemoryLimit: bool = False
    SwapLimit: bool = False
    KernelMemory: bool = False
    KernelMemoryTCP: bool = False
    CpuCfsPeriod: bool = False
    CpuCfsQuota: bool = False
    CPUShares: bool = False
    CPUSet: bool = False
    PidsLimit: bool = False
    OomKillDisable: bool = False

    def fields(self) -> dict[str, bool]:
        return dict(self.__dict__)


# A missing control and what `docker info` says of it, as dockerd 20.10 words it.
MISSING = (
    ("MemoryLimit", "WARNING: No memory limit support"),
    ("SwapLimit", "WARNING: No swap limit support"),
    ("CpuCfsQuota", "WARNING: No cpu cfs quota support"),
    ("CpuCfsPeriod", "WARNING: No cpu cfs period support"),
    ("CPUShares", "WARNING: No cpu shares support"),
    ("CPUSet", "WARNING: No cpuset support"),
    ("PidsLimit", "WARNING: No pids limit support"),
)


def cgroup_version(root: Path = ROOT) -> str:
    """"2" on a unified hierarchy, else "1" (a hybrid host's containers use v1)."""
    return "2" if (root / "sys/fs/cgroup/cgroup.controllers").exists() else "1"


def cgroup_support(root: Path = ROOT) -> CgroupSupport:
    """What the container actor's spec finds, under /info's names."""
    found = read_cgroup_support(root)
    return CgroupSupport(
        MemoryLimit=found.memory, SwapLimit=found.swap, KernelMemory=found.kernel_memory,
        KernelMemoryTCP=found.kernel_memory_tcp, CpuCfsPeriod=found.cpu_cfs,
        CpuCfsQuota=found.cpu_cfs, CPUShares=found.cpu_shares, CPUSet=found.cpuset,
        PidsLimit=found.pids, OomKillDisable=found.oom_kill_disable)


def sysctl_on(name: str, root: Path = ROOT) -> bool:
    """A boolean sysctl (net.ipv4.ip_forward) is 1; False when it cannot be read."""
    try:
        return (root / "proc/sys" / name.replace(".", "/")).read_text().strip() == "1"
    except OSError:
        return False


def security_options(root: Path = ROOT) -> list[str]:
    """What confinement containers get, in Docker's `name=...` form: with a kernel that
    filters system calls, pouch's own default seccomp profile (`builtin`, as dockerd
    names its own); no AppArmor or SELinux labels."""
    try:
        status = (root / "proc/self/status").read_text()
    except OSError:
        return []
    seccomp = any(line.startswith("Seccomp:") for line in status.splitlines())
    return ["name=seccomp,profile=builtin"] if seccomp else []


def api_warnings(config: DaemonConfig) -> list[str]:
    """A TCP listener without TLS, or without client verification, is worth a warning:
    pouchd accepts plain TCP on loopback only, but every local user reaches it."""
    warnings = []
    for address in config.listen:
        if not address.startswith("tcp://"):
            continue
        where = address.removeprefix("tcp://")
        if not config.tls and not config.tlsverify:
            warnings.append(f"WARNING: API is accessible on http://{where} without "
                            f"encryption.{ROOT_EQUIVALENT}")
        elif not config.tlsverify:
            warnings.append(f"WARNING: API is accessible on https://{where} without TLS "
                            f"client verification.{ROOT_EQUIVALENT}")
    return warnings


def host_warnings(config: DaemonConfig, support: CgroupSupport,
                  root: Path = ROOT) -> list[str]:
    """What the host lacks that containers would use: cgroup controls, forwarding, and
    iptables' view of bridged traffic (without it, traffic between containers on one
    bridge passes no iptables rule)."""
    have = support.fields()
    warnings = [text for name, text in MISSING if not have[name]]
    if config.iptables and not sysctl_on("net.bridge.bridge-nf-call-iptables", root):
        warnings.append("WARNING: bridge-nf-call-iptables is disabled")
    if not sysctl_on("net.ipv4.ip_forward", root):
        warnings.append("WARNING: IPv4 forwarding is disabled")
    return warnings


@dataclass(frozen=True)
class RuncVersion:
    version: str = ""
    commit: str = ""


def parse_runc_version(text: str) -> RuncVersion:
    """`runc --version`'s output: "runc version 1.1.5", then "commit: ..."."""
    version = commit = ""
    for line in text.splitlines():
        if line.startswith("runc version "):
            version = line.removeprefix("runc version ").strip()
        elif line.startswith("commit:"):
            commit = line.partition(":")[2].strip()
    return RuncVersion(version, commit)


def runc_version(binary: str = "runc") -> RuncVersion:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True,
                              timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return RuncVersion()
    return parse_runc_version(done.stdout)


def init_version(binary: str) -> str:
    """The init's commit as `tini --version` gives it ("tini version 0.19.0 - git.de40ad0"),
    else its version (Debian's build names no commit); "" when there is no such binary."""
    if not os.access(binary, os.X_OK):
        return ""
    try:
        text = subprocess.run([binary, "--version"], capture_output=True, text=True,
                              timeout=5, stdin=subprocess.DEVNULL).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    head, _, tail = text.partition(" - ")
    if tail.strip().startswith("git."):
        return tail.strip().removeprefix("git.")
    return head.removeprefix("tini version ").strip()


def source_commit(tree: Path | None = None) -> str:
    """The commit pouch's source tree is checked out at, read from its .git folder
    (no git command); "" for an installed copy without one."""
    tree = tree or Path(__file__).resolve().parents[1]
    git = tree / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head.removeprefix("ref: ")
        ref_file = git / ref
        if ref_file.exists():
            return ref_file.read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha[:12]
    except OSError:
        pass
    return ""


def process_load(pids: Iterable[int], root: Path = ROOT) -> tuple[int, int]:
    """Open descriptors and threads of these processes, together (a process that is
    gone, or not ours to read, counts nothing)."""
    fds = threads = 0
    for pid in pids:
        proc = root / "proc" / str(pid)
        try:
            fds += len(os.listdir(proc / "fd"))
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("Threads:"):
                    threads += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return fds, threads


SWARM_INACTIVE: dict[str, Any] = {
    "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
    "Error": "", "RemoteManagers": None}
