"""The zygote: one process that imports what pouchd's roles share, then forks each of them.

As gunicorn's `preload_app` and multiprocessing's forkserver: the zygote
imports once, freezes its heap (`gc.freeze()`, so no collection in a child
touches, and so copies, the pages they share) and forks a role on request;
a restart then skips interpreter start-up and imports. It opens no socket,
ZeroMQ context, gRPC channel or thread of its own: a fork copies only the
thread that forks, and a context or channel must never cross a fork.

Each role is forked twice (as a daemon detaches) so that it is the child of
pouchd's supervisor, a subreaper: the supervisor reaps it and reads its exit
status itself, it dies with the supervisor (not with the zygote), and the
zygote can die and be restarted while the roles it forked keep running.

The first zygote is forked from pouchd's own process before it starts any
thread (`Zygote.prefork`), so pouchd, the zygote and every role share one copy
of what they imported; one that replaces it later is exec'd (`pouchd zygote`).

The supervisor talks to it over a SOCK_SEQPACKET socketpair, in JSON: once
its imports are done the zygote says {"ready": true}; then each request
{"role": [...]} gets {"pid": N} (or {"error": "..."}).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

from pouch.actors.supervisor.roles import ACTOR_CLASSES, PARENT_ENV
from pouch.proto.config import DaemonConfig

log = logging.getLogger("pouch.zygote")

# The environment variable naming the zygote's end of the socketpair.
CONTROL_FD_ENV = "POUCH_ZYGOTE_FD"
# What the roles share: the actor host and the broker, and the actors with grpc and
# containerd's stubs (a restart of the container actor then imports nothing). Pages a
# child inherits count in its RSS whether it uses them or not, but once in the PSS
# sum. The gateway imports falcon and gunicorn itself: nobody else uses them.
PRELOAD = ("pykka", "zmq", "msgpack", "pouch.actors.host", "pouch.actors.handoff",
           "pouch.broker.router", "pouch.broker.client", "pouch.actors.supervisor.roles",
           *(spec.partition(":")[0] for spec in ACTOR_CLASSES.values()))
REPARENT_WITHIN = 2.0
PR_SET_NAME = 15


# -- the supervisor's side ---------------------------------------------------------


class Zygote:
    """pouchd's handle on its zygote: starts it and asks it to fork a role."""

    def __init__(self, fork_timeout: float = 10.0) -> None:
        self._sock: socket.socket | None = None
        self._ready = False
        self._lock = threading.Lock()
        self._timeout = fork_timeout
        self._preforked: int | None = None

    def prefork(self, config: DaemonConfig, env: dict[str, str]) -> None:
        """Fork the first zygote from pouchd's own process, which must have no thread,
        ZeroMQ context or gRPC channel yet: pouchd imports what the roles share once
        for itself, the zygote and every role (their pages counted once), instead of
        a zygote interpreter importing it all again. A zygote started later (after
        this one died) is exec'd: by then pouchd runs threads, and a fork keeps only
        the thread that forks."""
        _preload()
        # Frozen here too: a collection in pouchd would otherwise write to (and so copy)
        # the pages it shares with the zygote and every role.
        gc.collect()
        gc.freeze()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                ours.close()
                os.setsid()
                os.environ.clear()
                os.environ.update(env)
                from pouch.actors.supervisor.main import die_with_supervisor, setup_logging
                setup_logging(config, "zygote")
                die_with_supervisor()
                ctypes.CDLL(None).prctl(PR_SET_NAME, b"pouch-zygote")
                status = serve_forks(config, theirs)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        theirs.close()
        with self._lock:
            self._sock, self._ready, self._preforked = ours, False, pid

    def take_preforked(self) -> int | None:
        """The pid of the zygote prefork() made, once: the first start is that one."""
        with self._lock:
            pid, self._preforked = self._preforked, None
        return pid

    def start(self, argv: list[str], env: dict[str, str],
              keep_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
        """Exec a zygote (`keep_fds` passed on to it, and so to what it forks)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(argv, env={**env, CONTROL_FD_ENV: str(theirs.fileno())},
                                    pass_fds=(theirs.fileno(), *keep_fds),
                                    start_new_session=True)
        finally:
            theirs.close()
        with self._lock:
            self._drop()
            self._sock, self._ready = ours, False
        return proc

    def ready(self) -> bool:
        """It has done its imports (its readiness probe)."""
        with self._lock:
            return self._await_ready(0.5)

    def fork(self, role: list[str]) -> int:
        """Fork `role` (`pouchd`'s role arguments); its pid. OSError: no zygote answers."""
        with self._lock:
            if not self._await_ready(self._timeout):
                raise ConnectionError("the zygote is not ready")
            return int(self._exchange({"role": role})["pid"])

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _await_ready(self, timeout: float) -> bool:
        if self._ready or self._sock is None:
            return self._ready
        try:
            self._ready = self._receive(timeout).get("ready") is True
        except TimeoutError:
            return False  # still importing
        return self._ready

    def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._sock is not None
        try:
            self._sock.send(json.dumps(request).encode())
            reply = self._receive(self._timeout)
        except TimeoutError as exc:
            # A late answer would be taken for the next one: this zygote is done
            # (seeing its socket close, it exits; the supervisor restarts it).
            self._drop()
            raise ConnectionError("the zygote did not answer in time") from exc
        if "error" in reply:
            raise ConnectionError(f"the zygote could not fork: {reply['error']}")
        return reply

    def _receive(self, timeout: float) -> dict[str, Any]:
        """One message; TimeoutError if none came, ConnectionError (socket dropped) if it
        cannot come."""
        sock = self._sock
        if sock is None:
            raise ConnectionError("the zygote is not running")
        try:
            sock.settimeout(timeout)
            message = sock.recv(4096)
            if not message:
                raise ConnectionError("the zygote is gone")
            answer: dict[str, Any] = json.loads(message)
        except TimeoutError:
            raise
        except (OSError, ValueError) as exc:
            self._drop()
            raise ConnectionError(f"the zygote: {exc}") from exc
        return answer

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock, self._ready = None, False


# -- the zygote's side ---------------------------------------------------------------


def _preload() -> None:
    for module in PRELOAD:
        importlib.import_module(module)


def run_zygote(config: DaemonConfig) -> int:
    """The exec'd zygote: import, then serve forks (see serve_forks)."""
    control = socket.socket(fileno=int(os.environ.pop(CONTROL_FD_ENV)))
    _preload()
    return serve_forks(config, control)


def serve_forks(config: DaemonConfig, control: socket.socket) -> int:
    """Freeze the heap, then fork a role per request until the supervisor closes the
    socket."""
    gc.collect()
    gc.freeze()
    log.info("imported %d modules; forking on request", len(sys.modules))
    try:
        control.send(b'{"ready": true}')
        while message := control.recv(4096):
            try:
                reply: dict[str, Any] = {"pid": fork_role(config, json.loads(message)["role"],
                                                          control)}
            except OSError as exc:
                reply = {"error": str(exc)}
            control.send(json.dumps(reply).encode())
    except (BrokenPipeError, ConnectionResetError):
        pass
    return 0  # the supervisor is gone, or gave up on this zygote


def fork_role(config: DaemonConfig, role: list[str], control: socket.socket) -> int:
    """Fork twice: the role runs in the grandchild, which the supervisor adopts. Its pid."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(r)
        status = 0
        try:
            child = os.fork()
            if child == 0:
                os.close(w)
                become(config, role, control)
            os.write(w, str(child).encode())
        except BaseException:
            status = 1
        os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        pid = pipe.read()
    os.waitpid(middle, 0)
    if not pid:
        raise OSError("the fork failed")
    return int(pid)


def become(config: DaemonConfig, role: list[str], control: socket.socket) -> None:
    """In the forked child: shed the zygote's state, then run `role`. Never returns."""
    status = 1
    try:
        control.close()
        os.setsid()  # as an exec'd child: a Ctrl-C at pouchd's terminal is pouchd's alone
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        # No re-seeding to do: `random` re-seeds itself in a forked child (it registers with
        # os.register_at_fork), and uuid4 and secrets read os.urandom.
        wait_adopted()
        from pouch.actors.supervisor.main import (
            die_with_supervisor,
            role_name,
            run_role,
            setup_logging,
        )
        die_with_supervisor()
        name = role_name(role)
        ctypes.CDLL(None).prctl(PR_SET_NAME, f"pouch-{name}"[:15].encode())
        sys.argv = [sys.argv[0], *config.to_args(), *role]
        setup_logging(config, name)
        result = run_role(config, role)
        status = 2 if result is None else result
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def wait_adopted() -> None:
    """Until the middle process has exited and the supervisor is our parent."""
    supervisor = int(os.environ[PARENT_ENV])
    deadline = time.monotonic() + REPARENT_WITHIN
    while os.getppid() != supervisor:
        if time.monotonic() > deadline:
            sys.exit(f"not adopted by pouchd's supervisor (pid {supervisor})")
        time.sleep(0.0005)
