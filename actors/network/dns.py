"""The embedded DNS server of user networks, as dockerd's: 127.0.0.11:53 (UDP and TCP)
inside every served container's network namespace answers the names of its neighbours
(names, aliases; a name shared by several containers gives all their addresses, in a
new order each time) and forwards every other query to the upstream nameservers.

TCP is what a resolver falls back to when a UDP answer comes truncated (TC: too big for
512 bytes, or for its EDNS size): a query that came over TCP is forwarded over TCP too,
so that the upstream's whole answer comes back. A TCP connection may carry several
queries (RFC 7766); one idle for TCP_IDLE s is closed.

Sockets. Each container's sockets are made in the container's namespace by a
short-lived thread of its own (pouch.actors.netns), and stay there. They listen on
ports of their own at 127.0.0.11, which rules in the namespace's nat table make port
53 (pouch.actors.network.iptables.redirect_dns, as dockerd's): so that a DNS server in
the container may bind 0.0.0.0:53 itself (TCP allows no second socket on a port another
listens on, and UDP none without SO_REUSEADDR). Leaving a network takes the rules with
the sockets. Forwards leave from sockets made by the DNS thread, in the actor's own
(the host's) namespace: the host's nameservers (127.0.0.53 of systemd-resolved, say)
are reachable from there, not from the container. The thread brings the namespace's lo
up if it is down: 127.0.0.11 is reachable only through it.

Threads. One daemon thread owns every socket once it is made and runs one selector:
queries, upstream answers and deadlines. `serve` and `forget` hand it work as
callables on a queue with an eventfd to wake it; `forget` waits until the sockets are
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
from dataclasses import dataclass, field

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
from pouch.actors.network import iptables

log = logging.getLogger("pouch.network")

ADDRESS = "127.0.0.11"
PORT = 53
UPSTREAM_PORT = 53
TTL = 600  # dockerd's, for the names it answers
UPSTREAM_TIMEOUT = 2.0  # per upstream, then the next; after the last, SERVFAIL
# Forwards in flight, each an open socket: a container flooding us must not take every
# file descriptor of the actor. Beyond it, SERVFAIL at once.
MAX_PENDING = 1024
# Datagrams read from one socket per wakeup: one busy container cannot starve the others.
BATCH = 64
UDP_MAX = 65535
TCP_IDLE = 10.0  # a client's TCP connection with nothing in flight, closed after this
MAX_CONNECTIONS = 32  # TCP connections of one container at a time; more are closed
TCP_BACKLOG = 16
_LENGTH = struct.Struct("!H")  # a DNS message over TCP follows its length (RFC 1035 4.2.2)
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
class _Connection:
    """A container's TCP connection to us: framed queries in, framed answers out."""

    container: str
    sock: socket.socket
    deadline: float  # closed then if idle (see idle)
    received: bytearray = field(default_factory=bytearray)
    unsent: bytearray = field(default_factory=bytearray)
    forwarding: int = 0  # its queries at the upstreams
    ended: bool = False  # the client sent all it will: closed once it has its answers
    watched: int = selectors.EVENT_READ  # the events the selector waits for (0: none)

    @property
    def idle(self) -> bool:
        return not self.forwarding and not self.unsent


@dataclass(eq=False)
class _Served:
    """A served container's sockets in its namespace."""

    udp: socket.socket
    tcp: socket.socket  # listening
    connections: set[_Connection] = field(default_factory=set)


@dataclass(eq=False)
class _Forward:
    """A query on its way to the upstreams, from the container's UDP socket (`asker`,
    the address to answer) or from one of its TCP connections (`connection`), which
    it then goes to the upstreams over too."""

    container: str
    served: _Served
    asker: tuple[str, int] | None
    connection: _Connection | None
    wire: bytes
    query: dns.message.Message
    upstreams: tuple[str, ...]
    tried: int = 0
    sock: socket.socket | None = None
    deadline: float = 0.0
    upstream: str = ""
    answer: bytearray = field(default_factory=bytearray)  # over TCP: what came so far
    sent: bool = False  # over TCP: the query went (the connect is done)


