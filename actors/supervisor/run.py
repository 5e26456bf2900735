"""pouchd's main process: prepare the directories, start the tree, serve, stop."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka

from pouch.actors import pipekeeper, plugins
from pouch.actors.containerd.config import (
    allowed_oom_score_adj,
    render_config,
    write_config,
)
from pouch.actors.faults import Faults
from pouch.actors.host import ActorContext, host_of, remove_pid, write_pid
from pouch.actors.metrics import ActorMetrics
from pouch.actors.pipekeeper import PipeKeeper
from pouch.actors.sdnotify import notify, start_watchdog
from pouch.actors.signalsafe import StopRequest
from pouch.actors.supervisor.actor import SupervisorActor, Unresponsive
from pouch.actors.supervisor.children import build_specs, kill_stale, listening
from pouch.actors.supervisor.launch import Launcher
from pouch.actors.supervisor.status import STATUS_FILE
from pouch.actors.supervisor.zygote import Zygote
from pouch.broker.client import ClientPool, follow
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError
from pouch.proto.listeners import bind_all, close_all
from pouch.proto.stubs import Calls

log = logging.getLogger("pouch.supervisor")


def run_supervisor(config: DaemonConfig, only: tuple[str, ...] | None = None,
                   reread: Callable[[], DaemonConfig] | None = None) -> int:
    """The whole tree, or (under systemd, `only=("containerd",)`) just containerd.
    `reread` gives the configuration again when a SIGHUP asks for a reload."""
    for folder in (config.home_dir, config.exec_root_dir, config.handoff_dir):
        folder.mkdir(parents=True, exist_ok=True)
    write_pid(config.pidfile_path)
    oom = set_oom_score_adj(config.oom_score_adj)
    specs_all = ("gateway", "cri", "builder", "container", "network", "volume", "image",
                 "system", "containerd", "broker")
    for name in specs_all if only is None else only:
        kill_stale(config.pid_path(name), "containerd" if name == "containerd" else "pouch")

    containerd_config = config.home_dir / "containerd" / "config.toml"
    containerd_config.parent.mkdir(parents=True, exist_ok=True)
    write_config(containerd_config, render_config(
        root=config.home_dir / "containerd", state=config.containerd_state_dir,
        address=config.containerd_socket, oom_score=oom, debug=config.debug))

    def containerd_ready() -> bool:
        # Its gRPC server listens once its plugins are loaded. A socket probe keeps
        # grpc out of this process; the actors wait for containerd's answers themselves.
        return listening(f"unix://{config.containerd_socket}")

    # The whole tree forks its roles from a zygote; systemd's containerd unit has none.
    # The first zygote is forked from here, before any thread or ZeroMQ context exists.
    zygote = Zygote() if only is None else None
    # The whole tree holds the API's sockets itself (under systemd, the socket unit does).
    api_listeners = bind_all(config.listen, config.group) if only is None else []
    launcher = Launcher(zygote, api_listeners)
    if zygote is not None:
        zygote.prefork(config, launcher.env())
    # Containers' output pipes outlive the container actor here (pouch.actors.pipekeeper).
    keeper = PipeKeeper(pipekeeper.socket_path(config.exec_root_dir))
    keeper.start()
    # pouchd's own: its reports (mark_down, worker_gone) are refused on the client endpoint.
    calls = ClientPool(config.actor_endpoint, timeout=5.0)
    specs = [spec for spec in build_specs(config, calls, containerd_config, containerd_ready,
                                          zygote)
             if only is None or spec.name in only]

    def stopping(why: str) -> None:
        log.info("stopping: %s", why)
        notify("STOPPING=1")

    stop = StopRequest(stopping)  # asked for by signal handlers: see its module
    stop_requested = stop.event
    fatal = threading.Event()

    def on_started(name: str, pid: int) -> None:
        if name == "containerd":
            write_pid(config.pid_path("containerd"), pid)

    metrics = ActorMetrics("supervisor")
    ctx = ActorContext("supervisor", config, calls, Calls(calls), metrics, Faults(config.debug))

    def give_up(why: str) -> None:
        fatal.set()
        stop.request(why)

    ref = SupervisorActor.start(ctx, specs, launcher, on_fatal=give_up, on_started=on_started,
                                status_file=config.exec_root_dir / STATUS_FILE, reread=reread)
    host = host_of(ref)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _f: stop.request(signal.Signals(s).name))
    # As dockerd: a SIGHUP reloads what may change at run time (the registry settings).
    signal.signal(signal.SIGHUP, lambda _s, _f: ref.proxy().reload())
    if zygote is not None:  # a subreaper: the orphans it adopts are its to reap
        signal.signal(signal.SIGCHLD, lambda _s, _f: launcher.child_exited())

    status = 0
    hooks = plugins.loaded()  # after the zygote's fork: roles discover their own
    hooked = False
    try:
        # As pouchd's daemon plugin: before the actors start (a failure: pouchd does not).
        hooks.daemon_pre_start(config)
        hooked = True
        # Starting takes seconds on the actor's thread: it serves the broker only after.
        ref.proxy().start_all(stop_requested).get()
        host.attach(ref, "supervisor", SupervisorActor.contract, config.actor_endpoint,
                    metrics=metrics)
        threading.Thread(target=watch_heartbeats, args=(config, ref, stop_requested),
                         name="heartbeats", daemon=True).start()
        if zygote is not None:
            threading.Thread(target=launcher.reap_orphans, args=(stop_requested,),
                             name="orphans", daemon=True).start()
        notify("READY=1")
        start_watchdog(lambda: _answers(ref), stop_requested)
        if only is None:
            log.info("pouchd is ready; serving %s", ", ".join(config.listen))
        stop_requested.wait()
    except PouchError as exc:
        log.error("pouchd could not start: %s", exc.message)
        status = 1
    finally:
        stop_requested.set()
        if hooked:  # before the actors stop, so a plugin may still use them
            hooks.daemon_pre_stop(config)
        host.stop()
        ref.proxy().stop_all().get()
        ref.stop()
        keeper.stop()
        calls.close()
        if zygote is not None:
            zygote.close()
        close_all(api_listeners)
        remove_pid(config.pid_path("containerd"), any_owner=True)
        remove_pid(config.pidfile_path)
        log.info("pouchd stopped")
    # An exit status systemd's Restart=on-failure and a shell's `set -e` both see.
    return 1 if fatal.is_set() else status


def _answers(ref: Any) -> bool:
    """The supervisor actor still answers (what the systemd watchdog vouches for)."""
    try:
        ref.proxy().status().get(timeout=2)
        return True
    except Exception:
        return False


def set_oom_score_adj(wanted: int) -> int:
    """Set our own oom_score_adj as near `wanted` as the kernel lets us; the value set."""
    allowed = allowed_oom_score_adj(wanted)
    if allowed != wanted:
        log.warning("oom_score_adj %d is not allowed here; using %d", wanted, allowed)
    try:
        Path("/proc/self/oom_score_adj").write_text(str(allowed))
    except OSError as exc:
        log.warning("could not set oom_score_adj %d: %s", allowed, exc)
    return allowed


def watch_heartbeats(config: DaemonConfig, ref: Any, stop: threading.Event) -> None:
    """Kill an actor the broker found unresponsive (hung, not dead), so it restarts."""
    def on_lost(event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        pid = int((actor.get("Attributes") or {}).get("pid") or 0)
        ref.tell(Unresponsive(str(actor.get("ID", "")), pid))

    # Only an actor that missed its heartbeats may still run, hung: one that said
    # goodbye, exited or disconnected is dealt with (or restarted) already.
    lost = {"Type": ["daemon"], "Action": ["actor-lost"],
            "Actor.Attributes.reason": ["heartbeats"]}
    with contextlib.suppress(pykka.ActorDeadError):  # pouchd is stopping
        follow(config.actor_endpoint, lost, on_lost, stop)

