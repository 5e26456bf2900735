"""`--ipc container:X`, `--pid container:X` and `--network container:X`: joining another
container's namespaces; and `--ipc shareable`, which makes a container one that others
may join.

The other container's namespaces are its task's, and a task changes with every
start: so, as dockerd rebuilds its spec at each start, the joining container's
spec is pointed at the other's current task (/proc/<pid>/ns/ipc, .../pid) right
before its own task is created. The spec made at create is joined already to the
donors that run then (a pod's sandbox does), so that a first start has nothing to
update; a donor that does not run yet leaves its namespace entry without a path, and
no /dev/shm: the shared one is bound in at the start. That is
the donor's /dev/shm as a tmpfs on the host (pouch.actors.container.shm, dockerd's
ShmPath), which a shareable container gets at each of its starts.

A container that joins another's network has that one's /etc/hostname, /etc/hosts
and /etc/resolv.conf (bound from its folder) and its hostname, as dockerd gives them
at each start (initializeNetworking); its own UTS namespace keeps that hostname.

The rules are dockerd 20.10's (daemon/container_operations_unix.go): the other
container must exist, run and not be restarting; for IPC it must also be
shareable (`--ipc shareable`, `host`, or itself joined to one that is).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pouch.actors.container import shm
from pouch.actors.container.spec.oci import DEFAULT_SHM_SIZE
from pouch.proto.envelope import PouchError, conflict, invalid

SHM = "/dev/shm"
# The files a container that joins another's network shares with it: destination in the
# container, and the inspect document's field naming the file on the host.
NETWORK_FILES = (("/etc/hostname", "HostnamePath"), ("/etc/hosts", "HostsPath"),
                 ("/etc/resolv.conf", "ResolvConfPath"))
# How far a chain of IPC joins (C joins B, which joins A) is followed to its /dev/shm.
CHAIN_MAX = 8


def donor_of(mode: str) -> str:
    """The container a `container:X` mode names ("" for any other mode)."""
    kind, _, ref = (mode or "").partition(":")
    return ref if kind == "container" else ""


def prepares(host_config: Mapping[str, Any]) -> bool:
    """Whether a start of the container has its spec prepared here: it joins another
    container's IPC, PID or network namespace, or may be joined (`--ipc shareable`)."""
    ipc = str(host_config.get("IpcMode") or "")
    return ipc == "shareable" or any(donor_of(str(host_config.get(key) or ""))
                                     for key in ("IpcMode", "PidMode", "NetworkMode"))


@dataclass(frozen=True)
class Donor:
    """The other container, as its inspect document tells."""

    id: str
    pid: int
    running: bool
    restarting: bool
    ipc_mode: str
    hostname: str = ""
    # Its /etc/hostname, /etc/hosts and /etc/resolv.conf on the host, by destination.
    files: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Donor:
        state = document["State"]
        files = tuple((dest, str(document.get(key) or "")) for dest, key in NETWORK_FILES)
        return cls(id=document["Id"], pid=int(state.get("Pid") or 0),
                   running=bool(state.get("Running")),
                   restarting=bool(state.get("Restarting")),
                   ipc_mode=str(document["HostConfig"].get("IpcMode") or "private"),
                   hostname=str((document.get("Config") or {}).get("Hostname") or ""),
                   files=tuple((dest, path) for dest, path in files if path))

    def check_running(self) -> None:
        """dockerd's containerIsRunning and containerIsNotRestarting. Errors: conflict."""
        if not self.running or not self.pid:
            raise conflict(f"container {self.id} is not running")
        if self.restarting:
            raise conflict(f"container {self.id} is restarting, wait until the container is "
                           "running")

    @property
    def shareable(self) -> bool:
        return self.ipc_mode in ("shareable", "host") or bool(donor_of(self.ipc_mode))


def _prefixed(prefix: str, exc: PouchError) -> PouchError:
    return PouchError(exc.code, f"{prefix}: {exc.message}")


def ipc_donor(ref: str, find: Callable[[str], Donor]) -> Donor:
    """The container whose IPC namespace `--ipc container:<ref>` joins. Errors: not_found,
    conflict, invalid (not shareable), each with dockerd's words."""
    prefix = f"can't join IPC of container {ref}"
    try:
        donor = find(ref)
        donor.check_running()
    except PouchError as exc:
        raise _prefixed(prefix, exc) from None
    if not donor.shareable:
        raise invalid(f"{prefix}: non-shareable IPC (hint: use IpcMode:shareable for the "
                      "donor container)")
    return donor


