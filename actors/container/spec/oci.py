"""The OCI spec itself: process, capabilities, rlimits, mounts, sysctls, and the init.

The other concerns have modules of their own: `namespaces`, `resources` (cgroup
limits), `devices`, `security` (security options, masked paths); `host` is what
they ask of the machine.
"""

from __future__ import annotations

import functools
import posixpath
import re
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pouch.actors.container import pause
from pouch.actors.container.spec.devices import default_rules, devices
from pouch.actors.container.spec.fields import bool_field as _bool
from pouch.actors.container.spec.fields import int_field as _int
from pouch.actors.container.spec.fields import str_list as _str_list
from pouch.actors.container.spec.fields import unique as _unique
from pouch.actors.container.spec.host import HostView, local_host
from pouch.actors.container.spec.merge import Process, clean_abs
from pouch.actors.container.spec.mounts import Planned, bind_mount, rootfs_propagation
from pouch.actors.container.spec.namespaces import Namespaces, namespaces
from pouch.actors.container.spec.resources import MIN_MEMORY, resources
from pouch.actors.container.spec.seccomp import default_oci, oci_seccomp, parse_profile
from pouch.actors.container.spec.security import (
    MASKED_PATHS,
    READONLY_PATHS,
    masked_paths,
    security_options,
)
from pouch.actors.container.spec.user import User
from pouch.proto.envelope import invalid

__all__ = [
    "ALL_CAPABILITIES", "DEFAULT_CAPABILITIES", "DEFAULT_SHM_SIZE", "MASKED_PATHS", "MIN_MEMORY",
    "READONLY_PATHS", "RLIM_INFINITY", "SpecInput", "build_spec", "clamp_oom_score_adj",
    "grantable_capabilities", "nofile_ceiling",
]  # fmt: skip

OCI_VERSION = "1.0.2-dev"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
# dockerd sets no rlimit itself: its containers inherit the shim's, which is
# 1048576 under docker.service (LimitNOFILE=infinity). We say it explicitly.
DEFAULT_NOFILE = 1048576
RLIM_INFINITY = 2**64 - 1
# Where `--init` puts its init in the container, and how it runs the command (dockerd's).
INIT_PATH = "/sbin/docker-init"

