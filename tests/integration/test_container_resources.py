"""Resource limits, told as a docker user would: `docker run -m 64m ...`, then what the
container's cgroup holds (read from inside it, and from the host), what inspect shows,
and what happens past a limit."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from docker.errors import APIError

from pouch.tests.support.daemon import DockerError, PouchDaemon
from pouch.tests.support.wait import wait_for

CGROUP = Path("/sys/fs/cgroup")
# What the kernel shows for "no limit" in a v1 memory cgroup: beyond any machine's RAM.
UNLIMITED = 1 << 60
# Doubles a string until the shell dies: its memory grows past any limit, fast.
EAT_MEMORY = "x=a; while true; do x=$x$x; done"


@pytest.fixture(autouse=True)
def _cgroup_v1() -> None:
    if not (CGROUP / "memory" / "memory.limit_in_bytes").exists():
        pytest.skip("these tests read cgroup v1 files (this host has no v1 memory hierarchy)")


def run(docker: Callable[..., str], *flags: str, script: str) -> list[str]:
    return docker("run", "--rm", *flags, "busybox", "sh", "-c", script).splitlines()


def refused(daemon: PouchDaemon, *flags: str) -> str:
    with pytest.raises(DockerError) as err:
        daemon.docker("create", *flags, "busybox", "true")
    return err.value.stderr


# -- memory ----------------------------------------------------------------------------


def test_memory_limits_are_in_the_containers_memory_cgroup(docker):
    lines = run(docker, "-m", "64m", "--memory-swap", "96m", "--memory-reservation", "32m",
                "--memory-swappiness", "10", "--oom-kill-disable",
                script="cd /sys/fs/cgroup/memory; cat memory.limit_in_bytes "
                       "memory.memsw.limit_in_bytes memory.soft_limit_in_bytes "
                       "memory.swappiness; grep oom_kill_disable memory.oom_control")
    assert lines == [str(64 << 20), str(96 << 20), str(32 << 20), "10", "oom_kill_disable 1"]


def test_swap_defaults_to_as_much_again_and_minus_one_leaves_it_unlimited(docker, daemon, name):
    docker("create", "--name", name, "-m", "32m", "busybox", "cat",
           "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    assert daemon.inspect(name)["HostConfig"]["MemorySwap"] == 64 << 20  # as dockerd records it
    assert docker("start", "-a", name) == str(64 << 20)
    unlimited = run(docker, "-m", "32m", "--memory-swap", "-1",
                    script="cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    assert int(unlimited[0]) > UNLIMITED


def test_a_process_past_its_memory_limit_is_oom_killed_and_told(daemon, calls, name):
    with calls.stream("system", "events", {"filters": {"event": ["oom"], "container": [name]}},
                      timeout=None) as events:
        result = daemon.docker_result("run", "--name", name, "-m", "16m", "--memory-swap", "16m",
                                      "busybox", "sh", "-c", EAT_MEMORY)
        oom = next(iter(events))
    assert result.returncode == 137, result.stderr
    assert (oom["Type"], oom["Action"], oom["Actor"]["Attributes"]["name"]) == \
        ("container", "oom", name)
    state = wait_for(lambda: (s := daemon.inspect(name)["State"])["OOMKilled"] and s, 10,
                     "State.OOMKilled")
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)


def test_a_container_that_exits_on_its_own_was_not_oom_killed(docker, daemon, name):
    docker("run", "--name", name, "-m", "16m", "busybox", "true")
    assert daemon.inspect(name)["State"]["OOMKilled"] is False


# -- cpu -------------------------------------------------------------------------------


def test_cpus_become_a_cfs_quota_seen_inside_and_on_the_host(docker, daemon, name):
    cid = docker("run", "-d", "--name", name, "--cpus", "0.5", "--cpu-shares", "512",
                 "busybox", "sh", "-c", "cd /sys/fs/cgroup/cpu; cat cpu.cfs_quota_us "
                 "cpu.cfs_period_us cpu.shares; exec sleep 300")
    inside = wait_for(lambda: len(lines := docker("logs", name).splitlines()) == 3 and lines,
                      20, "the container's cgroup values in its log")
    assert inside == ["50000", "100000", "512"]
    host = CGROUP / "cpu" / "pouch" / cid
    assert (host / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert (host / "cpu.shares").read_text().strip() == "512"
    assert daemon.inspect(name)["HostConfig"]["NanoCpus"] == 500_000_000


def test_cpu_period_and_quota_and_a_cpuset(docker):
    lines = run(docker, "--cpu-period", "50000", "--cpu-quota", "25000", "--cpuset-cpus", "0",
                "--cpuset-mems", "0",
                script="cd /sys/fs/cgroup; cat cpu/cpu.cfs_period_us cpu/cpu.cfs_quota_us"
                       " cpuset/cpuset.cpus cpuset/cpuset.mems")
    assert lines == ["50000", "25000", "0", "0"]


def test_cpus_the_host_does_not_have_are_refused_with_400(daemon):
    count = os.cpu_count() or 1
    message = refused(daemon, "--cpus", str(count + 1))
    assert f"Range of CPUs is from 0.01 to {count}.00" in message
    assert "Requested CPUs are not available" in refused(daemon, "--cpuset-cpus", str(count + 7))
    sdk = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    with contextlib.closing(sdk), pytest.raises(APIError) as err:
        sdk.containers.create("busybox", "true", nano_cpus=(count + 1) * 10**9)
    assert err.value.status_code == 400 and "NanoCpus" in str(err.value.explanation)


# -- pids, block IO --------------------------------------------------------------------


def test_a_pids_limit_stops_the_fork_that_would_pass_it(daemon):
    result = daemon.docker_result(
        "run", "--rm", "--pids-limit", "8", "busybox", "sh", "-c",
        "cat /sys/fs/cgroup/pids/pids.max; for i in $(seq 20); do sleep 30 & done; echo all")
    assert result.stdout.splitlines() == ["8"]
    assert result.returncode != 0 and "can't fork" in result.stderr


def test_blkio_weight_is_applied_where_the_kernel_has_it_else_discarded(docker, daemon, name):
    blkio = CGROUP / "blkio"
    weight_file = next((f for f in ("blkio.weight", "blkio.bfq.weight")
                        if (blkio / f).exists()), None)
    if weight_file is None:
        # As dockerd: the container runs, told that its weight was discarded.
        made = daemon.docker_result("create", "--name", name, "--blkio-weight", "5", "busybox")
        assert made.returncode == 0
        assert "Block I/O weight or the cgroup is not mounted. Weight discarded." in \
            made.stderr
        assert daemon.inspect(name)["HostConfig"]["BlkioWeight"] == 0
        updated = daemon.docker_result("update", "--blkio-weight", "300", name)
        assert updated.returncode == 0 and "Weight discarded" in updated.stdout  # the CLI's
    else:
        lines = run(docker, "--blkio-weight", "300",
                    script=f"cat /sys/fs/cgroup/blkio/{weight_file}")
        assert lines[-1].split()[-1] == "300"


def test_a_device_read_rate_is_throttled_in_the_blkio_cgroup(docker):
    device = next((Path(p) for p in ("/dev/loop0", "/dev/vda", "/dev/sda")
                   if Path(p).is_block_device()), None)
    if device is None or not (CGROUP / "blkio" / "blkio.throttle.read_bps_device").exists():
        pytest.skip("no block device or no blkio throttling here")
    rdev = device.stat().st_rdev
    lines = run(docker, "--device-read-bps", f"{device}:1mb",
                script="cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device")
    assert f"{os.major(rdev)}:{os.minor(rdev)} {1 << 20}" in lines


# -- rlimits, /dev/shm, and what inspect shows -----------------------------------------


def test_ulimits_and_the_shm_size(docker):
    lines = run(docker, "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=300",
                "--shm-size", "32m",
                script="ulimit -n; ulimit -Hn; ulimit -u; df -k /dev/shm | tail -1")
    assert lines[:3] == ["1024", "2048", "300"]
    assert lines[3].split()[1] == str(32 * 1024)


def test_inspect_shows_the_limits_asked_for(docker, daemon, name):
    docker("create", "--name", name, "-m", "64m", "--memory-reservation", "16m", "--cpus", "1.5",
           "--cpu-shares", "256", "--cpuset-cpus", "0", "--pids-limit", "50",
           "--ulimit", "nofile=512:1024", "--shm-size", "8m", "--oom-kill-disable",
           "busybox", "true")
    host = daemon.inspect(name)["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["MemoryReservation"]) == \
        (64 << 20, 128 << 20, 16 << 20)
    assert (host["NanoCpus"], host["CpuShares"], host["CpusetCpus"]) == (1_500_000_000, 256, "0")
    assert (host["PidsLimit"], host["ShmSize"], host["OomKillDisable"]) == (50, 8 << 20, True)
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 512, "Hard": 1024}]
