"""The pipe keeper: containers' output FIFOs held open outside the container actor.

containerd's shim writes a container's output into FIFOs that the container actor's
IO hub reads (pouch.actors.container.iohub). A FIFO that no process holds open drops
what it held. So should the container actor die while its container writes and exits,
the shim closes its ends once its copy is done, and the output goes with them: the
restarted actor opens empty FIFOs, and the log and the attached clients never get it.

So the hub gives a duplicate of each container's FIFO readers, as it opens them, to the
keeper: a thread of pouchd's supervisor, the process that outlives every actor (under
systemd, the unit that runs containerd). The keeper holds them and never reads, so
what the shim wrote waits in the pipes for the actor's successor. It lets go of a
container's when the hub has read its output to the end (`release`), or once the FIFOs
are unlinked (the container was removed, and no actor said so).

On the wire: a unix SOCK_SEQPACKET socket, `<exec-root>/pipe-keeper.sock` (mode 0600);
a datagram is `hold <id>` with the readers (SCM_RIGHTS), or `release <id>`. The hub
never waits on it: a datagram that cannot go at once is dropped, as is the keeping of
those pipes (the hub's own readers still hold them while it lives).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import selectors
import socket
import threading
import time
from pathlib import Path

from pouch.broker.trust import umask

log = logging.getLogger("pouch.pipekeeper")

SOCKET_NAME = "pipe-keeper.sock"
MAX_FDS = 4             # per datagram: a container's stdout and stderr readers, and room
MAX_MESSAGE = 256
SWEEP_EVERY = 30.0      # s: how often pipes whose FIFOs are unlinked are let go
RECONNECT_AFTER = 5.0   # s: how long a holder that found no keeper waits to try again


def socket_path(exec_root: Path) -> Path:
    return exec_root / SOCKET_NAME


class PipeKeeper:
    """The keeper's side: a thread that holds what it is given."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._held: dict[str, list[int]] = {}
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pipe-keeper", daemon=True)

    def start(self) -> None:
        # Two readers per running container: beyond the usual soft limit of 1024.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        with umask(0o177):
            listener.bind(str(self._path))
        listener.listen(16)
        listener.setblocking(False)
        self._sel.register(listener, selectors.EVENT_READ, self._accept)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for key in list(self._sel.get_map().values()):
            self._sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        self._wake_w.close()
        for cid in list(self._held):
            self._let_go(cid)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _run(self) -> None:
        next_sweep = time.monotonic() + SWEEP_EVERY
        while not self._stopping:
            for key, _mask in self._sel.select(max(0.0, next_sweep - time.monotonic())):
                if key.data is not None:
                    try:
                        key.data(key.fileobj)
                    except Exception:
                        log.exception("pipe keeper: handler failed")
            if time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + SWEEP_EVERY

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = listener.accept()
            conn.setblocking(False)
            self._sel.register(conn, selectors.EVENT_READ, self._receive)

    def _receive(self, conn: socket.socket) -> None:
        try:
            message, fds, _flags, _addr = socket.recv_fds(conn, MAX_MESSAGE, MAX_FDS)
        except BlockingIOError:
            return
        except OSError:
            message, fds = b"", []
        if not message:  # the holder's process ended: what it gave stays held
            self._sel.unregister(conn)
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        for fd in fds:
            os.set_inheritable(fd, False)  # no process this one starts gets them
        verb, _, cid = message.decode(errors="replace").partition(" ")
        if verb == "hold" and cid and fds:
            self._let_go(cid)
            self._held[cid] = fds
            return
        for fd in fds:
            os.close(fd)
        if verb == "release":
            self._let_go(cid)
        else:
            log.warning("pipe keeper: unknown message %r", message[:64])

    def _let_go(self, cid: str) -> None:
        for fd in self._held.pop(cid, []):
            os.close(fd)

    def _sweep(self) -> None:
        """Let go of pipes whose FIFOs were all unlinked: their container is removed."""
        for cid, fds in list(self._held.items()):
            if all(os.fstat(fd).st_nlink == 0 for fd in fds):
                self._let_go(cid)


class PipeHolder:
    """The hub's side: gives the keeper its readers. For one thread (the hub's) alone."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._sock: socket.socket | None = None
        self._next_try = 0.0
        self._held: set[str] = set()

    def hold(self, cid: str, fds: list[int]) -> None:
        """Have the keeper hold (duplicates of) `fds`, the readers of `cid`'s FIFOs, in
        place of any it held for `cid`."""
        if self._send(f"hold {cid}".encode(), fds):
            self._held.add(cid)

    def release(self, cid: str) -> None:
        """The keeper may let go of `cid`'s pipes: their output is read to its end."""
        if cid in self._held:
            self._held.discard(cid)
            self._send(f"release {cid}".encode(), [])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, message: bytes, fds: list[int]) -> bool:
        sock = self._connected()
        if sock is None:
            return False
        try:
            socket.send_fds(sock, [message], fds, socket.MSG_DONTWAIT)
            return True
        except OSError as exc:
            log.warning("pipe keeper: %s not sent (%s)", message.decode(), exc)
            if not isinstance(exc, BlockingIOError):
                self.close()  # the keeper went: connect again next time
            return False

    def _connected(self) -> socket.socket | None:
        if self._sock is None and time.monotonic() >= self._next_try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            try:
                sock.connect(str(self._path))
                self._sock = sock
            except OSError as exc:
                sock.close()
                self._next_try = time.monotonic() + RECONNECT_AFTER
                log.warning("pipe keeper at %s: %s; output written while the container "
                            "actor is down may be lost", self._path, exc)
        return self._sock
