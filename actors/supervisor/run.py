"""pouchd's main process: prepare the directories, start the tree, serve, stop."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.config import (
    allowed_oom_score_adj,
    render_config,
    write_config,
)
from pouch.actors.host import ActorContext, Host, remove_pid, write_pid
from pouch.actors.supervisor.actor import SupervisorActor, Unresponsive
from pouch.actors.supervisor.children import build_specs, kill_stale
from pouch.broker.client import Client, ClientPool
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.supervisor")


def run_supervisor(config: DaemonConfig) -> int:
    for folder in (config.home_dir, config.exec_root_dir, config.handoff_dir):
        folder.mkdir(parents=True, exist_ok=True)
    write_pid(config.pidfile_path)
    oom = set_oom_score_adj(config.oom_score_adj)
    for name, marker in (("gateway", "pouch"), ("container", "pouch"), ("image", "pouch"),
                         ("system", "pouch"), ("containerd", "containerd"), ("broker", "pouch")):
        kill_stale(config.pid_path(name), marker)

    containerd_config = config.home_dir / "containerd" / "config.toml"
    containerd_config.parent.mkdir(parents=True, exist_ok=True)
    write_config(containerd_config, render_config(
        root=config.home_dir / "containerd", state=config.exec_root_dir / "containerd",
        address=config.containerd_socket, oom_score=oom, debug=config.debug))
    ctrd = Containerd(config.containerd_socket)

    def containerd_ready() -> bool:
        ctrd.version(timeout=0.5)
        return True

    calls = ClientPool(config.broker_endpoint, timeout=5.0)
    specs = build_specs(config, calls, containerd_config, containerd_ready)
    stop_requested = threading.Event()
    host_box: list[Host] = []

    def request_stop(why: str) -> None:
        if not stop_requested.is_set():
            log.info("stopping: %s", why)
        stop_requested.set()
        if host_box:
            host_box[0].stop()

    def on_started(name: str, pid: int) -> None:
        if name == "containerd":
            write_pid(config.pid_path("containerd"), pid)

    ctx = ActorContext("supervisor", config, calls, lambda event: None)
    ref = SupervisorActor.start(ctx, specs, on_fatal=request_stop, on_started=on_started)
    host = Host(ref, "supervisor", SupervisorActor.contract, config.broker_endpoint)
    host_box.append(host)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _f: request_stop(signal.Signals(s).name))

    status = 0
    try:
        ref.proxy().start_all(stop_requested).get()
        watcher = threading.Thread(target=watch_heartbeats, args=(config, ref, stop_requested),
                                   name="heartbeats", daemon=True)
        watcher.start()
        log.info("pouchd is ready; serving %s", ", ".join(config.listen))
        if not stop_requested.is_set():
            host.run()
    except PouchError as exc:
        log.error("pouchd could not start: %s", exc.message)
        status = 1
    finally:
        stop_requested.set()
        ref.proxy().stop_all().get()
        ref.stop()
        calls.close()
        ctrd.close()
        remove_pid(config.pid_path("containerd"), any_owner=True)
        remove_pid(config.pidfile_path)
        log.info("pouchd stopped")
    return status


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
    while not stop.is_set():
        client = Client(config.broker_endpoint)
        try:
            with client.subscribe({"type": ["daemon"], "event": ["actor-lost"]}) as events:
                for event in events:
                    actor = event.get("Actor") or {}
                    pid = int((actor.get("Attributes") or {}).get("pid") or 0)
                    ref.tell(Unresponsive(str(actor.get("ID", "")), pid))
        except PouchError:
            pass  # the broker restarted: subscribe again
        finally:
            client.close()
        stop.wait(0.1)

