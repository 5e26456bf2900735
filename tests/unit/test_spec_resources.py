"""What a container's spec gets for the limits, devices, namespaces and security options
a `docker run` asks for, on a made-up host (tests/support/fakehost.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pouch.actors.container.jsonlog import LogConfig, log_config, recorded_log_config
from pouch.actors.container.spec.defaults import (
    create_warnings,
    discard_unsupported,
    recorded_host_config,
)
from pouch.actors.container.spec.host import CgroupSupport
from pouch.actors.container.spec.merge import DEFAULT_PATH, Process
from pouch.actors.container.spec.oci import (
    INIT_PATH,
    MASKED_PATHS,
    READONLY_PATHS,
    SpecInput,
    build_spec,
)
from pouch.actors.container.spec.resources import parse_cpuset
from pouch.actors.container.spec.user import User, resolve_user
from pouch.proto.envelope import PouchError
from pouch.tests.support.fakehost import KMSG, LOOP0, NULL, SND, FakeHost

CID = "7e57" + "0" * 60
GROUP = "root:x:0:\nwheel:x:10:root\naudio:x:29:\nstaff:x:50:\n"


def spec_of(host_config: dict[str, Any] | None = None, host: FakeHost | None = None,
            **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "container_id": CID,
        "process": Process(["sh"], [f"PATH={DEFAULT_PATH}"], "/", "", False, False),
        "user": User(0, 0, [], "/root"),
        "hostname": CID[:12],
        "network_mode": "none",
        "netns_path": None,
        "hosts_path": "/c/hosts",
        "resolv_conf_path": "/c/resolv.conf",
        "hostname_path": "/c/hostname",
        "cgroup_parent": "/pouch",
        "host_config": host_config or {},
        "labels": {},
        "host": host or FakeHost(),
    }
    fields.update(changes)
    return build_spec(SpecInput(**fields))


def refusal(host_config: dict[str, Any], host: FakeHost | None = None, **changes: Any) -> str:
    with pytest.raises(PouchError) as err:
        spec_of(host_config, host, **changes)
    assert err.value.code == "invalid"
    return err.value.message


def without(**controls: bool) -> FakeHost:
    return FakeHost(support=replace(CgroupSupport(), **controls))


def mount_at(spec: dict[str, Any], destination: str) -> dict[str, Any] | None:
    found = [m for m in spec["mounts"] if m["destination"] == destination]
    return found[0] if found else None


# -- memory --------------------------------------------------------------------------


def test_memory_swap_reservation_swappiness_and_oom_kill_disable():
    memory = spec_of({"Memory": 64 << 20, "MemorySwap": 128 << 20, "MemoryReservation": 32 << 20,
                      "MemorySwappiness": 0, "OomKillDisable": True})["linux"]["resources"]
    assert memory["memory"] == {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20,
                                "swappiness": 0, "disableOOMKiller": True}


def test_swap_defaults_to_as_much_again_and_minus_one_is_unlimited():
    assert spec_of({"Memory": 64 << 20})["linux"]["resources"]["memory"] == \
        {"limit": 64 << 20, "swap": 128 << 20}
    assert spec_of({"Memory": 64 << 20, "MemorySwap": -1})["linux"]["resources"]["memory"] == \
        {"limit": 64 << 20, "swap": -1}


def test_a_kernel_without_swap_accounting_limits_memory_alone():
    host = without(swap=False)
    assert spec_of({"Memory": 64 << 20}, host)["linux"]["resources"]["memory"] == \
        {"limit": 64 << 20}
    message = refusal({"Memory": 64 << 20, "MemorySwap": 128 << 20}, host)
    assert "HostConfig.MemorySwap" in message and "does not support swap limits" in message


@pytest.mark.parametrize(("field", "value", "control"), [
    ("Memory", 64 << 20, "memory"),
    ("MemoryReservation", 32 << 20, "reservation"),
    ("MemorySwappiness", 10, "swappiness"),
    ("OomKillDisable", True, "oom_kill_disable"),
    ("CpuShares", 512, "cpu_shares"),
    ("NanoCpus", 500_000_000, "cpu_cfs"),
    ("CpuQuota", 50000, "cpu_cfs"),
    ("CpusetCpus", "0", "cpuset"),
    ("PidsLimit", 10, "pids"),
    ("BlkioWeight", 300, "blkio_weight"),
    ("BlkioDeviceReadBps", [{"Path": "/dev/loop0", "Rate": 1 << 20}], "blkio_throttle"),
])
def test_a_control_the_kernel_lacks_is_refused_naming_the_field(field, value, control):
    message = refusal({field: value}, without(**{control: False}))
    assert f"HostConfig.{field}" in message and "this kernel does not support" in message


def test_oom_kill_disable_false_needs_no_support_and_is_said():
    assert spec_of({"OomKillDisable": False}, without(oom_kill_disable=False))[
        "linux"]["resources"]["memory"] == {"disableOOMKiller": False}


# -- cpu -----------------------------------------------------------------------------


def test_cpus_become_a_quota_per_100ms_period():
    cpu = spec_of({"NanoCpus": 1_500_000_000, "CpuShares": 512})["linux"]["resources"]["cpu"]
    assert cpu == {"shares": 512, "period": 100000, "quota": 150000}


def test_cpus_beyond_the_hosts_or_below_a_hundredth_are_refused():
    assert "Range of CPUs is from 0.01 to 8.00, as there are only 8 CPUs available" in \
        refusal({"NanoCpus": 9_000_000_000})
    assert "Range of CPUs" in refusal({"NanoCpus": 1_000_000})


def test_cpu_shares_outside_what_the_kernel_takes_are_refused():
    assert "from 2 to 262144" in refusal({"CpuShares": 1})
    assert "from 2 to 262144" in refusal({"CpuShares": 300000})


def test_cpusets_must_name_cpus_and_nodes_the_host_has():
    cpu = spec_of({"CpusetCpus": "1-3,5", "CpusetMems": "0"})["linux"]["resources"]["cpu"]
    assert (cpu["cpus"], cpu["mems"]) == ("1-3,5", "0")
    assert "Requested CPUs are not available - requested 6-9, available: 0-7" in \
        refusal({"CpusetCpus": "6-9"})
    assert "Requested memory nodes are not available" in refusal({"CpusetMems": "1"})
    assert parse_cpuset("0-2,4") == {0, 1, 2, 4}


# -- pids and block IO ---------------------------------------------------------------


def test_pids_limit_zero_or_less_is_unlimited():
    assert spec_of({"PidsLimit": 64})["linux"]["resources"]["pids"] == {"limit": 64}
    assert spec_of({"PidsLimit": -1})["linux"]["resources"]["pids"] == {"limit": -1}


def test_blkio_weight_and_throttles_name_the_block_devices():
    block_io = spec_of({
        "BlkioWeight": 300,
        "BlkioWeightDevice": [{"Path": "/dev/loop0", "Weight": 200}],
        "BlkioDeviceReadBps": [{"Path": "/dev/loop0", "Rate": 1 << 20}],
        "BlkioDeviceWriteIOps": [{"Path": "/dev/loop0", "Rate": 100}],
    })["linux"]["resources"]["blockIO"]
    assert block_io == {
        "weight": 300,
        "weightDevice": [{"major": 7, "minor": 0, "weight": 200}],
        "throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1 << 20}],
        "throttleWriteIOPSDevice": [{"major": 7, "minor": 0, "rate": 100}],
    }


def test_blkio_values_out_of_range_or_not_block_devices_are_refused():
    assert "Range of blkio weight is from 10 to 1000" in refusal({"BlkioWeight": 5})
    assert "not a block device" in refusal(
        {"BlkioDeviceReadBps": [{"Path": "/dev/null", "Rate": 1}]})
    assert "no such file" in refusal({"BlkioDeviceReadBps": [{"Path": "/dev/nope", "Rate": 1}]})


# -- devices -------------------------------------------------------------------------


def test_a_device_is_made_in_the_container_and_allowed_by_its_cgroup():
    linux = spec_of({"Devices": [{"PathOnHost": "/dev/loop0", "PathInContainer": "/dev/disk",
                                  "CgroupPermissions": "r"}]})["linux"]
    assert linux["devices"] == [{"path": "/dev/disk", "type": "b", "major": 7, "minor": 0,
                                 "fileMode": 0o660, "uid": 0, "gid": 6}]
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert linux["resources"]["devices"][-1] == \
        {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"}


def test_a_device_folder_brings_every_device_in_it():
    linux = spec_of({"Devices": [{"PathOnHost": "/dev/snd", "PathInContainer": "/dev/snd",
                                  "CgroupPermissions": "rwm"}]})["linux"]
    assert [d["path"] for d in linux["devices"]] == [d.path for d in SND]


@pytest.mark.parametrize(("device", "words"), [
    ({"PathOnHost": "/dev/nope"}, 'custom device "/dev/nope": no such file or directory'),
    ({"PathOnHost": "/etc/passwd"}, "not a device node"),
    ({"PathOnHost": "/dev/null", "CgroupPermissions": "rwx"}, "invalid device mode: rwx"),
    ({"PathOnHost": "/dev/null", "PathInContainer": "null"}, "not an absolute path"),
])
def test_a_device_that_cannot_be_given_is_refused(device, words):
    message = refusal({"Devices": [device]})
    assert "HostConfig.Devices" in message and words in message


def test_device_cgroup_rules_allow_by_number():
    rules = spec_of({"DeviceCgroupRules": ["c 1:3 mr", "b *:* rwm"]})["linux"]["resources"]
    assert rules["devices"][-2:] == [
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "mr"},
        {"allow": True, "type": "b", "access": "rwm"},
    ]
    assert "invalid device cgroup rule format: 'c 1:3'" in \
        refusal({"DeviceCgroupRules": ["c 1:3"]})


def test_a_privileged_container_gets_every_host_device_and_no_masked_path():
    linux = spec_of({"Privileged": True,
                     "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/nothing"}]})[
        "linux"]
    paths = [d["path"] for d in linux["devices"]]
    assert paths == [NULL.path, LOOP0.path, KMSG.path, *(d.path for d in SND), "/dev/nothing"]
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert (linux["maskedPaths"], linux["readonlyPaths"]) == ([], [])


# -- namespaces ----------------------------------------------------------------------


def kinds(spec: dict[str, Any]) -> set[str]:
    return {ns["type"] for ns in spec["linux"]["namespaces"]}


def test_host_pid_uts_and_ipc_share_the_hosts_namespaces():
    spec = spec_of({"PidMode": "host", "UTSMode": "host", "IpcMode": "host"})
    assert kinds(spec) == {"mount", "network"}
    assert "hostname" not in spec
    assert mount_at(spec, "/dev/shm") == {"destination": "/dev/shm", "type": "bind",
                                          "source": "/dev/shm", "options": ["rbind", "rprivate"]}


def test_ipc_private_shareable_and_none():
    for mode in ("", "private", "shareable"):
        spec = spec_of({"IpcMode": mode, "ShmSize": 1 << 20})
        assert "ipc" in kinds(spec)
        shm = mount_at(spec, "/dev/shm")
        assert shm is not None and shm["type"] == "tmpfs" and "size=1048576" in shm["options"]
    spec = spec_of({"IpcMode": "none"})
    assert "ipc" in kinds(spec) and mount_at(spec, "/dev/shm") is None


def test_joining_another_containers_namespace_waits_for_the_start():
    # The paths and the shared /dev/shm come at each start (pouch.actors.container.joins).
    spec = spec_of({"IpcMode": "container:db", "PidMode": "container:db"})
    joined = [e for e in spec["linux"]["namespaces"] if e["type"] in ("ipc", "pid")]
    assert joined == [{"type": "pid"}, {"type": "ipc"}]
    assert mount_at(spec, "/dev/shm") is None
    assert "invalid IPC mode: container:" in refusal({"IpcMode": "container:"})
    assert "invalid IPC mode: bogus" in refusal({"IpcMode": "bogus"})
    assert "invalid UTS mode: private" in refusal({"UTSMode": "private"})


def test_ipc_host_needs_the_hosts_dev_shm():
    assert "/dev/shm is not mounted" in refusal({"IpcMode": "host"}, FakeHost(dev_shm=False))


def test_namespaced_sysctls_are_refused_in_a_shared_namespace():
    assert "host's IPC namespace" in refusal({"IpcMode": "host",
                                              "Sysctls": {"kernel.shmmax": "1"}})
    assert "host's UTS namespace" in refusal({"UTSMode": "host",
                                              "Sysctls": {"kernel.domainname": "x"}})
    spec = spec_of({"Sysctls": {"kernel.domainname": "example.org", "fs.mqueue.msg_max": "20"}})
    assert spec["linux"]["sysctl"]["kernel.domainname"] == "example.org"


# -- security ------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "expected"), [
    (["no-new-privileges"], True),
    (["no-new-privileges=true"], True),
    (["no-new-privileges:1"], True),
    (["no-new-privileges=false"], False),
    (["seccomp=unconfined", "apparmor=unconfined", "label=disable"], False),
])
def test_no_new_privileges(options, expected):
    assert spec_of({"SecurityOpt": options})["process"]["noNewPrivileges"] is expected


@pytest.mark.parametrize(("option", "words"), [
    ("no-new-privileges=maybe", 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    ("bogus", 'invalid --security-opt 1: "bogus"'),
    ("colour=red", 'invalid --security-opt 2: "colour=red"'),
    ("seccomp={not json", "invalid seccomp profile"),
])
def test_security_options_that_cannot_be_honoured_are_refused(option, words):
    assert words in refusal({"SecurityOpt": [option]})


def test_an_apparmor_profile_or_selinux_label_is_refused_where_the_kernel_enforces_it():
    enforcing = FakeHost(modules=frozenset({"apparmor", "selinux"}))
    for option in ("apparmor=docker-default", "label=type:svirt_apache_t"):
        assert "not supported yet" in refusal({"SecurityOpt": [option]}, enforcing)
        # Where it does not, ignored, as dockerd ignores it.
        assert "apparmorProfile" not in spec_of({"SecurityOpt": [option]})["process"]


def test_masked_and_readonly_paths_may_be_given():
    linux = spec_of({"MaskedPaths": ["/proc/kmsg"], "ReadonlyPaths": []})["linux"]
    assert (linux["maskedPaths"], linux["readonlyPaths"]) == (["/proc/kmsg"], [])
    linux = spec_of()["linux"]
    assert (linux["maskedPaths"], linux["readonlyPaths"]) == \
        (list(MASKED_PATHS), list(READONLY_PATHS))
    assert "not an absolute path" in refusal({"MaskedPaths": ["proc/kcore"]})


def test_group_add_names_come_from_the_containers_group_file_numbers_as_they_are():
    user = resolve_user("1000", None, GROUP, ["audio", "4242", "10", "staff"])
    assert user.additional_gids == [29, 4242, 10, 50]
    root = resolve_user("root", "root:x:0:0:root:/root:/bin/sh\n", GROUP, ["audio"])
    assert root.additional_gids == [10, 29]
    with pytest.raises(PouchError) as err:
        resolve_user("", None, GROUP, ["nosuch"])
    assert "Unable to find group nosuch: no matching entries in group file" in err.value.message


# -- init ----------------------------------------------------------------------------


def test_init_runs_first_from_a_read_only_bind_mount():
    spec = spec_of({"Init": True})
    assert spec["process"]["args"] == [INIT_PATH, "--", "sh"]
    assert mount_at(spec, INIT_PATH) == {"destination": INIT_PATH, "type": "bind",
                                         "source": "/usr/bin/tini-static",
                                         "options": ["bind", "ro"]}
    assert spec_of({"Init": False})["process"]["args"] == ["sh"]
    assert "tini" in refusal({"Init": True}, FakeHost(init=None))


# -- what inspect shows --------------------------------------------------------------


def test_the_recorded_host_config_fills_dockerds_defaults():
    recorded = recorded_host_config({"Memory": 64 << 20, "ShmSize": 0, "IpcMode": "",
                                     "LogConfig": {"Type": "", "Config": {}}})
    assert recorded["MemorySwap"] == 128 << 20
    assert recorded["ShmSize"] == 64 << 20
    assert (recorded["IpcMode"], recorded["CgroupnsMode"]) == ("private", "host")
    assert recorded["OomKillDisable"] is False
    assert recorded["MaskedPaths"] == list(MASKED_PATHS)
    assert recorded["LogConfig"] == {"Type": "json-file", "Config": {}}
    privileged = recorded_host_config({"Privileged": True, "MemorySwap": -1, "Memory": 1 << 30})
    assert privileged["MemorySwap"] == -1 and privileged.get("MaskedPaths") is None


def test_oom_kill_disable_without_a_memory_limit_earns_dockerds_warning():
    assert "no memory limit is set" in create_warnings({"OomKillDisable": True})[0]
    assert create_warnings({"OomKillDisable": True, "Memory": 64 << 20}) == []


# -- the log driver ------------------------------------------------------------------


def test_log_drivers_and_their_options():
    assert log_config(None) == LogConfig()
    assert log_config({"Type": "", "Config": {}}) == LogConfig()
    assert log_config({"Type": "none", "Config": {"max-size": "1k"}}) == LogConfig("none")
    assert log_config({"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3",
                                                       "tag": "x"}}) == \
        LogConfig(max_size=10_000_000, max_file=3)
    assert log_config({"Config": {"max-size": "1.5k"}}).max_size == 1500
    assert log_config({"Config": {"max-file": "5"}}).max_file == 1  # no size: no rotation
    assert recorded_log_config({"Type": "", "Config": None}) == \
        {"Type": "json-file", "Config": {}}


@pytest.mark.parametrize(("raw", "words"), [
    ({"Type": "syslog"}, "no log driver named 'syslog' is registered"),
    ({"Config": {"max-size": "ten"}}, "invalid size: 'ten'"),
    ({"Config": {"max-size": "0"}}, "max-size must be a positive number"),
    ({"Config": {"max-file": "0"}}, "max-file cannot be less than 1"),
    ({"Config": {"max-file": "x"}}, "max-file"),
    ({"Config": {"colour": "red"}}, "unknown log opt 'colour' for json-file log driver"),
    ({"Config": {"compress": "true"}}, "compress cannot be true"),
    ({"Config": {"mode": "bogus"}}, "logging mode not supported: bogus"),
])
def test_a_log_config_that_cannot_be_honoured_is_refused(raw, words):
    with pytest.raises(PouchError) as err:
        log_config(raw)
    assert "HostConfig.LogConfig" in err.value.message and words in err.value.message


def test_limits_the_machine_cannot_apply_are_discarded_with_dockerds_warnings():
    lacking = CgroupSupport(blkio_weight=False, blkio_weight_device=False,
                            kernel_memory=False, kernel_memory_tcp=False)
    hc: dict[str, Any] = {"BlkioWeight": 5, "BlkioWeightDevice": [{"Path": "/dev/x"}],
                          "KernelMemory": 1 << 20, "KernelMemoryTCP": 1 << 20, "Memory": 1}
    warnings = discard_unsupported(hc, lacking)
    assert hc == {"BlkioWeight": 0, "BlkioWeightDevice": [], "KernelMemory": 0,
                  "KernelMemoryTCP": 0, "Memory": 1}
    assert len(warnings) == 5 and warnings[0].endswith("Weight discarded.")
    kept = {"BlkioWeight": 300}
    assert discard_unsupported(kept, CgroupSupport()) == [] and kept == {"BlkioWeight": 300}


def test_a_private_cgroup_namespace_is_asked_for_and_a_bogus_mode_refused():
    assert {"type": "cgroup"} in spec_of({"CgroupnsMode": "private"})["linux"]["namespaces"]
    assert {"type": "cgroup"} not in spec_of({"CgroupnsMode": "host"})["linux"]["namespaces"]
    assert "invalid cgroup namespace mode: bogus" in refusal({"CgroupnsMode": "bogus"})