# The kernel's capabilities in number order (include/uapi/linux/capability.h,
# up to CAP_CHECKPOINT_RESTORE = 40). Written out rather than read from the
# host so that a spec does not depend on where it was built.
ALL_CAPABILITIES: tuple[str, ...] = tuple(
    "CAP_" + name
    for name in (
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
        "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
        "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
        "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
        "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
        "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    )
)  # fmt: skip

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip

_RLIMITS = frozenset(
    ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
     "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
)  # fmt: skip

# Sysctls runc accepts only with a private IPC namespace.
_IPC_SYSCTLS = frozenset(
    ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
     "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
)  # fmt: skip

_CONTAINER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class SpecInput:
    """Everything :func:`build_spec` needs, resolved by the caller.

    ``grantable_caps`` and ``nofile_ceiling`` describe the daemon, not the
    request: a runtime cannot hand a container a capability missing from its
    own bounding set, nor raise RLIMIT_NOFILE's hard limit above its own
    without CAP_SYS_RESOURCE. Left None, the spec asks for Docker's values.
    ``host`` answers what the machine has (cgroup controls, CPUs, devices, the
    init); left None, it is this machine. ``mounts``: the container's binds, volumes
    (their host paths known) and `--mount` tmpfs (``pouch.actors.container.spec.mounts``).
    """

    container_id: str
    process: Process
    user: User
    hostname: str
    network_mode: str
    netns_path: str | None
    hosts_path: str
    resolv_conf_path: str
    hostname_path: str
    cgroup_parent: str
    host_config: dict
    labels: dict[str, str]
    grantable_caps: frozenset[str] | None = None
    nofile_ceiling: int | None = None
    host: HostView | None = None
    mounts: tuple[Planned, ...] = ()
    domainname: str = ""  # Config.Domainname: the NIS domain name of its UTS namespace


@functools.cache
def grantable_capabilities() -> frozenset[str]:
    """The capabilities this process can hand on: its own bounding set (read once: a
    bounding set never grows, and nothing in pouch shrinks its own)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return frozenset(c for i, c in enumerate(ALL_CAPABILITIES) if mask >> i & 1)
    return frozenset(ALL_CAPABILITIES)


def nofile_ceiling() -> int:
    """The highest RLIMIT_NOFILE a container can get from this process."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def clamp_oom_score_adj(value: int) -> int:
    """The oom_score_adj a container can get here: lowering it below 0 needs
    CAP_SYS_RESOURCE, which the daemon may not hold. Callers warn when it differs."""
    return max(0, value)


def build_spec(inp: SpecInput) -> dict:
    """The OCI runtime spec (a JSON-ready dict) for one container.
    Errors: invalid, naming the HostConfig field at fault."""
    hc = inp.host_config or {}
    host = inp.host or local_host()
    if not _CONTAINER_ID_RE.fullmatch(inp.container_id or ""):
        raise invalid(f"invalid container id {inp.container_id!r}")
    privileged = _bool(hc, "Privileged")
    readonly_rootfs = _bool(hc, "ReadonlyRootfs")
    ns = namespaces(hc, inp.network_mode, inp.netns_path)
    security = security_options(hc, host.security_modules())
    init = _init_binary(hc, host)

    args = list(inp.process.args)
    if init:
        # tini reaps the zombies and forwards the signals; "--" ends its own options.
        args = [INIT_PATH, "--", *args]
    capabilities = _capabilities(hc, privileged, inp.user.uid, inp.grantable_caps)
    process: dict[str, Any] = {
        "terminal": inp.process.tty,
        "user": {
            "uid": inp.user.uid,
            "gid": inp.user.gid,
            # The primary gid is repeated among the supplementary ones so that
            # dropping it cannot bypass a group's negative permissions
            # (CVE-2022-36109, fixed so in dockerd 20.10.18).
            "additionalGids": _unique([inp.user.gid, *inp.user.additional_gids]),
        },
        "args": args,
        "env": list(inp.process.env),
        "cwd": inp.process.cwd,
        "capabilities": capabilities,
        "rlimits": _rlimits(hc, inp.nofile_ceiling),
        "noNewPrivileges": security.no_new_privileges,
    }
    if hc.get("OomScoreAdj") is not None:
        score = _int(hc, "OomScoreAdj")
        if not -1000 <= score <= 1000:
            raise invalid(
                f"invalid HostConfig.OomScoreAdj {score}: range for oom score adj is [-1000, 1000]"
            )
        process["oomScoreAdj"] = clamp_oom_score_adj(score)

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs", "readonly": readonly_rootfs},
    }
    if inp.hostname and not ns.host_network and not ns.host_uts:
        spec["hostname"] = inp.hostname
    spec["mounts"] = _mounts(inp, hc, ns, host, init, privileged, readonly_rootfs)

    nodes, device_rules = devices(hc, privileged, host)
    masked, readonly = masked_paths(hc, privileged)
    linux: dict[str, Any] = {
        "namespaces": ns.entries,
        "cgroupsPath": _cgroups_path(inp.cgroup_parent, inp.container_id),
        "resources": resources(hc, device_rules, host),
        "sysctl": _sysctls(hc, ns, inp.domainname),
        "devices": nodes,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
    }
    # dockerd's rule: a privileged container, or one that asks, runs unfiltered; so do
    # all on a kernel without seccomp, where asking for a profile is an error.
    if not privileged and security.seccomp != "unconfined":
        if not host.has_seccomp():
            if security.seccomp is not None:
                raise invalid("invalid HostConfig.SecurityOpt: seccomp profiles are not "
                              "supported: this kernel has no seccomp")
        else:
            linux["seccomp"] = default_oci(frozenset(capabilities["bounding"]),
                                           host.serves_x32()) \
                if security.seccomp is None else \
                oci_seccomp(parse_profile(security.seccomp), capabilities["bounding"])
    if propagation := rootfs_propagation(inp.mounts):
        linux["rootfsPropagation"] = propagation
    spec["linux"] = linux
    if inp.labels:
        spec["annotations"] = dict(inp.labels)
    return spec


