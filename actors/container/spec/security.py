"""Security options: `--security-opt` as dockerd 20.10 parses it (the seccomp profile
itself is `seccomp`'s), and the paths of /proc and /sys a container may not see or
change (masked and read-only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pouch.actors.container.spec.fields import str_list
from pouch.actors.container.spec.seccomp import parse_profile
from pouch.proto.envelope import invalid

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware",
)  # fmt: skip
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)  # fmt: skip

# Go's strconv.ParseBool.
_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))
# What pouch can honour of the other confinement options where the kernel enforces them:
# none at all, which is what its containers get (no AppArmor profile, no SELinux label).
_UNCONFINED = {"apparmor": "unconfined", "label": "disable"}
# The security module each of those options asks for.
_MODULES = {"apparmor": "apparmor", "label": "selinux"}


@dataclass(frozen=True)
class SecurityOptions:
    no_new_privileges: bool = False
    # None: the default profile; "unconfined"; or a Docker-format profile's JSON text.
    seccomp: str | None = None


def security_options(hc: Mapping[str, Any],
                     modules: frozenset[str] = frozenset()) -> SecurityOptions:
    """Parse HostConfig.SecurityOpt as dockerd does, on a host whose kernel enforces the
    security `modules` ("apparmor", "selinux"): an option for one it does not enforce
    is ignored, as dockerd ignores it. Errors: invalid, naming the option."""
    no_new_privileges = False
    seccomp: str | None = None
    for opt in str_list(hc, "SecurityOpt"):
        if opt == "no-new-privileges":
            no_new_privileges = True
            continue
        if opt == "disable":  # dockerd's short form of label=disable
            continue
        sep = "=" if "=" in opt else ":" if ":" in opt else ""
        if not sep:
            raise invalid(f'invalid HostConfig.SecurityOpt: invalid --security-opt 1: "{opt}"')
        key, value = opt.split(sep, 1)
        if key == "no-new-privileges":
            if value not in _TRUE | _FALSE:
                raise invalid(f'invalid HostConfig.SecurityOpt: invalid --security-opt 2: "{opt}"')
            no_new_privileges = value in _TRUE
        elif key == "seccomp":
            if value != "unconfined":
                parse_profile(value)  # refused at create, as the CLI's file would be
            seccomp = value
        elif key in _UNCONFINED:
            if value != _UNCONFINED[key] and _MODULES[key] in modules:
                shown = opt if len(opt) <= 60 else opt[:60] + "..."
                raise invalid(
                    f"invalid HostConfig.SecurityOpt {shown!r}: not supported yet: containers "
                    f"run without an AppArmor profile or SELinux label; only "
                    f"{key}={_UNCONFINED[key]} is what they get"
                )
        else:
            raise invalid(f'invalid HostConfig.SecurityOpt: invalid --security-opt 2: "{opt}"')
    return SecurityOptions(no_new_privileges=no_new_privileges, seccomp=seccomp)


def masked_paths(hc: Mapping[str, Any], privileged: bool) -> tuple[list[str], list[str]]:
    """(maskedPaths, readonlyPaths): Docker's unless the request gives its own (an empty
    list unmasks everything); none at all for a privileged container."""
    out = []
    for key, default in (("MaskedPaths", MASKED_PATHS), ("ReadonlyPaths", READONLY_PATHS)):
        value = hc.get(key)
        paths = list(default) if value is None else str_list(hc, key)
        for path in paths:
            if not path.startswith("/"):
                raise invalid(f"invalid HostConfig.{key}: {path!r} is not an absolute path")
        out.append([] if privileged else paths)
    return out[0], out[1]
