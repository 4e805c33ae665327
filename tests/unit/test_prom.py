"""runtime/prom.py against prometheus_client: the same operations give the same exposition, as
prometheus_client's own parser reads both."""

from __future__ import annotations

import prometheus_client as pc
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from runtime import prom

getattr(pc, "disable_created_metrics", lambda: None)()

label_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
ops = st.lists(st.tuples(st.sampled_from(["inc", "set", "observe"]), label_values, st.floats(0, 1e6)),
               max_size=30)


def parsed(text: str) -> list[tuple[str, str, str, list[tuple[str, tuple[tuple[str, str], ...], float]]]]:
    out = []
    for f in text_string_to_metric_families(text):
        samples = sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples
                         if not s.name.endswith("_created"))
        out.append((f.name, f.type, f.documentation, samples))
    return sorted(out)


def build(lib: object, registry: object, operations: list[tuple[str, str, float]]) -> None:
    counter = lib.Counter("t_requests", "requests \\ with\nnewline", ["peer"], registry=registry)  # type: ignore[attr-defined]
    gauge = lib.Gauge("t_state", "a gauge", ["peer", "state"], registry=registry)  # type: ignore[attr-defined]
    plain = lib.Gauge("t_plain", "no labels", registry=registry)  # type: ignore[attr-defined]
    hist = lib.Histogram("t_seconds", "a histogram", buckets=(0.5, 1.0, 100.0), registry=registry)  # type: ignore[attr-defined]
    for op, label, value in operations:
        if op == "inc":
            counter.labels(label).inc(value)
        elif op == "set":
            gauge.labels(label, "up").set(value)
            plain.set(value)
        else:
            hist.observe(value)


@settings(max_examples=200)
@given(ops)
def test_same_exposition_as_prometheus_client(operations: list[tuple[str, str, float]]) -> None:
    mine, theirs = prom.CollectorRegistry(), pc.CollectorRegistry()
    build(prom, mine, operations)
    build(pc, theirs, operations)
    assert parsed(prom.generate_latest(mine).decode()) == parsed(pc.generate_latest(theirs).decode())


def test_collector_families_and_removal() -> None:
    class Families(prom.Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            c = prom.CounterMetricFamily("t_events_total", "events", labels=["kind"])
            c.add_metric(["a"], 3)
            g = prom.GaugeMetricFamily("t_level", "level", value=2.5)
            i = prom.InfoMetricFamily("t_build", "build", value={"version": "1"})
            return [c, g, i]

    r = prom.CollectorRegistry()
    r.register(Families())
    g = prom.Gauge("t_peer_state", "state", ["peer", "state"], registry=r)
    g.labels("10.0.0.1", "up").set(1)
    g.labels("10.0.0.2", "up").set(1)
    g.remove_where("peer", "10.0.0.1")
    got = {f[0]: f for f in parsed(prom.generate_latest(r).decode())}
    assert got["t_events"][1] == "counter" and got["t_events"][3] == [("t_events_total", (("kind", "a"),), 3.0)]
    assert got["t_level"][3] == [("t_level", (), 2.5)]
    # an info family is a gauge named *_info in the 0.0.4 text format, as prometheus_client writes it
    assert got["t_build_info"][1] == "gauge" and got["t_build_info"][3] == [("t_build_info", (("version", "1"),), 1.0)]
    assert got["t_peer_state"][3] == [("t_peer_state", (("peer", "10.0.0.2"), ("state", "up")), 1.0)]


def test_the_daemons_do_not_load_prometheus_client_or_openssl() -> None:
    import subprocess
    import sys

    code = ("import sys; from runtime.lean import without_tls; without_tls(); import bgpd.daemon; "
            "print('prometheus_client' in sys.modules, sys.modules.get('ssl') is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
