"""Who may connect to the actors' endpoint: processes of pouchd's own tree, by SO_PEERCRED.

libzmq asks a ZAP handler (ZeroMQ RFC 27) about every connection made to a socket
that has a ZAP domain, before any message of it is read. For an ipc peer the
request's address is "localhost:<uid>:<gid>:<pid>", read by libzmq from the
kernel (SO_PEERCRED): the connecting process cannot forge it. A peer is let in
when it has the broker's uid and descends from the tree's root (the supervisor);
any other is refused, token or not. Only the actors' endpoint has the domain:
the client endpoint is not checked here.
"""

from __future__ import annotations

import logging
import os
import threading

import zmq

from pouch.broker import procs

log = logging.getLogger("pouch.broker")

DOMAIN = b"pouch-actors"
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq looks for the handler (RFC 27)


def admitted(address: bytes, uid: int, root: int) -> bool:
    """Whether the peer at a ZAP address is a process of uid `uid` under pid `root`."""
    host, _, creds = address.decode("ascii", "replace").partition(":")
    parts = creds.split(":")
    if host != "localhost" or len(parts) != 3 or not all(p.isdigit() for p in parts):
        return False  # not an ipc peer: no credentials to check
    peer_uid, _gid, pid = (int(p) for p in parts)
    return peer_uid == uid and procs.descends_from(pid, root)


class PeerCheck:
    """The ZAP handler of one context: its own thread and its own REP socket."""

    def __init__(self, context: zmq.Context, root: int) -> None:
        self._ctx = context
        self._root = root
        self._uid = os.geteuid()
        self._stop = os.eventfd(0, os.EFD_CLOEXEC)  # written by stop(): it sleeps till then
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="peer-check", daemon=True)

    def start(self) -> None:
        """Serve from now on; returns once libzmq can find the handler."""
        self._thread.start()
        self._bound.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        os.eventfd_write(self._stop, 1)
        self._thread.join()
        os.close(self._stop)

    def _serve(self) -> None:
        try:
            sock = self._ctx.socket(zmq.REP)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(ZAP_ENDPOINT)
        except Exception as exc:  # start() raises it in the broker's thread
            self._error = exc
            return
        finally:
            self._bound.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._stop, zmq.POLLIN)
        try:
            while self._stop not in (ready := dict(poller.poll())):
                if sock in ready:
                    sock.send_multipart(self._answer(sock.recv_multipart()))
        finally:
            sock.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:  # libzmq sends version, id, domain, address, identity, mechanism
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"malformed",
                    b"", b""]
        version, rid, domain, address = request[:4]
        if domain == DOMAIN and admitted(address, self._uid, self._root):
            return [version, rid, b"200", b"OK", b"", b""]
        log.warning("refused a connection to the actors' endpoint from %s: not a process "
                    "of pouchd's tree", address.decode("ascii", "replace"))
        return [version, rid, b"400", b"not a process of pouchd's tree", b"", b""]
