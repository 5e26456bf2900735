"""docker top's table and docker stats' readings, from made-up ps output and cgroup files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pouch.actors.container import observe
from pouch.proto.envelope import PouchError

PS = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init splash
root         200       1  0 10:01 ?        00:00:00 sleep 1000
root         300     200  0 10:01 ?        00:00:00 sh -c echo  two  spaces
"""


def test_ps_rows_of_the_container_only_the_command_whole():
    table = observe.parse_ps(PS, {200, 300})
    assert table["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [row[1] for row in table["Processes"]] == ["200", "300"]
    assert table["Processes"][1][-1] == "sh -c echo two spaces"


def test_thread_rows_follow_the_process_they_belong_to():
    output = "PID TID CMD\n200 - sleep\n- 200 -\n1 - init\n- 1 -\n"
    assert observe.parse_ps(output, {200})["Processes"] == [["200", "-", "sleep"],
                                                            ["-", "200", "-"]]


def test_ps_output_without_a_pid_column_is_refused():
    with pytest.raises(PouchError) as caught:
        observe.parse_ps("USER COMMAND\nroot init\n", {1})
    assert caught.value.message == "Couldn't find PID field in ps output"


def test_renaming_a_column_to_pid_is_refused_as_dockerd_does():
    with pytest.raises(PouchError) as caught:
        observe.top([1], "-o user=PID")
    assert caught.value.message == 'specifying "user=PID" is not allowed'


def test_arguments_ps_refuses_name_its_error():
    with pytest.raises(PouchError) as caught:
        observe.top([1], "--no-such-option")
    assert caught.value.code == "invalid" and caught.value.message.startswith("ps: ")


MOUNTINFO_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
MOUNTINFO_V2 = "31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"


def test_a_hybrid_host_reads_the_v1_controllers(tmp_path: Path):
    (tmp_path / "mountinfo").write_text(MOUNTINFO_V1)
    cgroup = observe.Cgroup.of("/pouch/c1", tmp_path / "mountinfo")
    assert cgroup.v2 is None
    assert cgroup.v1["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct/pouch/c1")
    assert cgroup.v1["memory"] == Path("/sys/fs/cgroup/memory/pouch/c1")


def test_a_unified_host_reads_cgroup_v2(tmp_path: Path):
    (tmp_path / "mountinfo").write_text(MOUNTINFO_V2)
    assert observe.Cgroup.of("/pouch/c1", tmp_path / "mountinfo") == observe.Cgroup(
        v2=Path("/sys/fs/cgroup/pouch/c1"))


def test_cgroup_v2_readings_as_dockerd_shapes_them(tmp_path: Path):
    files = {
        "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\n"
                    "nr_throttled 1\nthrottled_usec 20\n",
        "memory.current": "4096\n", "memory.max": "1048576\n",
        "memory.stat": "anon 1024\nfile 2048\n", "memory.events": "low 0\noom 2\n",
        "pids.current": "3\n", "pids.max": "max\n",
        "io.stat": "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n",
        "cgroup.procs": "10\n11\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cgroup = observe.Cgroup(v2=tmp_path)
    stats = observe.sample(cgroup, lambda: "2024-01-01T00:00:00Z")
    assert cgroup.pids() == [10, 11]
    assert stats["cpu_stats"]["cpu_usage"] == {
        "total_usage": 1_500_000, "usage_in_kernelmode": 500_000, "usage_in_usermode": 1_000_000}
    assert stats["cpu_stats"]["throttling_data"] == {
        "periods": 4, "throttled_periods": 1, "throttled_time": 20_000}
    memory = stats["memory_stats"]
    assert (memory["usage"], memory["limit"], memory["failcnt"]) == (4096, 1048576, 2)
    assert memory["stats"]["anon"] == 1024 and "max_usage" not in memory
    assert stats["pids_stats"] == {"current": 3}
    assert stats["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 100},
        {"major": 8, "minor": 0, "op": "write", "value": 200}]


def test_cgroup_v1_readings_as_dockerd_shapes_them(tmp_path: Path):
    acct, cpu, mem, blkio = (tmp_path / name for name in ("cpuacct", "cpu", "memory", "blkio"))
    for folder in (acct, cpu, mem, blkio):
        folder.mkdir()
    (acct / "cpuacct.usage").write_text("3000\n")
    (acct / "cpuacct.usage_percpu").write_text("1000 2000 \n")
    (acct / "cpuacct.stat").write_text(f"user {observe.CLOCK_TICKS}\nsystem 0\n")
    (cpu / "cpu.stat").write_text("nr_periods 0\nnr_throttled 0\nthrottled_time 0\n")
    (mem / "memory.usage_in_bytes").write_text("8192\n")
    (mem / "memory.max_usage_in_bytes").write_text("9000\n")
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (mem / "memory.failcnt").write_text("0\n")
    (mem / "memory.stat").write_text("cache 1\nrss 2\ntotal_rss 2\nshmem 5\n")
    (blkio / "blkio.throttle.io_service_bytes").write_text("8:0 Read 10\n8:0 Write 0\nTotal 10\n")
    stats = observe.sample(observe.Cgroup(v1={"cpuacct": acct, "cpu": cpu, "memory": mem,
                                              "blkio": blkio}), lambda: "now")
    usage = stats["cpu_stats"]["cpu_usage"]
    assert usage == {"total_usage": 3000, "percpu_usage": [1000, 2000],
                     "usage_in_kernelmode": 0, "usage_in_usermode": observe.NANOS}
    memory = stats["memory_stats"]
    assert memory["usage"] == 8192 and memory["max_usage"] == 9000
    assert memory["limit"] == observe.machine_memory()  # no limit: the machine's memory
    assert memory["stats"]["rss"] == 2 and "shmem" not in memory["stats"]
    assert "failcnt" not in memory  # zero: left out, as Go's omitempty does
    assert stats["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 10},
        {"major": 8, "minor": 0, "op": "Write", "value": 0}]
    assert stats["blkio_stats"]["io_serviced_recursive"] is None


def test_each_reading_carries_the_one_before():
    reader = observe.StatsReader("/c", "id1", lambda: "t")
    first, second = reader.next(None, 0, False), reader.next(None, 0, False)
    assert first["precpu_stats"] == observe.zero_cpu() and first["name"] == "/c"
    assert second["preread"] == first["read"] and "networks" not in second
