"""Giving a client's connection to the actor that streams to it.

Under gunicorn the raw socket is `req.env["gunicorn.socket"]`. The gateway
passes its descriptor to the actor (`pouch.proto.handoff`), together with a
description of the response the actor writes (`pouch.proto.stream`), and then
must keep gunicorn from touching the connection: gunicorn would write its own
response and shut the socket down, which ends the connection for the actor
too. So the descriptor number is pointed at a dead socket pair (dup2):
gunicorn's writes fail with EPIPE, which it treats as a client that went
away, and its close reaches only the dead pair. The real connection lives on
in the actor process, and no gunicorn thread waits on it.

A TLS connection cannot move: its session state lives in this process. The
actor gets one end of a socket pair instead, and the request's thread relays
between the other end and the TLS socket until the stream is over (the slow
path: that thread is taken for the stream's life).

The gateway keeps a duplicate of every connection it handed over, and the
hand-off link, on which the actor says when the response began and when the
stream is over (`pouch.proto.handoff`). One keeper thread per process watches
those links. A link that ends without the stream being over means the actor
died: a stream the actor said could be taken up (a wait; a `logs -f` that
follows live) is handed over again to the restarted actor, marked resumed;
any other (an attach: its input and terminal state died with the actor; a log
replay cut midway) is ended with the reason, on the system-error stream when
multiplexed, and with the last chunk when chunked, so that the client reads a
complete response that says what happened. A stream that could be taken up
whose actor does not come back in time is cut without a last chunk: a client
waiting for a result (wait's exit status) must not read one that was made up.

The streams outlive the gateway process that handed them over, so its keeper's
watch must too: a worker that exits (told to stop, or orphaned by its master's
death) first passes what it keeps to another worker's keeper
(`pouch.proto.handoff.pass_to_keeper`). A worker killed outright cannot: the
actor finds the link's gateway end closed, and passes the stream on itself.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon

from pouch.broker.trust import umask
from pouch.proto.envelope import PouchError
from pouch.proto.handoff import (
    PassedStream,
    hand_over,
    keeper_path,
    pass_to_keeper,
    read_notice,
    receive_sockets,
)
from pouch.proto.stream import StreamSession, StreamSpec

log = logging.getLogger("pouch.hijack")

READ_SIZE = 64 * 1024
RELAY_BUFFER = 1 << 20  # stop reading a side while this much waits for the other
TLS_CLOSE_TIMEOUT = 2.0  # how long a client may take to answer our close_notify
# How long a new stream waits for its actor while it restarts (a gunicorn thread waits).
FIRST_HANDOFF_WAIT = 10.0
# How long a stream cut by its actor's death waits for the actor to come back.
RESUME_WITHIN = 60.0
RESUME_RETRY = 0.2
LEAVE_WITHIN = 5.0  # how long an exiting worker waits for its keeper to pass its streams on


@dataclass(frozen=True)
class StreamRequest:
    """A request to answer with a stream: the `conn` that a route passes to a
    hand-off stub (`pouch.proto.stubs.Handoffs`)."""

    req: falcon.Request
    spec: StreamSpec


class Hijacker:
    """The gateway's `HandOver` for the hand-off stubs."""

    def __init__(self, handoff_dir: Path) -> None:
        self.handoff_dir = handoff_dir

    def hand_over(self, conn: StreamRequest, service: str, method: str,
                  args: dict[str, Any]) -> None:
        hijack(conn.req, Handoff(self.handoff_dir, service, method, args, conn.spec))


@dataclass(frozen=True)
class Handoff:
    """What a stream's connection is handed over for: enough to hand it over again."""

    handoff_dir: Path
    service: str
    method: str
    args: dict[str, Any]
    spec: StreamSpec

    def give(self, fd: int, *, again: bool = False, resumed_at: float = 0.0,
             began_at: float = 0.0, wait_for_actor: float = FIRST_HANDOFF_WAIT
             ) -> socket.socket:
        """Hand `fd` over; `again`: to a restarted actor (the head is out)."""
        return hand_over(self.handoff_dir, self.service, self.method, self.args, self.spec,
                         fd, resumed_at=resumed_at, began_at=began_at, head_out=again,
                         kept=True, wait_for_actor=wait_for_actor)


@dataclass(eq=False)
class Kept:
    """A handed-over stream the keeper watches."""

    handoff: Handoff
    conn: socket.socket  # our duplicate of the client's connection
    link: socket.socket
    began_at: float            # when it was first handed over
    multiplexed: bool = False
    resumable: bool = False    # the current hand-off can be taken up again
    resumed_at: float = 0.0    # when the actor's death last cut the stream after it began
    started: bool = False      # the current hand-off has begun writing


