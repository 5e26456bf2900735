"""What this host offers a container: the cgroup controls its kernel has, its CPUs and
memory nodes, its device nodes, and the init binary.

The spec asks the host through :class:`HostView`, so that the rules in the other
modules stay pure: a unit test hands them a view of a made-up host.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import stat
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Debian's tini package: a static build, so it runs in any image (dockerd ships
# its own build of tini as docker-init for the same reason).
INIT_BINARY = "/usr/bin/tini-static"
# The directories under /dev that hold no device of the host's own (runc's list).
_NOT_HOST_DEVICES = frozenset(("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"))


class NotADevice(Exception):
    """The path is neither a device node nor a directory holding some."""


@dataclass(frozen=True)
class DeviceNode:
    """A device node of the host, and where the container sees it."""

    path: str  # in the container
    type: str  # "c" or "b"
    major: int
    minor: int
    file_mode: int  # permission bits
    uid: int
    gid: int


@dataclass(frozen=True)
class CgroupSupport:
    """Which cgroup controls the kernel gives containers (dockerd's sysinfo)."""

    memory: bool = True
    swap: bool = True
    reservation: bool = True
    swappiness: bool = True
    oom_kill_disable: bool = True
    cpu_shares: bool = True
    cpu_cfs: bool = True
    cpuset: bool = True
    pids: bool = True
    blkio_weight: bool = True
    blkio_weight_device: bool = True
    blkio_throttle: bool = True
    kernel_memory: bool = True
    kernel_memory_tcp: bool = True


class HostView(Protocol):
    """The host, as the spec asks about it."""

    def cgroups(self) -> CgroupSupport: ...

    def cpu_count(self) -> int: ...

    def cpuset_cpus(self) -> str:
        """The CPUs a container may be pinned to, as a cpuset list ("0-3")."""
        ...

    def cpuset_mems(self) -> str: ...

    def init_binary(self) -> str | None:
        """The host path of the init run by `--init`, if this host has one."""
        ...

    def has_dev_shm(self) -> bool: ...

    def has_seccomp(self) -> bool:
        """Whether the kernel filters system calls (seccomp)."""
        ...

    def serves_x32(self) -> bool:
        """Whether the kernel answers the system calls of x32 programs (x86_64 only)."""
        ...

    def security_modules(self) -> frozenset[str]:
        """The security modules the kernel enforces, of "apparmor" and "selinux"."""
        ...

    def devices_at(self, path_on_host: str, path_in_container: str) -> list[DeviceNode]:
        """The device at a host path, or every device in a directory there (recursively),
        each named where the container sees it. Errors: OSError, NotADevice."""
        ...

    def host_devices(self) -> list[DeviceNode]:
        """Every device node of the host's /dev, for a privileged container."""
        ...

    def block_device(self, path: str) -> tuple[int, int]:
        """The major and minor numbers of the block device at `path` (symlinks followed).
        Errors: OSError, NotADevice."""
        ...


class LocalHost:
    """This machine."""

    def cgroups(self) -> CgroupSupport:
        return _cgroup_support()

    def cpu_count(self) -> int:
        return os.cpu_count() or 1

    def cpuset_cpus(self) -> str:
        return _cpuset_file("cpus") or f"0-{self.cpu_count() - 1}"

    def cpuset_mems(self) -> str:
        return _cpuset_file("mems") or "0"

    def init_binary(self) -> str | None:
        return INIT_BINARY if os.access(INIT_BINARY, os.X_OK) else None

    def has_dev_shm(self) -> bool:
        return os.path.isdir("/dev/shm")

    def has_seccomp(self) -> bool:
        return _seccomp_in_kernel()

    def serves_x32(self) -> bool:
        return _x32_served()

    def security_modules(self) -> frozenset[str]:
        return _security_modules()

    def devices_at(self, path_on_host: str, path_in_container: str) -> list[DeviceNode]:
        resolved = os.path.realpath(path_on_host)
        try:
            return [device_from_path(resolved, path_in_container)]
        except NotADevice:
            if not os.path.isdir(resolved):
                raise
        found = []
        for folder, _dirs, files in os.walk(resolved):
            for name in sorted(files):
                path = os.path.join(folder, name)
                inside = path_in_container + path[len(resolved):]
                try:
                    found.append(device_from_path(path, inside))
                except (NotADevice, OSError):
                    continue
        if not found:
            raise NotADevice("not a device node")
        return found

    def host_devices(self) -> list[DeviceNode]:
        return _devices_under("/dev")

    def block_device(self, path: str) -> tuple[int, int]:
        st = os.stat(path)
        if not stat.S_ISBLK(st.st_mode):
            raise NotADevice("not a block device")
        return os.major(st.st_rdev), os.minor(st.st_rdev)


def device_from_path(path: str, path_in_container: str) -> DeviceNode:
    """The device node at `path` (not following a final symlink, as runc does)."""
    st = os.lstat(path)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise NotADevice("not a device node")
    return DeviceNode(path=path_in_container, type=kind, major=os.major(st.st_rdev),
                      minor=os.minor(st.st_rdev), file_mode=stat.S_IMODE(st.st_mode),
                      uid=st.st_uid, gid=st.st_gid)


def _devices_under(folder: str) -> list[DeviceNode]:
    """runc's GetDevices: the device nodes under `folder`, not following symlinks."""
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in _NOT_HOST_DEVICES:
                found += _devices_under(entry.path)
            continue
        if entry.name == "console":  # the container gets a console of its own
            continue
        try:
            found.append(device_from_path(entry.path, entry.path))
        except (NotADevice, OSError):
            continue
    return found


def _cpuset_file(name: str) -> str:
    for path in (CGROUP_ROOT / "cpuset" / f"cpuset.{name}",
                 CGROUP_ROOT / f"cpuset.{name}.effective"):
        try:
            return path.read_text().strip()
        except OSError:
            continue
    return ""


def read_cgroup_support(root: Path = Path("/")) -> CgroupSupport:
    """The controls of the host whose file systems are seen under `root` (a test's
    made-up host; /info reads it too)."""
    base = root / "sys/fs/cgroup"
    if (base / "cgroup.controllers").is_file():  # cgroup v2 alone: runc uses its files
        try:
            controllers = set((base / "cgroup.controllers").read_text().split())
        except OSError:
            controllers = set()
        memory, io = "memory" in controllers, "io" in controllers
        cpu = "cpu" in controllers
        return CgroupSupport(
            memory=memory, swap=memory and _v2_swap(root), reservation=memory,
            swappiness=False, oom_kill_disable=False, cpu_shares=cpu, cpu_cfs=cpu,
            cpuset="cpuset" in controllers, pids="pids" in controllers, blkio_weight=io,
            blkio_weight_device=io, blkio_throttle=io, kernel_memory=False,
            kernel_memory_tcp=False)

    def has(controller: str, *files: str) -> bool:
        return any((base / controller / f).exists() for f in files)

    return CgroupSupport(
        memory=has("memory", "memory.limit_in_bytes"),
        swap=has("memory", "memory.memsw.limit_in_bytes"),
        reservation=has("memory", "memory.soft_limit_in_bytes"),
        swappiness=has("memory", "memory.swappiness"),
        oom_kill_disable=has("memory", "memory.oom_control"),
        cpu_shares=has("cpu", "cpu.shares"),
        cpu_cfs=has("cpu", "cpu.cfs_quota_us"),
        cpuset=has("cpuset", "cpuset.cpus"),
        pids=(base / "pids").is_dir(),
        blkio_weight=has("blkio", "blkio.weight", "blkio.bfq.weight"),
        blkio_weight_device=has("blkio", "blkio.weight_device", "blkio.bfq.weight_device"),
        blkio_throttle=has("blkio", "blkio.throttle.read_bps_device"),
        kernel_memory=has("memory", "memory.kmem.limit_in_bytes"),
        kernel_memory_tcp=has("memory", "memory.kmem.tcp.limit_in_bytes"))


def _v2_swap(root: Path) -> bool:
    """Whether this process's own cgroup (v2) has a swap limit file: the kernel's
    swap accounting, which the root cgroup does not show."""
    try:
        line = next(x for x in (root / "proc/self/cgroup").read_text().splitlines()
                    if x.startswith("0::"))
    except (OSError, StopIteration):
        return False
    own = root / "sys/fs/cgroup" / line[3:].lstrip("/")
    return any((folder / "memory.swap.max").exists() for folder in (own, own.parent))


@cache
def _cgroup_support() -> CgroupSupport:
    """Read once per process: the kernel's cgroup controls do not change while it runs."""
    return read_cgroup_support()


@cache
def _seccomp_in_kernel() -> bool:
    try:
        with open("/proc/self/status") as status:
            return any(line.startswith("Seccomp:") for line in status)
    except OSError:
        return False


@cache
def _security_modules() -> frozenset[str]:
    found = set()
    with contextlib.suppress(OSError):
        if Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y":
            found.add("apparmor")
    if Path("/sys/fs/selinux/enforce").exists():
        found.add("selinux")
    return frozenset(found)


# x86_64's number of getpid(2), shared by the x32 ABI, whose calls carry this bit.
_SYS_GETPID = 39
_X32_SYSCALL_BIT = 0x40000000


@cache
def _x32_served() -> bool:
    """Most distributions' kernels, Debian's among them, build the x32 ABI in but refuse
    its calls (ENOSYS) unless booted with syscall.x32=y: asked with a harmless one.
    Any other answer counts as served (EPERM: a filter around pouchd hides the kernel's)."""
    if platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    answered = libc.syscall(_X32_SYSCALL_BIT | _SYS_GETPID)
    return answered != -1 or ctypes.get_errno() != errno.ENOSYS


@cache
def local_host() -> LocalHost:
    return LocalHost()
