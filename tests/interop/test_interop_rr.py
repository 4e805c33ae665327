"""Scenario: route reflection (RFC 4456), tortie reflecting and the daemon reflecting.

tortie reflects: node t1 is a reflector (routeReflectorClusterID 244.0.0.1, no mesh), node t2 (tortie)
and the daemon's node are its clients through a peerSelector BGPPeer, as in Calico's guide. Each
client gets the other's block with ORIGINATOR_ID the originating client, CLUSTER_LIST [244.0.0.1]
and the next hop unchanged (the originator's address).

The daemon reflects: tortie nodes t1 and t2 peer only with the daemon (a global BGPPeer), which has
them as its route-reflector clients (cluster id 1.2.3.4): each tortie gets the other's block with the
same checks, and never takes its own block back (no loop).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from lab.daemons import Daemon, DaemonNeighbor, Route
from tests.interop.interop_support import (
    DAEMONS,
    T1_BLOCK,
    Fabric,
    Tortie,
    bgp_peer,
    block,
    both_views,
    cluster,
    make_daemon,
    node,
    v4,
    wait_daemon_route,
    write_atomic,
)

pytestmark = [pytest.mark.root, pytest.mark.daemons]

T2_BLOCK = "192.168.2.0/26"
D_BLOCK = "192.168.10.0/26"
RR = {"route-reflector": "true"}


def ip_list(values: list[Any]) -> list[str]:
    """CLUSTER_LIST entries as dotted quads, whatever form the control API gives them in."""
    out = []
    for v in values:
        out.append(str(ipaddress.IPv4Address(v)) if isinstance(v, int) else str(v))
    return out


def check_reflected(entry: dict[str, Any], originator: str, cluster_id: str, next_hop: str) -> None:
    assert str(entry["originator_id"]) == originator, entry
    assert ip_list(entry["cluster_list"]) == [cluster_id], entry
    assert entry["next_hop"] == next_hop, entry


@pytest.mark.interop("rr-tortie-reflects")
@pytest.mark.parametrize("kind", DAEMONS)
def test_tortie_reflects(kind: str, fabric: Fabric, work: Path) -> None:
    cfg = work / "cluster.yaml"
    write_atomic(cfg, cluster(
        node("rr", 1, cluster_id="244.0.0.1", labels=RR, ipv6=False), node("t2", 2, ipv6=False),
        node("peer", 10, ipv6=False), block("t2", T2_BLOCK), block("peer", D_BLOCK),
        bgp_peer("peer-with-rr", nodeSelector="all()", peerSelector="route-reflector == 'true'"),
        mesh=False))
    rr = Tortie(fabric, "t1", "rr", cfg, work)
    client = Tortie(fabric, "t2", "t2", cfg, work)
    d = make_daemon(kind, fabric, work, asn=64512, neighbors=[DaemonNeighbor(v4(1), 64512, passive=True)],
                    routes=[Route(D_BLOCK)])
    try:
        d.start()
        rr.start()
        client.start()
        with both_views(rr, client, d):
            for addr in (v4(2), v4(10)):
                rr.wait_state(addr, timeout=60)
                assert rr.peer(addr)["peer_type"] == "route reflector client", rr.peer(addr)
            # the daemon (a client) gets t2's block through the reflector
            r = wait_daemon_route(d, T2_BLOCK, timeout=30)
            assert r.next_hop == v4(2), r
            assert r.originator_id == v4(2), r
            assert r.cluster_list == ["244.0.0.1"], r
            assert r.as_path == [], r
            # the tortie client gets the daemon's block, next hop the daemon
            got = client.wait_routes(v4(1), [D_BLOCK], 30)
            check_reflected(got[D_BLOCK], v4(10), "244.0.0.1", v4(10))
            # no loop: the daemon's own block does not come back to it from the reflector
            assert D_BLOCK not in {row["prefix"] for row in rr.rib(peer=v4(10), direction="out")}
    finally:
        client.stop()
        rr.stop()
        d.stop()


@pytest.mark.interop("rr-daemon-reflects")
@pytest.mark.parametrize("kind", DAEMONS)
def test_daemon_reflects(kind: str, fabric: Fabric, work: Path) -> None:
    cfg = work / "cluster.yaml"
    write_atomic(cfg, cluster(
        node("t1", 1, ipv6=False), node("t2", 2, ipv6=False), block("t1", T1_BLOCK), block("t2", T2_BLOCK),
        bgp_peer("reflector", peerIP=v4(10), asNumber=64512), mesh=False))
    clients = [DaemonNeighbor(v4(i), 64512, passive=True, rr_client=True) for i in (1, 2)]
    d: Daemon = make_daemon(kind, fabric, work, asn=64512, neighbors=clients, routes=[Route(D_BLOCK)],
                            cluster_id="1.2.3.4")
    t1 = Tortie(fabric, "t1", "t1", cfg, work)
    t2 = Tortie(fabric, "t2", "t2", cfg, work)
    try:
        d.start()
        t1.start()
        t2.start()
        with both_views(t1, t2, d):
            for t in (t1, t2):
                t.wait_state(v4(10), timeout=60)
            got1 = t1.wait_routes(v4(10), [T2_BLOCK, D_BLOCK], 30)
            got2 = t2.wait_routes(v4(10), [T1_BLOCK, D_BLOCK], 30)
            check_reflected(got1[T2_BLOCK], v4(2), "1.2.3.4", v4(2))
            check_reflected(got2[T1_BLOCK], v4(1), "1.2.3.4", v4(1))
            # the reflector's own route is not reflected: no ORIGINATOR_ID / CLUSTER_LIST needed
            assert got1[D_BLOCK]["next_hop"] == v4(10), got1[D_BLOCK]
            # no loop: a tortie never prefers (or keeps) its own block coming back from the reflector
            for t, own in ((t1, T1_BLOCK), (t2, T2_BLOCK)):
                back = t.routes_from(v4(10)).get(own)
                assert back is None or not back["best"], back
                best = [row for row in t.rib(prefix=own) if row["best"]]
                assert best and best[0]["from"] == "local", best
    finally:
        t2.stop()
        t1.stop()
        d.stop()
