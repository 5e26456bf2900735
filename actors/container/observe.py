"""Watching a running container from the host: its processes (docker top) and its
resource use (docker stats), read from its cgroup.

The cgroup is where runc put the container: the OCI spec's `cgroupsPath` under the
mount point of each v1 controller (this host's kind: hybrid), or under the unified
hierarchy when it is the only one (cgroup v2). Numbers come out as dockerd 20.10
shapes them from containerd's metrics (daemon/stats/*.go), field for field.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pouch.actors.timefmt import ZERO_TIME
from pouch.proto.envelope import invalid

MOUNTINFO = Path("/proc/self/mountinfo")
PS_TIMEOUT = 30.0
STATS_EVERY = 1.0  # seconds between two readings of a stats stream, as dockerd
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NANOS = 1_000_000_000
# The controllers whose folders list the container's processes, in order of preference.
_PROCS_FROM = ("pids", "memory", "cpu", "cpuacct", "freezer", "devices", "blkio")


# -- where the cgroup is -------------------------------------------------------


@dataclass(frozen=True)
class Cgroup:
    """The container's cgroup folders: v1, one per controller; or v2, one folder."""

    v1: dict[str, Path] = field(default_factory=dict)
    v2: Path | None = None

    @classmethod
    def of(cls, cgroups_path: str, mountinfo: Path = MOUNTINFO) -> Cgroup:
        v1: dict[str, Path] = {}
        unified: Path | None = None
        relative = cgroups_path.strip("/")
        for line in mountinfo.read_text().splitlines():
            fields = line.split()
            if " - " not in line or len(fields) < 5:
                continue
            fstype, _source, options = line.split(" - ", 1)[1].split()[:3]
            mount_point = Path(fields[4])
            if fstype == "cgroup":
                for controller in options.split(","):
                    if controller in _PROCS_FROM or controller in ("cpuset",):
                        v1.setdefault(controller, mount_point / relative)
            elif fstype == "cgroup2":
                unified = mount_point / relative
        # A hybrid host's unified hierarchy holds no controller: v1 answers there.
        return cls(v1=v1) if v1 else cls(v2=unified)

    def pids(self) -> list[int]:
        """The container's processes (every exec's too). Empty when it is gone."""
        folders = [self.v2] if self.v2 is not None else \
            [self.v1[c] for c in _PROCS_FROM if c in self.v1]
        for folder in folders:
            try:
                text = (folder / "cgroup.procs").read_text()
            except OSError:
                continue
            return [int(pid) for pid in text.split()]
        return []


# -- docker top ----------------------------------------------------------------

_PS_PID_OPTION = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")


def top(pids: list[int], ps_args: str = "") -> dict[str, Any]:
    """The host's `ps` with `ps_args` (default -ef), only the rows of `pids`, as
    dockerd's ContainerTop: {Titles, Processes}. Errors: invalid (ps refused them)."""
    ps_args = ps_args or "-ef"
    for key, value in _PS_PID_OPTION.findall(ps_args):
        if key != "pid":
            raise invalid(f'specifying "{key}={value}" is not allowed')
    args = ["ps", *ps_args.split()]
    listed = ",".join(str(pid) for pid in pids)
    done = _run([*args, f"-q{listed}"]) if pids else None
    if done is None or done.returncode != 0:
        # Some options (f) do not go with -q: ps lists all, the rows are picked below.
        done = _run(args)
        if done.returncode != 0:
            first = done.stderr.decode(errors="replace").strip().split("\n")[0]
            raise invalid(f"ps: {first or f'exit status {done.returncode}'}")
    return parse_ps(done.stdout.decode(errors="replace"), set(pids))


