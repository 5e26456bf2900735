"""How pouchd's supervisor starts a child, forked by the zygote or exec'd, and reaps it.

pouchd is a subreaper (PR_SET_CHILD_SUBREAPER): what the zygote forks
becomes its child, so it waits for it as for what it exec'd. It also
adopts what its children orphan (containerd's shims, which detach from
containerd): those it reaps too, leaving them otherwise alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
import subprocess
import threading
from pathlib import Path

from pouch.actors.sdnotify import SYSTEMD_ENV
from pouch.actors.signalsafe import Wakeup
from pouch.actors.supervisor.roles import PARENT_ENV
from pouch.actors.supervisor.zygote import Zygote
from pouch.proto.listeners import env_for

log = logging.getLogger("pouch.supervisor")

PR_SET_CHILD_SUBREAPER = 36
ZYGOTE = "zygote"


class Forked:
    """A child the zygote forked for pouchd: the subset of Popen the supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = threading.Event()
        threading.Thread(target=self._reap, name=f"reap-{pid}", daemon=True).start()

    def _reap(self) -> None:
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:  # not reaped: the pid is still this child's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(9)


Process = subprocess.Popen[bytes] | Forked


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
    return {**inherited, PARENT_ENV: str(os.getpid()), **(extra or {})}


class Launcher:
    """Starts children, forked by the zygote when it can, and reaps orphans pouchd adopts."""

    def __init__(self, zygote: Zygote | None = None,
                 listeners: list[socket.socket] | None = None) -> None:
        self.zygote = zygote
        # The API's listening sockets (see listeners.py): every child inherits them, so
        # that whichever runs the gateway (forked or exec'd) finds them.
        self._listeners = listeners or []
        # Held while a child starts, so that the orphan reaper never takes a new
        # child's exit status before the child is known.
        self._lock = threading.Lock()
        self._known: set[int] = set()
        self._exits = Wakeup()  # a child exited since the reaper last looked
        if zygote is not None:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)

    def launch(self, name: str, argv: list[str], role: list[str] | None) -> Process:
        """Start a child: the zygote itself, a role it forks, or else a program exec'd."""
        with self._lock:
            proc = self._start(name, argv, role)
            self._known.add(proc.pid)
        return proc

    def forget(self, pid: int) -> None:
        """A child was reaped: its pid may come back as someone else's."""
        with self._lock:
            self._known.discard(pid)

    def _start(self, name: str, argv: list[str], role: list[str] | None) -> Process:
        if self.zygote is not None and name == ZYGOTE:
            preforked = self.zygote.take_preforked()
            return Forked(preforked) if preforked else self.zygote.start(
                argv, self.env(), self.kept_fds())
        if self.zygote is not None and role is not None:
            try:
                return Forked(self.zygote.fork(role))
            except OSError as exc:
                log.warning("%s: %s; starting a new interpreter instead", name, exc)
        # Its own session: a Ctrl-C at pouchd's terminal reaches pouchd alone,
        # which then stops the children in order.
        return subprocess.Popen(argv, env=self.env(), pass_fds=self.kept_fds(),
                                start_new_session=True)

    def env(self) -> dict[str, str]:
        """A child's environment."""
        return child_env(env_for(self._listeners))

    def kept_fds(self) -> tuple[int, ...]:
        return tuple(s.fileno() for s in self._listeners)

    def child_exited(self) -> None:
        """SIGCHLD's handler: the orphan reaper looks again."""
        self._exits.notify()

    def reap_orphans(self, stop: threading.Event) -> None:
        """Until `stop`: reap the zombies among pouchd's children that nobody waits for,
        each time a child exited (child_exited), not on a timer: an idle pouchd sleeps."""
        while not stop.is_set():
            self._exits.wait()  # before looking: an exit meanwhile is looked for again
            with self._lock:
                for pid in zombie_children():
                    if pid not in self._known:
                        with contextlib.suppress(ChildProcessError):
                            os.waitpid(pid, os.WNOHANG)


def zombie_children() -> list[int]:
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state == "Z":
                found.append(int(pid))
    return found
