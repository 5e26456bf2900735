"""What a container may do and see: capabilities, privileged mode, a read-only root,
users and groups, devices, shared namespaces, sysctls and the init, told with the
docker CLI and checked from inside the container."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from pouch.actors.container.spec.oci import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from pouch.tests.integration.test_container_resources import refused, run


def status_mask(lines: list[str], field: str) -> int:
    return int(next(line.split()[1] for line in lines if line.startswith(field + ":")), 16)


def mask(names: tuple[str, ...] | list[str]) -> int:
    return sum(1 << ALL_CAPABILITIES.index(n) for n in names)


def daemon_caps() -> int:
    """The capabilities pouchd can hand on (its bounding set: a test runs as it does)."""
    status = Path("/proc/self/status").read_text().splitlines()
    return status_mask(status, "CapBnd")


# -- capabilities ----------------------------------------------------------------------


def test_a_container_gets_dockers_default_capabilities(docker):
    lines = run(docker, script="cat /proc/self/status")
    assert status_mask(lines, "CapEff") == mask(DEFAULT_CAPABILITIES)


def test_cap_add_and_cap_drop_with_or_without_the_prefix(docker):
    lines = run(docker, "--cap-add", "NET_ADMIN", "--cap-add", "cap_sys_time",
                "--cap-drop", "CAP_CHOWN", "--cap-drop", "mknod", script="cat /proc/self/status")
    wanted = {*DEFAULT_CAPABILITIES, "CAP_NET_ADMIN", "CAP_SYS_TIME"} - {"CAP_CHOWN", "CAP_MKNOD"}
    assert status_mask(lines, "CapEff") == mask(sorted(wanted))
    assert run(docker, "--cap-drop", "CHOWN", script="chown 1 /tmp 2>&1; echo $?")[-1] == "1"


def test_dropping_all_keeps_only_what_is_added(docker):
    lines = run(docker, "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE",
                script="cat /proc/self/status")
    assert status_mask(lines, "CapEff") == mask(["CAP_NET_BIND_SERVICE"])
    lines = run(docker, "--cap-add", "ALL", "--cap-drop", "SYS_ADMIN",
                script="cat /proc/self/status")
    assert status_mask(lines, "CapEff") == daemon_caps() & ~mask(["CAP_SYS_ADMIN"])


def test_an_unknown_capability_is_refused(daemon):
    assert 'unknown capability: "CAP_FLY"' in refused(daemon, "--cap-add", "FLY")


# -- privileged ------------------------------------------------------------------------


def test_a_privileged_container_gets_every_capability_the_hosts_devices_and_no_masks(docker):
    host_devices = sorted(p.name for p in Path("/dev").iterdir()
                          if not p.is_symlink() and p.name != "console"
                          and (stat.S_ISCHR(p.lstat().st_mode) or stat.S_ISBLK(p.lstat().st_mode)))
    lines = run(docker, "--privileged",
                script="cat /proc/self/status; ls /dev; echo mounts; "
                       "mount | grep -cE ' /proc/(sys|keys) ' ; mount | grep ' /sys '")
    assert status_mask(lines, "CapEff") == daemon_caps()
    listed = set(lines)
    assert set(host_devices) <= listed
    after = lines[lines.index("mounts") + 1:]
    assert after[0] == "0"  # nothing masked, nothing read-only in /proc
    assert "(rw," in after[1]  # /sys writable


def test_an_unprivileged_container_has_dockers_masked_and_read_only_paths(docker):
    lines = run(docker, script="mount | grep -E ' /proc/(sys|keys) '; ls /dev | grep -c loop; true")
    assert any(line.startswith("proc on /proc/sys type proc (ro,") for line in lines)
    assert any(" /proc/keys " in line for line in lines)
    assert lines[-1] == "0"


# -- the root filesystem, users, no-new-privileges -------------------------------------


def test_a_read_only_root_keeps_dev_shm_writable(docker):
    lines = run(docker, "--read-only",
                script="touch /x 2>&1; touch /dev/shm/x && echo shm-writable")
    assert lines == ["touch: /x: Read-only file system", "shm-writable"]


def test_user_and_group_add_by_name_and_number(docker):
    lines = run(docker, "--user", "nobody", "--group-add", "wheel", "--group-add", "4242",
                script="id")
    assert lines == ["uid=65534(nobody) gid=65534(nogroup) groups=10(wheel),4242,65534(nogroup)"]


def test_a_group_unknown_to_the_image_is_refused(daemon):
    message = refused(daemon, "--group-add", "no-such-group")
    assert "Unable to find group no-such-group" in message


def test_no_new_privileges(docker):
    assert run(docker, script="grep NoNewPrivs /proc/self/status") == ["NoNewPrivs:\t0"]
    lines = run(docker, "--security-opt", "no-new-privileges",
                script="grep NoNewPrivs /proc/self/status")
    assert lines == ["NoNewPrivs:\t1"]


def test_security_options_pouch_cannot_honour_are_refused(daemon):
    enforced = Path("/sys/module/apparmor/parameters/enabled")
    if enforced.exists() and enforced.read_text().strip() == "Y":
        assert "not supported yet" in refused(daemon, "--security-opt",
                                              "apparmor=docker-default")
    else:  # a kernel without AppArmor: the option is ignored, as dockerd ignores it
        assert daemon.docker_result("run", "--rm", "--security-opt", "apparmor=docker-default",
                                    "busybox", "true").returncode == 0
    assert 'invalid --security-opt 2: "bogus=1"' in refused(daemon, "--security-opt", "bogus=1")


def test_a_private_cgroup_namespace_shows_the_container_its_own_root(docker):
    own = run(docker, "--cgroupns", "private", script="cat /proc/self/cgroup")
    assert own and all(line.endswith(":/") for line in own)
    host = run(docker, "--cgroupns", "host", script="cat /proc/self/cgroup")
    assert any("/pouch/" in line for line in host)


# -- devices ---------------------------------------------------------------------------


def test_a_host_device_appears_under_its_new_name_with_its_cgroup_rule(docker):
    lines = run(docker, "--device", "/dev/null:/dev/nothing:rw",
                script="ls -l /dev/nothing; echo x > /dev/nothing && echo written; "
                       "grep 'c 1:3' /sys/fs/cgroup/devices/devices.list")
    assert lines[0].startswith("crw") and "1,   3" in lines[0]
    assert lines[1] == "written"
    assert "c 1:3 rwm" in lines[2:]


def block_device() -> Path:
    device = next((Path(p) for p in ("/dev/loop0", "/dev/vda", "/dev/sda")
                   if Path(p).is_block_device()), None)
    if device is None:
        pytest.skip("no block device here")
    return device


def test_a_device_given_read_only_can_be_read_not_written(docker):
    device = block_device()
    lines = run(docker, "--device", f"{device}:/dev/disk:r",
                script="head -c 1 /dev/disk >/dev/null && echo read; "
                       "echo x 2>/dev/null > /dev/disk || echo not-written")
    assert lines == ["read", "not-written"]


def test_a_device_cgroup_rule_lets_a_node_made_inside_be_used(docker):
    rdev = block_device().stat().st_rdev
    major, minor = os.major(rdev), os.minor(rdev)
    make_and_read = f"mknod /dev/d b {major} {minor}; head -c 1 /dev/d >/dev/null 2>&1 " \
                    "&& echo read || echo denied"
    assert run(docker, script=make_and_read) == ["denied"]
    assert run(docker, "--device-cgroup-rule", f"b {major}:{minor} r",
               script=make_and_read) == ["read"]


def test_a_device_the_host_does_not_have_is_refused(daemon):
    message = refused(daemon, "--device", "/dev/no-such-device")
    assert 'error gathering device information while adding custom device ' \
           '"/dev/no-such-device"' in message


# -- namespaces ------------------------------------------------------------------------


READ_NS = "for n in pid uts ipc; do readlink /proc/self/ns/$n; done"


def ns(link: str) -> str:
    """A namespace of the host's (the tests run in pouchd's own namespaces)."""
    return os.readlink(f"/proc/self/ns/{link}")


def test_host_pid_uts_and_ipc_share_the_hosts_namespaces(docker):
    lines = run(docker, "--pid", "host", "--uts", "host", "--ipc", "host",
                script=f"{READ_NS}; hostname")
    assert lines == [ns("pid"), ns("uts"), ns("ipc"), socket.gethostname()]
    private = run(docker, script=READ_NS)
    assert not set(private) & {ns("pid"), ns("uts"), ns("ipc")}


def test_ipc_shareable_and_none(docker):
    assert run(docker, "--ipc", "shareable", "--shm-size", "8m",
               script="df -k /dev/shm | tail -1")[0].split()[1] == "8192"
    assert run(docker, "--ipc", "none", script="mount | grep -c /dev/shm; true") == ["0"]


def test_a_hostname_with_the_hosts_uts_namespace_is_a_conflict(daemon):
    assert "conflicting options: hostname and the UTS mode" in \
        refused(daemon, "--uts", "host", "--hostname", "box")


def test_namespaced_sysctls_are_set_and_others_refused(docker, daemon):
    lines = run(docker, "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmax=123456",
                script="cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax")
    assert lines == ["1", "123456"]
    assert "host's IPC namespace" in refused(daemon, "--ipc", "host",
                                             "--sysctl", "kernel.shmmax=1")


# -- the init ----------------------------------------------------------------------------


def test_init_runs_docker_init_as_pid_1(docker):
    lines = run(docker, "--init", script="ps -o pid,args")
    assert lines[1].split() == ["1", "/sbin/docker-init", "--", "sh", "-c", "ps", "-o", "pid,args"]


def test_init_reaps_what_its_child_leaves_behind(docker, daemon, name):
    # The shell's orphan is adopted by PID 1: tini reaps it, so no zombie stays behind.
    docker("run", "--name", name, "--init", "busybox", "sh", "-c",
           "(sleep 0.2 &) ; sleep 1; ps -o stat,args | grep -c '^Z' ; true")
    assert docker("logs", name) == "0"
    assert daemon.inspect(name)["HostConfig"]["Init"] is True
