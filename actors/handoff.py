"""The actor's end of connection hand-off (see `pouch.proto.handoff`).

One thread owns the listening socket. Each hand-off is validated against
the method's declaration like a broker request, then runs on the service's
actor with `conn`, a `StreamSession` over the client's socket that writes the
response the gateway described, and a reply that answers the gateway: ok
once the actor has taken the connection, or an error. An ok returns once the
gateway has written the response's head and said go. After an ok the link
stays open: the session tells the gateway on it how the stream goes.

The same thread watches the gateway's end of each link a gateway keeper keeps
(`kept`): after go the gateway sends nothing more, so the end shows only when it
closes. Closed without `done`, its process was killed, and its keeper's watch
with it: should this actor die in turn, no one would take the stream up. The
stream goes to another gateway process's keeper then, over a new link
(`pouch.proto.handoff.pass_to_keeper`), or once one is there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pouch.actors.host import Host, Reply
from pouch.broker.trust import umask
from pouch.proto import envelope as env
from pouch.proto.handoff import (
    MAX_MESSAGE,
    LinkWatch,
    PassedStream,
    pass_to_keeper,
    receive,
    socket_path,
    wait_for_go,
)
from pouch.proto.stream import StreamSession, StreamSpec

log = logging.getLogger("pouch.handoff")

KEEPER_RETRY = 1.0  # how often to look again for a gateway process to keep a stream


@dataclass(eq=False)
class Guarded:
    """A stream whose link a gateway keeper keeps."""

    watch: LinkWatch
    conn: socket.socket    # our duplicate of the client's connection, to pass it on
    passed: PassedStream   # as first handed over (what was told since: watch.told)
    orphaned: bool = False  # no keeper would take it: it is tried again


class HandoffListener:
    """`up_at`: when this actor process began, before its actor's restore."""

    def __init__(self, host: Host, handoff_dir: Path, up_at: float) -> None:
        self.host = host
        self.path = socket_path(handoff_dir, host.service)
        self._dir = handoff_dir
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._thread = threading.Thread(target=self._serve, name="handoff", daemon=True)
        self._stopping = False
        # A stream handed over again continues from its cut. The gateway's time of the
        # cut can be late (its keeper thread waits for the CPU); what this process made
        # (logged, say) came after the cut, and the client has none of it yet.
        self._up_at = up_at
        self._sel = selectors.DefaultSelector()
        self._changes: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._orphans: list[Guarded] = []

    def start(self) -> Callable[[], None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        with umask(0o177):  # mode 0600 from the moment the socket exists
            self._sock.bind(str(self.path))
        self._sock.listen(64)
        self._sel.register(self._sock, selectors.EVENT_READ, self._accept)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._apply_changes)
        self._thread.start()
        return self.stop

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        while not self._stopping:
            for key, _mask in self._sel.select(KEEPER_RETRY if self._orphans else None):
                try:
                    key.data()
                except Exception:  # this thread must go on: it takes every hand-off
                    log.exception("hand-off listener")
            if self._orphans:
                orphans, self._orphans = self._orphans, []
                for guarded in orphans:
                    self._pass_on(guarded)

    def _accept(self) -> None:
        try:
            link, _ = self._sock.accept()
        except OSError:
            return  # stopping, or a gateway that gave up connecting
        try:
            self._take(link)
        except Exception:
            log.exception("a hand-off failed")
            link.close()

    def _take(self, link: socket.socket) -> None:
        message, conn = receive(link)
        name = str(message.get("method", ""))
        decl = self.host.contract.get(name)

        def reply(on_go: Callable[[], None] | None = None) -> Reply:
            return Reply(_answer_on(link, conn, on_go), 0, f"{self.host.service}.{name}",
                         self.host.observer(name))
        if conn is None:
            reply().fail(env.invalid("a hand-off must carry a connection"))
            return
        if decl is None or not decl.handoff:
            conn.close()
            reply().fail(env.invalid(f"{self.host.service}.{name} does not take a connection"))
            return
        args = dict(message.get("args") or {})
        try:
            checked = decl.validate(self.host.service, args)
            spec = StreamSpec.from_wire(message.get("stream"))
        except env.PouchError as exc:
            conn.close()
            reply().fail(exc)
            return
        began_at = float(message.get("began_at") or 0.0)
        resumed_at = float(message.get("resumed_at") or 0.0)
        watch = LinkWatch(link, decl.resumable is True)
        on_go = None
        if message.get("kept"):
            on_go = self._guarding(watch, conn, PassedStream(
                self.host.service, name, args, spec, began_at or time.time(), resumed_at))
        session = StreamSession(conn, spec, watch=watch,
                                resumed_at=min(resumed_at, self._up_at),
                                began_at=began_at, head_out=True)
        self.host.dispatch_with_conn(decl, checked, session, reply(on_go))

    def _guarding(self, watch: LinkWatch, conn: socket.socket,
                  passed: PassedStream) -> Callable[[], None]:
        """What to do on go for a kept stream: watch its link (not before: a refused
        hand-off must leave no duplicate of the client's connection here)."""

        def on_go() -> None:
            with watch.lock:
                if watch.ended:
                    return
                try:
                    guarded = Guarded(watch, socket.socket(fileno=os.dup(conn.fileno())),
                                      passed)
                except OSError:
                    return  # closed already: the stream is over
                watch.on_done = lambda: self._change(lambda: self._forget(guarded))
            self._change(lambda: self._guard(guarded))
        return on_go

    # -- the watch over kept links (on this thread) ---------------------------------

    def _change(self, change: Callable[[], None]) -> None:
        self._changes.put(change)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _apply_changes(self) -> None:
        self._wake_r.recv(4096)
        while not self._changes.empty():
            self._changes.get()()

    def _guard(self, guarded: Guarded) -> None:
        with guarded.watch.lock:
            if not guarded.watch.ended:
                self._sel.register(guarded.watch.link, selectors.EVENT_READ,
                                   lambda: self._on_link(guarded))

    def _forget(self, guarded: Guarded) -> None:
        """The stream is over: close what this thread watched of it."""
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(guarded.watch.link)
        guarded.watch.link.close()
        guarded.conn.close()

    def _on_link(self, guarded: Guarded) -> None:
        if guarded.watch.ended:
            return  # its gateway read the end (its link is closed, or soon: _forget)
        try:
            if guarded.watch.link.recv(MAX_MESSAGE, socket.MSG_DONTWAIT):
                return  # nothing is sent after go; not an end
        except BlockingIOError:
            return
        except OSError:
            pass
        self._sel.unregister(guarded.watch.link)
        self._pass_on(guarded)

    def _pass_on(self, guarded: Guarded) -> None:
        """The gateway end of the stream's link closed: give the stream to a living
        gateway process's keeper, with a new link (or later, if there is none yet)."""
        watch = guarded.watch
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs, watch.lock:
            if watch.ended:
                ours.close()
                return
            told = watch.told
            passed = dataclasses.replace(guarded.passed, started=told["started"],
                                         multiplexed=told["multiplexed"],
                                         resumable=told["resumable"])
            keeper = pass_to_keeper(self._dir, passed, guarded.conn.fileno(), theirs.fileno())
            if keeper is None:
                ours.close()
                if not guarded.orphaned:
                    guarded.orphaned = True
                    log.info("%s.%s: its gateway process died, and no other keeps streams "
                             "yet", self.host.service, guarded.passed.method)
                self._orphans.append(guarded)
                return
            watch.moved_to(ours).close()
        # Should that process be dying too, the link ends again, and it goes on.
        log.info("%s.%s: its gateway process died; passed to gateway process %d",
                 self.host.service, guarded.passed.method, keeper)
        self._sel.register(ours, selectors.EVENT_READ, lambda: self._on_link(guarded))


def _answer_on(link: socket.socket, conn: socket.socket | None,
               on_go: Callable[[], None] | None = None) -> Callable[[bytes, bool, int], None]:
    def deliver(body: bytes, final: bool, _rid: int) -> None:
        if not final:
            return
        with contextlib.suppress(OSError):  # the gateway gave up waiting: the actor owns it
            link.send(body)
        if not env.unpack(body).get("ok"):
            # Refused: no stream follows, and the gateway answers the client (else the
            # session owns the connection, and its watch the link). Kept, the connection
            # would hang a client that the gateway cut (a stream it handed over again).
            link.close()
            if conn is not None:
                conn.close()
        elif not wait_for_go(link):
            # Whether the head went out is unknown: a body must not follow. The session's
            # first write finds the connection shut and ends the stream.
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        elif on_go is not None:
            on_go()
    return deliver
