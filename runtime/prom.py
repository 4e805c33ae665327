"""A small Prometheus client: counters, gauges and histograms with labels, collectors read at scrape
time, and the text exposition format (0.0.4).

The daemons used `prometheus_client`, whose import pulls in `http.server`, `wsgiref`, `ssl` and
more: about 7 MB of resident memory and a tenth of a second of start-up per process, which a mesh of
a hundred speakers pays a hundred times. tortie serves /metrics from its own small HTTP endpoint
(`runtime.http`) and needs only this much. The names and methods are the subset of
`prometheus_client`'s API the daemons use, so code reads the same; the tests check this module's
output with `prometheus_client`'s own parser (it stays a development dependency, as the oracle).

Counters are exported with `_total`, no `_created` series. Label values are escaped as the format
asks; metric and label names are the caller's business (the docs test checks the conventions).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"

INF = float("inf")
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, INF)


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


class Metric:
    """One metric family as a collector yields it (`prometheus_client.metrics_core.Metric`)."""

    def __init__(self, name: str, documentation: str, typ: str, unit: str = "") -> None:
        self.name = name
        self.documentation = documentation
        self.type = typ
        self.unit = unit
        self.samples: list[Sample] = []

    def add_sample(self, name: str, labels: dict[str, str], value: float) -> None:
        self.samples.append(Sample(name, labels, value))


class _Family(Metric):
    suffix = ""

    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None, typ: str = "gauge") -> None:
        super().__init__(name[: -len(self.suffix)] if self.suffix and name.endswith(self.suffix) else name,
                         documentation, typ)
        self._labelnames = tuple(labels or ())
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.add_sample(self.name + self.suffix, dict(zip(self._labelnames, labels)), float(value))


class CounterMetricFamily(_Family):
    suffix = "_total"

    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__(name, documentation, value, labels, "counter")


class GaugeMetricFamily(_Family):
    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__(name, documentation, value, labels, "gauge")


class InfoMetricFamily(_Family):
    suffix = "_info"

    def __init__(self, name: str, documentation: str, value: dict[str, str] | None = None,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__(name, documentation, None, labels, "info")
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: dict[str, str]) -> None:  # type: ignore[override]
        self.add_sample(self.name + "_info", {**dict(zip(self._labelnames, labels)), **value}, 1.0)


class Collector:
    """Anything with `collect()` yielding `Metric`s can be registered."""

    def collect(self) -> Iterable[Metric]:
        raise NotImplementedError


class CollectorRegistry:
    def __init__(self) -> None:
        self._collectors: list[Any] = []

    def register(self, collector: Any) -> None:
        if collector not in self._collectors:
            self._collectors.append(collector)

    def unregister(self, collector: Any) -> None:
        self._collectors.remove(collector)

    def collect(self) -> Iterator[Metric]:
        for collector in list(self._collectors):
            yield from collector.collect()


# ---------------------------------------------------------------- instruments


class _Value:
    """A child's number (`.get()`, like prometheus_client's value holder)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def get(self) -> float:
        return self.value


class _Series:
    """One series' value: what `labels()` returns, and what an unlabelled instrument holds. Slots
    only: a reflector with a thousand peers holds some thirty thousand of them."""

    __slots__ = ("_value",)

    def __init__(self, upper: tuple[float, ...] = ()) -> None:
        self._value = _Value()

    def samples(self, name: str, family: Metric, labels: dict[str, str]) -> None:
        family.add_sample(name, labels, self._value.value)


class _CounterSeries(_Series):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self._value.value += amount

    def samples(self, name: str, family: Metric, labels: dict[str, str]) -> None:
        family.add_sample(name + "_total", labels, self._value.value)


class _GaugeSeries(_Series):
    __slots__ = ()

    def set(self, value: float) -> None:
        self._value.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self._value.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self._value.value -= amount


