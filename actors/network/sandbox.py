"""Network sandboxes with pyroute2: a network namespace kept at a path, bridges, and the
veth pair that puts a namespace on a bridge (address, MTU, default route).

The API the network actor calls (every function is synchronous, blocking for a few ms:
call it from a worker, never from the socket thread):

    create_netns(path) -> Timings              new netns bound at `path`, lo up
    remove_netns(path) -> None                 unmount + unlink; idempotent
    release_netns_dir(folder) -> None          unmount what create_netns mounted there
    list_netns(folder) -> list[str]            paths under `folder` that are netns mounts
    ensure_bridge(name, address_cidr, mtu) -> Bridge     create or repair, up
    remove_bridge(name) -> None                idempotent
    veth_name(prefix, container_id, network_id) -> str   host end's name (<= 15 chars)
    connect(netns_path, bridge, address_cidr=..., gateway=..., ...) -> Endpoint
    disconnect(host_ifname) -> None            idempotent
    orphans(prefix, folder) -> list[str]       host veth ends with no live sandbox of ours

Errors are protocol values: `invalid` (bad address, name too long), `conflict` (a link
of that name exists and is not what we would make), `not_found` (no such netns or
bridge).

Teardown: `remove_netns` alone is enough when the container goes: the kernel then
destroys the namespace's veth pairs itself, a little later, in a work queue. It is also
the cheap way: deleting a veth waits for RCU grace periods (`disconnect` ~25 ms here,
`remove_netns` ~0.3 ms; bench/net_setup.py). `disconnect` is for an endpoint leaving a
sandbox that stays (`docker network disconnect`). A pair whose deletion is still
pending when its endpoint connects again (a quick restart) is replaced by `connect`.

Entering a namespace. A namespace is entered with setns(2) by a short-lived thread of
our own, made for the one job: the thread joins the namespace (or unshares a new one),
opens its netlink socket there, does its work and ends. setns(CLONE_NEWNET) changes
only the calling thread, so the actor's other threads (the ZeroMQ loop, pykka actors)
never run in the container's namespace, and since the thread then ends, no pool can
hand a thread in the wrong namespace to someone else. pyroute2's own
IPRoute(netns=...) is not used: it forks a child to open the socket, and fork() in a
multi-threaded process may copy a lock another thread holds (logging, allocator) into
a child that then deadlocks; it also costs a fork of the whole actor per call.
Creating the namespace works the same way: the thread unshare(CLONE_NEWNET)s, bind
mounts /proc/thread-self/ns/net at `path` and brings lo up before it ends.

The folder of namespace files is made a shared mount point (bound onto itself if it is
not a mount point yet), as `ip netns add` does with /run/netns: a process that makes a
mount namespace while a netns is mounted (runc, before it pivots) gets a copy of that
mount; the copy is a peer (or a slave) of ours, so our unmount reaches it too and the
namespace is not kept alive by a copy nobody will unmount. `release_netns_dir` undoes
that bind (daemon shutdown, test cleanup).

Cost. Every step is timed with time.perf_counter; `create_netns` and `connect` return
the figures in seconds (`Timings`, a dict: "netns"; "veth", "hairpin", "enter",
"address", "up", "route"). The veth is created with its peer already in the namespace,
named, with its MAC and MTU, and its host end already in the bridge and up: one netlink
request where `ip` takes four (add, move, rename, master); "veth" covers what the issue
calls "veth" and "move". bench/net_setup.py prints the medians.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pouch.actors import mountpoints
from pouch.actors.mountpoints import MS_BIND, MS_REC, MS_SHARED
from pouch.actors.netns import CLONE_NEWNET, in_netns, in_thread
from pouch.proto.envelope import conflict, invalid, not_found

T = TypeVar("T")
Timings = dict[str, float]

IFNAMSIZ = 15  # a link name's longest length (IFNAMSIZ - 1)
AF_INET = 2

# unshare(2) (setns(2) is pouch.actors.netns's); mountpoints has mount(2) and umount2(2)
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_shared_dirs: set[str] = set()
_shared_lock = threading.Lock()


@dataclass(frozen=True)
class Bridge:
    name: str
    index: int
    address_cidr: str
    mtu: int


@dataclass(frozen=True)
class Endpoint:
    """What `connect` made: enough to describe it (inspect) and to undo it."""

    netns_path: str
    host_ifname: str
    ifname: str
    mac: str
    address_cidr: str
    gateway: str
    mtu: int
    timings: Timings = field(default_factory=dict, compare=False)


# -- namespaces -----------------------------------------------------------------------

def create_netns(path: str) -> Timings:
    """A new network namespace kept by a bind mount at `path`, loopback up inside.
    A namespace already mounted there is kept (restore after a restart) and its lo
    brought up again; the parent folder is made (and made a shared mount point)."""
    started = time.perf_counter()
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    _share_folder(folder)
    if is_netns(path):
        _in_netns(path, _loopback_up)
    else:
        with open(path, "a"):
            pass  # the mount point: a plain file, as `ip netns add` makes
        try:
            in_thread(lambda: _unshare_and_bind(path))
        except BaseException:
            _unlink(path)
            raise
    return {"netns": time.perf_counter() - started}


def remove_netns(path: str) -> None:
    """Unmount and unlink the namespace at `path`; nothing there is fine."""
    mountpoints.unmount(path)
    _unlink(path)


def release_netns_dir(folder: str) -> None:
    """Unmount every namespace under `folder`, then the folder's own bind (see the
    module docstring); the folder itself stays. For daemon shutdown and cleanup."""
    for path in list_netns(folder):
        remove_netns(path)
    real = os.path.realpath(folder)
    for target in reversed(mountpoints.mounted_under(Path(real))):
        with suppress(OSError):
            mountpoints.unmount(target)
    with _shared_lock:
        _shared_dirs.discard(real)


def list_netns(folder: str) -> list[str]:
    """Paths under `folder` where a network namespace is mounted."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    return [p for p in (os.path.join(folder, n) for n in names) if is_netns(p)]


