"""The OCI spec a container gets: Docker's merge of request and image, its user,
its mounts, capabilities and limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pouch.actors.container.spec.merge import DEFAULT_PATH, Process, effective_process
from pouch.actors.container.spec.oci import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    READONLY_PATHS,
    RLIM_INFINITY,
    SpecInput,
    build_spec,
    clamp_oom_score_adj,
)
from pouch.actors.container.spec.user import User, resolve_user
from pouch.proto.envelope import PouchError
from pouch.tests.support.fakehost import FakeHost

CID = "3f1c0a9b2d4e" + "0" * 52
BUSYBOX = {
    "Cmd": ["sh"],
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
}
NGINXISH = {
    "Entrypoint": ["/docker-entrypoint.sh"],
    "Cmd": ["nginx", "-g", "daemon off;"],
    "Env": ["PATH=/usr/bin:/bin", "NGINX_VERSION=1.25", "PKG_RELEASE=1"],
    "WorkingDir": "/srv",
    "User": "www",
}


def invalid_message(excinfo: pytest.ExceptionInfo[PouchError]) -> str:
    assert excinfo.value.code == "invalid"
    return excinfo.value.message


# -- what runs: Docker's merge rules ---------------------------------------


def test_the_image_entrypoint_runs_its_default_cmd() -> None:
    p = effective_process(NGINXISH, {"Hostname": "web"})
    assert p.args == ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]


def test_a_cmd_on_the_command_line_replaces_the_image_cmd_only() -> None:
    p = effective_process(NGINXISH, {"Cmd": ["nginx", "-t"]})
    assert p.args == ["/docker-entrypoint.sh", "nginx", "-t"]


def test_an_entrypoint_on_the_command_line_drops_the_image_cmd() -> None:
    p = effective_process(NGINXISH, {"Entrypoint": ["cat"]})
    assert p.args == ["cat"]
    p = effective_process(NGINXISH, {"Entrypoint": "ls", "Cmd": ["-l", "/"]})
    assert p.args == ["ls", "-l", "/"]


def test_an_empty_entrypoint_string_resets_it_and_needs_a_command() -> None:
    # `docker run --entrypoint "" image cmd...` sends Entrypoint [""].
    p = effective_process(NGINXISH, {"Entrypoint": [""], "Cmd": ["env"]})
    assert p.args == ["env"]
    with pytest.raises(PouchError) as e:
        effective_process(NGINXISH, {"Entrypoint": [""]})
    assert invalid_message(e) == "No command specified"


def test_an_empty_entrypoint_list_drops_the_image_entrypoint_but_keeps_its_cmd() -> None:
    p = effective_process(NGINXISH, {"Entrypoint": []})
    assert p.args == ["nginx", "-g", "daemon off;"]


def test_an_image_without_a_command_needs_one_from_the_request() -> None:
    with pytest.raises(PouchError) as e:
        effective_process({"Env": []}, {})
    assert invalid_message(e) == "No command specified"
    assert effective_process({}, {"Cmd": ["true"]}).args == ["true"]


def test_environment_is_dockerds_defaults_then_request_then_image() -> None:
    p = effective_process(
        NGINXISH, {"Hostname": "web", "Env": ["PKG_RELEASE=2", "DEBUG=1"], "Tty": True}
    )
    assert p.env == [
        "PATH=/usr/bin:/bin",  # the image's PATH takes the default's place
        "HOSTNAME=web",
        "TERM=xterm",
        "PKG_RELEASE=2",
        "DEBUG=1",
        "NGINX_VERSION=1.25",
    ]


def test_default_path_and_hostname_are_added_when_the_image_has_none() -> None:
    p = effective_process({"Cmd": ["sh"]}, {"Hostname": "box"})
    assert p.env == [f"PATH={DEFAULT_PATH}", "HOSTNAME=box"]
    assert not p.tty


def test_a_bare_key_in_the_request_unsets_the_variable() -> None:
    p = effective_process(NGINXISH, {"Env": ["NGINX_VERSION", "PATH"]})
    assert p.env == ["PKG_RELEASE=1"]


def test_values_may_contain_equals_signs_and_be_empty() -> None:
    p = effective_process(BUSYBOX, {"Env": ["OPTS=a=b", "EMPTY="]})
    assert p.env[-2:] == ["OPTS=a=b", "EMPTY="]


@pytest.mark.parametrize("entry", ["=value", "", "A=\0b"])
def test_a_malformed_environment_entry_is_refused(entry: str) -> None:
    with pytest.raises(PouchError) as e:
        effective_process(BUSYBOX, {"Env": [entry]})
    assert "environment" in invalid_message(e) or "Env" in invalid_message(e)


def test_working_dir_comes_from_request_then_image_then_root() -> None:
    assert effective_process(NGINXISH, {"WorkingDir": "/tmp/../var//log/"}).cwd == "/var/log"
    assert effective_process(NGINXISH, {}).cwd == "/srv"
    assert effective_process(BUSYBOX, {}).cwd == "/"


def test_a_relative_working_dir_is_refused_in_dockerds_words() -> None:
    with pytest.raises(PouchError) as e:
        effective_process(BUSYBOX, {"WorkingDir": "app"})
    assert invalid_message(e) == (
        "the working directory 'app' is invalid, it needs to be an absolute path"
    )


def test_user_and_stdio_flags_come_from_the_request() -> None:
    assert effective_process(NGINXISH, {}).user == "www"
    p = effective_process(NGINXISH, {"User": "0:0", "OpenStdin": True, "Tty": True})
    assert (p.user, p.open_stdin, p.tty) == ("0:0", True, True)
    assert effective_process(BUSYBOX, {}).user == ""


def test_cmd_must_be_strings() -> None:
    with pytest.raises(PouchError) as e:
        effective_process(BUSYBOX, {"Cmd": ["echo", 1]})
    assert "Config.Cmd" in invalid_message(e)


# -- who runs it: /etc/passwd and /etc/group ------------------------------

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment line
broken line
www:x:33:33:www-data:/var/www:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
"""
GROUP = """\
root:x:0:root
daemon:x:1:
www-data:x:33:
app:x:1000:
docker:x:999:app,www
audio:x:29:app
"""


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", User(0, 0, [0], "/root")),
        ("root", User(0, 0, [0], "/root")),
        ("app", User(1000, 1000, [999, 29], "/home/app")),
        ("1000", User(1000, 1000, [999, 29], "/home/app")),
        ("app:www-data", User(1000, 33, [], "/home/app")),
        ("1000:33", User(1000, 33, [], "/home/app")),
        ("app:4242", User(1000, 4242, [], "/home/app")),
        ("33:docker", User(33, 999, [], "/var/www")),
        ("4242", User(4242, 0, [], "/")),
        ("4242:4343", User(4242, 4343, [], "/")),
    ],
)
def test_user_forms_resolve_like_runc(spec: str, expected: User) -> None:
    assert resolve_user(spec, PASSWD, GROUP) == expected


