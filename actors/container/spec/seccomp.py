"""Seccomp: the syscall filter a container runs under, as dockerd 20.10 gives it.

Every container gets pouch's default profile unless it is privileged or asks for
`--security-opt seccomp=unconfined`; `--security-opt seccomp=<profile JSON>` (the CLI
sends the file's content) replaces it. Profiles are in Docker's format (the one
Kubernetes' `Localhost` profiles use too): a default action, architectures (or an
`archMap`), and syscall rules that apply only with some capabilities, architectures
or kernels (`includes`/`excludes`). :func:`oci_seccomp` resolves one for a container,
given its bounding capabilities, into the OCI spec's `linux.seccomp`.

The default profile allows what dockerd's does: everything a program needs (files,
memory, signals, time, IPC, sockets but AF_VSOCK), with the system-administration
calls (mount, unshare, setns, namespaced clone, bpf, reboot, module loading, ptrace
of others, clock setting...) left to containers holding the capability they
concern. A denied call fails with EPERM; clone3 fails with ENOSYS so that libc falls
back to clone, whose namespace flags the filter can see.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from collections.abc import Iterable, Mapping
from typing import Any

from pouch.proto.envelope import invalid

EPERM = 1
ENOSYS = 38

# The calls every container may make, by what they are about.
_ALWAYS = {
    "files": """
        access chdir chmod chown chown32 close close_range copy_file_range creat dup dup2
        dup3 faccessat faccessat2 fadvise64 fadvise64_64 fallocate fchdir fchmod fchmodat
        fchown fchown32 fchownat fcntl fcntl64 fdatasync flock fstat fstat64 fstatat64
        fstatfs fstatfs64 fsync ftruncate ftruncate64 futimesat getcwd getdents getdents64
        lchown lchown32 link linkat _llseek lseek lstat lstat64 mkdir mkdirat mknod mknodat
        name_to_handle_at newfstatat open openat openat2 pread64 preadv preadv2 pwrite64
        pwritev pwritev2 read readahead readlink readlinkat readv rename renameat renameat2
        rmdir sendfile sendfile64 splice stat stat64 statfs statfs64 statx symlink symlinkat
        sync sync_file_range syncfs tee truncate truncate64 umask unlink unlinkat utime
        utimensat utimensat_time64 utimes vmsplice write writev
    """,
    "xattrs": """
        fgetxattr flistxattr fremovexattr fsetxattr getxattr lgetxattr listxattr llistxattr
        lremovexattr lsetxattr removexattr setxattr
    """,
    "polling and async io": """
        epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
        epoll_wait epoll_wait_old eventfd eventfd2 fanotify_mark inotify_add_watch
        inotify_init inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents
        io_pgetevents io_pgetevents_time64 io_setup io_submit io_uring_enter
        io_uring_register io_uring_setup ioctl _newselect pause poll ppoll ppoll_time64
        pselect6 pselect6_time64 select
    """,
    "processes": """
        capget capset execve execveat exit exit_group fork get_robust_list get_thread_area
        getcpu getpgid getpgrp getpid getppid getpriority getrlimit getrusage getsid gettid
        ioprio_get ioprio_set kill landlock_add_rule landlock_create_ruleset
        landlock_restrict_self pidfd_open pidfd_send_signal prctl prlimit64
        process_mrelease restart_syscall rseq seccomp set_robust_list set_thread_area
        set_tid_address setpgid setpriority setrlimit setsid tgkill tkill ugetrlimit uname
        vfork wait4 waitid waitpid sysinfo times
    """,
    "scheduling": """
        sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr
        sched_getparam sched_getscheduler sched_rr_get_interval
        sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
        sched_setscheduler sched_yield
    """,
    "identity": """
        getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getresgid
        getresgid32 getresuid getresuid32 getuid getuid32 setfsgid setfsgid32 setfsuid
        setfsuid32 setgid setgid32 setgroups setgroups32 setregid setregid32 setresgid
        setresgid32 setresuid setresuid32 setreuid setreuid32 setuid setuid32
    """,
    "memory": """
        brk futex futex_time64 futex_waitv madvise membarrier memfd_create memfd_secret
        mincore mlock mlock2 mlockall mmap mmap2 mprotect mremap msync munlock munlockall
        munmap pkey_alloc pkey_free pkey_mprotect remap_file_pages
    """,
    "signals": """
        rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
        rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sigaltstack
        signalfd signalfd4 sigprocmask sigreturn
    """,
    "time": """
        adjtimex alarm clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
        clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 getitimer
        gettimeofday nanosleep setitimer time timer_create timer_delete timer_getoverrun
        timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
        timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
    """,
    "ipc": """
        ipc mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
        mq_timedsend mq_timedsend_time64 mq_unlink msgctl msgget msgrcv msgsnd pipe pipe2
        semctl semget semop semtimedop semtimedop_time64 shmat shmctl shmdt shmget
    """,
    "sockets": """
        accept accept4 bind connect getpeername getrandom getsockname getsockopt listen
        recv recvfrom recvmmsg recvmmsg_time64 recvmsg send sendmmsg sendmsg sendto
        setsockopt shutdown socketcall socketpair
    """,
}

# The calls a container may make only while it holds a capability.
_WITH_CAPABILITY = {
    "CAP_SYS_ADMIN": """
        bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
        mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd
        setdomainname sethostname setns syslog umount umount2 unshare
    """,
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

# Tracing one's own children is safe since Linux 4.8 (seccomp is re-checked after a
# tracer changed a call): allowed without CAP_SYS_PTRACE from that kernel on.
_PTRACE_OWN = ("4.8", "process_vm_readv process_vm_writev ptrace")

# The calls of one architecture family, by Go's architecture names as profiles use them.
_BY_ARCH = (
    (("amd64", "x32"), "arch_prctl"),
    (("amd64", "x32", "x86"), "modify_ldt"),
    (("arm", "arm64"), "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint "
                       "cacheflush set_tls"),
    (("ppc64le",), "sync_file_range2 swapcontext"),
    (("s390", "s390x"), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    (("riscv64",), "riscv_flush_icache"),
)

# personality(2) personas allowed: Linux, UNAME26, ADDR_NO_RANDOMIZE, both, and the query.
_PERSONAS = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)
AF_VSOCK = 40
# clone(2) flags that make namespaces: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
# NEWNET. Without CAP_SYS_ADMIN, clone is allowed only with none of them.
CLONE_NAMESPACES = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                    | 0x20000000 | 0x40000000)

# Each machine, its seccomp architecture and the ones its processes may also run
# (32-bit programs), with the Go name profiles use for it.
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
    "armv7l": ("arm", "SCMP_ARCH_ARM", ()),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE", ()),
    "s390x": ("s390x", "SCMP_ARCH_S390X", ("SCMP_ARCH_S390",)),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64", ()),
}

_ACTIONS = frozenset(("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                      "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                      "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"))
_OPERATORS = frozenset(("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                        "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"))


def _names(text: str) -> list[str]:
    return text.split()


def _allow(names: Iterable[str], **extra: Any) -> dict[str, Any]:
    return {"names": list(names), "action": "SCMP_ACT_ALLOW", **extra}


def _arg(index: int, value: int, op: str) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": 0, "op": op}


def default_profile(x32: bool = True) -> dict[str, Any]:
    """pouch's default profile, in Docker's profile format. `x32`: with the x32 ABI among
    x86_64's sub-architectures, as dockerd's has it. Where the kernel refuses x32 calls
    anyway, leaving it out changes nothing a program can do, and saves runc compiling
    that section into the filter of each process it starts, container or exec: the
    filter of three ABIs took 5 to 10 ms more than x86_64's and x86's (measured, runc
    1.1)."""
    rules = [_allow(n for group in _ALWAYS.values() for n in _names(group))]
    rules.append(_allow(_names(_PTRACE_OWN[1]), includes={"minKernel": _PTRACE_OWN[0]}))
    rules.append(_allow(["socket"], args=[_arg(0, AF_VSOCK, "SCMP_CMP_NE")]))
    rules += [_allow(["personality"], args=[_arg(0, p, "SCMP_CMP_EQ")]) for p in _PERSONAS]
    rules += [_allow(_names(calls), includes={"arches": list(arches)})
              for arches, calls in _BY_ARCH]
    rules += [_allow(_names(calls), includes={"caps": [cap]})
              for cap, calls in _WITH_CAPABILITY.items()]
    # Without CAP_SYS_ADMIN: clone without namespace flags (s390 passes flags second).
    rules.append(_allow(["clone"], args=[_arg(0, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")],
                        excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}))
    rules.append(_allow(["clone"], args=[_arg(1, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")],
                        includes={"arches": ["s390", "s390x"]},
                        excludes={"caps": ["CAP_SYS_ADMIN"]}))
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    arch_map = [{"architecture": main,
                 "subArchitectures": [s for s in subs if x32 or s != "SCMP_ARCH_X32"]}
                for _go, main, subs in _ARCHES.values()]
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM,
            "archMap": arch_map, "syscalls": rules}


@functools.lru_cache(maxsize=8)
def default_oci(caps: frozenset[str], x32: bool) -> dict[str, Any]:
    """oci_seccomp of the default profile on this machine, made once for each capability
    set and shared by the specs of every container holding it: do not change it."""
    return oci_seccomp(default_profile(x32), caps)


def parse_profile(text: str) -> dict[str, Any]:
    """A Docker-format profile from its JSON text. Errors: invalid, saying why."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise invalid(f"invalid seccomp profile: {e}") from None
    if not isinstance(profile, dict):
        raise invalid("invalid seccomp profile: not a JSON object")
    return profile


