"""A container's cgroup limits (`linux.resources`): memory, CPU, pids and block IO, as
dockerd 20.10 validates and applies them.

Where dockerd warns that the kernel lacks a control and drops the value, the
container is refused instead, naming the field and why: it would not get it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pouch.actors.container.spec.fields import dict_list, int_field, str_field
from pouch.actors.container.spec.host import CgroupSupport, HostView, NotADevice
from pouch.proto.envelope import invalid

MIN_MEMORY = 6 * 1024 * 1024
# What the kernel takes for cpu.shares (dockerd's linuxMinCPUShares, linuxMaxCPUShares).
MIN_CPU_SHARES, MAX_CPU_SHARES = 2, 262144
CFS_PERIOD = 100000  # µs: the period --cpus is counted in
MIN_NANO_CPUS = 10_000_000  # 0.01 CPU: a quota of 1 ms per 100 ms, the kernel's least
MIN_BLKIO_WEIGHT, MAX_BLKIO_WEIGHT = 10, 1000

_CPUSET_RE = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")

# HostConfig field -> the OCI blockIO list it fills.
_THROTTLES = {
    "BlkioDeviceReadBps": ("throttleReadBpsDevice", "Rate"),
    "BlkioDeviceWriteBps": ("throttleWriteBpsDevice", "Rate"),
    "BlkioDeviceReadIOps": ("throttleReadIOPSDevice", "Rate"),
    "BlkioDeviceWriteIOps": ("throttleWriteIOPSDevice", "Rate"),
}


def resources(hc: Mapping[str, Any], device_rules: list[dict[str, Any]],
              host: HostView) -> dict[str, Any]:
    """`linux.resources`: the device rules (see devices.py), then the limits asked for.
    Errors: invalid, naming the HostConfig field."""
    support = host.cgroups()
    out: dict[str, Any] = {"devices": device_rules}
    memory = _memory(hc, support)
    if memory:
        out["memory"] = memory
    cpu = _cpu(hc, support, host)
    if cpu:
        out["cpu"] = cpu
    if hc.get("PidsLimit") is not None:
        pids = int_field(hc, "PidsLimit")
        if pids > 0 and not support.pids:
            raise _unsupported("PidsLimit", "pids limits")
        # The API takes 0 and negatives for "unlimited"; the spec says -1.
        out["pids"] = {"limit": pids if pids > 0 else -1}
    block_io = _block_io(hc, support, host)
    if block_io:
        out["blockIO"] = block_io
    return out


def _unsupported(field: str, what: str) -> Exception:
    return invalid(f"invalid HostConfig.{field}: this kernel does not support {what} "
                   "(or its cgroup is not mounted); the container would not get it")


# -- memory ------------------------------------------------------------------


def _memory(hc: Mapping[str, Any], support: CgroupSupport) -> dict[str, Any]:
    memory = int_field(hc, "Memory")
    swap = int_field(hc, "MemorySwap")
    reservation = int_field(hc, "MemoryReservation")
    if memory < 0:
        raise invalid(f"invalid HostConfig.Memory {memory}: must not be negative")
    if 0 < memory < MIN_MEMORY:
        raise invalid(f"invalid HostConfig.Memory {memory}: minimum memory limit allowed is 6MB")
    if swap < -1:
        raise invalid(f"invalid HostConfig.MemorySwap {swap}: must be -1 (unlimited) or more")
    if swap > 0 and memory == 0:
        raise invalid(
            "invalid HostConfig.MemorySwap: you should always set the Memory limit "
            "when using Memoryswap limit"
        )
    if swap > 0 and swap < memory:
        raise invalid(
            f"invalid HostConfig.MemorySwap {swap}: minimum memoryswap limit should be "
            "larger than memory limit"
        )
    if reservation < 0 or 0 < reservation < MIN_MEMORY:
        raise invalid(
            f"invalid HostConfig.MemoryReservation {reservation}: "
            "minimum memory reservation allowed is 6MB"
        )
    if memory > 0 and reservation > memory:
        raise invalid(
            f"invalid HostConfig.MemoryReservation {reservation}: minimum memory limit "
            "can not be less than memory reservation limit"
        )
    if memory > 0 and not support.memory:
        raise _unsupported("Memory", "memory limits")
    if swap > 0 and not support.swap:
        raise _unsupported("MemorySwap", "swap limits")
    if reservation > 0 and not support.reservation:
        raise _unsupported("MemoryReservation", "memory reservations")
    out: dict[str, Any] = {}
    if memory > 0:
        out["limit"] = memory
        # dockerd's default: as much swap as memory (memory+swap = 2 x memory), where
        # the kernel counts swap at all.
        if support.swap:
            out["swap"] = swap if swap != 0 else memory * 2
    elif swap == -1 and support.swap:
        out["swap"] = -1
    if reservation > 0:
        out["reservation"] = reservation
    if hc.get("MemorySwappiness") is not None:
        swappiness = int_field(hc, "MemorySwappiness")
        if swappiness != -1:
            if not 0 <= swappiness <= 100:
                raise invalid(
                    f"invalid HostConfig.MemorySwappiness {swappiness}: "
                    "valid memory swappiness range is 0-100"
                )
            if not support.swappiness:
                raise _unsupported("MemorySwappiness", "memory swappiness")
            out["swappiness"] = swappiness
    if hc.get("OomKillDisable") is not None:
        disable = hc["OomKillDisable"]
        if not isinstance(disable, bool):
            raise invalid(f"invalid HostConfig.OomKillDisable {disable!r}: must be true or false")
        if disable and not support.oom_kill_disable:
            raise _unsupported("OomKillDisable", "disabling the OOM killer")
        out["disableOOMKiller"] = disable
    return out


# -- cpu ---------------------------------------------------------------------


def _cpu(hc: Mapping[str, Any], support: CgroupSupport, host: HostView) -> dict[str, Any]:
    shares = int_field(hc, "CpuShares")
    period = int_field(hc, "CpuPeriod")
    quota = int_field(hc, "CpuQuota")
    nano = int_field(hc, "NanoCpus")
    if shares < 0:
        raise invalid(f"invalid HostConfig.CpuShares {shares}: must not be negative")
    if 0 < shares < MIN_CPU_SHARES or shares > MAX_CPU_SHARES:
        raise invalid(f"invalid HostConfig.CpuShares {shares}: the kernel takes cpu shares "
                      f"from {MIN_CPU_SHARES} to {MAX_CPU_SHARES}")
    if period != 0 and not 1000 <= period <= 1000000:
        raise invalid(
            f"invalid HostConfig.CpuPeriod {period}: CPU cfs period can not be less than "
            "1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if quota > 0 and quota < 1000:
        raise invalid(
            f"invalid HostConfig.CpuQuota {quota}: CPU cfs quota can not be less than "
            "1ms (i.e. 1000)"
        )
    if quota < -1:
        raise invalid(f"invalid HostConfig.CpuQuota {quota}: must be -1 (unlimited) or more")
    if nano > 0 and (period > 0 or quota > 0):
        raise invalid(
            "invalid HostConfig.NanoCpus: conflicting options: Nano CPUs cannot be set "
            "together with CPU Period or CPU Quota"
        )
    cpus = host.cpu_count()
    if nano < 0 or 0 < nano < MIN_NANO_CPUS or nano > cpus * 1_000_000_000:
        raise invalid(f"invalid HostConfig.NanoCpus {nano}: Range of CPUs is from 0.01 to "
                      f"{cpus}.00, as there are only {cpus} CPUs available")
    if shares and not support.cpu_shares:
        raise _unsupported("CpuShares", "CPU shares")
    for key, value in (("NanoCpus", nano), ("CpuPeriod", period), ("CpuQuota", quota)):
        if value and not support.cpu_cfs:
            raise _unsupported(key, "the CPU CFS scheduler's quotas")
    out: dict[str, Any] = {}
    if shares > 0:
        out["shares"] = shares
    if nano > 0:
        out["period"] = CFS_PERIOD
        out["quota"] = nano * CFS_PERIOD // 1_000_000_000
    if period:
        out["period"] = period
    if quota:
        out["quota"] = quota
    for key, spec_key, what in (("CpusetCpus", "cpus", "CPUs"),
                                ("CpusetMems", "mems", "memory nodes")):
        cpuset = str_field(hc, key)
        if not cpuset:
            continue
        if not _CPUSET_RE.fullmatch(cpuset):
            raise invalid(f"invalid HostConfig.{key} {cpuset!r}: expected a list like 0-2,4")
        if not support.cpuset:
            raise _unsupported(key, "cpusets")
        available = host.cpuset_cpus() if spec_key == "cpus" else host.cpuset_mems()
        if not parse_cpuset(cpuset) <= parse_cpuset(available):
            raise invalid(f"invalid HostConfig.{key}: Requested {what} are not available - "
                          f"requested {cpuset}, available: {available}")
        out[spec_key] = cpuset
    return out


def parse_cpuset(text: str) -> set[int]:
    """The numbers of a cpuset list such as "0-2,4"."""
    numbers: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        low, _, high = part.partition("-")
        numbers.update(range(int(low), int(high or low) + 1))
    return numbers


# -- block IO ----------------------------------------------------------------


def _block_io(hc: Mapping[str, Any], support: CgroupSupport, host: HostView) -> dict[str, Any]:
    out: dict[str, Any] = {}
    weight = int_field(hc, "BlkioWeight")
    if weight:
        if not MIN_BLKIO_WEIGHT <= weight <= MAX_BLKIO_WEIGHT:
            raise invalid(f"invalid HostConfig.BlkioWeight {weight}: Range of blkio weight "
                          f"is from {MIN_BLKIO_WEIGHT} to {MAX_BLKIO_WEIGHT}")
        if not support.blkio_weight:
            raise _unsupported("BlkioWeight", "Block I/O weight")
        out["weight"] = weight
    devices = _device_values(hc, "BlkioWeightDevice", "Weight", host)
    if devices:
        if not support.blkio_weight_device:
            raise _unsupported("BlkioWeightDevice", "Block I/O weight per device")
        for device in devices:
            if not MIN_BLKIO_WEIGHT <= device["weight"] <= MAX_BLKIO_WEIGHT:
                raise invalid(f"invalid HostConfig.BlkioWeightDevice: Range of blkio weight "
                              f"is from {MIN_BLKIO_WEIGHT} to {MAX_BLKIO_WEIGHT}")
        out["weightDevice"] = devices
    for key, (spec_key, value_key) in _THROTTLES.items():
        throttles = _device_values(hc, key, value_key, host)
        if throttles:
            if not support.blkio_throttle:
                raise _unsupported(key, "Block I/O throttling")
            out[spec_key] = throttles
    return out


def _device_values(hc: Mapping[str, Any], key: str, value_key: str,
                   host: HostView) -> list[dict[str, int]]:
    """[{Path, Weight|Rate}] -> [{major, minor, weight|rate}], the devices found on the host."""
    out = []
    for entry in dict_list(hc, key):
        path, value = entry.get("Path"), entry.get(value_key)
        if not isinstance(path, str) or not path:
            raise invalid(f"invalid HostConfig.{key}: each entry needs a device Path")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise invalid(f"invalid HostConfig.{key} for {path}: {value_key} must be a "
                          "non-negative integer")
        try:
            major, minor = host.block_device(path)
        except (OSError, NotADevice) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise invalid(f"invalid HostConfig.{key}: {path}: {reason.lower()}") from None
        out.append({"major": major, "minor": minor, value_key.lower(): value})
    return out
