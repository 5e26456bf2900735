"""docker update: what an update body changes in a container's HostConfig, checked as
dockerd checks it, and the cgroup limits that follow for the task and its spec.

Pure: the worker applies the plan (containerd's task Update, the stored spec, the
record). A limit the container would not get (the spec code applies it not yet) is
refused naming its field, as create refuses it: nothing is pretended.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pouch.actors.container import lifecycle as lc
from pouch.actors.container import record as rec
from pouch.actors.container.spec.defaults import discard_unsupported
from pouch.actors.container.spec.host import local_host
from pouch.actors.container.spec.resources import resources
from pouch.proto.envelope import conflict, invalid

# The limits dockerd's update changes (its Container.UpdateContainer), and their types.
# A zero or empty value means "leave it", as the docker CLI sends every field.
_INTS = ("BlkioWeight", "CpuShares", "NanoCpus", "CpuPeriod", "CpuQuota", "Memory",
         "MemorySwap", "MemoryReservation", "KernelMemory", "CpuRealtimePeriod",
         "CpuRealtimeRuntime")
_TEXTS = ("CpusetCpus", "CpusetMems")
# Given when not null (a pointer in Docker's types): 0 and below mean "no limit".
_NULLABLE = ("PidsLimit",)
UPDATABLE = (*_INTS, *_TEXTS, *_NULLABLE)
# The rest of Docker's Resources, which an update body carries too: dockerd changes none
# of them, so a value given is refused rather than dropped unsaid.
FIXED = ("CgroupParent", "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
         "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "Devices", "DeviceCgroupRules",
         "DeviceRequests", "KernelMemoryTCP", "MemorySwappiness", "OomKillDisable", "Init",
         "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth")
# The spec's cgroup sections a task update carries (devices stay as created).
_LIMITS = ("memory", "cpu", "pids", "blockIO")


@dataclass(frozen=True)
class UpdatePlan:
    host_config: dict[str, Any]  # the container's HostConfig once updated
    limits: bool  # cgroup limits changed: the task (if it lives) and its spec get them
    warnings: list[str]  # limits this machine cannot apply, discarded (as dockerd's)


def plan_update(host_config: Mapping[str, Any], body: Mapping[str, Any]) -> UpdatePlan:
    """The container's HostConfig after `body` (Docker's UpdateConfig: Resources and
    RestartPolicy). Errors: invalid (a field refused, a value out of range), conflict
    (NanoCpus against a CPU period or quota already set, as dockerd)."""
    given = _given_limits(body)
    warnings = discard_unsupported(given, local_host().cgroups())
    given = {key: value for key, value in given.items()
             if value or key not in ("BlkioWeight", "KernelMemory")}  # discarded
    for key in FIXED:
        if _set(body.get(key)):
            raise invalid(f"invalid field {key}: docker update does not change it")
    # What the spec code cannot apply yet is refused as create refuses it.
    rec.check_not_yet({"HostConfig": given})
    current = dict(host_config)
    _check_cpu(given, current)
    _check_memory(given, current)
    updated = copy.deepcopy(dict(host_config))
    updated.update(given)
    policy = body.get("RestartPolicy")
    if isinstance(policy, Mapping) and policy.get("Name"):
        checked = lc.check_restart_policy(policy)
        if host_config.get("AutoRemove") and checked["Name"] != "no":
            raise invalid("Restart policy cannot be updated because AutoRemove is enabled "
                          "for the container")
        updated["RestartPolicy"] = checked
    elif policy is not None and not isinstance(policy, Mapping):
        lc.check_restart_policy(policy)  # refuses it, naming what it must be
    if given:
        linux_resources(updated)  # the limits together are valid (spec code's checks)
    return UpdatePlan(updated, bool(given), warnings)


def linux_resources(host_config: Mapping[str, Any]) -> dict[str, Any]:
    """The OCI LinuxResources a HostConfig's limits make (devices aside): what a task
    update sends and what the container's spec keeps for its next start. Errors: invalid."""
    made = resources(host_config, [], local_host())
    return {key: made[key] for key in _LIMITS if key in made}


def with_limits(spec: Mapping[str, Any], limits: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an OCI spec whose cgroup limits are `limits` (its device rules kept)."""
    updated = copy.deepcopy(dict(spec))
    resources = updated.setdefault("linux", {}).setdefault("resources", {})
    for key in _LIMITS:
        resources.pop(key, None)
    resources.update(copy.deepcopy(dict(limits)))
    return updated


def _given_limits(body: Mapping[str, Any]) -> dict[str, Any]:
    # (fields, JSON type, whether 0 or "" means "not given", as the docker CLI sends them)
    kinds = ((_INTS, int, True), (_TEXTS, str, True), (_NULLABLE, int, False))
    given: dict[str, Any] = {}
    for keys, kind, zero_unset in kinds:
        for key in keys:
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, kind) or isinstance(value, bool):
                what = "an integer" if kind is int else "a string"
                raise invalid(f"invalid field {key}: must be {what}")
            if value or not zero_unset:
                given[key] = value
    if given.get("PidsLimit", 1) < 0:
        given["PidsLimit"] = 0  # "unlimited", as dockerd records it (the spec says -1)
    return given


def _check_cpu(given: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    # NanoCpus stands for a period and a quota: one cannot be changed over the other.
    for new, old, new_words, old_words in (
            ("NanoCpus", "CpuPeriod", "Nano CPUs", "CPU Period"),
            ("NanoCpus", "CpuQuota", "Nano CPUs", "CPU Quota"),
            ("CpuPeriod", "NanoCpus", "CPU Period", "NanoCPUs"),
            ("CpuQuota", "NanoCpus", "CPU Quota", "NanoCPUs")):
        if (given.get(new) or 0) > 0 and (current.get(old) or 0) > 0:
            raise conflict(f"Conflicting options: {new_words} cannot be updated as "
                           f"{old_words} has already been set")


def _check_memory(given: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    memory = given.get("Memory") or 0
    if not memory or "MemorySwap" in given:
        return
    # The swap limit in force: as set, or dockerd's default of twice the memory limit.
    swap = current.get("MemorySwap") or 0
    if not swap and (current.get("Memory") or 0) > 0:
        swap = 2 * current["Memory"]
    if swap > 0 and memory > swap:
        raise invalid("Memory limit should be smaller than already set memoryswap limit, "
                      "update the memoryswap at the same time")


def _set(value: Any) -> bool:
    """A value the client means: not null, zero, empty or false."""
    return value not in (None, 0, "", False) and value != [] and value != {}
