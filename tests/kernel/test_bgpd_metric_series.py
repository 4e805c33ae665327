"""Series per host stay bounded: a real tortie-bgpd with 10, 100 and 1,000 configured peers, its
/metrics counted with per-peer series and with `--no-peer-metrics`. The counts are the table in
docs/metrics.md ("How many series"), which this test keeps true. Root only (a namespace)."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.netns import NetnsSet
from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    PREFIX,
    Bgpd,
    Host,
    NodeSpec,
    bridged_hosts,
    cluster_docs,
    peer_doc,
    pool_doc,
    wait_for,
    write_cluster,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
SIZES = (10, 100, 1000)
NODE = NodeSpec("rr", "10.83.0.1", ["10.205.0.0/26"])


def documented_counts() -> dict[int, tuple[int, int]]:
    """peers -> (series with per-peer labels, series with --no-peer-metrics), from docs/metrics.md."""
    out = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*([\d,]+) peers\s*\|\s*([\d,]+)\s*\|\s*([\d,]+)\s*\|", line)
        if m:
            out[int(m.group(1).replace(",", ""))] = (int(m.group(2).replace(",", "")),
                                                     int(m.group(3).replace(",", "")))
    return out


def series(text: str) -> int:
    """Samples of tortie's own families (the process and Python collectors are not ours to count)."""
    return sum(1 for line in text.splitlines() if line.startswith("tortie_"))


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetnsSet, Host]]:
    require_root()
    require_tools("ip", "curl")
    nss = NetnsSet(prefix=PREFIX)
    try:
        hosts = bridged_hosts(nss, [(NODE.name, NODE.address)])
        yield nss, hosts[NODE.name]
    finally:
        nss.close()


def run_with_peers(nss: NetnsSet, host: Host, tmp: Path, peers: int, per_peer: bool) -> int:
    # peers on a network this namespace has no route to: every connect fails at once, so the daemon
    # holds `peers` sessions cycling through Idle and Connect, each with all its series
    docs = [peer_doc(f"p{i}", peerIP=f"10.{90 + i // 250}.{i % 250}.1", asNumber=64600) for i in range(peers)]
    config = tmp / f"cluster-{peers}-{per_peer}.yaml"
    write_cluster(config, cluster_docs([NODE], [pool_doc("10.205.0.0/16")], peers=docs))
    # warnings only: a thousand peers failing to connect is a lot of log at debug
    extra = ("--log-level", "warning") + (() if per_peer else ("--no-peer-metrics",))
    bgpd = Bgpd(nss, host, config, tmp / f"run-{peers}-{per_peer}", *extra)
    bgpd.start()
    try:
        wait_for(lambda: len(bgpd.status()["peers"]) == peers, 60, f"{peers} peers configured")
        # the second scrape: every per-peer family has been touched by then (message counters are
        # created by the first scrape's refresh)
        bgpd.metrics()
        return series(bgpd.metrics())
    finally:
        bgpd.kill(signal.SIGTERM)


def test_series_per_host(host: tuple[NetnsSet, Host], tmp_path: Path) -> None:
    nss, h = host
    t0 = time.monotonic()
    measured = {n: (run_with_peers(nss, h, tmp_path, n, True), run_with_peers(nss, h, tmp_path, n, False))
                for n in SIZES}
    print(f"measured in {time.monotonic() - t0:.1f} s")
    print("series per host (per-peer, --no-peer-metrics):", measured)
    assert measured == documented_counts(), "update the table in docs/metrics.md"
    # bounded: without per-peer labels the count does not grow with the peers
    assert measured[1000][1] == measured[10][1]