def test_an_unknown_user_name_is_refused_in_dockerds_words() -> None:
    with pytest.raises(PouchError) as e:
        resolve_user("nobody", PASSWD, GROUP)
    assert invalid_message(e) == "unable to find user nobody: no matching entries in passwd file"


def test_an_unknown_group_name_is_refused() -> None:
    with pytest.raises(PouchError) as e:
        resolve_user("app:wheel", PASSWD, GROUP)
    assert invalid_message(e) == "unable to find group wheel: no matching entries in group file"


def test_without_passwd_only_numeric_users_work() -> None:
    assert resolve_user("", None, None) == User(0, 0, [], "/")
    assert resolve_user("123:456", None, None) == User(123, 456, [], "/")
    with pytest.raises(PouchError) as e:
        resolve_user("app", None, None)
    assert "unable to find user app" in invalid_message(e)
    with pytest.raises(PouchError):
        resolve_user("1:staff", None, None)


@pytest.mark.parametrize("spec", ["-1", "2147483648", "0:-5"])
def test_ids_out_of_range_are_refused(spec: str) -> None:
    with pytest.raises(PouchError) as e:
        resolve_user(spec, None, None)
    assert "range" in invalid_message(e)


# -- the spec ---------------------------------------------------------------


def spec_input(host_config: dict[str, Any] | None = None, **changes: Any) -> SpecInput:
    fields: dict[str, Any] = {
        "container_id": CID,
        "process": Process(["sh"], [f"PATH={DEFAULT_PATH}"], "/", "", False, False),
        "user": User(0, 0, [10], "/root"),
        "hostname": CID[:12],
        "network_mode": "none",
        "netns_path": None,
        "hosts_path": f"/var/lib/pouch/containers/{CID}/hosts",
        "resolv_conf_path": f"/var/lib/pouch/containers/{CID}/resolv.conf",
        "hostname_path": f"/var/lib/pouch/containers/{CID}/hostname",
        "cgroup_parent": "/pouch",
        "host_config": host_config or {},
        "labels": {},
        "host": FakeHost(),
    }
    fields.update(changes)
    return SpecInput(**fields)


