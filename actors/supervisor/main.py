"""`pouchd`: the supervisor, or any single role of the daemon.

    pouchd [flags]                 the whole daemon, supervised (the default)
    pouchd [flags] broker          the broker alone
    pouchd [flags] containerd      containerd alone, supervised (systemd's supervisor unit)
    pouchd [flags] actor NAME      one actor process (system, image, volume, network,
                                   container, builder)
    pouchd [flags] gateway         the HTTP gateway under gunicorn
    pouchd [flags] zygote          (pouchd's own) imports once, forks the roles above
    pouchd [flags] status [--json] every child's state, from the status file (no broker
                                   needed); exits 1 if degraded, 3 if pouchd is not running

Each role runs the same code under pouchd's own supervisor and under systemd.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pouch.actors.supervisor.roles import ACTOR_CLASSES, PARENT_ENV
from pouch.proto.config import DaemonConfig, add_flags, resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pouchd", description=__doc__.splitlines()[0])
    add_flags(parser)
    parser.add_argument("role", nargs="*",
                        help="broker | containerd | actor NAME | gateway | zygote | status "
                             "(default: all)")
    parser.add_argument("--json", action="store_true", help="status: print JSON, not a table")
    opts = parser.parse_args(argv)
    try:
        config = resolve(opts)
    except ValueError as exc:
        parser.error(str(exc))
    role = opts.role
    if role == ["status"]:
        from pouch.actors.supervisor.status import show_status
        return show_status(config.exec_root_dir, opts.json)
    setup_logging(config, role_name(role))
    die_with_supervisor()
    status = run_role(config, role, reread=lambda: resolve(opts))
    if status is None:
        parser.error(f"unknown role {' '.join(role)!r}; actors: {', '.join(ACTOR_CLASSES)}")
    return status


def role_name(role: list[str]) -> str:
    """How a role's process names itself (in log lines, its process name)."""
    if role[:1] == ["actor"] and len(role) == 2:
        return role[1]
    return role[0] if role else "pouchd"


def run_role(config: DaemonConfig, role: list[str],
             reread: Callable[[], DaemonConfig] | None = None) -> int | None:
    """Run one role of pouchd to its end: its exit status; None: no such role.
    `reread`: the configuration read again from the flags and config file (on SIGHUP)."""
    if not role:
        from pouch.actors.supervisor.run import run_supervisor
        return run_supervisor(config, reread=reread)
    if role == ["containerd"]:
        from pouch.actors.supervisor.run import run_supervisor
        return run_supervisor(config, only=("containerd",))
    if role == ["zygote"]:
        from pouch.actors.supervisor.zygote import run_zygote
        return run_zygote(config)
    if role == ["broker"]:
        return run_broker(config)
    if role[0] == "actor" and len(role) == 2 and role[1] in ACTOR_CLASSES:
        return run_actor(config, role[1])
    if role == ["gateway"]:
        from pouch.gateway.server import run_gateway
        return run_gateway(config)
    return None


def setup_logging(config: DaemonConfig, name: str) -> None:
    logging.basicConfig(
        force=True,  # a forked role replaces the zygote's set-up
        level=logging.DEBUG if config.debug else logging.INFO,
        format=f"%(asctime)s {name}[%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def die_with_supervisor() -> None:
    """A child of pouchd's supervisor ends when it does, even if it is killed."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != int(parent):
        sys.exit("pouchd's supervisor is gone")


def run_broker(config: DaemonConfig) -> int:
    from pouch.actors.host import remove_pid, write_pid
    from pouch.actors.sdnotify import notify
    from pouch.broker.procs import parent
    from pouch.broker.router import Broker

    config.exec_root_dir.mkdir(parents=True, exist_ok=True)
    # Only the supervisor's tree serves on the actors' endpoint; under -D (fault points
    # served) also the tree of what started pouchd: a test, a debugger.
    supervisor = int(os.environ.get(PARENT_ENV) or os.getppid())
    tree = (parent(supervisor) or supervisor) if config.debug else supervisor
    broker = Broker(config.broker_endpoint, config.actor_endpoint, tree=tree)
    broker.bind()
    relay = None
    if config.zmq_listen:
        from pouch.broker.curve import CurveRelay

        relay = CurveRelay(config.zmq_listen, Path(config.zmq_keys), config.broker_endpoint)
        relay.start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: broker.stop())
    write_pid(config.pid_path("broker"))
    notify("READY=1")
    try:
        broker.run()
    finally:
        if relay is not None:
            relay.stop()
        remove_pid(config.pid_path("broker"))
    return 0


def run_actor(config: DaemonConfig, name: str) -> int:
    from pouch.actors.handoff import HandoffListener
    from pouch.actors.host import serve

    up_at = time.time()
    module_name, _, class_name = ACTOR_CLASSES[name].partition(":")
    actor_cls = getattr(importlib.import_module(module_name), class_name)
    takes_conns = any(d.handoff for d in actor_cls.contract.values())
    return serve(actor_cls, config,
                 extra=(lambda host: HandoffListener(host, config.handoff_dir, up_at).start())
                 if takes_conns else None)


if __name__ == "__main__":
    sys.exit(main())
