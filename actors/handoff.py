"""The actor's end of connection hand-off (see `pouch.proto.handoff`).

One thread owns the listening socket. Each hand-off is validated against
the method's declaration like a broker request, then runs on the service's
actor with `conn`, a `StreamSession` over the client's socket that writes the
response the gateway described, and a reply that answers the gateway: ok
once the actor has taken the connection, or an error. An ok returns once the
gateway has written the response's head and said go. After an ok the link
stays open: the session tells the gateway on it how the stream goes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from pouch.actors.host import Host, Reply
from pouch.broker.trust import umask
from pouch.proto import envelope as env
from pouch.proto.handoff import LinkWatch, receive, socket_path, wait_for_go
from pouch.proto.stream import StreamSession, StreamSpec

log = logging.getLogger("pouch.handoff")


class HandoffListener:
    """`up_at`: when this actor process began, before its actor's restore."""

    def __init__(self, host: Host, handoff_dir: Path, up_at: float) -> None:
        self.host = host
        self.path = socket_path(handoff_dir, host.service)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._thread = threading.Thread(target=self._serve, name="handoff", daemon=True)
        self._stopping = False
        # A stream handed over again continues from its cut. The gateway's time of the
        # cut can be late (its keeper thread waits for the CPU); what this process made
        # (logged, say) came after the cut, and the client has none of it yet.
        self._up_at = up_at

    def start(self) -> Callable[[], None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        with umask(0o177):  # mode 0600 from the moment the socket exists
            self._sock.bind(str(self.path))
        self._sock.listen(64)
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
            try:
                link, _ = self._sock.accept()
            except OSError:
                if self._stopping:
                    return
                continue
            try:
                self._take(link)
            except Exception:
                log.exception("a hand-off failed")
                link.close()

    def _take(self, link: socket.socket) -> None:
        message, conn = receive(link)
        name = str(message.get("method", ""))
        reply = Reply(_answer_on(link, conn), 0, f"{self.host.service}.{name}",
                      self.host.observer(name))
        decl = self.host.contract.get(name)
        if conn is None:
            reply.fail(env.invalid("a hand-off must carry a connection"))
        elif decl is None or not decl.handoff:
            conn.close()
            reply.fail(env.invalid(f"{self.host.service}.{name} does not take a connection"))
        else:
            args = dict(message.get("args") or {})
            try:
                checked = decl.validate(self.host.service, args)
                spec = StreamSpec.from_wire(message.get("stream"))
            except env.PouchError as exc:
                conn.close()
                reply.fail(exc)
                return
            session = StreamSession(conn, spec, watch=LinkWatch(link, decl.resumable is True),
                                    resumed_at=min(float(message.get("resumed_at") or 0.0),
                                                   self._up_at),
                                    began_at=float(message.get("began_at") or 0.0),
                                    head_out=True)
            self.host.dispatch_with_conn(decl, checked, session, reply)


def _answer_on(link: socket.socket,
               conn: socket.socket | None) -> Callable[[bytes, bool, int], None]:
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
        elif not wait_for_go(link) and conn is not None:
            # Whether the head went out is unknown: a body must not follow. The session's
            # first write finds the connection shut and ends the stream.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
    return deliver