def is_netns(path: str) -> bool:
    """Whether a network namespace is mounted at `path` (nsfs, as /proc/self/ns/net)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


# -- bridges --------------------------------------------------------------------------

def ensure_bridge(name: str, address_cidr: str, mtu: int = 1500) -> Bridge:
    """The bridge `name` with exactly the IPv4 address `address_cidr`, its MTU and up:
    made when missing, repaired when stale (another IPv4 address is removed, the wanted
    one is added once, never twice). A link of that name that is no bridge: conflict."""
    _check_ifname(name)
    iface = _interface(address_cidr)
    with _iproute() as ipr:
        index = _index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            except NetlinkError as err:
                if err.code != errno.EEXIST:  # made by a racing caller: repair it below
                    raise
            index = _index(ipr, name)
            assert index is not None
        link = ipr.link("get", index=index)[0]
        if _kind(link) != "bridge":
            raise conflict(f"link {name} exists and is not a bridge")
        have = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in ipr.get_addr(family=AF_INET, index=index)]
        for address, prefixlen in have:
            if (address, prefixlen) != (str(iface.ip), iface.network.prefixlen):
                ipr.addr("del", index=index, address=address, prefixlen=prefixlen)
        if (str(iface.ip), iface.network.prefixlen) not in have:
            ipr.addr("add", index=index, address=str(iface.ip),
                     prefixlen=iface.network.prefixlen,
                     broadcast=str(iface.network.broadcast_address))
        if link.get_attr("IFLA_MTU") != mtu:
            ipr.link("set", index=index, mtu=mtu)
        ipr.link("set", index=index, state="up")
    return Bridge(name=name, index=index, address_cidr=address_cidr, mtu=mtu)


def remove_bridge(name: str) -> None:
    """Delete the bridge `name`; a missing one is fine (its veths are detached, not
    deleted: disconnect them first)."""
    with _iproute() as ipr:
        index = _index(ipr, name)
        if index is not None:
            _delete_link(ipr, index)


# -- endpoints ------------------------------------------------------------------------

def veth_name(prefix: str, container_id: str, network_id: str) -> str:
    """The host end's name: `prefix`, then as much of the container id as fits with
    4 characters of the network id (so one container can be on several networks),
    within the kernel's 15. Recognisable: `ip link` shows whose veth it is."""
    room = IFNAMSIZ - len(prefix) - 4
    if room < 4:
        raise invalid(f"veth prefix {prefix!r} is too long")
    return f"{prefix}{container_id[:room]}{network_id[:4]}"