def pid_donor(ref: str, find: Callable[[str], Donor]) -> Donor:
    """The container whose PID namespace `--pid container:<ref>` joins. Errors: not_found,
    conflict, with dockerd's words."""
    try:
        donor = find(ref)
    except PouchError as exc:
        raise _prefixed(f"cannot join PID of a non running container: {ref}", exc) from None
    donor.check_running()
    return donor


def network_donor(cid: str, ref: str, find: Callable[[str], Donor]) -> Donor:
    """The container whose network namespace `--network container:<ref>` joins (dockerd's
    getNetworkedContainer). Errors: not_found, conflict, with dockerd's words."""
    donor = find(ref)
    if donor.id == cid:
        raise invalid("cannot join own network")
    if not donor.running or not donor.pid:
        raise conflict(f"cannot join network of a non running container: {ref}")
    donor.check_running()
    return donor


@contextlib.contextmanager
def missing_is_invalid(prefix: str = "") -> Iterator[None]:
    """A create's lookup of another container (a donor, --volumes-from): one that is not
    there is invalid, a 400 as dockerd's (a 404 to a create would make the docker CLI pull
    the image). `prefix`, if given, starts the message."""
    try:
        yield
    except PouchError as exc:
        if exc.code != "not_found":
            raise
        raise invalid(f"{prefix} {exc.message}" if prefix else exc.message) from None


def check_donors(host_config: Mapping[str, Any],
                 inspect: Callable[[str], Mapping[str, Any]]) -> None:
    """Refuse at create, as dockerd does, an IPC or PID donor that does not exist (one that
    does not run is for the start to refuse). Errors: invalid, the lookup's."""
    for key, prefix in (("IpcMode", "can't join IPC of container"),
                        ("PidMode", "cannot join PID of a non running container:")):
        ref = donor_of(str(host_config.get(key) or ""))
        if ref:
            with missing_is_invalid(f"{prefix} {ref}:"):
                inspect(ref)


def network_mode(cid: str, mode: str, find: Callable[[str], Donor]) -> str:
    """The network mode as recorded at create: `container:<ref>` becomes
    `container:<its full ID>` (the other container need not run yet). Errors: invalid."""
    ref = donor_of(mode)
    if not ref:
        return mode
    with missing_is_invalid():
        donor = find(ref)
    if donor.id == cid:
        raise invalid("cannot join own network")
    return f"container:{donor.id}"


def joined_spec(spec: Mapping[str, Any], ipc: Donor | None, pid: Donor | None,
                shm_source: str = "", net: Donor | None = None,
                own_files: Collection[str] = ()) -> dict[str, Any]:
    """The spec with its IPC, PID and network namespaces those of the donors' tasks now,
    `shm_source` (a folder on the host) bound as its /dev/shm, and the network donor's
    hostname and network files in place of the container's own (`own_files`: a bind of
    the user's at /etc/resolv.conf, say, stays). Pure: `spec` is left as it is, and the
    new one shares with it what it leaves unchanged (a deep copy of the whole spec, at
    every create and start, cost more than all the rest here)."""
    out = dict(spec)
    linux = out["linux"] = dict(out.get("linux") or {})
    joined = {kind for kind, donor in (("ipc", ipc), ("pid", pid), ("network", net)) if donor}
    entries = [e for e in linux.get("namespaces") or [] if e.get("type") not in joined]
    if ipc is not None:
        entries.append({"type": "ipc", "path": f"/proc/{ipc.pid}/ns/ipc"})
    if pid is not None:
        entries.append({"type": "pid", "path": f"/proc/{pid.pid}/ns/pid"})
    if net is not None:
        entries.append({"type": "network", "path": f"/proc/{net.pid}/ns/net"})
        if net.hostname and "hostname" in out:
            out["hostname"] = net.hostname
        files = dict(net.files)
        out["mounts"] = [{**m, "source": files[m.get("destination")]}
                         if m.get("destination") in files and m.get("source") in own_files
                         else m for m in out.get("mounts") or []]
    linux["namespaces"] = entries
    if shm_source:
        mounts = list(out.get("mounts") or [])
        # Where /dev/shm was, else right after the other mounts under /dev: before any
        # mount of the user's that may lie below it.
        at = next((i for i, m in enumerate(mounts) if m.get("destination") == SHM), None)
        if at is not None:
            del mounts[at]
        else:
            at = next((i + 1 for i, m in reversed(list(enumerate(mounts)))
                       if m.get("destination") == "/dev/mqueue"), len(mounts))
        mounts.insert(at, {"destination": SHM, "type": "bind", "source": shm_source,
                           "options": ["rbind", "rprivate"]})
        out["mounts"] = mounts
    return out