def mount_at(spec: dict[str, Any], destination: str) -> dict[str, Any]:
    found = [m for m in spec["mounts"] if m["destination"] == destination]
    assert len(found) == 1, destination
    return found[0]


def invalid_spec(host_config: dict[str, Any], **changes: Any) -> str:
    with pytest.raises(PouchError) as e:
        build_spec(spec_input(host_config, **changes))
    return invalid_message(e)


def test_a_default_container_gets_dockers_spec() -> None:
    spec = build_spec(spec_input(labels={"com.example.team": "infra"}))
    json.dumps(spec)  # containerd gets it as JSON
    assert spec["ociVersion"] == "1.0.2-dev"
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["hostname"] == CID[:12]
    assert spec["annotations"] == {"com.example.team": "infra"}
    proc = spec["process"]
    assert proc["args"] == ["sh"] and proc["cwd"] == "/" and proc["terminal"] is False
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [0, 10]}
    caps = proc["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == list(DEFAULT_CAPABILITIES)
    assert "inheritable" not in caps and "ambient" not in caps
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}]
    assert proc["noNewPrivileges"] is False
    assert "oomScoreAdj" not in proc
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
        "/etc/resolv.conf", "/etc/hostname", "/etc/hosts",
    ]  # fmt: skip
    assert mount_at(spec, "/dev")["options"] == [
        "nosuid", "strictatime", "mode=755", "size=65536k",
    ]  # fmt: skip
    assert "size=67108864" in mount_at(spec, "/dev/shm")["options"]
    assert "ro" in mount_at(spec, "/sys")["options"]
    assert mount_at(spec, "/sys/fs/cgroup")["type"] == "cgroup"
    assert "ro" in mount_at(spec, "/sys/fs/cgroup")["options"]
    assert mount_at(spec, "/etc/hosts") == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": f"/var/lib/pouch/containers/{CID}/hosts",
        "options": ["rbind", "rprivate"],
    }
    linux = spec["linux"]
    assert sorted(ns["type"] for ns in linux["namespaces"]) == [
        "ipc", "mount", "network", "pid", "uts",
    ]  # fmt: skip
    assert {"type": "network"} in linux["namespaces"]
    assert linux["cgroupsPath"] == f"/pouch/{CID}"
    assert linux["maskedPaths"] == list(MASKED_PATHS)
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    assert linux["devices"] == []
    assert linux["sysctl"] == {
        "net.ipv4.ping_group_range": "0 2147483647",
        "net.ipv4.ip_unprivileged_port_start": "0",
    }
    devices = linux["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    allowed = {(d.get("major"), d.get("minor")) for d in devices[1:] if d["allow"]}
    for dev in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None)]:
        assert dev in allowed
    assert set(linux["resources"]) == {"devices"}


