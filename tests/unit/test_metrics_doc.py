"""docs/metrics.md and the metric definitions stay in step, and the names follow Prometheus rules."""

from __future__ import annotations

import re
from pathlib import Path

from bgpd.metrics import BgpMetrics
from datastore.metrics import DatastoreCollector
from datastore.status import DatastoreStatus
from felixd.metrics import FelixMetrics
from runtime.prom import Counter, Gauge, Histogram

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
KIND = {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}


def documented() -> dict[str, tuple[str, set[str]]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `(tortie_\w+)` \| (\w+) \|\s*([\w, ]*?)\s*\|", line)
        if m:
            labels = {x.strip() for x in m.group(3).split(",") if x.strip()}
            rows[m.group(1)] = (m.group(2), labels)
    return rows


def defined() -> dict[str, tuple[str, set[str]]]:
    out = {}
    for holder in (BgpMetrics(), FelixMetrics()):
        for value in vars(holder).values():
            kind = KIND.get(type(value))
            if kind is None:
                continue
            name = value._name + ("_total" if kind == "counter" else "")
            out[name] = (kind, set(value._labelnames))
    # the datastore's families come from a collector read at scrape time (datastore/metrics.py)
    for family in DatastoreCollector(DatastoreStatus("etcdv3", "http://127.0.0.1:2379")).collect():
        sample_labels = {k for s in family.samples for k in s.labels}  # type: ignore[attr-defined]
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")  # type: ignore[attr-defined]
        name = family.name + suffix  # type: ignore[attr-defined]
        out[name] = (family.type, sample_labels)  # type: ignore[attr-defined]
    return out


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    assert defined() == documented()


def test_names_follow_the_conventions() -> None:
    for name, (kind, labels) in defined().items():
        assert name.startswith(("tortie_bgp_", "tortie_felix_", "tortie_datastore"))
        assert name.endswith("_total") == (kind == "counter"), name
        assert "prefix" not in labels
        assert labels <= {"peer", "afi_safi", "type", "code", "subcode", "reason", "state", "mode", "op",
                          "kind", "trigger", "device", "feature", "result", "endpoints"}