def _kernel_at_least(minimum: str, release: str) -> bool:
    def numbers(text: str) -> tuple[int, ...]:
        out = []
        for part in text.split("-")[0].split(".")[:2]:
            digits = "".join(c for c in part if c.isdigit()) or "0"
            out.append(int(digits))
        return tuple(out)
    return numbers(release) >= numbers(minimum)


def _applies(rule: Mapping[str, Any], caps: frozenset[str], go_arch: str, kernel: str) -> bool:
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if not isinstance(inc, dict) or not isinstance(exc, dict):
        raise invalid("invalid seccomp profile: includes and excludes must be objects")
    if inc.get("arches") and go_arch not in inc["arches"]:
        return False
    if any(cap not in caps for cap in inc.get("caps") or ()):
        return False
    if inc.get("minKernel") and not _kernel_at_least(str(inc["minKernel"]), kernel):
        return False
    if exc.get("arches") and go_arch in exc["arches"]:
        return False
    if any(cap in caps for cap in exc.get("caps") or ()):
        return False
    return not (exc.get("minKernel") and _kernel_at_least(str(exc["minKernel"]), kernel))


def _action(value: Any, where: str) -> str:
    if value not in _ACTIONS:
        raise invalid(f"invalid seccomp profile: {where}: unknown action {value!r}")
    return str(value)