def _init_binary(hc: Mapping[str, Any], host: HostView) -> str | None:
    """The host path of the init to run first, if `--init` asked for one."""
    if not _bool(hc, "Init"):
        return None
    binary = host.init_binary()
    if binary is None:
        raise invalid("invalid HostConfig.Init: this host has no init to run "
                      "(/usr/bin/tini-static, from Debian's tini package)")
    return binary


# -- capabilities ----------------------------------------------------------


def _normalize_caps(names: list[str], field: str) -> list[str]:
    out = []
    for name in names:
        upper = name.upper()
        if upper != "ALL":
            if not upper.startswith("CAP_"):
                upper = "CAP_" + upper
            if upper not in ALL_CAPABILITIES:
                raise invalid(f'invalid HostConfig.{field}: unknown capability: "{upper}"')
        out.append(upper)
    return out


def _capabilities(
    hc: Mapping[str, Any], privileged: bool, uid: int, grantable: frozenset[str] | None
) -> dict[str, list[str]]:
    cap_add = _normalize_caps(_str_list(hc, "CapAdd"), "CapAdd")
    cap_drop = _normalize_caps(_str_list(hc, "CapDrop"), "CapDrop")
    if grantable is not None:
        for cap in cap_add:
            if cap != "ALL" and cap not in grantable:
                raise invalid(
                    f"invalid HostConfig.CapAdd: capability {cap} is not available to this daemon"
                )
    everything = [c for c in ALL_CAPABILITIES if grantable is None or c in grantable]
    if privileged:
        caps = everything
    elif "ALL" in cap_add:
        caps = [c for c in everything if c not in cap_drop]
    elif "ALL" in cap_drop:
        caps = [c for c in cap_add if c != "ALL"]
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in cap_drop] + cap_add
    caps = _unique(caps)
    if grantable is not None:
        caps = [c for c in caps if c in grantable]
    # A non-root process loses its effective and permitted sets at execve;
    # dockerd starts it that way, keeping only the bounding set.
    held = caps if uid == 0 else []
    return {"bounding": caps, "effective": list(held), "permitted": list(held)}


# -- rlimits ---------------------------------------------------------------