def test_a_non_root_user_keeps_only_the_bounding_set() -> None:
    spec = build_spec(spec_input(user=User(1000, 1000, [999], "/home/app")))
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == list(DEFAULT_CAPABILITIES)
    assert caps["effective"] == caps["permitted"] == []
    assert spec["process"]["user"]["additionalGids"] == [1000, 999]


def test_joining_a_prepared_network_namespace() -> None:
    spec = build_spec(spec_input(network_mode="bridge", netns_path="/var/run/netns/abc"))
    assert {"type": "network", "path": "/var/run/netns/abc"} in spec["linux"]["namespaces"]


def test_host_network_shares_the_hosts_namespace_and_name() -> None:
    spec = build_spec(spec_input(network_mode="host"))
    assert "network" not in {ns["type"] for ns in spec["linux"]["namespaces"]}
    assert "uts" in {ns["type"] for ns in spec["linux"]["namespaces"]}
    assert "hostname" not in spec
    assert spec["linux"]["sysctl"] == {}
    mount_at(spec, "/etc/hosts")
    assert "network namespace" in invalid_spec(
        {"Sysctls": {"net.core.somaxconn": "1024"}}, network_mode="host"
    )


def test_a_privileged_container_gets_every_capability_and_device() -> None:
    spec = build_spec(spec_input({"Privileged": True, "CapDrop": ["ALL"]}))
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == list(ALL_CAPABILITIES)
    assert len(ALL_CAPABILITIES) == 41 and ALL_CAPABILITIES[21] == "CAP_SYS_ADMIN"
    assert "ro" not in mount_at(spec, "/sys")["options"]
    assert "ro" not in mount_at(spec, "/sys/fs/cgroup")["options"]
    assert spec["linux"]["maskedPaths"] == [] and spec["linux"]["readonlyPaths"] == []
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_a_daemon_can_grant_only_the_capabilities_it_holds() -> None:
    held = frozenset(ALL_CAPABILITIES) - {"CAP_SYS_RESOURCE"}
    spec = build_spec(spec_input({"Privileged": True}, grantable_caps=held))
    assert "CAP_SYS_RESOURCE" not in spec["process"]["capabilities"]["bounding"]
    assert len(spec["process"]["capabilities"]["bounding"]) == 40
    spec = build_spec(spec_input({"CapAdd": ["ALL"]}, grantable_caps=held))
    assert len(spec["process"]["capabilities"]["bounding"]) == 40
    msg = invalid_spec({"CapAdd": ["SYS_RESOURCE"]}, grantable_caps=held)
    assert "CAP_SYS_RESOURCE" in msg and "CapAdd" in msg


def test_cap_add_and_drop_accept_names_with_or_without_cap_prefix() -> None:
    spec = build_spec(spec_input({"CapAdd": ["sys_admin", "CAP_NET_ADMIN"], "CapDrop": ["mknod"]}))
    bounding = spec["process"]["capabilities"]["bounding"]
    assert "CAP_MKNOD" not in bounding
    assert bounding[-2:] == ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
    assert len(bounding) == 15


def test_dropping_all_keeps_only_what_is_added() -> None:
    spec = build_spec(spec_input({"CapDrop": ["ALL"], "CapAdd": ["NET_BIND_SERVICE"]}))
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_NET_BIND_SERVICE"]
    spec = build_spec(spec_input({"CapDrop": ["all"]}))
    assert spec["process"]["capabilities"]["bounding"] == []