def connect(netns_path: str, bridge: str, ifname: str = "eth0", *,
            address_cidr: str, gateway: str = "", mtu: int = 1500,
            mac: str | None = None, host_ifname: str | None = None) -> Endpoint:
    """Put the namespace at `netns_path` on `bridge`: a veth pair whose host end
    (`host_ifname`, default derived from the netns file's name and the bridge) is in
    the bridge, up, in hairpin mode (as dockerd's without its userland proxy), whose
    peer is `ifname` inside the namespace with `address_cidr`, `mtu`, `mac` (default
    02:42 + the IPv4 address, as dockerd derives it), up, and a default route via
    `gateway` (none when empty: an internal network, or a container's second network:
    dockerd keeps the first one's default route, and a second default route fails).
    A link named `host_ifname` already there is taken for this endpoint's own earlier
    pair and replaced. Half-made work is undone before an error is raised."""
    iface = _interface(address_cidr)
    if gateway and _address(gateway) not in iface.network:
        raise invalid(f"gateway {gateway} is not in subnet {iface.network}")
    mac = mac or mac_for(str(iface.ip))
    host = host_ifname or veth_name(
        "pv", os.path.basename(netns_path), hashlib.sha256(bridge.encode()).hexdigest())
    _check_ifname(host)
    _check_ifname(ifname)
    if not is_netns(netns_path):
        raise not_found(f"no network namespace at {netns_path}")
    timings: Timings = {}
    clock = _Clock(timings)
    with _iproute() as ipr:
        master = _index(ipr, bridge)
        if master is None:
            raise not_found(f"network bridge {bridge} not found")
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with clock("veth"):
                for attempt in (1, 2):
                    try:
                        ipr.link("add", ifname=host, kind="veth", mtu=mtu, master=master,
                                 state="up",
                                 peer={"ifname": ifname, "net_ns_fd": fd, "address": mac,
                                       "mtu": mtu})
                        break
                    except NetlinkError as err:
                        if err.code != errno.EEXIST:
                            raise
                        stale = _index(ipr, host)
                        if attempt == 2 or stale is None:
                            raise conflict(f"link {host} or {ifname} in {netns_path} "
                                           "exists") from err
                        # this endpoint's earlier pair (its name says so), still
                        # there: its namespace's teardown is pending, or it was cut
                        _delete_link(ipr, stale)
        finally:
            os.close(fd)
    try:
        # a container reaching its own published port through a host address: the
        # DNATed frame leaves by the bridge port it came in by (ports.py). sysfs, not
        # RTM_SETLINK: 0.2 ms where pyroute2's brport takes 1.3
        with clock("hairpin"), open(f"/sys/class/net/{host}/brport/hairpin_mode",
                                    "w") as knob:
            knob.write("1")
        _in_netns(netns_path, lambda ipr: _configure_peer(ipr, ifname, iface, gateway,
                                                         clock), clock)
    except BaseException:
        disconnect(host)
        raise
    return Endpoint(netns_path=netns_path, host_ifname=host, ifname=ifname, mac=mac,
                    address_cidr=address_cidr, gateway=gateway, mtu=mtu, timings=timings)


def disconnect(host_ifname: str) -> None:
    """Delete the veth pair by its host end; its peer in the namespace goes with it.
    A missing one is fine."""
    with _iproute() as ipr:
        index = _index(ipr, host_ifname)
        if index is not None:
            _delete_link(ipr, index)


def orphans(prefix: str, folder: str) -> list[str]:
    """Host ends named `prefix`... whose peer is in no namespace mounted under `folder`:
    its namespace was unmounted but is kept alive elsewhere, or it was never moved
    (cut halfway). A veth whose namespace died is gone already (the kernel deletes
    both ends). Pass a prefix of your own: another daemon's veths are not ours."""
    with _iproute() as ipr:
        ours: set[int] = set()
        for path in list_netns(folder):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                nsid = _netnsid(ipr, fd)
            finally:
                os.close(fd)
            if nsid is not None:
                ours.add(nsid)
        found = []
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if not name.startswith(prefix) or _kind(link) != "veth":
                continue
            nsid = link.get_attr("IFLA_LINK_NETNSID")
            if nsid is None or nsid not in ours:
                found.append(name)
    return sorted(found)


