"""The seccomp profiles: pouch's default and Docker-format ones, resolved for a container."""

from __future__ import annotations

import json

import pytest

from pouch.actors.container.spec import seccomp
from pouch.actors.container.spec.oci import DEFAULT_CAPABILITIES
from pouch.proto.envelope import PouchError


def allowed(linux_seccomp: dict) -> dict[str, list[dict]]:
    """Each allowed syscall name -> its rules (argument filters, if any)."""
    out: dict[str, list[dict]] = {}
    for rule in linux_seccomp["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            for name in rule["names"]:
                out.setdefault(name, []).append(rule)
    return out


def resolve(caps=DEFAULT_CAPABILITIES, machine="x86_64", kernel="6.1.0-13-amd64"):
    return seccomp.oci_seccomp(seccomp.default_profile(), caps, machine, kernel)


def test_the_default_denies_with_eperm_on_this_architecture_family():
    out = resolve()
    assert out["defaultAction"] == "SCMP_ACT_ERRNO" and out["defaultErrnoRet"] == 1
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert resolve(machine="aarch64")["architectures"] == ["SCMP_ARCH_AARCH64",
                                                           "SCMP_ARCH_ARM"]


def test_a_kernel_refusing_x32_calls_gets_no_x32_section():
    from pouch.tests.support.fakehost import FakeHost
    from pouch.tests.unit.test_spec_resources import spec_of

    without = seccomp.oci_seccomp(seccomp.default_profile(x32=False), DEFAULT_CAPABILITIES,
                                  "x86_64", "6.1.0-13-amd64")
    assert without["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert without["syscalls"] == resolve()["syscalls"]
    assert "SCMP_ARCH_X32" not in \
        spec_of({}, FakeHost(x32=False))["linux"]["seccomp"].get("architectures", [])


def test_the_default_allows_ordinary_calls_and_not_administration():
    calls = allowed(resolve())
    for name in ("read", "openat", "mkdir", "execve", "futex", "setuid", "arch_prctl",
                 "chroot", "ptrace"):
        assert name in calls, name
    for name in ("mount", "umount2", "unshare", "setns", "reboot", "bpf", "init_module",
                 "open_by_handle_at", "settimeofday", "s390_runtime_instr", "cacheflush"):
        assert name not in calls, name
    assert "ptrace" not in allowed(resolve(kernel="4.4.0"))


def test_capabilities_unlock_their_calls():
    calls = allowed(resolve([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_TIME"]))
    for name in ("mount", "unshare", "setns", "clone3", "settimeofday"):
        assert name in calls, name
    assert [rule.get("args") for rule in calls["clone"]] == [None]  # no flag filter
    assert "chroot" not in allowed(resolve(["CAP_CHOWN"]))


def test_clone_without_sys_admin_is_filtered_on_namespace_flags():
    out = resolve()
    assert allowed(out)["clone"][0]["args"] == [
        {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    clone3 = [r for r in out["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    assert allowed(resolve(machine="s390x"))["clone"][0]["args"][0]["index"] == 1


def test_personality_and_socket_are_filtered_on_their_argument():
    calls = allowed(resolve())
    personas = sorted(rule["args"][0]["value"] for rule in calls["personality"])
    assert personas == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert calls["socket"][0]["args"] == [
        {"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}]


def test_a_docker_format_profile_is_resolved():
    text = json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 7, "op": "SCMP_CMP_EQ"}]},
            {"names": ["chown"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_CHOWN"]}},
            {"names": ["uname"], "action": "SCMP_ACT_LOG", "includes": {"arches": ["arm64"]}},
        ]})
    out = seccomp.oci_seccomp(seccomp.parse_profile(text), ["CAP_CHOWN"], "x86_64", "6.1")
    assert out == {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                   "syscalls": [
                       {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                       {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 1, "value": 7, "valueTwo": 0,
                                  "op": "SCMP_CMP_EQ"}]}]}


@pytest.mark.parametrize(("profile", "words"), [
    ("[1]", "not a JSON object"),
    ("{nope", "invalid seccomp profile"),
    ('{"defaultAction": "SCMP_ACT_MAYBE"}', "unknown action"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x"], "archMap": [{}]}',
     "together"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}',
     "names no syscall"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ERRNO", "args": [{"op": "LIKE"}]}]}', "bad argument filter"),
])
def test_bad_profiles_are_refused(profile, words):
    with pytest.raises(PouchError) as refused:
        seccomp.oci_seccomp(seccomp.parse_profile(profile), [], "x86_64", "6.1")
    assert refused.value.code == "invalid" and words in refused.value.message


def test_the_spec_carries_the_profile_dockerd_would_apply():
    from pouch.tests.unit.test_spec_resources import spec_of

    assert "mount" not in allowed(spec_of({})["linux"]["seccomp"])
    assert "mount" in allowed(spec_of({"CapAdd": ["SYS_ADMIN"]})["linux"]["seccomp"])
    assert "seccomp" not in spec_of({"Privileged": True})["linux"]
    assert "seccomp" not in spec_of({"SecurityOpt": ["seccomp=unconfined"]})["linux"]
    own = spec_of({"SecurityOpt": ['seccomp={"defaultAction": "SCMP_ACT_LOG"}']})
    assert own["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_LOG", "syscalls": []}


def test_a_kernel_without_seccomp_runs_containers_unfiltered():
    from pouch.tests.support.fakehost import FakeHost
    from pouch.tests.unit.test_spec_resources import refusal, spec_of

    assert "seccomp" not in spec_of({}, FakeHost(seccomp=False))["linux"]
    assert "this kernel has no seccomp" in refusal(
        {"SecurityOpt": ['seccomp={"defaultAction": "SCMP_ACT_LOG"}']}, FakeHost(seccomp=False))
