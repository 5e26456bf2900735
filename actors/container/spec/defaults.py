"""HostConfig as dockerd 20.10 records it at create (what inspect shows): the request,
with the defaults it would otherwise leave unsaid filled in, and the warnings a
create earns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pouch.actors.container.jsonlog import recorded_log_config
from pouch.actors.container.spec.host import CgroupSupport
from pouch.actors.container.spec.oci import DEFAULT_SHM_SIZE
from pouch.actors.container.spec.security import MASKED_PATHS, READONLY_PATHS


def recorded_host_config(hc: Mapping[str, Any],
                         support: CgroupSupport | None = None) -> dict[str, Any]:
    """A copy of `hc` with dockerd's defaults (its adaptContainerSettings and create)."""
    out = dict(hc)
    memory = out.get("Memory") or 0
    if memory > 0 and not out.get("MemorySwap") and (support is None or support.swap):
        out["MemorySwap"] = memory * 2  # as much swap as memory, as the spec gives it
    if not out.get("ShmSize"):
        out["ShmSize"] = DEFAULT_SHM_SIZE
    if not out.get("IpcMode"):
        out["IpcMode"] = "private"
    if not out.get("CgroupnsMode"):
        out["CgroupnsMode"] = "host"  # unless asked, as dockerd's default on cgroup v1
    if out.get("OomKillDisable") is None:
        out["OomKillDisable"] = False
    if not out.get("Privileged"):
        if out.get("MaskedPaths") is None:
            out["MaskedPaths"] = list(MASKED_PATHS)
        if out.get("ReadonlyPaths") is None:
            out["ReadonlyPaths"] = list(READONLY_PATHS)
    out["LogConfig"] = recorded_log_config(out.get("LogConfig"))
    out["Runtime"] = out.get("Runtime") or "runc"  # the one pouch runs containers with
    for deprecated in ("KernelMemory", "KernelMemoryTCP"):  # refused unless 0: shown 0
        out[deprecated] = out.get(deprecated) or 0
    # dockerd records "no pids limit" (0 or below) and "the kernel's swappiness" (-1, the
    # docker CLI's default) as unset.
    if (out.get("PidsLimit") or 0) <= 0:
        out["PidsLimit"] = None
    if out.get("MemorySwappiness") == -1:
        out["MemorySwappiness"] = None
    return out


KERNEL_MEMORY_DEPRECATED = ("Specifying a kernel memory limit is deprecated and will be "
                            "removed in a future release.")


def discard_unsupported(hc: dict[str, Any], support: CgroupSupport) -> list[str]:
    """Drop from `hc` (in place) the limits this machine cannot apply, each with dockerd's
    warning, as dockerd discards them rather than refusing the container (its
    verifyPlatformContainerResources). Kernel memory limits go always: runc 1.1 does not
    apply them whatever the kernel offers."""
    warnings = []
    if hc.get("BlkioWeight") and not support.blkio_weight:
        warnings.append("Your kernel does not support Block I/O weight or the cgroup is not "
                        "mounted. Weight discarded.")
        hc["BlkioWeight"] = 0
    if hc.get("BlkioWeightDevice") and not support.blkio_weight_device:
        warnings.append("Your kernel does not support Block I/O weight_device or the cgroup "
                        "is not mounted. Weight-device discarded.")
        hc["BlkioWeightDevice"] = []
    if hc.get("KernelMemory"):
        warnings.append(KERNEL_MEMORY_DEPRECATED)
        warnings.append("Your kernel does not support kernel memory limit capabilities or the "
                        "cgroup is not mounted. Limitation discarded." if not
                        support.kernel_memory else
                        "Kernel memory limits are not applied by runc. Limitation discarded.")
        hc["KernelMemory"] = 0
    if hc.get("KernelMemoryTCP"):
        warnings.append("Your kernel does not support kernel memory TCP limit capabilities "
                        "or the cgroup is not mounted. Limitation discarded." if not
                        support.kernel_memory_tcp else
                        "Kernel memory TCP limits are not applied by runc. Limitation "
                        "discarded.")
        hc["KernelMemoryTCP"] = 0
    return warnings


def create_warnings(hc: Mapping[str, Any]) -> list[str]:
    """What dockerd warns of at create, for a HostConfig it takes."""
    warnings = []
    if hc.get("OomKillDisable") and not hc.get("Memory"):
        warnings.append("OOM killer is disabled for the container, but no memory limit is "
                        "set, this can result in the system running out of resources.")
    return warnings
