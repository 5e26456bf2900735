"""The syscall filter, told with the docker CLI and checked from inside the container:
pouch's default profile, `--security-opt seccomp=unconfined`, a profile file, and a
privileged container (unfiltered, as dockerd runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pouch.tests.integration.test_container_resources import refused, run
from pouch.tests.support import i386
from pouch.tests.support.daemon import DockerError

# The filter mode of the shell itself: 0 none, 2 a filter.
MODE = "grep Seccomp: /proc/self/status | cut -f2"
# unshare(CLONE_NEWUSER) needs no capability, so only the filter can deny it.
USERNS = "unshare -U true 2>&1; echo $?"


def test_the_default_profile_filters_and_denies_namespaces(docker):
    lines = run(docker, script=f"{MODE}; {USERNS}")
    assert lines[0] == "2"
    assert lines[-1] != "0" and "Operation not permitted" in lines[1]
    # What a program ordinarily does still works (files, processes, sockets, time).
    ok = run(docker, script="mkdir /d && touch /d/f && ln -s f /d/l && sleep 0 && "
                            "nc -l -p 7 127.0.0.1 & sleep 0.1; date >/dev/null; echo ok")
    assert ok[-1] == "ok"


def test_sys_admin_unlocks_what_it_concerns(docker):
    lines = run(docker, "--cap-add", "SYS_ADMIN",
                script="mkdir -p /m && mount -t tmpfs none /m 2>&1 && echo mounted; " + USERNS)
    assert lines == ["mounted", "0"]


def test_unconfined_and_privileged_run_without_a_filter(docker):
    assert run(docker, "--security-opt", "seccomp=unconfined", script=f"{MODE}; {USERNS}") \
        == ["0", "0"]
    assert run(docker, "--privileged", script=f"{MODE}; {USERNS}") == ["0", "0"]


def test_a_profile_file_replaces_the_default(docker, tmp_path: Path):
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 13}]}))
    lines = run(docker, "--security-opt", f"seccomp={profile}",
                script=f"{MODE}; mkdir /d 2>&1; echo $?; {USERNS}")
    assert lines[0] == "2"
    assert "Permission denied" in lines[1] and lines[2] == "1"
    assert lines[-1] == "0"  # everything else allowed


def test_exec_runs_under_the_containers_filter(docker, name):
    docker("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert docker("exec", name, "sh", "-c", MODE).strip() == "2"


def test_a_broken_profile_is_refused_at_create(daemon, tmp_path: Path):
    profile = tmp_path / "broken.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_SOMETIMES"}')
    assert "unknown action" in refused(daemon, "--security-opt", f"seccomp={profile}")


def test_32_bit_programs_run_under_the_default_filter(docker, tmp_path: Path):
    # The filter has an i386 section (x32's goes where the kernel refuses x32 calls).
    hello = tmp_path / "hello32"
    hello.write_bytes(i386.program(b"hello from i386\n"))
    hello.chmod(0o755)
    assert run(docker, "-v", f"{hello}:/hello32:ro", script="/hello32") == ["hello from i386"]
    # Without one, its calls are not let through: the program above is one the filter sees.
    native = tmp_path / "native.json"
    native.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                  "architectures": ["SCMP_ARCH_X86_64"],
                                  "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}))
    with pytest.raises(DockerError) as failed:
        docker("run", "--rm", "--security-opt", f"seccomp={native}",
               "-v", f"{hello}:/hello32:ro", "busybox", "/hello32")
    assert "hello" not in failed.value.stdout