def mac_for(ip: str) -> str:
    """dockerd's MAC for an IPv4 address: 02:42 then the address's four bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


# -- internals ------------------------------------------------------------------------

class _Clock:
    """Adds the time of each named step into a Timings dict."""

    def __init__(self, timings: Timings) -> None:
        self.timings = timings

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - started


def _configure_peer(ipr: IPRoute, ifname: str, iface: ipaddress.IPv4Interface,
                    gateway: str, clock: _Clock) -> None:
    index = _index(ipr, ifname)
    assert index is not None
    with clock("address"):
        ipr.addr("add", index=index, address=str(iface.ip),
                 prefixlen=iface.network.prefixlen,
                 broadcast=str(iface.network.broadcast_address))
    with clock("up"):
        ipr.link("set", index=index, state="up")
    if gateway:
        with clock("route"):
            try:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)
            except NetlinkError as err:
                if err.code == errno.EEXIST:
                    raise conflict("the sandbox has a default route already") from err
                raise


def _loopback_up(ipr: IPRoute) -> None:
    ipr.link("set", index=1, state="up")  # lo is index 1 in every namespace


def _unshare_and_bind(path: str) -> None:
    """Run in a thread of its own: that thread gets the new namespace, keeps it at
    `path` and ends (see the module docstring)."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        _raise_errno("unshare(CLONE_NEWNET)")
    source = f"/proc/self/task/{threading.get_native_id()}/ns/net"
    mountpoints.mount(source, path, None, MS_BIND)
    with IPRoute() as ipr:
        _loopback_up(ipr)


def _in_netns(path: str, work: Callable[[IPRoute], T], clock: _Clock | None = None) -> T:
    """`work` with an IPRoute whose socket is in the namespace at `path`, run by a
    thread made for it (see the module docstring)."""
    started = time.perf_counter()

    def run() -> T:
        with IPRoute() as ipr:
            if clock is not None:
                clock.timings["enter"] = time.perf_counter() - started
            return work(ipr)
    return in_netns(path, run)


def _share_folder(folder: str) -> None:
    real = os.path.realpath(folder)
    with _shared_lock:
        if real in _shared_dirs:
            return
        if Path(real) not in mountpoints.mount_points():
            mountpoints.mount(real, real, None, MS_BIND | MS_REC)
        mountpoints.mount("none", real, None, MS_SHARED | MS_REC)
        _shared_dirs.add(real)


def _iproute() -> IPRoute:
    return IPRoute()


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _netnsid(ipr: IPRoute, fd: int) -> int | None:
    """The id our namespace gives the namespace behind `fd`; None when it has none
    (then no veth of ours has its peer there)."""
    reply = ipr.get_netnsid(fd=fd)
    nsid = reply.get("nsid") if isinstance(reply, dict) else None
    return None if nsid is None or nsid < 0 or nsid == 0xFFFFFFFF else int(nsid)


def _interface(address_cidr: str) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.ip_interface(address_cidr)
    except ValueError as err:
        raise invalid(f"invalid address {address_cidr!r}: {err}") from err
    if not isinstance(iface, ipaddress.IPv4Interface) or "/" not in address_cidr:
        raise invalid(f"invalid address {address_cidr!r}: an IPv4 address/prefix is needed")
    return iface


def _address(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as err:
        raise invalid(f"invalid gateway {text!r}: {err}") from err


def _check_ifname(name: str) -> None:
    if not name or len(name) > IFNAMSIZ or "/" in name or name.strip() != name:
        raise invalid(f"invalid interface name {name!r}")


def _delete_link(ipr: IPRoute, index: int) -> None:
    """Delete a link; one already gone is fine."""
    try:
        ipr.link("del", index=index)
    except NetlinkError as err:
        if err.code != errno.ENODEV:
            raise


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def _raise_errno(what: str) -> None:
    code = ctypes.get_errno()
    raise OSError(code, f"{what}: {os.strerror(code)}")
