"""systemd's notify protocol, for roles run as Type=notify units."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("pouch.systemd")

# What a child of pouchd's own supervisor must not inherit: pouchd is the unit's process.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
               "LISTEN_FDNAMES")


def notify(state: str) -> None:
    """Tell systemd `state` ("READY=1", "STOPPING=1", ...); nothing outside systemd.

    Never blocks: a reader that stopped reading must not stall a shutdown (gunicorn's
    own sd_notify, for one, waits while the datagram queue is full)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), socket.MSG_DONTWAIT, address)
    except OSError as exc:
        log.debug("systemd notification %r not sent: %s", state, exc)


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings if systemd asked for them (WatchdogSec=), else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 / 2


def start_watchdog(healthy: Callable[[], bool], stop: threading.Event) -> None:
    """Ping systemd's watchdog while `healthy()` says so, until `stop` is set."""
    interval = watchdog_interval()
    if interval is None:
        return

    def ping() -> None:
        while not stop.wait(interval):
            if healthy():
                notify("WATCHDOG=1")

    threading.Thread(target=ping, name="watchdog", daemon=True).start()
