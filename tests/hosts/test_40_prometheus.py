"""A real Prometheus (Debian's 2.42) on the lab's fabric scrapes both daemons of every host with the
shipped contrib/prometheus configuration and rules: every target up, the peer-down alert firing
within its `for:` when a host's tortie-bgpd stops (the journal saying so with structured fields)
and resolving when it is back, and every panel of contrib/grafana/tortie.json answering."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.topology import REPO
from tests.conftest import require_tools
from tests.hosts import cluster as C

LISTEN = C.address_of(C.MONITOR.address) + ":9090"
# The shipped configuration, used as it is except for the intervals: 2 s instead of 15 s keeps the
# tier short; the rules (and their `for:`) are the shipped ones.
INTERVAL = 2.0


class Prometheus:
    def __init__(self, cluster: C.HostsCluster, workdir: Path) -> None:
        self.cluster = cluster
        self.dir = workdir / "prometheus"
        shutil.copytree(REPO / "contrib" / "prometheus", self.dir)
        conf = self.dir / "prometheus.yml"
        text = conf.read_text()
        text = text.replace("scrape_interval: 15s", f"scrape_interval: {INTERVAL:g}s")
        text = text.replace("evaluation_interval: 15s", f"evaluation_interval: {INTERVAL:g}s")
        conf.write_text(text)
        self.log = open(self.dir / "prometheus.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", cluster.ns("monitor"), "prometheus", f"--config.file={conf}",
             f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address={LISTEN}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path: str, **params: str) -> Any:
        url = f"http://{LISTEN}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        proc = self.cluster.in_ns("monitor", "curl", "-sS", "--max-time", "10", url, timeout=20)
        if proc.returncode != 0:
            raise AssertionError(f"GET {url}: {proc.stderr}")
        doc = json.loads(proc.stdout)
        assert doc.get("status") == "success", doc
        return doc["data"]

    def ready(self) -> bool:
        return self.cluster.in_ns("monitor", "curl", "-sf", f"http://{LISTEN}/-/ready").returncode == 0

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, Any]]:
        return [a for a in self.get("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == name and a["state"] == state]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def prom(installed: C.HostsCluster) -> Iterator[Prometheus]:
    require_tools("prometheus", "curl")
    p = Prometheus(installed, installed.workdir)
    try:
        C.until(p.ready, 60, "Prometheus ready", interval=0.5)
        yield p
    finally:
        p.stop()


def test_every_target_is_up(prom: Prometheus) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets = prom.get("/api/v1/targets")["activeTargets"]
        return targets if len(targets) == 8 and all(t["health"] == "up" for t in targets) else None

    targets = C.until(all_up, 60, "all 8 targets up", interval=1)
    jobs = {(t["labels"]["job"], t["labels"]["host"]) for t in targets}
    assert jobs == {(j, a) for j in C.UNITS for a in prom.cluster.addresses.values()}

    def evaluated() -> dict[str, Any] | None:  # every rule evaluated once (the recording group: 30 s)
        groups = {g["name"]: g for g in prom.get("/api/v1/rules")["groups"]}
        return groups if all(r["health"] != "unknown" for g in groups.values() for r in g["rules"]) else None

    groups = C.until(evaluated, 90, "every rule evaluated", interval=1)
    assert set(groups) == {"tortie-recording", "tortie-alerts"}
    assert all(r["health"] == "ok" for g in groups.values() for r in g["rules"]), groups
    series = {h: sum(1 for _ in prom.get("/api/v1/series", **{"match[]": f'{{host="{a}", job="tortie-felixd"}}'}))
              for h, a in prom.cluster.addresses.items()}
    prom.cluster.notes["felixd_series_per_host"] = series


def rule_for(name: str) -> float:
    rules = yaml.safe_load((REPO / "contrib/prometheus/rules/tortie-alerts.yml").read_text())
    rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name)
    m = re.fullmatch(r"(\d+)([sm])", rule["for"])
    assert m
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


def test_peer_down_alert_fires_within_its_for_and_resolves(prom: Prometheus) -> None:
    cluster = prom.cluster
    down, peer = "worker-3", cluster.addresses["worker-3"]
    watchers = [h for h in C.HOSTS if h != down]
    hold = rule_for("TortieBGPPeerDown")
    C.until(lambda: not prom.alerts("TortieBGPPeerDown", "pending") and not prom.alerts("TortieBGPPeerDown"), 60,
            "no peer-down alert before", interval=1)
    since = cluster["master"].run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    t0 = time.monotonic()
    cluster[down].systemctl("stop", "tortie-bgpd")
    try:
        # the journal: a warning on every other host, with PRIORITY and the peer as fields
        def journaled(host: str) -> bool:
            out = cluster[host].journal("-u", "tortie-bgpd", "-p", "warning", "-o", "json", "--since", since)
            entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            return any(e.get("PEER") == peer and e.get("PRIORITY") == "4" and "down" in e.get("MESSAGE", "")
                       for e in entries)

        for host in watchers:
            C.until(lambda h=host: journaled(h), 30, f"the peer-down warning in {host}'s journal")

        def fired() -> list[dict[str, Any]] | None:
            alerts = [a for a in prom.alerts("TortieBGPPeerDown") if a["labels"].get("peer") == peer]
            return alerts if len(alerts) == len(watchers) else None

        alerts = C.until(fired, hold + 6 * INTERVAL + 30, "TortieBGPPeerDown firing on every other host",
                         interval=0.5)
        fired_after = time.monotonic() - t0
        assert {a["labels"]["host"] for a in alerts} == {cluster.addresses[h] for h in watchers}
        assert all(peer in a["annotations"]["summary"] and a["annotations"]["runbook"] for a in alerts)
        # not before its `for:`, and within it plus a scrape and an evaluation or three
        assert hold - INTERVAL <= fired_after <= hold + 6 * INTERVAL + 10, fired_after
        cluster.notes["peer_down_alert_fired_after_seconds"] = round(fired_after, 1)
    finally:
        cluster[down].systemctl("start", "tortie-bgpd")
    t1 = time.monotonic()
    C.until(lambda: not [a for a in prom.alerts("TortieBGPPeerDown") if a["labels"].get("peer") == peer], 60,
            "TortieBGPPeerDown resolved", interval=0.5)
    cluster.notes["peer_down_alert_resolved_after_seconds"] = round(time.monotonic() - t1, 1)
    C.until(cluster.converged, 120, "converged again", interval=0.5, diag=cluster.diag)


def substitute(expr: str) -> str:
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
            .replace("${host}", ".*").replace("$host", ".*"))


def test_every_dashboard_panel_answers(prom: Prometheus) -> None:
    dash = json.loads((REPO / "contrib/grafana/tortie.json").read_text())
    host_var = next(v for v in dash["templating"]["list"] if v["name"] == "host")
    m = re.fullmatch(r"label_values\((.+), (\w+)\)", host_var["definition"])
    assert m, host_var
    hosts = prom.get(f"/api/v1/label/{m.group(2)}/values", **{"match[]": m.group(1)})
    assert set(hosts) == set(prom.cluster.addresses.values())
    # a rate needs two scrapes inside its window; by now there are many
    empty = {}
    checked = 0
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = substitute(target["expr"])
            result = prom.get("/api/v1/query", query=expr)["result"]
            checked += 1
            if not result:
                empty[panel["title"]] = expr
    assert checked >= 20 and not empty, empty
    prom.cluster.notes["dashboard_queries_checked"] = checked
