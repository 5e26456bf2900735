"""The embedded DNS server of user networks, as dockerd's: 127.0.0.11:53/udp inside
every served container's network namespace answers the names of its neighbours
(names, aliases; a name shared by several containers gives all their addresses, in a
new order each time) and forwards every other query to the upstream nameservers.

Sockets. Each container's socket is made in the container's namespace by a
short-lived thread of its own (pouch.actors.netns), and stays there. Forwards leave
from sockets made by the DNS thread, in the actor's own (the host's) namespace: the
host's nameservers (127.0.0.53 of systemd-resolved, say) are reachable from there, not
from the container. The thread brings the namespace's lo up if it is down: 127.0.0.11
is reachable only through it.

Threads. One daemon thread owns every socket once it is made and runs one selector:
queries, upstream answers and deadlines. `serve` and `forget` hand it work as
callables on a queue with an eventfd to wake it; `forget` waits until the socket is
closed, so that the port is free and the namespace released when it returns.
`set_records` swaps one reference: the thread reads it once per query.

A served socket holds a reference to its namespace: the kernel keeps a namespace whose
bind mount is gone alive (veths and all) until `forget` closes the socket.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import ipaddress
import logging
import os
import random
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from pouch.actors.netns import in_netns

log = logging.getLogger("pouch.network")

ADDRESS = ("127.0.0.11", 53)
UPSTREAM_PORT = 53
TTL = 600  # dockerd's, for the names it answers
UPSTREAM_TIMEOUT = 2.0  # per upstream, then the next; after the last, SERVFAIL
# Forwards in flight, each an open socket: a container flooding us must not take every
# file descriptor of the actor. Beyond it, SERVFAIL at once.
MAX_PENDING = 1024
# Datagrams read from one socket per wakeup: one busy container cannot starve the others.
BATCH = 64
UDP_MAX = 65535
PLAIN_UDP_SIZE = 512  # the largest answer a client without EDNS takes (RFC 1035)
# netdevice(7): struct ifreq is a name of IFNAMSIZ (16) bytes and a 24-byte union, the
# flags (a short) first in it.
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ_FLAGS = "16sH22x"
JOIN_TIMEOUT = 5.0

@dataclass(frozen=True)
class _Table:
    """One container's view: name -> addresses, reverse name -> the first name."""

    names: Mapping[str, tuple[str, ...]]
    ptr: Mapping[str, str]


@dataclass(eq=False)
class _Forward:
    """A query on its way to the upstreams, from `client` (the container's socket)."""

    container: str
    client: socket.socket
    asker: tuple[str, int]
    wire: bytes
    query: dns.message.Message
    upstreams: tuple[str, ...]
    tried: int = 0
    sock: socket.socket | None = None
    deadline: float = 0.0
    upstream: str = ""