def _run(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(args, capture_output=True, timeout=PS_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise invalid(f"ps: {exc}") from None


def parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """ps's table, the rows of `pids` kept (and the thread rows, "-" for a PID, that
    follow a kept row); a last column that holds spaces (the command) stays whole."""
    lines = output.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise invalid("Couldn't find PID field in ps output")
    at = titles.index("PID")
    processes: list[list[str]] = []
    keep_threads = False
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        if len(fields) <= at:
            continue
        if fields[at] == "-":
            if keep_threads:
                processes.append(_row(fields, len(titles)))
            continue
        try:
            pid = int(fields[at])
        except ValueError:
            raise invalid(f"Unexpected pid '{fields[at]}'") from None
        keep_threads = pid in pids
        if keep_threads:
            processes.append(_row(fields, len(titles)))
    return {"Titles": titles, "Processes": processes}


def _row(fields: list[str], columns: int) -> list[str]:
    return [*fields[:columns - 1], " ".join(fields[columns - 1:])]


# -- docker stats --------------------------------------------------------------


def zero_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


_BLKIO_FIELDS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
                 "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                 "io_time_recursive", "sectors_recursive")


def empty_stats(name: str, cid: str) -> dict[str, Any]:
    """What dockerd sends for a container that does not run: its name and ID, all else
    zero."""
    return {"read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
            "blkio_stats": dict.fromkeys(_BLKIO_FIELDS),
            "num_procs": 0, "storage_stats": {}, "cpu_stats": zero_cpu(),
            "precpu_stats": zero_cpu(), "memory_stats": {}, "name": name, "id": cid}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _number(path: Path) -> int:
    """A file holding one number ("max" and what is missing: 0)."""
    text = (_read(path) or "").strip()
    return int(text) if text.isdigit() else 0


def _keyed(path: Path) -> dict[str, int]:
    """A flat keyed file (memory.stat, cpu.stat): name value per line."""
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def system_cpu(proc_stat: Path = Path("/proc/stat")) -> tuple[int, int]:
    """The host's CPU time (ns, the first seven fields of /proc/stat's cpu line) and
    its online CPUs, as dockerd's collector reads them."""
    total, online = 0, 0
    for line in (_read(proc_stat) or "").splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "cpu":
            total = sum(int(v) for v in fields[1:8]) * NANOS // CLOCK_TICKS
        elif re.fullmatch(r"cpu\d+", fields[0]):
            online += 1
    return total, online


def machine_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in (_read(meminfo) or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


_V1_MEMORY_KEYS = (
    "cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pgpgin", "pgpgout",
    "pgfault", "pgmajfault", "inactive_anon", "active_anon", "inactive_file", "active_file",
    "unevictable", "hierarchical_memory_limit", "hierarchical_memsw_limit")
_V2_MEMORY_KEYS = (
    "anon", "file", "kernel_stack", "slab", "sock", "shmem", "file_mapped", "file_dirty",
    "file_writeback", "anon_thp", "inactive_anon", "active_anon", "inactive_file",
    "active_file", "unevictable", "slab_reclaimable", "slab_unreclaimable", "pgfault",
    "pgmajfault", "workingset_refault", "workingset_activate", "workingset_nodereclaim",
    "pgrefill", "pgscan", "pgsteal", "pgactivate", "pgdeactivate", "pglazyfree",
    "pglazyfreed", "thp_fault_alloc", "thp_collapse_alloc")


def sample(cgroup: Cgroup, now: Callable[[], str]) -> dict[str, Any]:
    """The container's part of one stats reading: read, cpu_stats (less the system's
    numbers), memory_stats, pids_stats, blkio_stats."""
    read = now()
    parts = _sample_v2(cgroup.v2) if cgroup.v2 is not None else _sample_v1(cgroup.v1)
    return {"read": read, **parts}


def _sample_v1(dirs: dict[str, Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cpu = zero_cpu()
    if "cpuacct" in dirs:
        acct = dirs["cpuacct"]
        usage = cpu["cpu_usage"]
        usage["total_usage"] = _number(acct / "cpuacct.usage")
        percpu = [int(v) for v in (_read(acct / "cpuacct.usage_percpu") or "").split()]
        if percpu:
            usage["percpu_usage"] = percpu
        ticks = _keyed(acct / "cpuacct.stat")
        usage["usage_in_kernelmode"] = ticks.get("system", 0) * NANOS // CLOCK_TICKS
        usage["usage_in_usermode"] = ticks.get("user", 0) * NANOS // CLOCK_TICKS
    if "cpu" in dirs:
        throttled = _keyed(dirs["cpu"] / "cpu.stat")
        cpu["throttling_data"] = {"periods": throttled.get("nr_periods", 0),
                                  "throttled_periods": throttled.get("nr_throttled", 0),
                                  "throttled_time": throttled.get("throttled_time", 0)}
    out["cpu_stats"] = cpu
    memory: dict[str, Any] = {}
    if "memory" in dirs:
        mem = dirs["memory"]
        stat = _keyed(mem / "memory.stat")
        raw = {key: stat.get(key, 0) for key in _V1_MEMORY_KEYS}
        raw.update({f"total_{key}": stat.get(f"total_{key}", 0) for key in _V1_MEMORY_KEYS
                    if not key.startswith("hierarchical")})
        memory = {"usage": _number(mem / "memory.usage_in_bytes"),
                  "max_usage": _number(mem / "memory.max_usage_in_bytes"),
                  "stats": raw, "failcnt": _number(mem / "memory.failcnt"),
                  "limit": _capped(_number(mem / "memory.limit_in_bytes"))}
    out["memory_stats"] = _omit_zero(memory)
    out["pids_stats"] = _pids(dirs.get("pids"), "pids.current", "pids.max")
    blkio: dict[str, Any] = dict.fromkeys(_BLKIO_FIELDS)
    if "blkio" in dirs:
        folder = dirs["blkio"]
        for name, file in (("io_service_bytes_recursive", "io_service_bytes_recursive"),
                           ("io_serviced_recursive", "io_serviced_recursive"),
                           ("io_queue_recursive", "io_queued_recursive"),
                           ("io_service_time_recursive", "io_service_time_recursive"),
                           ("io_wait_time_recursive", "io_wait_time_recursive"),
                           ("io_merged_recursive", "io_merged_recursive"),
                           ("io_time_recursive", "time_recursive"),
                           ("sectors_recursive", "sectors_recursive")):
            blkio[name] = _blkio_entries(folder / f"blkio.{file}")
        # Without the CFQ scheduler's files, the throttle files count the bytes and ios.
        for name, file in (("io_service_bytes_recursive", "throttle.io_service_bytes"),
                           ("io_serviced_recursive", "throttle.io_serviced")):
            if blkio[name] is None:
                blkio[name] = _blkio_entries(folder / f"blkio.{file}")
    out["blkio_stats"] = blkio
    return out


def _sample_v2(folder: Path) -> dict[str, Any]:
    cpu = zero_cpu()
    stat = _keyed(folder / "cpu.stat")
    cpu["cpu_usage"] = {"total_usage": stat.get("usage_usec", 0) * 1000,
                        "usage_in_kernelmode": stat.get("system_usec", 0) * 1000,
                        "usage_in_usermode": stat.get("user_usec", 0) * 1000}
    cpu["throttling_data"] = {"periods": stat.get("nr_periods", 0),
                              "throttled_periods": stat.get("nr_throttled", 0),
                              "throttled_time": stat.get("throttled_usec", 0) * 1000}
    memstat = _keyed(folder / "memory.stat")
    memory = {"usage": _number(folder / "memory.current"),
              "stats": {key: memstat.get(key, 0) for key in _V2_MEMORY_KEYS},
              "failcnt": _keyed(folder / "memory.events").get("oom", 0),
              "limit": _capped(_number(folder / "memory.max"))}
    service_bytes: list[dict[str, Any]] = []
    for line in (_read(folder / "io.stat") or "").splitlines():
        device, *pairs = line.split()
        major, _, minor = device.partition(":")
        values = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        for op, key in (("read", "rbytes"), ("write", "wbytes")):
            service_bytes.append({"major": int(major), "minor": int(minor), "op": op,
                                  "value": int(values.get(key, 0))})
    blkio: dict[str, Any] = dict.fromkeys(_BLKIO_FIELDS)
    blkio["io_service_bytes_recursive"] = service_bytes or None
    return {"cpu_stats": cpu, "memory_stats": _omit_zero(memory),
            "pids_stats": _pids(folder, "pids.current", "pids.max"), "blkio_stats": blkio}


def _capped(limit: int) -> int:
    """No limit reads as a huge number (v1) or "max" (v2, read as 0): the machine's
    memory then, as dockerd reports it."""
    total = machine_memory()
    return total if (limit == 0 or limit > total) and total else limit


def _pids(folder: Path | None, current: str, maximum: str) -> dict[str, int]:
    if folder is None:
        return {}
    return _omit_zero({"current": _number(folder / current), "limit": _number(folder / maximum)})


def _omit_zero(values: dict[str, Any]) -> dict[str, Any]:
    """Go's omitempty: dockerd leaves out a zero number."""
    return {k: v for k, v in values.items() if v not in (0, None)}


def _blkio_entries(path: Path) -> list[dict[str, Any]] | None:
    """blkio lines ("8:0 Read 4096", "8:0 4096"), the totals left out."""
    entries = []
    for line in (_read(path) or "").splitlines():
        fields = line.split()
        if len(fields) < 2 or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        op, value = (fields[1], fields[2]) if len(fields) >= 3 else ("", fields[1])
        if not (major.isdigit() and minor.isdigit() and value.isdigit()):
            continue
        entries.append({"major": int(major), "minor": int(minor), "op": op, "value": int(value)})
    return entries or None


def networks(pid: int) -> dict[str, Any] | None:
    """Per-interface counters of the container's network namespace, loopback left out;
    None when it has no other interface (network none: dockerd leaves them out)."""
    found: dict[str, Any] = {}
    for line in (_read(Path(f"/proc/{pid}/net/dev")) or "").splitlines()[2:]:
        name, _, counters = line.partition(":")
        name = name.strip()
        values = [int(v) for v in counters.split()]
        if name == "lo" or len(values) < 16:
            continue
        found[name] = {"rx_bytes": values[0], "rx_packets": values[1], "rx_errors": values[2],
                       "rx_dropped": values[3], "tx_bytes": values[8], "tx_packets": values[9],
                       "tx_errors": values[10], "tx_dropped": values[11]}
    return found or None


class StatsReader:
    """Successive readings of one container, each with the one before as `pre`."""

    def __init__(self, name: str, cid: str, now: Callable[[], str]) -> None:
        self.name, self.cid, self._now = name, cid, now
        self._pre_cpu: dict[str, Any] = zero_cpu()
        self._pre_read = ZERO_TIME

    def next(self, cgroup: Cgroup | None, pid: int, host_network: bool) -> dict[str, Any]:
        """A reading; `cgroup` None: the container does not run (zeros, as dockerd)."""
        if cgroup is None:
            stats = empty_stats(self.name, self.cid)
        else:
            stats = empty_stats(self.name, self.cid)
            stats.update(sample(cgroup, self._now))
            system, online = system_cpu()
            stats["cpu_stats"]["system_cpu_usage"] = system
            stats["cpu_stats"]["online_cpus"] = online
            nets = None if host_network or not pid else networks(pid)
            if nets is not None:
                stats["networks"] = nets
        stats["precpu_stats"], stats["preread"] = self._pre_cpu, self._pre_read
        self._pre_cpu, self._pre_read = stats["cpu_stats"], stats["read"]
        return stats
