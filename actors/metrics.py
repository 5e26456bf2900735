"""Each actor process counts its requests, errors and latency (prometheus_client);
the system actor gathers every process's figures for the gateway's /metrics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# `*_created` series would come back from the parser as families of their own.
disable_created_metrics()

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)


class ActorMetrics:
    """The figures of one actor process, in a registry of its own."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter("pouch_requests", "Requests answered, by method",
                                ["service", "method"], registry=self.registry)
        self.errors = Counter("pouch_request_errors", "Requests answered with an error",
                              ["service", "method", "code"], registry=self.registry)
        self.latency = Histogram("pouch_request_seconds", "Time from request to answer",
                                 ["service", "method"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)

    def observe(self, method: str, seconds: float, error_code: str | None) -> None:
        self.requests.labels(self.service, method).inc()
        self.latency.labels(self.service, method).observe(seconds)
        if error_code is not None:
            self.errors.labels(self.service, method, error_code).inc()

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()


class _Merged:
    """A collector yielding families gathered from several expositions."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge(expositions: Iterable[str]) -> str:
    """One exposition from many: families of the same name become one family."""
    merged: dict[str, Metric] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            into = merged.get(family.name)
            if into is None:
                merged[family.name] = family
            else:
                into.samples.extend(family.samples)
    registry = CollectorRegistry()
    registry.register(_Merged(merged.values()))
    return generate_latest(registry).decode()
