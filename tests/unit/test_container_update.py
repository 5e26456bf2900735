"""docker update's rules with plain values: what a body changes in a HostConfig, what is
refused (in dockerd's words where it has them), and the limits a task update carries."""

from __future__ import annotations

from typing import Any

import pytest

from pouch.actors.container.update import linux_resources, plan_update, with_limits
from pouch.proto.envelope import PouchError

MiB = 1024 * 1024
# What the docker CLI sends for `docker update --restart always`: every field, zeroed.
CLI_EMPTY: dict[str, Any] = {
    "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": None, "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None,
    "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": None, "DeviceCgroupRules": None, "DeviceRequests": None,
    "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": None, "PidsLimit": None, "Ulimits": None, "CpuCount": 0,
    "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}
HOST: dict[str, Any] = {
    "NetworkMode": "none", "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "LogConfig": {"Type": "json-file", "Config": {}}}


def body(**fields: Any) -> dict[str, Any]:
    return {**CLI_EMPTY, **fields}


def refused(host: dict[str, Any], update: dict[str, Any]) -> PouchError:
    with pytest.raises(PouchError) as err:
        plan_update(host, update)
    return err.value


def test_an_empty_update_changes_nothing():
    plan = plan_update(HOST, body())
    assert plan.host_config == HOST and not plan.limits


def test_the_restart_policy_is_replaced_whole():
    plan = plan_update(HOST, body(RestartPolicy={"Name": "on-failure",
                                                 "MaximumRetryCount": 3}))
    assert plan.host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert not plan.limits
    assert HOST["RestartPolicy"]["Name"] == "no"  # the caller's document is left alone


def test_an_auto_removed_container_keeps_no_restart_policy():
    auto = {**HOST, "AutoRemove": True}
    err = refused(auto, body(RestartPolicy={"Name": "always"}))
    assert err.code == "invalid"
    assert err.message == ("Restart policy cannot be updated because AutoRemove is enabled "
                           "for the container")
    assert plan_update(auto, body(RestartPolicy={"Name": "no"})).host_config["AutoRemove"]


def test_limits_given_are_kept_and_make_the_tasks_resources():
    plan = plan_update(HOST, body(Memory=64 * MiB, MemorySwap=128 * MiB, PidsLimit=50,
                                  NanoCpus=500_000_000, CpuShares=512))
    assert plan.limits
    hc = plan.host_config
    assert (hc["Memory"], hc["MemorySwap"], hc["PidsLimit"], hc["NanoCpus"]) == \
        (64 * MiB, 128 * MiB, 50, 500_000_000)
    limits = linux_resources(hc)
    assert "devices" not in limits
    assert limits["memory"]["limit"] == 64 * MiB and limits["memory"]["swap"] == 128 * MiB
    assert limits["pids"] == {"limit": 50}
    assert limits["cpu"]["shares"] == 512
    assert limits["cpu"]["quota"] * 2 == limits["cpu"]["period"]  # half a CPU


def test_a_limit_left_out_keeps_its_value():
    before = plan_update(HOST, body(Memory=64 * MiB, CpuShares=512)).host_config
    after = plan_update(before, body(CpuShares=1024)).host_config
    assert (after["Memory"], after["CpuShares"]) == (64 * MiB, 1024)


@pytest.mark.parametrize("field", ["CpuRealtimePeriod", "CpuRealtimeRuntime"])
def test_a_limit_the_container_would_not_get_is_refused_naming_it(field):
    err = refused(HOST, body(**{field: 1000}))
    assert err.code == "invalid" and f"HostConfig.{field}" in err.message


@pytest.mark.parametrize(("field", "value"), [
    ("Ulimits", [{"Name": "nofile", "Soft": 10, "Hard": 10}]),
    ("CgroupParent", "/elsewhere"),
    ("MemorySwappiness", 10),
    ("OomKillDisable", True),
    ("Devices", [{"PathOnHost": "/dev/null"}]),
])
def test_what_update_does_not_change_is_refused_rather_than_dropped(field, value):
    err = refused(HOST, body(**{field: value}))
    assert err.code == "invalid" and err.message.startswith(f"invalid field {field}:")


def test_values_of_the_wrong_type_are_refused():
    assert refused(HOST, body(Memory="64m")).message == \
        "invalid field Memory: must be an integer"
    assert refused(HOST, body(CpusetCpus=1)).message == \
        "invalid field CpusetCpus: must be a string"
    assert refused(HOST, body(Memory=True)).code == "invalid"


def test_values_out_of_range_are_refused_as_create_refuses_them():
    assert "6MB" in refused(HOST, body(Memory=3 * MiB)).message
    assert refused(HOST, body(Memory=64 * MiB, MemorySwap=32 * MiB)).code == "invalid"


def test_memory_above_the_swap_limit_in_force_needs_a_new_swap_limit():
    limited = {**HOST, "Memory": 32 * MiB}  # swap limit: twice that, by default
    err = refused(limited, body(Memory=128 * MiB))
    assert err.message == ("Memory limit should be smaller than already set memoryswap "
                           "limit, update the memoryswap at the same time")
    assert plan_update(limited, body(Memory=48 * MiB)).limits
    assert plan_update(limited, body(Memory=128 * MiB, MemorySwap=256 * MiB)).limits
    assert plan_update(HOST, body(Memory=128 * MiB)).limits  # no limit before: no swap limit


def test_nano_cpus_and_a_cfs_period_or_quota_exclude_each_other_as_dockerd_has_it():
    err = refused({**HOST, "CpuQuota": 50000}, body(NanoCpus=10**9))
    assert err.code == "conflict"
    assert err.message == ("Conflicting options: Nano CPUs cannot be updated as CPU Quota "
                           "has already been set")
    assert refused({**HOST, "NanoCpus": 10**9}, body(CpuPeriod=100000)).message == \
        "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"


def test_a_pids_limit_of_zero_lifts_the_limit():
    hc = plan_update({**HOST, "PidsLimit": 50}, body(PidsLimit=0)).host_config
    assert linux_resources(hc)["pids"] == {"limit": -1}


def test_the_spec_keeps_its_device_rules_and_takes_the_new_limits():
    spec: dict[str, Any] = {"ociVersion": "1.0.2", "linux": {"resources": {
        "devices": [{"allow": False, "access": "rwm"}], "memory": {"limit": 1},
        "cpu": {"shares": 2}}}}
    updated = with_limits(spec, {"memory": {"limit": 64 * MiB}, "pids": {"limit": 5}})
    assert updated["linux"]["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}], "memory": {"limit": 64 * MiB},
        "pids": {"limit": 5}}
    assert spec["linux"]["resources"]["memory"] == {"limit": 1}  # a copy


def test_a_kernel_memory_limit_is_discarded_with_dockerds_warnings():
    plan = plan_update(HOST, body(KernelMemory=10 << 20))
    assert plan.host_config.get("KernelMemory", 0) == 0
    assert plan.warnings[0].startswith("Specifying a kernel memory limit is deprecated")
