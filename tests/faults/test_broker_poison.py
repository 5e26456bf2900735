"""The chaos soak's SIGSTOP of the image actor (3 s, while five clients resolve busybox):
the broker drops the silent actor, but blames none of the requests it was serving, so
resolving busybox (what every `docker run` does) is never refused afterwards."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading

from pouch.proto.envelope import PouchError
from pouch.tests.faults.tree import BrokerView, broker, kill, until
from pouch.tests.support.daemon import PouchDaemon

CLIENTS = 5
PAUSES = 2


def dropped(view: BrokerView, pid: int) -> bool | None:
    return pid not in view.pids("image") or None


def test_an_actor_stopped_twice_under_load_poisons_no_request(pouchd: PouchDaemon):
    view = BrokerView(pouchd)
    stop = threading.Event()
    refused: list[str] = []

    def resolve_until_stopped() -> None:
        client = broker(pouchd, timeout=10.0)
        try:
            while not stop.is_set():
                try:
                    client.call("image", "resolve", {"name": "busybox"})
                except PouchError as exc:
                    if exc.code == "invalid":
                        refused.append(exc.message)
        finally:
            client.close()

    load = [threading.Thread(target=resolve_until_stopped) for _ in range(CLIENTS)]
    for thread in load:
        thread.start()
    try:
        for _ in range(PAUSES):
            until(lambda: view.busy("image") or None, 10, "a resolve in flight")
            pid = pouchd.pid_of("image")
            kill(pid, signal.SIGSTOP)
            try:
                until(functools.partial(dropped, view, pid), 10,
                      "the broker to drop the stopped actor")
            finally:
                # The supervisor may have killed it meanwhile, for the broker's report.
                with contextlib.suppress(ProcessLookupError):
                    kill(pid, signal.SIGCONT)
            until(lambda: view.pids("image") or None, 20, "an image actor again")
            assert refused == []
    finally:
        stop.set()
        for thread in load:
            thread.join()
        view.close()
    assert refused == []  # nor while the threads finished
    client = broker(pouchd, timeout=10.0)
    try:
        assert client.call("image", "resolve", {"name": "busybox"})
    finally:
        client.close()
