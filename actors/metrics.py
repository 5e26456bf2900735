"""Each actor process counts its requests, errors and latency, and whatever else it
declares (the supervisor: restarts). Counting is plain arithmetic under a lock:
prometheus_client (with what it imports, ~12 MiB per process) is loaded only by
the system actor, which turns every process's figures into one exposition
(`pouch.actors.exposition`).

A snapshot is msgpack-friendly: a list of families
    {"name", "type": "counter" | "gauge" | "histogram", "help", "labels": [...],
     "samples": [[label values, value]]}      (a histogram's value: [bucket counts, sum])
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)


class Family:
    """One named metric with labels; counter and gauge values, or histogram buckets."""

    def __init__(self, name: str, kind: str, help: str, labels: tuple[str, ...],
                 lock: threading.Lock, buckets: tuple[float, ...] = ()) -> None:
        self.name, self.kind, self.help, self.labels = name, kind, help, labels
        self.buckets = buckets
        self._lock = lock
        self._values: dict[tuple[str, ...], Any] = {}

    def inc(self, *labels: str, by: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + by

    def set(self, *labels: str, value: float) -> None:
        with self._lock:
            self._values[labels] = value

    def observe(self, *labels: str, value: float) -> None:
        with self._lock:
            counts, total = self._values.get(labels) or ([0] * (len(self.buckets) + 1), 0.0)
            counts[bisect.bisect_left(self.buckets, value)] += 1
            self._values[labels] = (counts, total + value)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            samples = [[list(k), [list(v[0]), v[1]] if self.kind == "histogram" else v]
                       for k, v in self._values.items()]
        return {"name": self.name, "type": self.kind, "help": self.help,
                "labels": list(self.labels), "buckets": list(self.buckets),
                "samples": samples}


class ActorMetrics:
    """The figures of one actor process."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._families: list[Family] = []
        self.requests = self.counter("pouch_requests", "Requests answered, by method",
                                     ("service", "method"))
        self.errors = self.counter("pouch_request_errors", "Requests answered with an error",
                                   ("service", "method", "code"))
        self.latency = self.histogram("pouch_request_seconds", "Time from request to answer",
                                      ("service", "method"), LATENCY_BUCKETS)
        # Seen here, not at the broker: local clients send some calls straight to the actor.
        self.in_flight = self.gauge("pouch_requests_in_flight",
                                    "Requests taken and not answered yet, by method",
                                    ("service", "method"))

    def counter(self, name: str, help: str, labels: tuple[str, ...]) -> Family:
        return self._add(Family(name, "counter", help, labels, self._lock))

    def gauge(self, name: str, help: str, labels: tuple[str, ...]) -> Family:
        return self._add(Family(name, "gauge", help, labels, self._lock))

    def histogram(self, name: str, help: str, labels: tuple[str, ...],
                  buckets: tuple[float, ...]) -> Family:
        return self._add(Family(name, "histogram", help, labels, self._lock, buckets))

    def _add(self, family: Family) -> Family:
        self._families.append(family)
        return family

    def begin(self, method: str) -> None:
        """A request taken, whose answer `observe` counts."""
        self.in_flight.inc(self.service, method)

    def observe(self, method: str, seconds: float, error_code: str | None) -> None:
        self.in_flight.inc(self.service, method, by=-1.0)
        self.requests.inc(self.service, method)
        self.latency.observe(self.service, method, value=seconds)
        if error_code is not None:
            self.errors.inc(self.service, method, error_code)

    def snapshot(self) -> list[dict[str, Any]]:
        return [family.snapshot() for family in self._families]
