"""A made-up host for the spec's unit tests: so that what a spec holds does not depend
on the machine the tests run on."""

from __future__ import annotations

from dataclasses import dataclass, field

from pouch.actors.container.spec.host import CgroupSupport, DeviceNode, NotADevice

NULL = DeviceNode("/dev/null", "c", 1, 3, 0o666, 0, 0)
LOOP0 = DeviceNode("/dev/loop0", "b", 7, 0, 0o660, 0, 6)
KMSG = DeviceNode("/dev/kmsg", "c", 1, 11, 0o644, 0, 0)
SND = (DeviceNode("/dev/snd/pcmC0D0p", "c", 116, 16, 0o660, 0, 29),
       DeviceNode("/dev/snd/timer", "c", 116, 33, 0o660, 0, 29))


@dataclass
class FakeHost:
    """Eight CPUs, one memory node, every cgroup control unless told otherwise, tini,
    seccomp with x32, and a /dev with null, loop0, kmsg and a sound folder."""

    support: CgroupSupport = field(default_factory=CgroupSupport)
    cpus: int = 8
    init: str | None = "/usr/bin/tini-static"
    dev_shm: bool = True
    seccomp: bool = True
    x32: bool = True
    modules: frozenset[str] = frozenset()  # no AppArmor, no SELinux
    devices: tuple[DeviceNode, ...] = (NULL, LOOP0, KMSG, *SND)

    def cgroups(self) -> CgroupSupport:
        return self.support

    def cpu_count(self) -> int:
        return self.cpus

    def cpuset_cpus(self) -> str:
        return f"0-{self.cpus - 1}"

    def cpuset_mems(self) -> str:
        return "0"

    def init_binary(self) -> str | None:
        return self.init

    def has_dev_shm(self) -> bool:
        return self.dev_shm

    def has_seccomp(self) -> bool:
        return self.seccomp

    def serves_x32(self) -> bool:
        return self.x32

    def security_modules(self) -> frozenset[str]:
        return self.modules

    def devices_at(self, path_on_host: str, path_in_container: str) -> list[DeviceNode]:
        found = [d for d in self.devices if d.path == path_on_host]
        if not found:
            found = [d for d in self.devices if d.path.startswith(path_on_host + "/")]
        if not found:
            if any(path_on_host == d.path.rsplit("/", 1)[0] for d in self.devices) or \
                    path_on_host in ("/etc/passwd", "/dev"):
                raise NotADevice("not a device node")
            raise FileNotFoundError(2, "No such file or directory", path_on_host)
        return [DeviceNode(path_in_container + d.path[len(path_on_host):], d.type, d.major,
                           d.minor, d.file_mode, d.uid, d.gid) for d in found]

    def host_devices(self) -> list[DeviceNode]:
        return list(self.devices)

    def block_device(self, path: str) -> tuple[int, int]:
        for d in self.devices:
            if d.path == path:
                if d.type != "b":
                    raise NotADevice("not a block device")
                return d.major, d.minor
        raise FileNotFoundError(2, "No such file or directory", path)