def test_adding_all_keeps_everything_but_what_is_dropped() -> None:
    spec = build_spec(spec_input({"CapAdd": ["ALL"], "CapDrop": ["SYS_ADMIN", "CAP_BPF"]}))
    bounding = spec["process"]["capabilities"]["bounding"]
    assert len(bounding) == 39 and "CAP_SYS_ADMIN" not in bounding


def test_adding_a_default_capability_does_not_list_it_twice() -> None:
    spec = build_spec(spec_input({"CapAdd": ["CHOWN"]}))
    assert spec["process"]["capabilities"]["bounding"] == list(DEFAULT_CAPABILITIES)


def test_a_readonly_rootfs_keeps_dev_and_proc_writable() -> None:
    spec = build_spec(spec_input({"ReadonlyRootfs": True, "Tmpfs": {"/run": ""}}))
    assert spec["root"]["readonly"] is True
    for path in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/sys", "/sys/fs/cgroup"):
        assert "ro" in mount_at(spec, path)["options"], path
    for path in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/run"):
        assert "ro" not in mount_at(spec, path)["options"], path


def test_resources_limit_memory_cpu_and_pids() -> None:
    spec = build_spec(
        spec_input(
            {
                "Memory": 64 * 1024 * 1024,
                "MemoryReservation": 32 * 1024 * 1024,
                "MemorySwappiness": 10,
                "CpuShares": 512,
                "CpuQuota": 50000,
                "CpuPeriod": 100000,
                "CpusetCpus": "0-1,3",
                "PidsLimit": 100,
            }
        )
    )
    resources = spec["linux"]["resources"]
    assert resources["memory"] == {
        "limit": 67108864,
        "swap": 134217728,  # dockerd's default: memory+swap is twice the memory
        "reservation": 33554432,
        "swappiness": 10,
    }
    assert resources["cpu"] == {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1,3"}
    assert resources["pids"] == {"limit": 100}


def test_swap_can_be_given_or_unlimited_and_cpus_as_nano_cpus() -> None:
    spec = build_spec(spec_input({"Memory": 10 << 20, "MemorySwap": -1, "NanoCpus": 1_500_000_000}))
    assert spec["linux"]["resources"]["memory"] == {"limit": 10 << 20, "swap": -1}
    assert spec["linux"]["resources"]["cpu"] == {"period": 100000, "quota": 150000}
    spec = build_spec(spec_input({"Memory": 10 << 20, "MemorySwap": 30 << 20, "PidsLimit": 0}))
    assert spec["linux"]["resources"]["memory"]["swap"] == 30 << 20
    assert spec["linux"]["resources"]["pids"] == {"limit": -1}


def test_tmpfs_mounts_take_dockers_defaults_and_the_users_options() -> None:
    spec = build_spec(
        spec_input({"Tmpfs": {"/run": "", "/tmp": "rw,exec,size=64m", "/dev/shm": "size=1g"}})
    )
    assert mount_at(spec, "/run") == {
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["noexec", "nosuid", "nodev", "rprivate"],
    }
    assert mount_at(spec, "/tmp")["options"] == [
        "nosuid",
        "nodev",
        "rprivate",
        "rw",
        "exec",
        "size=64m",
    ]
    # The user's /dev/shm replaces Docker's.
    assert mount_at(spec, "/dev/shm")["source"] == "tmpfs"
    assert "size=1g" in mount_at(spec, "/dev/shm")["options"]


def test_a_tmpfs_over_dev_replaces_everything_under_dev() -> None:
    spec = build_spec(spec_input({"Tmpfs": {"/dev": ""}}))
    destinations = [m["destination"] for m in spec["mounts"]]
    assert destinations.count("/dev") == 1
    assert not [d for d in destinations if d.startswith("/dev/")]


def test_a_tmpfs_parent_is_mounted_before_the_binds_under_it() -> None:
    spec = build_spec(spec_input({"Tmpfs": {"/etc": ""}}))
    destinations = [m["destination"] for m in spec["mounts"]]
    assert destinations.index("/etc") < destinations.index("/etc/hosts")


def test_shm_size_sets_the_dev_shm_size() -> None:
    spec = build_spec(spec_input({"ShmSize": 1 << 30}))
    assert mount_at(spec, "/dev/shm")["options"][-1] == "size=1073741824"


def test_oom_score_adj_is_set_only_when_asked_and_never_negative() -> None:
    assert build_spec(spec_input({"OomScoreAdj": 500}))["process"]["oomScoreAdj"] == 500
    assert build_spec(spec_input({"OomScoreAdj": -500}))["process"]["oomScoreAdj"] == 0
    assert clamp_oom_score_adj(-17) == 0 and clamp_oom_score_adj(300) == 300


def test_ulimits_override_and_extend_the_default_nofile() -> None:
    spec = build_spec(
        spec_input(
            {
                "Ulimits": [
                    {"Name": "nofile", "Soft": 1024, "Hard": 4096},
                    {"Name": "core", "Soft": -1, "Hard": -1},
                ]
            }
        )
    )
    assert spec["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024},
        {"type": "RLIMIT_CORE", "hard": RLIM_INFINITY, "soft": RLIM_INFINITY},
    ]


def test_the_default_nofile_stays_within_what_the_daemon_may_grant() -> None:
    spec = build_spec(spec_input(nofile_ceiling=20000))
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]