def shm_source(donor: Donor, find: Callable[[str], Donor], folder_of: Callable[[str], Path]
               ) -> str:
    """The host folder that is the /dev/shm of `donor` (a shareable container's tmpfs,
    the host's for an IPC-host one, its own donor's for one that joined)."""
    for _ in range(CHAIN_MAX):
        if donor.ipc_mode == "host":
            return SHM
        ref = donor_of(donor.ipc_mode)
        if not ref:
            return str(shm.path_of(folder_of(donor.id)))
        donor = find(ref)
    raise invalid(f"can't join IPC of container {donor.id}: a chain of IPC joins longer "
                  f"than {CHAIN_MAX}")


def prepare(current: Callable[[], Mapping[str, Any]], update: Callable[[dict[str, Any]], None],
            inspect: Callable[[str], Mapping[str, Any]], folder_of: Callable[[str], Path],
            cid: str, host_config: Mapping[str, Any]) -> Donor | None:
    """Before a start of container `cid`: mount its shareable /dev/shm, or point its
    spec at the donors' tasks as they are now; `current` gives the spec containerd holds
    and `update` gives containerd another, if that changed it. `inspect` gives another
    container's inspect document, `folder_of` a container's folder. The container whose
    network it joins, if it does (for `share_network`). Errors: not_found, conflict,
    invalid (dockerd's words); containerd's; OSError (the tmpfs could not be mounted)."""
    ipc, pid, source, net = _donors(_finder(inspect), folder_of, cid, host_config)
    if ipc is None and source:  # its own shareable /dev/shm
        shm.mount(Path(source), int(host_config.get("ShmSize") or DEFAULT_SHM_SIZE))
    spec = current()
    joined = joined_spec(spec, ipc, pid, source, net, _own_files(folder_of, cid))
    if joined != spec:
        update(joined)
    return net


def initial_spec(spec: Mapping[str, Any], inspect: Callable[[str], Mapping[str, Any]],
                 folder_of: Callable[[str], Path], cid: str, host_config: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """The spec a create gives containerd: joined already to the donors' tasks as they
    are now (a pod's containers are made while its sandbox runs), so that the first
    start, which prepares it again, finds nothing to update. A donor that cannot be
    joined now is left to that start, which says why."""
    if not prepares(host_config):
        return dict(spec)
    try:
        ipc, pid, source, net = _donors(_finder(inspect), folder_of, cid, host_config)
    except PouchError:
        return dict(spec)
    return joined_spec(spec, ipc, pid, source, net, _own_files(folder_of, cid))


def _finder(inspect: Callable[[str], Mapping[str, Any]]) -> Callable[[str], Donor]:
    found: dict[str, Donor] = {}

    def find(ref: str) -> Donor:
        # A pod's containers join one container's IPC and PID: asked about once.
        if ref not in found:
            found[ref] = Donor.of(inspect(ref))
        return found[ref]
    return find


def _donors(find: Callable[[str], Donor], folder_of: Callable[[str], Path], cid: str,
            host_config: Mapping[str, Any]
            ) -> tuple[Donor | None, Donor | None, str, Donor | None]:
    """The IPC, PID and network donors of container `cid`, and the host folder to bind
    as its /dev/shm ("": its own, inside the container). Errors: as prepare's."""
    ipc_mode = str(host_config.get("IpcMode") or "")
    ipc_ref, pid_ref = donor_of(ipc_mode), donor_of(str(host_config.get("PidMode") or ""))
    ipc = ipc_donor(ipc_ref, find) if ipc_ref else None
    pid = pid_donor(pid_ref, find) if pid_ref else None
    net_ref = donor_of(str(host_config.get("NetworkMode") or ""))
    net = network_donor(cid, net_ref, find) if net_ref else None
    source = ""
    if ipc is not None:
        source = shm_source(ipc, find, folder_of)
    elif ipc_mode == "shareable":
        source = str(shm.path_of(folder_of(cid)))
    return ipc, pid, source, net


def _own_files(folder_of: Callable[[str], Path], cid: str) -> list[str]:
    return [str(folder_of(cid) / Path(dest).name) for dest, _ in NETWORK_FILES]


def share_network(record: dict[str, Any], donor: Donor) -> None:
    """The inspect document of a container that joined `donor`'s network: its hostname
    and network files are the donor's (dockerd's initializeNetworkingPaths)."""
    files = dict(donor.files)
    for dest, key in NETWORK_FILES:
        if dest in files:
            record[key] = files[dest]
    if donor.hostname:
        record["Config"]["Hostname"] = donor.hostname


def release(folder: Path, host_config: Mapping[str, Any]) -> None:
    """The container exited or goes: its shareable /dev/shm is unmounted."""
    if host_config.get("IpcMode") == "shareable":
        shm.release(shm.path_of(folder))
