"""A user who keeps working while faults are injected: container lifecycles through
the Docker API, in a background thread, with every request recorded.

    with Workload(daemon.host).running() as load:
        load.wait_for_cycles(3)
        ... inject a fault ...
    requests = load.requests

Each cycle is create (a unique name) -> start -> wait -> logs -> remove, then
one of `containers(all=True)`, `images()`, `volumes()`, `networks()` or `version()`,
so that every actor gets traffic. A cycle that fails stops there (its container stays, which the
invariants then expect to be listed) and the next cycle starts at once.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import docker
import requests.exceptions
from docker.errors import APIError

# The gateway gives most calls 30 s and start 60 s (gateway/containers.py); a
# client that waits longer than both sees a hang as a hang, not as its own timeout.
GATEWAY_DEADLINE = 30.0
DEADLINES = {"start": 60.0}
CLIENT_TIMEOUT = 75.0
IMAGE = "busybox"
# Between cycles, so that a kill lands on requests rather than on idle time only.
PAUSE = 0.01


@dataclass(frozen=True)
class Request:
    """One request of the workload and how it ended."""

    what: str        # create, start, wait, logs, remove, list, images, volumes, networks,
    #                  version
    name: str        # the container's name ("" for list, images, version)
    sent: float      # time.monotonic() just before sending
    took: float      # seconds until the answer (or the error)
    outcome: str     # ok | http (an error status) | cut (no HTTP answer) | wrong (2xx, bad body)
    status: int | None = None  # the HTTP status of an error
    message: str = ""
    cid: str = ""    # the container's ID, once create told it

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def ended(self) -> float:
        return self.sent + self.took

    @property
    def deadline(self) -> float:
        return DEADLINES.get(self.what, GATEWAY_DEADLINE)

    @property
    def outcome_unknown(self) -> bool:
        """Whether the request may or may not have taken effect."""
        return self.outcome == "cut" or (self.status == 503
                                         and "outcome is unknown" in self.message)

    def overlaps(self, start: float, end: float) -> bool:
        return self.sent <= end and self.ended >= start

    def __str__(self) -> str:
        what = f"{self.what} {self.name}".strip()
        answer = "ok" if self.ok else f"{self.outcome} {self.status or ''} {self.message!r}"
        return f"{what} at {self.sent:.3f} took {self.took:.3f}s: {answer}"


class CycleBroken(Exception):
    """A request of the cycle failed: the cycle ends there."""


class Workload:
    def __init__(self, host: str, *, timeout: float = CLIENT_TIMEOUT) -> None:
        self._api = docker.APIClient(base_url=host, version="1.41", timeout=timeout)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[Request] = []
        self._current: tuple[str, float] | None = None
        self._cycles_ok = 0
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)
        self._extras = itertools.cycle((self._list, self._images, self._volumes,
                                        self._networks, self._version))
        self.error: BaseException | None = None

    # -- control -------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[Workload]:
        self._thread.start()
        try:
            yield self
        finally:
            self.stop()

    def stop(self, timeout: float = CLIENT_TIMEOUT + 5) -> None:
        """Finish the request in flight, then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._api.close()
        if self._thread.is_alive():
            raise AssertionError(f"the workload did not stop within {timeout:.0f} s")
        if self.error is not None:
            raise AssertionError(f"the workload itself failed: {self.error!r}") from self.error

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def cycles_ok(self) -> int:
        with self._lock:
            return self._cycles_ok

    def in_flight(self) -> tuple[str, float] | None:
        """What is being sent now and since when, if anything."""
        with self._lock:
            return self._current

    def wait_for_cycles(self, count: int, timeout: float = 30.0) -> None:
        """Block until `count` more cycles have completed without an error."""
        with self._changed:
            target = self._cycles_ok + count
            if not self._changed.wait_for(lambda: self._cycles_ok >= target
                                          or self.error is not None, timeout):
                raise AssertionError(f"the workload did not complete {count} cycle(s) within "
                                     f"{timeout:.0f} s; last: {self._requests[-3:]}")
        if self.error is not None:
            raise AssertionError(f"the workload itself failed: {self.error!r}")

    def wait_sending(self, what: str, timeout: float = 10.0) -> float:
        """Block until a request of kind `what` is in flight; when it was sent."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self._current is not None and self._current[0] == what, timeout)
            if not ok or self._current is None:
                raise AssertionError(f"the workload sent no {what} within {timeout:.0f} s")
            return self._current[1]

    # -- the loop ------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with contextlib.suppress(CycleBroken):
                    self._cycle()
                    next(self._extras)()
                    with self._changed:
                        self._cycles_ok += 1
                        self._changed.notify_all()
                self._stop.wait(PAUSE)
        except BaseException as exc:  # a bug of the workload, not of the daemon
            self.error = exc

    def _cycle(self) -> None:
        name = f"fw-{uuid.uuid4().hex[:12]}"
        api = self._api
        cid = self._call("create", name,
                         lambda: api.create_container(IMAGE, ["echo", name], name=name)["Id"])
        if self._stop.is_set():
            return
        self._call("start", name, lambda: api.start(cid), cid=cid)
        self._call("wait", name, lambda: api.wait(cid, timeout=None), cid=cid,
                   check=lambda r: (r, "" if r.get("StatusCode") == 0 else f"status {r}"))
        self._call("logs", name, lambda: api.logs(cid), cid=cid,
                   check=lambda r: (r, "" if r == f"{name}\n".encode() else f"logs {r!r}"))
        self._call("remove", name, lambda: api.remove_container(cid), cid=cid)

    def _list(self) -> None:
        self._call("list", "", lambda: self._api.containers(all=True))

    def _images(self) -> None:
        self._call("images", "", lambda: self._api.images(),
                   check=lambda r: (r, "" if any(f"{IMAGE}:latest" in (i.get("RepoTags") or [])
                                                 for i in r) else f"no {IMAGE} in {r!r}"))

    def _volumes(self) -> None:
        self._call("volumes", "", lambda: self._api.volumes(),
                   check=lambda r: (r, "" if isinstance(r.get("Volumes"), list) else repr(r)))

    def _networks(self) -> None:
        self._call("networks", "", lambda: self._api.networks(),
                   check=lambda r: (r, "" if any(n.get("Name") == "bridge" for n in r)
                                    else f"no bridge network in {r!r}"))

    def _version(self) -> None:
        self._call("version", "", lambda: self._api.version(),
                   check=lambda r: (r, "" if r.get("ApiVersion") == "1.41" else repr(r)))

    def _call(self, what: str, name: str, send: Callable[[], Any], cid: str = "",
              check: Callable[[Any], tuple[Any, str]] | None = None) -> Any:
        """Send one request, record it; raise CycleBroken unless it went well."""
        sent = time.monotonic()
        with self._changed:
            self._current = (what, sent)
            self._changed.notify_all()
        status: int | None = None
        result: Any = None
        try:
            result = send()
            outcome, message = "ok", ""
            if check is not None:
                result, wrong = check(result)
                if wrong:
                    outcome, message = "wrong", wrong
        except APIError as exc:
            outcome, message = "http", str(exc.explanation or exc)
            status = exc.status_code
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.JSONDecodeError) as exc:
            outcome, message = "cut", f"{type(exc).__name__}: {exc}"
        except requests.exceptions.Timeout as exc:
            outcome, message = "timeout", f"{type(exc).__name__}: {exc}"
        took = time.monotonic() - sent
        if what == "create" and outcome == "ok":
            cid = str(result)
        record = Request(what, name, sent, took, outcome, status, message, cid)
        with self._changed:
            self._current = None
            self._requests.append(record)
            self._changed.notify_all()
        if outcome != "ok":
            raise CycleBroken(record)
        return result