def test_sysctls_are_passed_when_namespaced() -> None:
    spec = build_spec(
        spec_input({"Sysctls": {"net.core.somaxconn": "1024", "kernel.shmmax": "1000000"}})
    )
    assert spec["linux"]["sysctl"]["net.core.somaxconn"] == "1024"
    assert spec["linux"]["sysctl"]["kernel.shmmax"] == "1000000"


@pytest.mark.parametrize(
    ("host_config", "words"),
    [
        ({"Memory": -1}, "Memory"),
        ({"Memory": 1024}, "6MB"),
        ({"Memory": "1g"}, "Memory"),
        ({"MemorySwap": 64 << 20}, "MemorySwap"),
        ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "MemorySwap"),
        ({"MemorySwappiness": 101}, "MemorySwappiness"),
        ({"CpuShares": -2}, "CpuShares"),
        ({"CpuPeriod": 10}, "CpuPeriod"),
        ({"CpuQuota": 10}, "CpuQuota"),
        ({"NanoCpus": 10**9, "CpuQuota": 50000}, "NanoCpus"),
        ({"CpusetCpus": "0-"}, "CpusetCpus"),
        ({"CapAdd": ["CAP_FLY"]}, 'unknown capability: "CAP_FLY"'),
        ({"CapDrop": ["bogus"]}, "CapDrop"),
        ({"CapAdd": "SYS_ADMIN"}, "CapAdd"),
        ({"Privileged": "yes"}, "Privileged"),
        ({"ShmSize": -1}, "ShmSize"),
        ({"Tmpfs": {"run": ""}}, "must be absolute"),
        ({"Tmpfs": {"/": ""}}, "Tmpfs"),
        ({"Tmpfs": {"/run": "size=1m,bogus"}}, 'invalid tmpfs option "bogus"'),
        ({"OomScoreAdj": 1001}, "OomScoreAdj"),
        ({"Ulimits": [{"Name": "nofiles", "Soft": 1, "Hard": 1}]}, "Ulimits"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 1}]}, "Ulimits"),
        ({"Sysctls": {"kernel.panic": "1"}}, "not in a separate kernel namespace"),
        ({"Sysctls": {"kernel.hostname": "x"}}, "Sysctls"),
    ],
)
def test_bad_host_config_values_are_refused_naming_the_field(
    host_config: dict[str, Any], words: str
) -> None:
    assert words in invalid_spec(host_config)


def test_a_container_id_must_be_a_single_path_component() -> None:
    assert "container id" in invalid_spec({}, container_id="../escape")