class EmbeddedDns:
    """127.0.0.11:53 in the namespaces of the containers it serves (see the module
    docstring). Every method may be called from any thread but the DNS thread."""

    def __init__(self) -> None:
        # Both read by the DNS thread without a lock: _tables is only ever replaced
        # whole, and _upstreams maps to tuples (one dict read, atomic under the GIL).
        self._tables: dict[str, _Table] = {}
        self._upstreams: dict[str, tuple[str, ...]] = {}
        # container -> its namespace's file and nsfs (dev, ino)
        self._namespaces: dict[str, tuple[str, tuple[int, int]]] = {}
        self._serve_lock = threading.Lock()  # one serve/forget at a time: no double bind
        self._lock = threading.Lock()  # _ops, _stopping
        self._ops: deque[Callable[[], None]] = deque()
        self._stopping = False
        # The DNS thread's own, from here on.
        self._served: dict[str, _Served] = {}
        self._pending: set[_Forward] = set()
        self._selector = selectors.DefaultSelector()
        self._wakeup = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._selector.register(self._wakeup, selectors.EVENT_READ, self._on_wakeup)
        self._thread = threading.Thread(target=self._run, name="pouch-dns", daemon=True)
        self._thread.start()

    # -- the API: any thread ----------------------------------------------------------

    def serve(self, container: str, netns_path: str, upstreams: list[str]) -> None:
        """Answer DNS on 127.0.0.11:53 inside the network namespace at `netns_path`
        (a bind-mounted nsfs file) for `container` (its ID), forwarding what it does not
        know to `upstreams` (IPv4/IPv6 addresses, port 53; tried in order). Idempotent:
        a second call for the same container only updates its upstreams (unless the
        file now holds another namespace, a restarted sandbox: then the socket is made
        anew there). Raises OSError if the sockets cannot be made."""
        checked = tuple(_valid_upstreams(upstreams))
        with self._serve_lock:
            if self._stopped():
                raise OSError(errno.ESHUTDOWN, "the embedded DNS server is stopped")
            known = self._namespaces.get(container)
            if known is not None and known == (netns_path, _namespace_of(netns_path)):
                self._upstreams[container] = checked
                return
            served, namespace = _bind_in_netns(netns_path)
            self._upstreams[container] = checked
            self._namespaces[container] = (netns_path, namespace)
            if not self._submit(functools.partial(self._adopt, container, served)):
                served.udp.close()
                served.tcp.close()

    def forget(self, container: str) -> None:
        """Stop serving `container`: its sockets are closed when this returns, and its
        port rules emptied if its namespace is still there (it left a network, and runs
        on); unknown is fine."""
        with self._serve_lock:
            known = self._namespaces.pop(container, None)
            if known is None:
                return
            self._upstreams.pop(container, None)
            done = threading.Event()
            if self._submit(functools.partial(self._drop, container, done)):
                done.wait(JOIN_TIMEOUT)
            path, namespace = known
            if _namespace_of(path) == namespace:  # still there (it left a network only)
                try:
                    in_netns(path, functools.partial(iptables.redirect_dns, ADDRESS,
                                                     PORT, None))
                except (OSError, RuntimeError) as err:
                    log.warning("dns: the port rules of %s stay: %s", container[:12], err)

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
        deadlines = [fwd.deadline for fwd in self._pending]
        deadlines += [c.deadline for served in self._served.values()
                      for c in served.connections if c.idle]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

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

    def _adopt(self, container: str, served: _Served) -> None:
        old = self._served.pop(container, None)
        if old is not None:
            self._close_served(old)
        self._served[container] = served
        self._selector.register(served.udp, selectors.EVENT_READ,
                                functools.partial(self._on_datagrams, container, served))
        self._selector.register(served.tcp, selectors.EVENT_READ,
                                functools.partial(self._on_connect, container, served))

    def _drop(self, container: str, done: threading.Event) -> None:
        try:
            served = self._served.pop(container, None)
            if served is not None:
                self._close_served(served)
        finally:
            done.set()

    def _close_served(self, served: _Served) -> None:
        for connection in list(served.connections):
            self._close_connection(served, connection)
        for sock in (served.udp, served.tcp):
            self._selector.unregister(sock)
            sock.close()
        for fwd in [f for f in self._pending if f.served is served]:
            self._retire(fwd)

    def _close_all(self) -> None:
        # What serve/forget queued before the stop still runs: an adopted socket is then
        # closed below, a waiting forget released.
        self._run_ops()
        for served in list(self._served.values()):
            self._close_served(served)
        self._served.clear()
        self._selector.close()

    def _current(self, container: str, served: _Served) -> bool:
        """Whether `served` is still what serves `container` (not forgotten or replaced
        by an earlier event of the same select)."""
        return self._served.get(container) is served

    def _on_datagrams(self, container: str, served: _Served) -> None:
        if not self._current(container, served):
            return
        for _ in range(BATCH):
            try:
                wire, asker = served.udp.recvfrom(UDP_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.warning("dns: reading a query for %s failed: %s", container[:12], err)
                return
            self._on_message(container, served, wire, asker, None)

    def _on_message(self, container: str, served: _Served, wire: bytes,
                    asker: tuple[str, int] | None, connection: _Connection | None) -> None:
        """A query from the container, by UDP (`asker`) or TCP (`connection`)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # anything a container sends: not our failure, not a warning
            log.debug("dns: dropped an unparsable query of %s", container[:12])
            return
        try:
            if query.flags & dns.flags.QR:
                return  # a response sent to a server: nothing to answer
            local = _local_answer(self._tables.get(container), query)
            if local is not None:
                if connection is not None:
                    self._queue(served, connection, local.to_wire())
                elif asker is not None:
                    _send(served.udp, _to_wire(query, local), asker)
                return
            self._start_forward(_Forward(container, served, asker, connection, wire, query,
                                         self._upstreams.get(container, ())))
        except Exception:
            log.warning("dns: a query of %s failed", container[:12], exc_info=True)

    def _start_forward(self, fwd: _Forward) -> None:
        if fwd.connection is not None:
            fwd.connection.forwarding += 1
        if len(self._pending) >= MAX_PENDING:
            log.warning("dns: %d forwards in flight; SERVFAIL for %s", len(self._pending),
                        fwd.container[:12])
            fwd.tried = len(fwd.upstreams)
        self._forward(fwd)

    def _forward(self, fwd: _Forward) -> None:
        """Send `fwd` to its next upstream (over TCP if it came so); SERVFAIL to the
        asker once none is left."""
        tcp = fwd.connection is not None
        while fwd.tried < len(fwd.upstreams):
            upstream = fwd.upstreams[fwd.tried]
            fwd.tried += 1
            family = socket.AF_INET6 if ":" in upstream else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                if tcp:
                    # Sent once connected (see _on_upstream_tcp); refused: the next.
                    code = sock.connect_ex((upstream, UPSTREAM_PORT))
                    if code not in (0, errno.EINPROGRESS):
                        raise OSError(code, os.strerror(code))
                else:
                    # Connected: only that upstream's datagrams arrive, and a port
                    # unreachable comes back as ECONNREFUSED (then the next, at once).
                    sock.connect((upstream, UPSTREAM_PORT))
                    sock.send(fwd.wire)
            except OSError as err:
                sock.close()
                log.warning("dns: forwarding to %s failed: %s", upstream, err)
                continue
            fwd.sock, fwd.upstream, fwd.sent = sock, upstream, False
            fwd.answer.clear()
            fwd.deadline = time.monotonic() + UPSTREAM_TIMEOUT
            self._pending.add(fwd)
            if tcp:
                self._selector.register(sock, selectors.EVENT_WRITE,
                                        functools.partial(self._on_upstream_tcp, fwd))
            else:
                self._selector.register(sock, selectors.EVENT_READ,
                                        functools.partial(self._on_upstream, fwd))
            return
        self._reply(fwd, _failure(fwd.query))

    def _on_upstream(self, fwd: _Forward) -> None:
        if fwd.sock is None:
            return  # retired by an earlier event of the same select
        try:
            answer = fwd.sock.recv(UDP_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._next_upstream(fwd, err)
            return
        if len(answer) < 2 or answer[:2] != fwd.wire[:2]:
            return  # not the answer to this query (a late one to an earlier): wait on
        self._retire(fwd)
        self._reply(fwd, answer)

    def _on_upstream_tcp(self, fwd: _Forward) -> None:
        sock = fwd.sock
        if sock is None:
            return
        try:
            if not fwd.sent:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                # A query is small: the new connection's buffer takes it whole.
                sock.sendall(_LENGTH.pack(len(fwd.wire)) + fwd.wire)
                fwd.sent = True
                self._selector.modify(sock, selectors.EVENT_READ,
                                      functools.partial(self._on_upstream_tcp, fwd))
                return
            chunk = sock.recv(UDP_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._next_upstream(fwd, err)
            return
        if not chunk:
            self._next_upstream(fwd, OSError("closed before its answer"))
            return
        fwd.answer += chunk
        answer = _framed(fwd.answer)
        if answer is not None:
            self._retire(fwd)
            self._reply(fwd, answer)

    def _next_upstream(self, fwd: _Forward, err: OSError) -> None:
        log.warning("dns: upstream %s: %s", fwd.upstream, err)
        self._retire(fwd)
        self._forward(fwd)

    def _expire(self, now: float) -> None:
        for fwd in [f for f in self._pending if f.deadline <= now]:
            log.warning("dns: upstream %s did not answer in %.0f s", fwd.upstream,
                        UPSTREAM_TIMEOUT)
            self._retire(fwd)
            self._forward(fwd)
        for served in list(self._served.values()):
            for connection in [c for c in served.connections if c.idle and c.deadline <= now]:
                self._close_connection(served, connection)

    def _retire(self, fwd: _Forward) -> None:
        self._pending.discard(fwd)
        if fwd.sock is not None:
            self._selector.unregister(fwd.sock)
            fwd.sock.close()
            fwd.sock = None

    def _reply(self, fwd: _Forward, answer: bytes | dns.message.Message) -> None:
        """`answer` (the upstream's wire, or our own) to whoever asked, if still here."""
        connection = fwd.connection
        if connection is not None:
            connection.forwarding -= 1
            if connection in fwd.served.connections:
                wire = answer.to_wire() if isinstance(answer, dns.message.Message) \
                    else answer
                self._queue(fwd.served, connection, wire)
        elif self._current(fwd.container, fwd.served) and fwd.asker is not None:
            wire = _to_wire(fwd.query, answer) if isinstance(answer, dns.message.Message) \
                else answer
            _send(fwd.served.udp, wire, fwd.asker)

    # -- TCP clients --------------------------------------------------------------------

    def _on_connect(self, container: str, served: _Served) -> None:
        if not self._current(container, served):
            return
        try:
            sock, _peer = served.tcp.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            log.warning("dns: accepting a connection of %s failed: %s", container[:12], err)
            return
        if len(served.connections) >= MAX_CONNECTIONS:
            sock.close()  # the resolver retries, or asks again over UDP
            return
        sock.setblocking(False)
        connection = _Connection(container, sock, time.monotonic() + TCP_IDLE)
        served.connections.add(connection)
        self._selector.register(sock, selectors.EVENT_READ,
                                functools.partial(self._on_connection, served, connection))

    def _on_connection(self, served: _Served, connection: _Connection) -> None:
        """Readable or writable: whatever can be done, without blocking."""
        if connection not in served.connections:
            return
        try:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                if connection.unsent:
                    sent = connection.sock.send(connection.unsent)
                    del connection.unsent[:sent]
            with contextlib.suppress(BlockingIOError, InterruptedError):
                if not connection.ended:
                    chunk = connection.sock.recv(UDP_MAX)
                    connection.ended = not chunk
                    connection.received += chunk
        except OSError:
            self._close_connection(served, connection)  # the client left
            return
        connection.deadline = time.monotonic() + TCP_IDLE
        while (wire := _framed(connection.received)) is not None:
            self._on_message(connection.container, served, wire, None, connection)
            if connection not in served.connections:
                return
        if len(connection.received) > _LENGTH.size + UDP_MAX:  # cannot be: not DNS
            self._close_connection(served, connection)
            return
        self._watch(served, connection)

    def _queue(self, served: _Served, connection: _Connection, wire: bytes) -> None:
        connection.unsent += _LENGTH.pack(len(wire)) + wire
        self._watch(served, connection)

    def _watch(self, served: _Served, connection: _Connection) -> None:
        """Wait for what the connection needs next; close it when it is over."""
        if connection.ended and connection.idle:
            self._close_connection(served, connection)
            return
        events = selectors.EVENT_WRITE if connection.unsent else 0
        if not connection.ended:
            events |= selectors.EVENT_READ
        if events == connection.watched:
            return
        # Ended, its answers still at the upstreams: nothing to wait for on it till then.
        handler = functools.partial(self._on_connection, served, connection)
        if not events:
            self._selector.unregister(connection.sock)
        elif not connection.watched:
            self._selector.register(connection.sock, events, handler)
        else:
            self._selector.modify(connection.sock, events, handler)
        connection.watched = events

    def _close_connection(self, served: _Served, connection: _Connection) -> None:
        served.connections.discard(connection)
        if connection.watched:
            self._selector.unregister(connection.sock)
        connection.sock.close()
        for fwd in [f for f in self._pending if f.connection is connection]:
            self._retire(fwd)


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
    """`response` in the size a UDP asker takes; too big: TC and no answers, so that it
    asks again over TCP."""
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


def _framed(received: bytearray) -> bytes | None:
    """The first whole message of a TCP stream, taken out of `received`; None until it
    has come."""
    if len(received) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack_from(received)
    end = _LENGTH.size + length
    if len(received) < end:
        return None
    message = bytes(received[_LENGTH.size:end])
    del received[:end]
    return message


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


def _bind_in_netns(netns_path: str) -> tuple[_Served, tuple[int, int]]:
    """A UDP socket and a listening TCP one at 127.0.0.11 in the namespace at
    `netns_path`, port 53 led to them there, made by a thread that enters it and ends
    (see the module docstring); and the namespace's (dev, inode). Errors: OSError."""
    def bind() -> tuple[_Served, tuple[int, int]]:
        st = os.stat("/proc/thread-self/ns/net")  # the namespace entered, as nsfs has it
        made: list[socket.socket] = []
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                made.append(_bind_here(kind))
            udp, tcp = made
            iptables.redirect_dns(ADDRESS, PORT, (udp.getsockname()[1],
                                                  tcp.getsockname()[1]))
        except BaseException:
            for sock in made:
                sock.close()
            raise
        return _Served(udp, tcp), (st.st_dev, st.st_ino)
    return in_netns(netns_path, bind)


def _bind_here(kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        _loopback_up(sock)
        sock.bind((ADDRESS, 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(TCP_BACKLOG)
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