class EmbeddedDns:
    """127.0.0.11:53/udp in the namespaces of the containers it serves (see the module
    docstring). Every method may be called from any thread but the DNS thread."""

    def __init__(self) -> None:
        # Both read by the DNS thread without a lock: _tables is only ever replaced
        # whole, and _upstreams maps to tuples (one dict read, atomic under the GIL).
        self._tables: dict[str, _Table] = {}
        self._upstreams: dict[str, tuple[str, ...]] = {}
        self._namespaces: dict[str, tuple[int, int]] = {}  # container -> nsfs (dev, ino)
        self._serve_lock = threading.Lock()  # one serve/forget at a time: no double bind
        self._lock = threading.Lock()  # _ops, _stopping
        self._ops: deque[Callable[[], None]] = deque()
        self._stopping = False
        # The DNS thread's own, from here on.
        self._clients: dict[str, socket.socket] = {}
        self._pending: set[_Forward] = set()
        self._selector = selectors.DefaultSelector()
        self._wakeup = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._selector.register(self._wakeup, selectors.EVENT_READ, self._on_wakeup)
        self._thread = threading.Thread(target=self._run, name="pouch-dns", daemon=True)
        self._thread.start()

    # -- the API: any thread ----------------------------------------------------------

    def serve(self, container: str, netns_path: str, upstreams: list[str]) -> None:
        """Answer DNS on 127.0.0.11:53/udp inside the network namespace at `netns_path`
        (a bind-mounted nsfs file) for `container` (its ID), forwarding what it does not
        know to `upstreams` (IPv4/IPv6 addresses, port 53; tried in order). Idempotent:
        a second call for the same container only updates its upstreams (unless the
        file now holds another namespace, a restarted sandbox: then the socket is made
        anew there). Raises OSError if the socket cannot be made."""
        checked = tuple(_valid_upstreams(upstreams))
        with self._serve_lock:
            if self._stopped():
                raise OSError(errno.ESHUTDOWN, "the embedded DNS server is stopped")
            known = self._namespaces.get(container)
            if known is not None and known == _namespace_of(netns_path):
                self._upstreams[container] = checked
                return
            sock, namespace = _bind_in_netns(netns_path)
            self._upstreams[container] = checked
            self._namespaces[container] = namespace
            if not self._submit(functools.partial(self._adopt, container, sock)):
                sock.close()

    def forget(self, container: str) -> None:
        """Stop serving `container`: its socket is closed when this returns; unknown is
        fine."""
        with self._serve_lock:
            if self._namespaces.pop(container, None) is None:
                return
            self._upstreams.pop(container, None)
            done = threading.Event()
            if self._submit(functools.partial(self._drop, container, done)):
                done.wait(JOIN_TIMEOUT)

    def set_records(self, records: dict[str, dict[str, list[str]]]) -> None:
        """Per container ID: lower-case name -> IPv4 addresses that name resolves to for
        that container. Replaced whole (an atomic swap; called from another thread after
        every change)."""
        # Built here, on the caller's thread, into values nobody else holds: the DNS
        # thread only ever sees a finished table.
        self._tables = {container: _table(names) for container, names in records.items()}

    def stop(self) -> None:
        """Close every socket and join the DNS thread. Idempotent."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            os.eventfd_write(self._wakeup, 1)
        self._thread.join(JOIN_TIMEOUT)
        if not self._thread.is_alive():
            os.close(self._wakeup)

    def _stopped(self) -> bool:
        with self._lock:
            return self._stopping

    def _submit(self, op: Callable[[], None]) -> bool:
        """Queue `op` for the DNS thread; False once stopping (the op will never run)."""
        with self._lock:
            if self._stopping:
                return False
            self._ops.append(op)
            os.eventfd_write(self._wakeup, 1)
            return True

    # -- the DNS thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopped():
                events = self._selector.select(self._timeout())
                for key, _mask in events:
                    handler: Callable[[], None] = key.data
                    try:
                        handler()
                    except Exception:  # one bad packet or socket must not end the loop
                        log.warning("dns: handling an event failed", exc_info=True)
                self._expire(time.monotonic())
        except Exception:
            log.exception("dns: the embedded DNS server's loop failed; no more answers")
        finally:
            self._close_all()

    def _timeout(self) -> float | None:
        if not self._pending:
            return None
        first = min(fwd.deadline for fwd in self._pending)
        return max(0.0, first - time.monotonic())

    def _on_wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wakeup)
        self._run_ops()

    def _run_ops(self) -> None:
        while True:
            with self._lock:
                if not self._ops:
                    return
                op = self._ops.popleft()
            try:
                op()
            except Exception:
                log.warning("dns: a change of the served containers failed", exc_info=True)

    def _adopt(self, container: str, sock: socket.socket) -> None:
        old = self._clients.pop(container, None)
        if old is not None:
            self._close_client(old)
        self._clients[container] = sock
        self._selector.register(sock, selectors.EVENT_READ,
                                functools.partial(self._on_query, container, sock))

    def _drop(self, container: str, done: threading.Event) -> None:
        try:
            sock = self._clients.pop(container, None)
            if sock is not None:
                self._close_client(sock)
        finally:
            done.set()

    def _close_client(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)
        sock.close()
        for fwd in [f for f in self._pending if f.client is sock]:
            self._retire(fwd)

    def _close_all(self) -> None:
        # What serve/forget queued before the stop still runs: an adopted socket is then
        # closed below, a waiting forget released.
        self._run_ops()
        for fwd in list(self._pending):
            self._retire(fwd)
        for sock in self._clients.values():
            sock.close()
        self._clients.clear()
        self._selector.close()

    def _on_query(self, container: str, sock: socket.socket) -> None:
        if self._clients.get(container) is not sock:
            return  # forgotten or replaced by an earlier event of the same select
        for _ in range(BATCH):
            try:
                wire, asker = sock.recvfrom(UDP_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.warning("dns: reading a query for %s failed: %s", container[:12], err)
                return
            try:
                self._on_datagram(container, sock, wire, asker)
            except Exception:
                log.warning("dns: a query of %s failed", container[:12], exc_info=True)

    def _on_datagram(self, container: str, sock: socket.socket, wire: bytes,
                     asker: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # anything a container sends: not our failure, not a warning
            log.debug("dns: dropped an unparsable query of %s", container[:12])
            return
        if query.flags & dns.flags.QR:
            return  # a response sent to a server: nothing to answer
        local = _local_answer(self._tables.get(container), query)
        if local is not None:
            _send(sock, _to_wire(query, local), asker)
            return
        fwd = _Forward(container, sock, asker, wire, query,
                       self._upstreams.get(container, ()))
        if len(self._pending) >= MAX_PENDING:
            log.warning("dns: %d forwards in flight; SERVFAIL for %s", len(self._pending),
                        container[:12])
            fwd.tried = len(fwd.upstreams)
        self._forward(fwd)

    def _forward(self, fwd: _Forward) -> None:
        """Send `fwd` to its next upstream; SERVFAIL to the asker once none is left."""
        while fwd.tried < len(fwd.upstreams):
            upstream = fwd.upstreams[fwd.tried]
            fwd.tried += 1
            family = socket.AF_INET6 if ":" in upstream else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                # Connected: only that upstream's datagrams arrive, and a port
                # unreachable comes back as ECONNREFUSED (then the next, at once).
                sock.connect((upstream, UPSTREAM_PORT))
                sock.send(fwd.wire)
            except OSError as err:
                sock.close()
                log.warning("dns: forwarding to %s failed: %s", upstream, err)
                continue
            fwd.sock, fwd.upstream = sock, upstream
            fwd.deadline = time.monotonic() + UPSTREAM_TIMEOUT
            self._pending.add(fwd)
            self._selector.register(sock, selectors.EVENT_READ,
                                    functools.partial(self._on_upstream, fwd))
            return
        self._reply(fwd, _to_wire(fwd.query, _failure(fwd.query)))

    def _on_upstream(self, fwd: _Forward) -> None:
        if fwd.sock is None:
            return  # retired by an earlier event of the same select
        try:
            answer = fwd.sock.recv(UDP_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            log.warning("dns: upstream %s: %s", fwd.upstream, err)
            self._retire(fwd)
            self._forward(fwd)
            return
        if len(answer) < 2 or answer[:2] != fwd.wire[:2]:
            return  # not the answer to this query (a late one to an earlier): wait on
        self._retire(fwd)
        self._reply(fwd, answer)

    def _expire(self, now: float) -> None:
        for fwd in [f for f in self._pending if f.deadline <= now]:
            log.warning("dns: upstream %s did not answer in %.0f s", fwd.upstream,
                        UPSTREAM_TIMEOUT)
            self._retire(fwd)
            self._forward(fwd)

    def _retire(self, fwd: _Forward) -> None:
        self._pending.discard(fwd)
        if fwd.sock is not None:
            self._selector.unregister(fwd.sock)
            fwd.sock.close()
            fwd.sock = None

    def _reply(self, fwd: _Forward, wire: bytes) -> None:
        if self._clients.get(fwd.container) is fwd.client:  # not forgotten meanwhile
            _send(fwd.client, wire, fwd.asker)


# -- answers (pure) -------------------------------------------------------------------

def _local_answer(table: _Table | None, query: dns.message.Message) -> dns.message.Message | None:
    """Our answer to `query` from `table`; None when it is for the upstreams."""
    if table is None or query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
        return None
    question = query.question[0]
    if question.rdclass != dns.rdataclass.IN:
        return None
    name = _key(question.name)
    addresses = table.names.get(name)
    if addresses is not None:
        # A name of ours answers every type, with NODATA for all but A: a resolver
        # that got NXDOMAIN or nothing for AAAA would ask elsewhere and might find
        # the name somewhere else.
        response = _authoritative(query)
        if question.rdtype == dns.rdatatype.A and addresses:
            shuffled = random.sample(addresses, len(addresses))
            response.answer.append(dns.rrset.from_text_list(
                question.name, TTL, dns.rdataclass.IN, dns.rdatatype.A, shuffled))
        return response
    target = table.ptr.get(name) if question.rdtype == dns.rdatatype.PTR else None
    if target is None:
        return None
    response = _authoritative(query)
    response.answer.append(dns.rrset.from_text_list(
        question.name, TTL, dns.rdataclass.IN, dns.rdatatype.PTR, [f"{target}."]))
    return response


def _authoritative(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True)
    response.flags |= dns.flags.AA
    return response


def _failure(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True)
    response.set_rcode(dns.rcode.SERVFAIL)
    return response


def _to_wire(query: dns.message.Message, response: dns.message.Message) -> bytes:
    """`response` in the size the asker takes; too big: TC and no answers, so that it
    asks again over TCP (which we do not serve; dockerd does)."""
    limit = PLAIN_UDP_SIZE if query.edns < 0 else max(PLAIN_UDP_SIZE, query.payload)
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer = []
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


def _key(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _table(names: Mapping[str, list[str]]) -> _Table:
    forward: dict[str, tuple[str, ...]] = {}
    ptr: dict[str, str] = {}
    for raw, addresses in names.items():
        name = raw.lower().rstrip(".")
        valid = []
        for address in addresses:
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                log.warning("dns: %r is not an IPv4 address (name %s); left out",
                            address, name)
                continue
            valid.append(address)
            # The first name given for an address is the one it resolves back to.
            ptr.setdefault(_key(dns.reversename.from_address(address)), name)
        forward[name] = tuple(dict.fromkeys(valid))
    return _Table(forward, ptr)


def _valid_upstreams(upstreams: list[str]) -> list[str]:
    valid = []
    for upstream in upstreams:
        try:
            ipaddress.ip_address(upstream)
        except ValueError:
            log.warning("dns: upstream %r is not an IP address; left out", upstream)
            continue
        valid.append(upstream)
    return valid


def _send(sock: socket.socket, wire: bytes, asker: tuple[str, int]) -> None:
    try:
        sock.sendto(wire, asker)
    except OSError as err:
        log.warning("dns: answering %s failed: %s", asker, err)


# -- the socket in a namespace --------------------------------------------------------

def _namespace_of(netns_path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(netns_path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _bind_in_netns(netns_path: str) -> tuple[socket.socket, tuple[int, int]]:
    """A UDP socket bound at 127.0.0.11:53 in the namespace at `netns_path`, made by a
    thread that enters it and ends (see the module docstring); and the namespace's
    (dev, inode)."""
    def bind() -> tuple[socket.socket, tuple[int, int]]:
        st = os.stat("/proc/thread-self/ns/net")  # the namespace entered, as nsfs has it
        return _bind_here(), (st.st_dev, st.st_ino)
    return in_netns(netns_path, bind)


def _bind_here() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # A server in the container binding 0.0.0.0:53 with SO_REUSEADDR too may then
        # share the port; queries to 127.0.0.11 still come to us (the closer match).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _loopback_up(sock)
        sock.bind(ADDRESS)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _loopback_up(sock: socket.socket) -> None:
    """Bring up lo in `sock`'s namespace if it is down, before the bind: with lo down,
    the bind succeeds but nothing reaches 127.0.0.11 (ENETUNREACH for the asker) and
    answers, once lo is up, leave from 127.0.0.1 (the resolver drops them). An ioctl on
    the socket itself reaches its namespace: no netlink socket needed."""
    request = struct.pack(_IFREQ_FLAGS, b"lo", 0)
    flags = struct.unpack(_IFREQ_FLAGS, fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
    if not flags & IFF_UP:
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ_FLAGS, b"lo", flags | IFF_UP))
