"""Remote ZeroMQ clients: a TCP endpoint that admits only CURVE-authenticated peers and
relays them to the broker's client endpoint (`--zmq-listen`, `--zmq-keys`).

CURVE (ZeroMQ RFC 26) encrypts the connection and proves each side's key; libzmq asks
the context's ZAP handler (pyzmq's `zmq.auth`, on a thread of its own) whether a
client's public key is one of the authorized ones, a `<name>.key` file in
`<zmq-keys>/clients/` as `zmq.auth.create_certificates` writes them. The broker's
secret key is `<zmq-keys>/server.key_secret`. Without a known key nothing is read.

The relay keeps the broker unaware of TCP: each remote client gets a DEALER of its own
on the broker's client endpoint, so the broker sees it as any local client (its own
identity, in-flight limits, subscriptions). It runs in the broker's process on one
thread, which owns every socket here. When a client's connection drops (the remote
ROUTER's monitor names its descriptor, and each message names the descriptor it came
on), that client's DEALER closes, which ends what it had in flight and its
subscriptions at the broker. (libzmq's ROUTER_NOTIFY would say it directly, but is a
draft option that Debian's libzmq leaves out.)
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Final

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from pouch.proto.config import ZMQ_CLIENT_KEYS, ZMQ_SERVER_SECRET

log = logging.getLogger("pouch.broker")

MAX_MESSAGE: Final = 16 * 1024 * 1024
POLL_MS: Final = 250  # how soon the loop sees it is stopped


class CurveRelay:
    """Serves `listen` (tcp://host:port) with the keys in `keys`, relaying to `broker`."""

    def __init__(self, listen: str, keys: Path, broker: str) -> None:
        self._listen = listen
        self._keys = keys
        self._broker = broker
        self._ctx = zmq.Context()  # its own: libzmq finds one ZAP handler per context
        self._clients = Clients(self._ctx, broker)  # the relay thread's alone
        self._auth = ThreadAuthenticator(self._ctx, log=log)
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="curve-relay", daemon=True)

    def start(self) -> None:
        """Serve from now on; raises what keeps it from binding."""
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(self._keys / ZMQ_CLIENT_KEYS))
        self._thread.start()
        self._bound.wait()
        if self._error is not None:
            self.stop()
            raise self._error

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._auth.stop()
        self._ctx.term()

    def _serve(self) -> None:
        remote = self._ctx.socket(zmq.ROUTER)
        try:
            public, secret = zmq.auth.load_certificate(self._keys / ZMQ_SERVER_SECRET)
            if secret is None:
                raise ValueError(f"{self._keys / ZMQ_SERVER_SECRET} holds no secret key")
            remote.setsockopt(zmq.LINGER, 0)
            remote.setsockopt(zmq.CURVE_SERVER, 1)
            remote.setsockopt(zmq.CURVE_PUBLICKEY, public)
            remote.setsockopt(zmq.CURVE_SECRETKEY, secret)
            remote.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
            remote.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a reply to a gone client raises
            remote.bind(self._listen)
        except Exception as exc:  # start() raises it in the caller's thread
            remote.close(linger=0)
            self._error = exc
            self._bound.set()
            return
        self._bound.set()
        log.info("remote ZeroMQ clients served on %s (CURVE)", self._listen)
        drops = remote.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        poller = zmq.Poller()
        poller.register(remote, zmq.POLLIN)
        poller.register(drops, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(POLL_MS):
                    if sock is remote:
                        identity, *frames = remote.recv_multipart(copy=False)
                        dealer = self._clients.of(identity.bytes, identity.get(zmq.SRCFD))
                        if dealer not in poller:
                            poller.register(dealer, zmq.POLLIN)
                        dealer.send_multipart(frames, copy=False)
                    elif sock is drops:
                        gone = self._clients.dropped(recv_monitor_message(drops)["value"])
                        if gone is not None:
                            poller.unregister(gone)
                            gone.close(linger=0)
                    else:
                        self._answer(remote, sock, poller)
        finally:
            remote.disable_monitor()
            drops.close(linger=0)
            self._clients.close()
            remote.close(linger=0)

    def _answer(self, remote: zmq.Socket, dealer: zmq.Socket, poller: zmq.Poller) -> None:
        frames = dealer.recv_multipart(copy=False)
        try:
            remote.send_multipart([self._clients.identity(dealer), *frames], copy=False)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            poller.unregister(dealer)  # the client is gone: so is what it asked for
            self._clients.forget(dealer)
            dealer.close(linger=0)


class Clients:
    """The remote clients: each one's DEALER on the broker, and the connection it is on."""

    def __init__(self, ctx: zmq.Context, broker: str) -> None:
        self._ctx = ctx
        self._broker = broker
        self._dealers: dict[bytes, zmq.Socket] = {}
        self._identities: dict[zmq.Socket, bytes] = {}
        self._on_fd: dict[int, bytes] = {}

    def of(self, identity: bytes, fd: int) -> zmq.Socket:
        dealer = self._dealers.get(identity)
        if dealer is None:
            dealer = self._ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(self._broker)
            self._dealers[identity], self._identities[dealer] = dealer, identity
        self._on_fd[fd] = identity
        return dealer

    def identity(self, dealer: zmq.Socket) -> bytes:
        return self._identities[dealer]

    def dropped(self, fd: int) -> zmq.Socket | None:
        """The DEALER of the client whose connection `fd` dropped, forgotten."""
        identity = self._on_fd.pop(fd, None)
        dealer = self._dealers.get(identity) if identity is not None else None
        if dealer is not None:
            self.forget(dealer)
        return dealer

    def forget(self, dealer: zmq.Socket) -> None:
        identity = self._identities.pop(dealer)
        del self._dealers[identity]
        self._on_fd = {fd: i for fd, i in self._on_fd.items() if i != identity}

    def close(self) -> None:
        for dealer in self._dealers.values():
            dealer.close(linger=0)