def _rlimits(hc: Mapping[str, Any], nofile_ceiling: int | None) -> list[dict[str, Any]]:
    nofile = DEFAULT_NOFILE if nofile_ceiling is None else min(DEFAULT_NOFILE, nofile_ceiling)
    limits: dict[str, dict[str, Any]] = {
        "RLIMIT_NOFILE": {"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}
    }
    ulimits = hc.get("Ulimits") or []
    if not isinstance(ulimits, list):
        raise invalid("invalid HostConfig.Ulimits: must be a list")
    for ul in ulimits:
        if not isinstance(ul, dict) or not isinstance(ul.get("Name"), str):
            raise invalid(f"invalid HostConfig.Ulimits entry {ul!r}")
        name = ul["Name"].lower()
        if name not in _RLIMITS:
            raise invalid(f"invalid HostConfig.Ulimits: unknown ulimit {ul['Name']!r}")
        soft = _ulimit_value(ul, "Soft")
        hard = _ulimit_value(ul, "Hard")
        if soft > hard:
            raise invalid(
                f"invalid HostConfig.Ulimits {name}: soft limit {soft} is above hard limit {hard}"
            )
        kind = "RLIMIT_" + name.upper()
        limits[kind] = {"type": kind, "hard": hard, "soft": soft}
    return list(limits.values())


def _ulimit_value(ul: Mapping[str, Any], key: str) -> int:
    value = _int(ul, key)
    # Docker casts to uint64, so -1 is RLIM_INFINITY ("unlimited").
    if value == -1:
        return RLIM_INFINITY
    if value < 0:
        raise invalid(f"invalid HostConfig.Ulimits {ul['Name']}: {key} {value} is negative")
    return value


# -- mounts ----------------------------------------------------------------


def _mounts(
    inp: SpecInput, hc: Mapping[str, Any], ns: Namespaces, host: HostView, init: str | None,
    privileged: bool, readonly_rootfs: bool,
) -> list[dict[str, Any]]:
    shm_size = _int(hc, "ShmSize")
    if shm_size < 0:
        raise invalid(f"invalid HostConfig.ShmSize {shm_size}: SHM size can not be less than 0")
    shm_size = shm_size or DEFAULT_SHM_SIZE
    defaults: list[dict[str, Any]] = [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts",
               ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["ro", "nosuid", "noexec", "nodev"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
    ]  # fmt: skip
    if ns.host_ipc:
        # The host's IPC namespace comes with the host's POSIX shared memory.
        if not host.has_dev_shm():
            raise invalid("invalid HostConfig.IpcMode host: /dev/shm is not mounted, but must "
                          "be for --ipc=host")
        defaults.append(_mount("/dev/shm", "bind", "/dev/shm", ["rbind", "rprivate"]))
    elif ns.shm:
        defaults.append(_mount("/dev/shm", "tmpfs", "shm",
                               ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]))

    bind_opts = ["rbind", "ro", "rprivate"] if readonly_rootfs else ["rbind", "rprivate"]
    added = [
        _mount("/etc/resolv.conf", "bind", inp.resolv_conf_path, bind_opts),
        _mount("/etc/hostname", "bind", inp.hostname_path, bind_opts),
        _mount("/etc/hosts", "bind", inp.hosts_path, bind_opts),
    ]
    if init:
        added.append(_mount(INIT_PATH, "bind", init, ["bind", "ro"]))
    tmpfs = _tmpfs_mounts(hc, [(m.destination, m.tmpfs_options)
                               for m in inp.mounts if m.type == "tmpfs"])
    own = tmpfs + [bind_mount(m) for m in inp.mounts if m.type != "tmpfs"]
    own_targets = {m["destination"] for m in own}
    added = [m for m in added if m["destination"] not in own_targets] + own
    # Parents before children, as dockerd sorts its own mounts (stable, by depth;
    # every destination is a clean absolute path, so its slashes count its depth).
    added.sort(key=lambda m: m["destination"].count("/"))

    # A mount the caller adds replaces a default one at the same place; a /dev
    # of its own replaces everything Docker would put under /dev.
    targets = {m["destination"] for m in added}
    defaults = [
        m
        for m in defaults
        if m["destination"] not in targets
        and not ("/dev" in targets and m["destination"].startswith("/dev/"))
    ]
    if readonly_rootfs:
        for m in defaults:
            exempt = m["destination"] in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue")
            if not exempt and "ro" not in m["options"]:
                m["options"].append("ro")
    if privileged:
        for m in defaults:
            if m["destination"] == "/sys" or m["type"] == "cgroup":
                m["options"] = [o for o in m["options"] if o != "ro"]
    if pause.is_pause(inp.labels):
        return [m for m in defaults + added if m["destination"] not in pause.UNMOUNTED]
    return defaults + added


def _mount(destination: str, kind: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": list(options)}


# mount(8) flags Docker accepts among tmpfs options, by what they set: of two
# options setting the same thing, the later one wins.
_TMPFS_FLAG_GROUPS: dict[str, str] = {
    **{o: "ro" for o in ("ro", "rw")},
    **{o: "suid" for o in ("suid", "nosuid")},
    **{o: "dev" for o in ("dev", "nodev")},
    **{o: "exec" for o in ("exec", "noexec")},
    **{o: "sync" for o in ("sync", "async")},
    **{o: "mand" for o in ("mand", "nomand")},
    **{o: "atime" for o in ("atime", "noatime")},
    **{o: "diratime" for o in ("diratime", "nodiratime")},
    **{o: "relatime" for o in ("relatime", "norelatime")},
    **{o: "strictatime" for o in ("strictatime", "nostrictatime")},
    "dirsync": "dirsync",
    "remount": "remount",
    "bind": "bind",
    "rbind": "rbind",
    **{
        o: "propagation"
        for o in ("private", "rprivate", "shared", "rshared", "slave", "rslave",
                  "unbindable", "runbindable")
    },
}  # fmt: skip
_TMPFS_DATA_KEYS = frozenset(("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"))


def _tmpfs_mounts(hc: Mapping[str, Any],
                  more: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """HostConfig.Tmpfs, and `more` (--mount type=tmpfs: destination, data) beside it."""
    tmpfs = hc.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise invalid("invalid HostConfig.Tmpfs: must be a map of path to options")
    out = []
    for target, data in [*tmpfs.items(), *(more or [])]:
        if not isinstance(target, str) or not target.startswith("/"):
            raise invalid(
                f'invalid HostConfig.Tmpfs: invalid mount config for type "tmpfs": '
                f"invalid mount path: '{target}' mount path must be absolute"
            )
        destination = clean_abs(target)
        if destination == "/":
            raise invalid("invalid HostConfig.Tmpfs: destination can't be '/'")
        if not isinstance(data, str):
            raise invalid(f"invalid HostConfig.Tmpfs options for {target}: must be a string")
        options = ["noexec", "nosuid", "nodev", "rprivate"]
        options += [o for o in data.split(",") if o] if data else []
        out.append(_mount(destination, "tmpfs", "tmpfs", _merge_tmpfs_options(options, target)))
    return out


def _merge_tmpfs_options(options: list[str], target: str) -> list[str]:
    seen: set[str] = set()
    merged: list[str] = []
    for option in reversed(options):
        if option == "defaults":
            continue
        key = _TMPFS_FLAG_GROUPS.get(option)
        if key is None:
            name, sep, _ = option.partition("=")
            if not sep or name not in _TMPFS_DATA_KEYS:
                raise invalid(
                    f'invalid HostConfig.Tmpfs: invalid tmpfs option "{option}" for {target}'
                )
            key = "=" + name
        if key not in seen:
            seen.add(key)
            merged.append(option)
    merged.reverse()
    return merged


# -- cgroups ---------------------------------------------------------------


def _cgroups_path(parent: str, container_id: str) -> str:
    # Always absolute: a relative path would land under containerd's own cgroup.
    return clean_abs(posixpath.join("/", parent or "/", container_id))


def _resources(hc: Mapping[str, Any], privileged: bool,
               host: HostView | None = None) -> dict[str, Any]:
    """`linux.resources` of a HostConfig with Docker's default device rules (the devices
    of `--device` aside): the limits `docker update` applies. Errors: invalid."""
    rules = [{"allow": True, "access": "rwm"}] if privileged else default_rules()
    return resources(hc, rules, host or local_host())


# -- sysctls ---------------------------------------------------------------


def _sysctls(hc: Mapping[str, Any], ns: Namespaces, domainname: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if domainname and not ns.host_network and not ns.host_uts:
        # runc 1.1 has no spec field for it: set as dockerd sets it, by the sysctl that
        # does what setdomainname(2) does (a --sysctl of it wins).
        out["kernel.domainname"] = domainname
    if ns.private_network:
        # dockerd's defaults in a network namespace of the container's own:
        # ping without CAP_NET_RAW, low ports without CAP_NET_BIND_SERVICE.
        out["net.ipv4.ping_group_range"] = "0 2147483647"
        out["net.ipv4.ip_unprivileged_port_start"] = "0"
    sysctls = hc.get("Sysctls") or {}
    if not isinstance(sysctls, dict):
        raise invalid("invalid HostConfig.Sysctls: must be a map of names to values")
    for key, value in sysctls.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise invalid(f"invalid HostConfig.Sysctls entry {key!r}: names and values are strings")
        # runc's rules: only sysctls scoped to a namespace the container owns.
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            shared = "IPC" if ns.host_ipc else ""
        elif key.startswith("net."):
            shared = "network" if ns.host_network else ""
        elif key == "kernel.domainname":
            shared = "UTS" if ns.host_uts else ""
        elif key == "kernel.hostname":
            raise invalid(
                'invalid HostConfig.Sysctls: sysctl "kernel.hostname" is not allowed '
                "as it conflicts with the container's hostname"
            )
        else:
            raise invalid(
                f'invalid HostConfig.Sysctls: sysctl "{key}" is not in a separate kernel namespace'
            )
        if shared:
            raise invalid(
                f'invalid HostConfig.Sysctls: sysctl "{key}" is not allowed in the host\'s '
                f"{shared} namespace"
            )
        out[key] = value
    return out
