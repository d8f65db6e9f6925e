"""The registry a process's metrics live in: prometheus_client's, less the `_created` series it gives
every counter and histogram (the Unix time each labelled series began). No rule or panel reads them,
and they were 347 of an ingest node's 833 series at 26 cameras (41%). prometheus_client's own switch,
disable_created_metrics(), is one flag for every registry of the process: tests building a registry
each would have shared it. `RoleMetric`s (RoleGauge, RoleCounter, RoleHistogram): unlabelled metrics
exported only by the processes of the roles that use them."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
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


class RoleMetric:
    """An unlabelled metric that only the roles using it export: from the role's start (its stage calls
    `export`, so that a counter's first increase shows) or its first value. Registered with the others,
    prometheus_client exported it at 0 in every process: the prune's last success read 0 in every worker
    (`time() - min(alpr_prune_last_success_timestamp_seconds)`: 56 years), a redactor reported 0 inference
    threads, and every process served every role's latency histograms and counters, 83 series of zeros
    (reviews). A labelled metric needs none of this: its series appear once labelled."""

    def __init__(self, registry: CollectorRegistry, metric: Gauge | Counter | Histogram) -> None:
        self.metric = metric
        self.registry = registry
        self.lock = threading.Lock()
        self.exported = False

    def export(self) -> None:
        """Into the registry, once (at the value it has: a counter's or histogram's 0 is its own)."""
        with self.lock:
            if not self.exported:
                self.registry.register(self.metric)
                self.exported = True


class RoleGauge(RoleMetric):
    """A role's unlabelled gauge, exported from its first value on: no scrape reads a 0 it never had."""

    def __init__(self, registry: CollectorRegistry, name: str, documentation: str) -> None:
        self.gauge = Gauge(name, documentation, registry=None)
        super().__init__(registry, self.gauge)

    def set(self, value: float) -> None:
        self.gauge.set(value)
        self.export()

    def set_to_current_time(self) -> None:
        self.gauge.set_to_current_time()
        self.export()

    def set_function(self, read: Callable[[], float]) -> None:
        """Read at each scrape (prometheus_client's Gauge.set_function)."""
        self.gauge.set_function(read)
        self.export()


class RoleCounter(RoleMetric):
    """A role's unlabelled counter (`_total`)."""

    def __init__(self, registry: CollectorRegistry, name: str, documentation: str) -> None:
        self.counter = Counter(name, documentation, registry=None)
        super().__init__(registry, self.counter)

    def inc(self, amount: float = 1) -> None:
        self.export()
        self.counter.inc(amount)


class RoleHistogram(RoleMetric):
    """A role's unlabelled histogram."""

    def __init__(self, registry: CollectorRegistry, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.histogram = Histogram(name, documentation, buckets=buckets, registry=None)
        super().__init__(registry, self.histogram)

    def observe(self, value: float) -> None:
        self.export()
        self.histogram.observe(value)