def _oci_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    names = rule.get("names") or []
    if rule.get("name"):
        if names:
            raise invalid("invalid seccomp profile: a rule has both name and names")
        names = [rule["name"]]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        raise invalid(f"invalid seccomp profile: rule {rule!r} names no syscall")
    out: dict[str, Any] = {"names": names, "action": _action(rule.get("action"), names[0])}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = int(rule["errnoRet"])
    args = []
    for arg in rule.get("args") or ():
        if not isinstance(arg, dict) or arg.get("op") not in _OPERATORS:
            raise invalid(f"invalid seccomp profile: {names[0]}: bad argument filter {arg!r}")
        args.append({"index": int(arg.get("index", 0)), "value": int(arg.get("value", 0)),
                     "valueTwo": int(arg.get("valueTwo", 0)), "op": arg["op"]})
    if args:
        out["args"] = args
    return out


def oci_seccomp(profile: Mapping[str, Any], caps: Iterable[str],
                machine: str | None = None, kernel: str | None = None) -> dict[str, Any]:
    """The OCI `linux.seccomp` of a Docker-format profile for a container holding the
    bounding capabilities `caps`, on `machine` (uname -m) with `kernel` (uname -r),
    this one's unless given. Errors: invalid, saying what is wrong with the profile."""
    machine = machine or platform.machine()
    kernel = kernel or os.uname().release
    go_arch, native, _subs = _ARCHES.get(machine, (machine, "", ()))
    held = frozenset(caps)
    if profile.get("architectures") and profile.get("archMap"):
        raise invalid("invalid seccomp profile: 'architectures' and 'archMap' "
                      "were specified together")
    out: dict[str, Any] = {"defaultAction": _action(profile.get("defaultAction"),
                                                    "defaultAction")}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = int(profile["defaultErrnoRet"])
    arches: list[str] = list(profile.get("architectures") or ())
    for entry in profile.get("archMap") or ():
        if isinstance(entry, dict) and entry.get("architecture") == native:
            arches += [native, *(entry.get("subArchitectures") or ())]
    if arches:
        out["architectures"] = arches
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list):
        raise invalid("invalid seccomp profile: 'syscalls' must be a list")
    out["syscalls"] = [_oci_rule(rule) for rule in rules
                       if isinstance(rule, dict) and _applies(rule, held, go_arch, kernel)]
    return out
