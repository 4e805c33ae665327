"""`tortie_datastore_*` metrics and the readiness detail, read from a datastore's status at scrape time.

Both daemons register the collector in their own registry and wrap their readiness check with
`with_datastore`; the values come from `DatastoreStatus`, which the watch thread keeps current.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from datastore.status import DatastoreStatus
from runtime.prom import (
    Collector,
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)


class DatastoreCollector(Collector):
    def __init__(self, status: DatastoreStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[object]:
        s = self.status
        info = InfoMetricFamily("tortie_datastore", "Which datastore this daemon reads")
        info.add_metric([], {"type": s.type, "endpoints": s.where})
        yield info
        yield GaugeMetricFamily("tortie_datastore_up", "1 while the datastore answers, 0 while it is "
                                "unreachable (the daemon keeps the last good configuration)", value=1 if s.up else 0)
        yield GaugeMetricFamily("tortie_datastore_revision", "Datastore revision of the configuration in force",
                                value=s.revision)
        yield GaugeMetricFamily("tortie_datastore_last_sync_timestamp_seconds",
                                "When the datastore last answered a list or a watch", value=s.last_sync)
        down = 0.0 if s.up or s.down_since is None else time.time() - s.down_since
        yield GaugeMetricFamily("tortie_datastore_unreachable_seconds",
                                "How long the datastore has been unreachable (0 while it answers)", value=down)
        yield GaugeMetricFamily("tortie_datastore_invalid_values",
                                "Values in the datastore skipped as invalid (reported with their key)",
                                value=s.invalid_values)
        events = CounterMetricFamily("tortie_datastore_watch_events", "Watch events received")
        events.add_metric([], s.watch_events)
        yield events
        retries = CounterMetricFamily("tortie_datastore_retries", "Failed attempts to reach the datastore")
        retries.add_metric([], s.retries)
        yield retries
        resyncs = CounterMetricFamily("tortie_datastore_resyncs", "Full lists after a broken watch",
                                      labels=["reason"])
        for reason in ("compacted", "reconnect", "requested"):
            resyncs.add_metric([reason], s.resyncs.get(reason, 0))
        yield resyncs


def register(registry: CollectorRegistry, status: DatastoreStatus) -> None:
    registry.register(DatastoreCollector(status))


def with_datastore(check: Callable[[], tuple[bool, str]],
                   status: DatastoreStatus) -> Callable[[], tuple[bool, str]]:
    """A readiness check that is not ready while the datastore is unreachable, and says why."""

    def ready() -> tuple[bool, str]:
        ok, why = check()
        if status.up:
            return ok, why
        return False, f"{why}; {status.describe()}"

    return ready
