"""Every actor process's figures (`pouch.actors.metrics` snapshots) as one Prometheus
exposition, through prometheus_client. Only the system actor imports this."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString


class _Snapshots:
    """A collector over snapshots gathered from several processes."""

    def __init__(self, snapshots: Iterable[list[dict[str, Any]]]) -> None:
        self._families: dict[str, list[dict[str, Any]]] = {}
        for family in itertools.chain.from_iterable(snapshots):
            self._families.setdefault(family["name"], []).append(family)

    def collect(self) -> Iterator[Metric]:
        for name, parts in self._families.items():
            first = parts[0]
            labels = first["labels"]
            samples = [s for part in parts for s in part["samples"]]
            if first["type"] == "histogram":
                histogram = HistogramMetricFamily(name, first["help"], labels=labels)
                bounds = [*map(float, first["buckets"]), float("inf")]
                for values, (counts, total) in samples:
                    cumulative = list(itertools.accumulate(counts))
                    histogram.add_metric(values, list(zip(map(floatToGoString, bounds),
                                                          cumulative, strict=True)), total)
                yield histogram
                continue
            kind = CounterMetricFamily if first["type"] == "counter" else GaugeMetricFamily
            metric = kind(name, first["help"], labels=labels)
            for values, value in samples:
                metric.add_metric(values, value)
            yield metric


def render(snapshots: Iterable[list[dict[str, Any]]]) -> str:
    registry = CollectorRegistry()
    registry.register(_Snapshots(snapshots))
    return generate_latest(registry).decode()