class StreamKeeper:
    """One thread that watches the links of every stream this process handed over, or
    adopted from a gateway process that exited."""

    def __init__(self, handoff_dir: Path) -> None:
        self._dir = handoff_dir
        self._sel = selectors.DefaultSelector()
        self._new: queue.SimpleQueue[Kept | threading.Event] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._take_new)
        self._path = keeper_path(handoff_dir, os.getpid())
        self._adopter: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._path.unlink(missing_ok=True)  # a dead process's of the same pid
        with umask(0o177):  # mode 0600 from the moment the socket exists
            self._adopter.bind(str(self._path))
        self._sel.register(self._adopter, selectors.EVENT_READ, self._adopt)
        self._resuming = 0  # streams being handed over again (take_up)
        self._resuming_changed = threading.Condition()
        threading.Thread(target=self._run, name="stream-keeper", daemon=True).start()

    def leave(self) -> None:
        """This process is about to exit: pass what it keeps (and what it is given to
        keep from now on) to another gateway process's keeper; a stream being handed
        over again to a restarted actor meanwhile is passed on once it is."""
        until = time.monotonic() + LEAVE_WITHIN
        self._flush(until)
        with self._resuming_changed:
            self._resuming_changed.wait_for(lambda: not self._resuming,
                                            max(0.0, until - time.monotonic()))
        self._flush(until)

    def _flush(self, until: float) -> None:
        """Wait until the keeper thread has taken what was given to it so far."""
        taken = threading.Event()
        self._new.put(taken)
        self._wake_w.send(b"\0")
        taken.wait(max(0.0, until - time.monotonic()))

    def hand_over(self, handoff: Handoff, fd: int) -> None:
        """Hand `fd` over and keep watch; raises PouchError if the actor refuses."""
        began_at = time.time()
        link = handoff.give(fd)
        self.keep(Kept(handoff, socket.socket(fileno=os.dup(fd)), link, began_at))

    def keep(self, kept: Kept) -> None:
        self._new.put(kept)
        self._wake_w.send(b"\0")

    def _run(self) -> None:
        while True:
            for key, _mask in self._sel.select():
                if isinstance(key.data, Kept):
                    self._on_notice(key.data)
                else:
                    key.data()

    def _take_new(self) -> None:
        self._wake_r.recv(READ_SIZE)
        while not self._new.empty():
            item = self._new.get()
            if isinstance(item, threading.Event):
                self._leave()  # once; a second flush finds it done
                item.set()
            elif self._adopter is None:
                self._pass_on(item)
            else:
                self._sel.register(item.link, selectors.EVENT_READ, item)

    def _leave(self) -> None:
        if self._adopter is None:
            return
        self._adopter.setblocking(False)
        while self._adopt():  # what another exiting process passed on meanwhile
            pass
        self._sel.unregister(self._adopter)
        self._adopter.close()
        self._adopter = None
        self._path.unlink(missing_ok=True)
        for key in list(self._sel.get_map().values()):
            if isinstance(key.data, Kept):
                self._sel.unregister(key.fileobj)
                self._pass_on(key.data)

    def _pass_on(self, kept: Kept) -> None:
        """Give `kept` to another gateway process's keeper (else its watch ends here)."""
        handoff = kept.handoff
        passed = PassedStream(handoff.service, handoff.method, handoff.args, handoff.spec,
                              kept.began_at, kept.resumed_at, kept.started, kept.multiplexed,
                              kept.resumable)
        if pass_to_keeper(self._dir, passed, kept.conn.fileno(), kept.link.fileno()) is None:
            log.info("%s.%s: no gateway process to keep watch over it",
                     handoff.service, handoff.method)
        kept.conn.close()
        kept.link.close()

    def _adopt(self) -> bool:
        """Keep what a gateway process passed on as it exited; False if none had."""
        assert self._adopter is not None
        socks: list[socket.socket] = []
        try:
            body, socks = receive_sockets(self._adopter, 2)
            conn, link = socks
            passed = PassedStream.from_wire(body)
            kept = Kept(Handoff(self._dir, passed.service, passed.method, passed.args,
                                passed.stream),
                        conn, link, passed.began_at, multiplexed=passed.multiplexed,
                        resumable=passed.resumable, resumed_at=passed.resumed_at,
                        started=passed.started)
        except OSError:  # nothing to read
            return False
        except (ValueError, KeyError, TypeError, PouchError) as exc:
            log.warning("a stream passed on could not be kept: %s", exc)
            for sock in socks:
                sock.close()
            return True
        self._sel.register(link, selectors.EVENT_READ, kept)
        return True

    def _on_notice(self, kept: Kept) -> None:
        notice = read_notice(kept.link)
        if notice is not None and not notice.get("done"):
            if notice.get("started"):
                kept.started = True
                kept.multiplexed = bool(notice.get("multiplexed"))
            kept.resumable = kept.resumable or bool(notice.get("resumable"))
            return
        self._sel.unregister(kept.link)
        kept.link.close()
        if notice is None:  # the link ended before the stream: the actor died
            with self._resuming_changed:
                self._resuming += 1
            threading.Thread(target=self._take_up, args=(kept,), name="stream-resume",
                             daemon=True).start()
        else:
            kept.conn.close()

    def _take_up(self, kept: Kept) -> None:
        try:
            take_up(self, kept)
        finally:
            with self._resuming_changed:
                self._resuming -= 1
                self._resuming_changed.notify_all()


