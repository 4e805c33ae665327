"""The Calico routing article end to end: the lab cluster with tortie-bgpd and tortie-felixd on every
host, the pool switched as the article does, real HTTP between pods, and the routes it predicts."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cluster import Lab
from lab.netns import run
from lab.story import BLOCK_W2, BLOCK_W3, StepResult, Story
from lab.topology import SEED_CLUSTER
from tests.conftest import require_root, require_tools


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict[str, StepResult], Story]]:
    require_root()
    require_tools("ip", "nft", "curl", "tcpdump")
    lab = Lab(Path(tmp_path_factory.mktemp("lab")), prefix=f"te{secrets.token_hex(2)}-")
    lines: list[str] = []
    try:
        lab.up(SEED_CLUSTER)
        s = Story(lab, say=lines.append)
        s.run()
        yield lab, {r.name: r for r in s.results}, s
    finally:
        names = set((lab.topology.state.namespaces if lab.topology else {}).values())
        lab.down()
        listed = run(["ip", "netns", "list"]).stdout.split()
        leftovers = [n for n in names if n in listed]
        assert not leftovers, f"lab left namespaces behind: {leftovers}"


def by_prefix(results: dict[str, StepResult], prefix: str) -> StepResult:
    return next(r for name, r in results.items() if name.startswith(prefix))


def explain(r: StepResult) -> str:
    return f"{r.name}: matrix {r.matrix}, expected {r.expected}, routes {r.routes}, after {r.seconds:.1f}s"


def test_mesh_and_node_status(story: tuple[Lab, dict[str, StepResult], Story]) -> None:
    lab, _results, _s = story
    from runtime.control import call

    status = call(str(lab.run_dir("master") / "bgpd.sock"), "status")
    peers = {p["address"]: p for p in status["peers"]}
    assert set(peers) == {"10.30.0.206", "10.30.0.56", "10.30.1.66"}
    assert all(p["state"] == "Established" and p["peer_type"] == "node-to-node mesh" for p in peers.values())


def test_node_status_prints_the_articles_table(story: tuple[Lab, dict[str, StepResult], Story]) -> None:
    import re

    lab, _results, _s = story
    proc = lab.exec("master", ["tortiectl", "node", "status"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["tortie-bgpd is running.", "tortie-felixd is running."]
    border = "+--------------+-------------------+-------+----------+-------------+"
    assert lines[3:7] == ["IPv4 BGP status", border,
                          "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |", border]
    rows = lines[7:10]
    assert [r.split("|")[1].strip() for r in rows] == ["10.30.0.56", "10.30.0.206", "10.30.1.66"]
    for r in rows:
        assert re.fullmatch(r"\| \S+ +\| node-to-node mesh \| up +\| \d\d:\d\d:\d\d \| Established \|", r), r
    assert lines[10] == border
    assert lines[-2:] == ["IPv6 BGP status", "No IPv6 peers found."]


def test_ipip_step_reports_the_kernel(story: tuple[Lab, dict[str, StepResult], Story]) -> None:
    _lab, results, s = story
    r = by_prefix(results, "1.")
    if s.ipip_supported():
        assert r.ok, explain(r)
    else:
        assert "IP-in-IP" in r.skipped


def test_direct_fails_under_the_cloud_check_then_works_within_the_subnet(
        story: tuple[Lab, dict[str, StepResult], Story]) -> None:
    _lab, results, _s = story
    on, off = by_prefix(results, "2a"), by_prefix(results, "2b")
    assert on.ok and not any(on.matrix.values()), explain(on)
    assert off.ok and off.matrix[("pod-1", "pod-2")] and not off.matrix[("pod-1", "pod-3")], explain(off)
    assert on.routes[BLOCK_W2].startswith(f"{BLOCK_W2} via 10.30.0.56 dev eth0 proto 80")
    # the article's worker-3 route: resolved through the gateway
    assert on.routes[BLOCK_W3].startswith(f"{BLOCK_W3} via 10.30.0.1 dev eth0 proto 80")


def test_cross_subnet(story: tuple[Lab, dict[str, StepResult], Story]) -> None:
    _lab, results, s = story
    r = by_prefix(results, "3v")
    assert r.ok and all(r.matrix.values()), explain(r)
    assert r.routes[BLOCK_W2].startswith(f"{BLOCK_W2} via 10.30.0.56 dev eth0 proto 80")
    assert r.routes[BLOCK_W3].startswith(f"{BLOCK_W3} via 192.168.97.192 dev vxlan.calico proto 80 onlink")
    ipip = by_prefix(results, "3.")
    if not s.ipip_supported():
        assert ipip.skipped


def test_vxlan_always_passes_the_cloud_check(story: tuple[Lab, dict[str, StepResult], Story]) -> None:
    _lab, results, s = story
    r = by_prefix(results, "4")
    assert r.srcdst and r.ok and all(r.matrix.values()), explain(r)
    assert r.routes[BLOCK_W2].startswith(f"{BLOCK_W2} via 192.168.133.192 dev vxlan.calico proto 80 onlink")
    assert r.routes[BLOCK_W3].startswith(f"{BLOCK_W3} via 192.168.97.192 dev vxlan.calico proto 80 onlink")
    assert getattr(s, "vxlan_seen", None) is not None, r.notes
    dport, vni, src, dst = s.vxlan_seen
    assert (dport, vni) == (4789, 4096)
    assert src == "10.30.0.206" and dst in {"10.30.0.56", "10.30.0.10", "10.30.1.66"}


def test_nat_outgoing_uses_the_node_address(story: tuple[Lab, dict[str, StepResult], Story]) -> None:
    _lab, results, _s = story
    r = by_prefix(results, "5")
    assert r.reached, explain(r)
    assert r.notes == ["10.30.0.206"]


def test_every_switch_was_timed(story: tuple[Lab, dict[str, StepResult], Story]) -> None:
    _lab, results, _s = story
    for r in results.values():
        if not r.skipped:
            assert 0 < r.seconds < 60, explain(r)


def test_bgpd_crash_keeps_traffic_flowing(story: tuple[Lab, dict[str, StepResult], Story]) -> None:
    """kill -9 worker-1's bgpd and start it again: its felixd keeps every kernel route and its peers
    keep its block (graceful restart), so pods keep talking; afterwards nothing is stale."""
    import threading
    import time

    from runtime.control import ControlError, call

    lab, _results, _s = story
    remote = [BLOCK_W2, BLOCK_W3, "192.168.219.64/26"]
    missing: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            routes = lab.exec("worker-1", ["ip", "route", "show", "proto", "80"]).stdout
            peer_rib = {r["prefix"] for r in call(str(lab.run_dir("master") / "bgpd.sock"), "rib")}
            missing.extend(f"worker-1 kernel lost {b}" for b in remote if b not in routes)
            if "192.168.226.64/26" not in peer_rib:
                missing.append("master lost worker-1's block")
            stop.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        lab.stop_daemon("bgpd-worker-1", 9)
        lab.start_daemons("worker-1", ("bgpd",))
        deadline = time.monotonic() + 60
        st: dict[str, object] = {}
        peers: list[dict[str, object]] = []
        while True:
            try:
                st = call(str(lab.run_dir("worker-1") / "felixd.sock"), "status")
                peers = call(str(lab.run_dir("worker-1") / "bgpd.sock"), "status")["peers"]
            except ControlError:
                pass  # bgpd is starting: its socket is not there yet
            if st and peers and st["feed_synced"] and st["feed_connected"] and st["stale"] == 0 and \
                    all(p["state"] == "Established" for p in peers):
                break
            assert time.monotonic() < deadline, f"worker-1 did not recover: {st} {peers}"
            time.sleep(0.2)  # polling the daemons' control sockets
    finally:
        stop.set()
        watcher.join()
    assert missing == [], missing[:5]
    assert lab.http("pod-1", "pod-2").ok and lab.http("pod-3", "pod-1").ok