class _HistogramSeries:
    __slots__ = ("_counts", "_sum", "_upper")

    def __init__(self, upper: tuple[float, ...] = ()) -> None:
        self._upper = upper  # the instrument's bucket bounds, shared by its series
        self._counts = [0] * len(upper)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._sum += value
        for i, upper in enumerate(self._upper):
            if value <= upper:
                self._counts[i] += 1
                break

    def samples(self, name: str, family: Metric, labels: dict[str, str]) -> None:
        total = 0
        for upper, n in zip(self._upper, self._counts):
            total += n
            family.add_sample(name + "_bucket", {**labels, "le": _number(upper)}, float(total))
        family.add_sample(name + "_count", labels, float(total))
        family.add_sample(name + "_sum", labels, self._sum)


class _Instrument:
    _type = "untyped"
    _series_type: type[Any] = _Series

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None, **options: Any) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._upper = self._bounds(options)
        self._children: dict[tuple[str, ...], Any] = {}
        # an unlabelled instrument is its own single series
        self._solo: Any = None if self._labelnames else self._series_type(self._upper)
        if registry is not None:
            registry.register(self)

    def _bounds(self, options: dict[str, Any]) -> tuple[float, ...]:
        return ()

    @property
    def _value(self) -> _Value:
        return self._solo._value  # type: ignore[no-any-return]

    def labels(self, *values: object, **named: object) -> Any:
        if not self._labelnames:
            raise ValueError(f"{self._name} has no labels")
        if named:
            values = tuple(named[n] for n in self._labelnames)
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name}: {len(self._labelnames)} label values expected, got {len(values)}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._series_type(self._upper)
        return child

    def remove(self, *values: object) -> None:
        del self._children[tuple(str(v) for v in values)]

    def clear(self) -> None:
        self._children.clear()

    def remove_where(self, label: str, value: object) -> None:
        """Remove every series whose `label` has `value` (a peer that left: all its series)."""
        index = self._labelnames.index(label)
        text = str(value)
        for key in [k for k in self._children if k[index] == text]:
            del self._children[key]

    def _series(self) -> Iterator[tuple[dict[str, str], Any]]:
        if not self._labelnames:
            yield {}, self._solo
            return
        for key, child in list(self._children.items()):
            yield dict(zip(self._labelnames, key)), child

    def collect(self) -> list[Metric]:
        family = Metric(self._name, self._documentation, self._type)
        for labels, child in self._series():
            child.samples(self._name, family, labels)
        return [family]


class Counter(_Instrument):
    _type = "counter"
    _series_type = _CounterSeries

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None, **options: Any) -> None:
        # prometheus_client's rule: the family is named without `_total`, its sample with it
        super().__init__(name[:-6] if name.endswith("_total") else name, documentation, labelnames, registry,
                         **options)

    def inc(self, amount: float = 1.0) -> None:
        self._solo.inc(amount)


class Gauge(_Instrument):
    _type = "gauge"
    _series_type = _GaugeSeries

    def set(self, value: float) -> None:
        self._solo.set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._solo.inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._solo.dec(amount)


class Histogram(_Instrument):
    _type = "histogram"
    _series_type = _HistogramSeries

    def _bounds(self, options: dict[str, Any]) -> tuple[float, ...]:
        buckets = tuple(float(b) for b in options.get("buckets", DEFAULT_BUCKETS))
        if not buckets or buckets[-1] != INF:
            buckets = (*buckets, INF)
        return buckets

    def observe(self, value: float) -> None:
        self._solo.observe(value)


# ---------------------------------------------------------------- the text format


def _number(value: float) -> str:
    if value == INF:
        return "+Inf"
    if value == -INF:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def generate_latest(registry: CollectorRegistry) -> bytes:
    """Every collector's families in the text exposition format."""
    lines: list[str] = []
    for family in registry.collect():
        name = family.name
        typ = "unknown" if family.type == "untyped" else family.type
        if typ == "info":
            name, typ = name + "_info", "gauge"
        elif typ == "counter" and not name.endswith("_total"):
            name = name + "_total"
        doc = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {doc}")
        lines.append(f"# TYPE {name} {typ if typ != 'unknown' else 'untyped'}")
        for s in family.samples:
            if s.labels:
                labels = ",".join(f'{k}="{_label_value(str(v))}"' for k, v in s.labels.items())
                lines.append(f"{s.name}{{{labels}}} {_number(s.value)}")
            else:
                lines.append(f"{s.name} {_number(s.value)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""
