"""Scenario: a ToR peered on its loopback, reachable only through the BGPPeer's `reachableBy` route.

The daemon (the ToR, AS 65010) has its loopback 10.88.0.10/32 on `lo` and speaks BGP from it
(multihop); node t1 has no route to it, only its connected 10.77.0.0/24. The BGPPeer to 10.88.0.10
says `reachableBy: 10.77.0.10`: tortie-felixd installs `10.88.0.10/32 via 10.77.0.10`, so tortie-bgpd's
session comes up, and the ToR's routes (next hop its loopback) are programmed through the gateway
(BIRD's `gateway recursive` through Calico's static route). Without the field the route goes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.daemons import DaemonNeighbor, Route, poll
from tests.interop.interop_support import (
    BIN,
    D_ROUTES,
    DAEMONS,
    T1_BLOCK,
    Fabric,
    bgp_peer,
    block,
    cluster,
    node,
    pair,
    v4,
    write_atomic,
)

pytestmark = [pytest.mark.root, pytest.mark.daemons]

LOOPBACK, TOR_AS = "10.88.0.10", 65010


def tor_cluster(**extra: str) -> str:
    return cluster(node("t1", 1), block("t1", T1_BLOCK),
                   bgp_peer("tor", peerIP=LOOPBACK, asNumber=TOR_AS, **extra))


def kernel(t_ns: object) -> str:
    return t_ns.ip("route", "show").stdout  # type: ignore[attr-defined, no-any-return]


@pytest.mark.interop("bgppeer-reachable-by")
@pytest.mark.parametrize("kind", DAEMONS)
def test_tor_on_a_loopback_reached_through_reachable_by(kind: str, fabric: Fabric, work: Path) -> None:
    tor_ns = fabric.hosts["d"]
    tor_ns.ip("addr", "replace", f"{LOOPBACK}/32", "dev", "lo")
    neighbor = DaemonNeighbor(v4(1), 64512, local_address=LOOPBACK, multihop=True)
    # GoBGP announces the next hop it is given (the others: their session address, the loopback)
    routes = [Route(pfx, next_hop=LOOPBACK if kind == "gobgp" else None) for pfx in D_ROUTES]
    with pair(kind, fabric, work, tor_cluster(reachableBy=v4(10)), neighbor, routes, asn=TOR_AS) as p, p.views():
        t = p.tortie
        # only through the route felixd is about to write: nothing else on t1 leads to the loopback
        assert t.ns.ip("route", "get", LOOPBACK, check=False).returncode != 0
        with open(work / "felixd.log", "ab") as out:
            felixd = fabric.nsset.spawn(t.ns, str(BIN / "tortie-felixd"), "--config", str(p.config),
                                        "--node", "t1", "--run-dir", str(t.run_dir), "--metrics-port", "0",
                                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            assert poll(lambda: f"{LOOPBACK} via {v4(10)} dev eth0 proto 80" in kernel(t.ns), 30), \
                kernel(t.ns) + (work / "felixd.log").read_text()[-3000:]
            t.wait_state(LOOPBACK, timeout=60)
            got = t.wait_routes(LOOPBACK, D_ROUTES, 30)
            assert all(got[pfx]["next_hop"] == LOOPBACK for pfx in D_ROUTES), got
            # the ToR's routes resolve through the static route: via the gateway on the uplink
            assert poll(lambda: all(f"{pfx} via {v4(10)} dev eth0 proto 80" in kernel(t.ns) for pfx in D_ROUTES),
                        30), kernel(t.ns)
            assert t.ns.exec("ping", "-c", "1", "-W", "2", LOOPBACK, check=False).returncode == 0
            # the field removed: the route to the loopback goes (and with it the way to the ToR)
            write_atomic(p.config, tor_cluster())
            assert poll(lambda: f"{LOOPBACK} via" not in kernel(t.ns), 30), kernel(t.ns)
            assert t.ns.ip("route", "get", LOOPBACK, check=False).returncode != 0
        finally:
            # felixd leaves the kernel as it is when stopped: clear its routes for the next test
            felixd.terminate()
            felixd.wait(timeout=10)
            t.ns.ip("route", "flush", "proto", "80", check=False)
            tor_ns.ip("addr", "del", f"{LOOPBACK}/32", "dev", "lo", check=False)