def take_up(keeper: StreamKeeper, kept: Kept) -> None:
    """A stream whose actor died: hand it to the restarted actor, or end it with why."""
    handoff = kept.handoff
    what = f"{handoff.service}.{handoff.method}"
    if kept.started and not kept.resumable:
        log.info("%s cut by its actor's death: ending it", what)
        _end(kept, f"the {handoff.service} actor restarted during {handoff.method}; "
                   f"{handoff.method} again")
        return
    if kept.started:
        kept.resumed_at = time.time()
    kept.started = kept.resumable = False
    # The dead actor may have left it non-blocking (the flag is shared by every duplicate).
    kept.conn.setblocking(True)
    deadline = time.monotonic() + RESUME_WITHIN
    while True:
        try:
            kept.link = handoff.give(kept.conn.fileno(), again=True, resumed_at=kept.resumed_at,
                                     began_at=kept.began_at,
                                     wait_for_actor=max(0.0, deadline - time.monotonic()))
            log.info("%s handed over again after its actor restarted", what)
            keeper.keep(kept)
            return
        except PouchError as exc:
            if exc.code != "unavailable" or time.monotonic() >= deadline:
                log.warning("%s cannot go on after its actor restarted: %s", what, exc.message)
                kept.conn.close()  # cut: see the module's docstring
                return
        time.sleep(RESUME_RETRY)


def _end(kept: Kept, reason: str) -> None:
    kept.conn.setblocking(True)
    session = StreamSession(kept.conn, kept.handoff.spec, head_out=True)
    session.start(multiplexed=kept.multiplexed)
    session.fail(reason)


@functools.cache
def keeper(handoff_dir: Path) -> StreamKeeper:
    """This process's keeper, started on first use (in the gunicorn worker, not before)."""
    return StreamKeeper(handoff_dir)


def hijack(req: falcon.Request, handoff: Handoff) -> None:
    """Hand the request's connection over as `handoff` says, and keep watch over the
    stream; raises PouchError if refused."""
    sock = req.env.get("gunicorn.socket")
    if not isinstance(sock, socket.socket):
        raise PouchError("internal", "this server cannot hand connections over")
    give = functools.partial(keeper(handoff.handoff_dir).hand_over, handoff)
    if isinstance(sock, ssl.SSLSocket):
        hand_over_relayed(sock, give)
        _end_tls(sock)
    else:
        give(sock.fileno())
    _detach(sock)


def hand_over_relayed(tls: ssl.SSLSocket, give: Callable[[int], None]) -> None:
    """Hand over one end of a socket pair with `give`, then relay the other end and
    `tls` both ways until the stream is over."""
    ours, theirs = socket.socketpair()
    with ours:
        with theirs:
            give(theirs.fileno())
        relay(tls, ours)


def relay(tls: ssl.SSLSocket, plain: socket.socket) -> None:
    """Move bytes both ways until `plain`'s side has ended and all it sent is
    delivered, or either side fails. The client's end of input is passed on as a
    half-close: an attached client that closes stdin still reads the output."""
    tls.setblocking(False)
    plain.setblocking(False)
    up, down = bytearray(), bytearray()  # client -> actor, actor -> client
    client_sending, actor_sending, half_closed = True, True, False
    tls_wants_write = False  # a TLS read that must write first (a key update)
    while actor_sending or down:
        if not (client_sending or up or half_closed):
            plain.shutdown(socket.SHUT_WR)
            half_closed = True
        reading_tls = client_sending and len(up) < RELAY_BUFFER
        readable: list[socket.socket] = [tls]
        writable: list[socket.socket] = []
        if not (reading_tls and tls.pending()):  # else decrypted already: select cannot see it
            readers = [s for s, on in ((tls, reading_tls),
                                       (plain, actor_sending and len(down) < RELAY_BUFFER)) if on]
            writers = [s for s, on in ((plain, up), (tls, down or tls_wants_write)) if on]
            readable, writable, _ = select.select(readers, writers, [])
        try:
            if tls in readable or (tls_wants_write and tls in writable):
                tls_wants_write = False
                try:
                    data = tls.recv(READ_SIZE)
                    up += data
                    client_sending = bool(data)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLWantWriteError:
                    tls_wants_write = True
            if plain in readable:
                data = plain.recv(READ_SIZE)
                down += data
                actor_sending = bool(data)
            if plain in writable:
                del up[:plain.send(up)]
            if tls in writable and down:
                with contextlib.suppress(ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    del down[:tls.send(down)]
        except OSError:
            return


def _end_tls(tls: ssl.SSLSocket) -> None:
    """Close the TLS session (close_notify both ways) once the stream is over. gunicorn
    then writes its own response to a plain socket that _detach makes fail quietly, not
    to a closed TLS session, which it would report as an invalid request."""
    tls.settimeout(TLS_CLOSE_TIMEOUT)
    with contextlib.suppress(OSError, ValueError):
        tls.unwrap()


def _detach(sock: socket.socket) -> None:
    dead, other = socket.socketpair()
    other.close()
    sock.setblocking(True)
    os.dup2(dead.fileno(), sock.fileno())
    dead.close()
