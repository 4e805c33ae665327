"""Graceful restart (RFC 4724) with real tortie-bgpd processes: kill -9 one of a mesh, watch its peers
keep its routes (stale) all the while, restart it, and check nothing that should stay was withdrawn.
A node advertising a 5 s restart time (BGPPeer maxRestartTime) that stays away gets withdrawn. Root only."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import require_root, require_tools
from tests.kernel.bgpd_support import (
    Cluster,
    FeedWatcher,
    NodeSpec,
    bridged_cluster,
    cluster_docs,
    diag,
    peer_doc,
    pool_doc,
    wait_for,
)

NODES = [
    NodeSpec("ga", "10.80.0.1", ["10.203.0.0/26"]),
    NodeSpec("gb", "10.80.0.2", ["10.203.0.64/26"]),
    NodeSpec("gc", "10.80.0.3", ["10.203.0.128/26"]),
    NodeSpec("gd", "10.80.0.4", ["10.203.0.192/26"]),
]
BY_NAME = {n.name: n for n in NODES}
SHORT_RESTART = 5.0  # gd's advertised restart time


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_root()
    require_tools("ip")
    # ga, gb, gc: the default mesh (restart time 120 s). gd peers with everyone through a BGPPeer with
    # maxRestartTime 5s instead (an explicit peering wins over the mesh's, on both sides).
    docs = cluster_docs(NODES, [pool_doc("10.203.0.0/16")],
                        peers=[peer_doc("gd-short-restart", node="gd", peerSelector="all()", maxRestartTime="5s")])
    with bridged_cluster(tmp_path_factory.mktemp("gr"), NODES, docs) as c:
        everyone = c.everyone()
        for n in NODES:
            want = {o.blocks[0] for o in NODES if o is not n}
            wait_for(lambda d=c.bgpd[n.name], want=want: set(d.learned()) == want, 60,
                     f"{n.name} to learn every other block", diag=everyone)
        yield c


def _others(name: str) -> dict[str, str]:
    """block -> owner address of every node but `name`."""
    return {o.blocks[0]: o.address for o in NODES if o.name != name}


def test_peers_keep_a_killed_nodes_routes_until_it_is_back(cluster: Cluster) -> None:
    victim = BY_NAME["gc"]
    block = victim.blocks[0]
    observers = {name: cluster.bgpd[name] for name in ("ga", "gb")}
    assert all(p["address"] == victim.address and p["peer_type"] == "node-to-node mesh"
               for p in observers["ga"].status()["peers"] if p["address"] == victim.address)
    watchers = {name: FeedWatcher(str(d.run_dir / "feed.sock")) for name, d in observers.items()}
    try:
        for name, w in watchers.items():
            assert w.snapshot_done.wait(30), f"{name}'s feed snapshot"
            assert set(w.current()) == set(_others(name)), w.current()
        everyone = diag(*cluster.bgpd.values())
        seen_stale: set[str] = set()

        def check_all_present() -> None:
            """Every observer's Loc-RIB holds every other node's block, the victim's included."""
            for name, d in observers.items():
                learned = d.learned()
                assert set(learned) == set(_others(name)), (name, sorted(learned), everyone())
                assert learned[block]["next_hop"] == victim.address
                if learned[block]["stale"]:
                    seen_stale.add(name)

        cluster.bgpd["gc"].kill()  # kill -9: no NOTIFICATION, bgpd.running stays behind

        def stale_everywhere() -> bool:
            check_all_present()
            return seen_stale == set(observers)

        wait_for(stale_everywhere, 60, "gc's block marked stale at ga and gb", interval=0.05, diag=everyone)
        for name, d in observers.items():
            peer = d.peer(victim.address)
            assert peer is not None and peer["state"] != "Established"
            assert "stale" in d.neighbor(victim.address)["graceful_restart_state"]
            # felixd is told the route is stale, not that it went away
            assert watchers[name].current()[block].stale
        # stay away a while: the routes must hold throughout (an observation window, not a wait)
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            check_all_present()
            time.sleep(0.05)

        cluster.bgpd["gc"].start()  # same run dir: it comes back as a restarting speaker

        def fresh_again() -> bool:
            check_all_present()
            return all(d.established(victim.address) and not d.learned()[block]["stale"]
                       for d in observers.values())

        wait_for(fresh_again, 90, "gc Established again and its block fresh at ga and gb", interval=0.05,
                 diag=everyone)
        for name, w in watchers.items():
            # nothing that should stay was ever withdrawn from the feed, and it ends fresh
            assert not set(w.withdrawals()) & set(_others(name)), (name, w.withdrawals())
            wait_for(lambda w=w: not w.current()[block].stale, 30, f"{name}'s feed to mark {block} fresh")
            assert w.error is None
    finally:
        for w in watchers.values():
            w.close()
    # the restarted node relearned everything, none of it stale
    gc = cluster.bgpd["gc"]
    wait_for(lambda: {p: r["next_hop"] for p, r in gc.learned().items()} == _others("gc"), 60,
             "gc to relearn every other block", diag=diag(gc))
    assert not any(r["stale"] for r in gc.learned().values())
    assert gc.status()["graceful_restart"] == ""


def test_a_node_away_longer_than_its_restart_time_is_withdrawn(cluster: Cluster) -> None:
    victim = BY_NAME["gd"]
    block = victim.blocks[0]
    observers = {name: cluster.bgpd[name] for name in ("ga", "gb", "gc")}
    everyone = diag(*cluster.bgpd.values())
    for d in observers.values():
        wait_for(lambda d=d: d.established(victim.address), 60, f"{d.host.name}-gd Established", diag=everyone)
        nb = d.neighbor(victim.address)
        assert nb["peer_type"] == "node specific"
        assert nb["capabilities"]["graceful_restart"]["remote_restart_time"] == SHORT_RESTART
    killed = time.monotonic()
    cluster.bgpd["gd"].kill()
    seen_stale: set[str] = set()
    gone_after: dict[str, float] = {}

    def withdrawn_everywhere() -> bool:
        for name, d in observers.items():
            if name in gone_after:
                continue
            row = d.learned().get(block)
            if row is None:
                gone_after[name] = time.monotonic() - killed
            elif row["stale"]:
                seen_stale.add(name)
        return len(gone_after) == len(observers)

    wait_for(withdrawn_everywhere, SHORT_RESTART + 40, "gd's block withdrawn after its restart time",
             interval=0.05, diag=everyone)
    assert seen_stale == set(observers), seen_stale  # kept as stale first, then withdrawn
    # not before the restart time it advertised (the session can only drop after the kill)
    assert min(gone_after.values()) >= SHORT_RESTART - 0.5, gone_after
    # the other nodes' blocks are untouched
    for name, d in observers.items():
        assert set(d.learned()) == set(_others(name)) - {block}
