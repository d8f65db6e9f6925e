"""The registry a process's metrics live in: prometheus_client's, less the `_created` series it gives
every counter and histogram (the Unix time each labelled series began). No rule or panel reads them,
and they were 347 of an ingest node's 833 series at 26 cameras (41%). prometheus_client's own switch,
disable_created_metrics(), is one flag for every registry of the process: tests building a registry
each would have shared it."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

CREATED_TYPES = frozenset({"counter", "histogram", "summary"})
"""The metric types whose families prometheus_client gives a `<name>_created` sample."""


def without_created(metrics: Iterable[Metric]) -> Iterator[Metric]:
    """The metrics, each without its `_created` samples (copies: a collector's own objects are left)."""
    for metric in metrics:
        if metric.type in CREATED_TYPES:
            created = metric.name + "_created"
            metric = copy.copy(metric)
            metric.samples = [sample for sample in metric.samples if sample.name != created]
        yield metric


class CreatedDropped:
    """A collector whose metrics come without `_created` samples; it describes what the one it wraps
    describes (the registry's names: duplicates refused, `?name[]=` scrapes answered)."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        return without_created(self.collector.collect())

    def describe(self) -> Iterable[Metric]:
        describe = getattr(self.collector, "describe", None)
        return describe() if describe is not None else []


class RegistryWithoutCreated(CollectorRegistry):
    """A CollectorRegistry whose every collector is registered without its `_created` samples: what the
    process serves, and what its tests read, are the same."""

    def register(self, collector: Collector) -> None:
        super().register(CreatedDropped(collector))
