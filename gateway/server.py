"""The gateway role: the Falcon app under gunicorn, bound to every --listen address.

With more than one worker (the default is two) gunicorn's master supervises
them: a worker killed cuts only the requests it was serving, and the master
killed cuts none (its workers finish what they serve, then exit, while pouchd
starts another master on the same listening sockets). With one worker, the
worker serves alone, with no master above it: pouchd's supervisor (or systemd)
restarts the process, and every request in flight dies with it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import runpy
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn import sock, systemd
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.pidfile import Pidfile

from pouch.proto.config import DaemonConfig
from pouch.proto.listeners import inherited

GUNICORN_CONF = Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py"


def bind_address(listen: str) -> str:
    """pouchd's --listen form to gunicorn's bind form."""
    if listen.startswith("unix://"):
        return "unix:" + listen[len("unix://"):]
    if listen.startswith("tcp://"):
        return listen[len("tcp://"):]
    return listen


class Gateway(BaseApplication):
    def __init__(self, config: DaemonConfig) -> None:
        self.daemon_config = config
        super().__init__()

    def load_config(self) -> None:
        for key, value in runpy.run_path(str(GUNICORN_CONF)).items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)
        config = self.daemon_config
        settings: dict[str, Any] = {
            "bind": [bind_address(a) for a in config.listen],
            "workers": config.gateway_workers,
            "threads": config.gateway_threads,
            "pidfile": str(config.pid_path("gateway")),
            # Not gunicorn's default (the system's temp folder, found by leaving a probe
            # file there, which a kill -9 at that moment left behind for good).
            "worker_tmp_dir": str(config.exec_root_dir),
            "loglevel": "debug" if config.debug else "info",
        }
        if config.uses_tls:
            # TLS is for the tcp:// addresses only (pouch.gateway.worker): the unix
            # sockets' own guard is their mode and group.
            settings.update(certfile=config.tlscert, keyfile=config.tlskey,
                            ssl_context=reused_ssl_context)
            if config.tlsverify:
                settings.update(ca_certs=config.tlscacert, cert_reqs=ssl.CERT_REQUIRED)
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from pouch.gateway.app import create_app
        return create_app(self.daemon_config)


def reused_ssl_context(cfg: Any, make: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """gunicorn's context, made once per process (on its first TLS connection) and kept
    with its settings: gunicorn would make one per connection, reading the files again."""
    context: ssl.SSLContext | None = getattr(cfg, "pouch_ssl_context", None)
    if context is None:
        context = make()
        cfg.pouch_ssl_context = context
    return context


def run_gateway(config: DaemonConfig) -> int:
    # Up to worker_connections clients, each a descriptor: the usual soft limit (1024) is too low.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for address in config.listen:
        if address.startswith("unix://"):
            Path(address[len("unix://"):]).parent.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(config)
    if config.gateway_workers > 1:
        serve_with_master(gateway)
    else:
        serve_alone(gateway)
    return 0


def serve_with_master(gateway: Gateway) -> None:
    """gunicorn's master and its workers, on the listening sockets pouchd's supervisor
    holds for us: a master of its own would bind them again (refusing connections
    meanwhile) and unlink them when it stops."""
    arbiter = Arbiter(gateway)
    fds = inherited()
    if fds:
        arbiter.LISTENERS = sock.create_sockets(gateway.cfg, arbiter.log, fds)
        arbiter.systemd = True  # handed to it, as systemd's are: not its to unlink
    arbiter.run()


def serve_alone(gateway: Gateway) -> None:
    """One gunicorn worker as the whole process, set up as gunicorn's master would."""
    cfg = gateway.cfg
    log = cfg.logger_class(cfg)
    # The sockets pouchd's supervisor holds for us, or systemd's (pouch-gateway.socket),
    # as gunicorn's master takes them; else our own.
    activated = systemd.listen_fds()
    fds = inherited() or list(range(systemd.SD_LISTEN_FDS_START,
                                    systemd.SD_LISTEN_FDS_START + activated))
    listeners = sock.create_sockets(cfg, log, fds or None)
    # The worker closes the listeners; the files of the unix ones we bound are ours to remove.
    paths = [] if fds else [str(s.cfg_addr) for s in listeners
                            if isinstance(s, sock.UnixSocket)]
    pidfile = Pidfile(cfg.pidfile)
    pidfile.create(os.getpid())
    worker = cfg.worker_class(1, os.getppid(), listeners, gateway, cfg.timeout / 2, cfg, log)
    worker.pid = os.getpid()
    log.info("Listening at: %s (%s)", ",".join(str(s) for s in listeners), worker.pid)
    systemd.sd_notify("READY=1", log)
    try:
        worker.init_process()  # serves until SIGTERM (graceful) or SIGINT, SIGQUIT
    finally:
        worker.tmp.close()
        pidfile.unlink()
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
