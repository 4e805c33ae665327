"""Scenario: eBGP to a top-of-rack router (the daemon, another AS), 2-octet and 4-octet AS numbers.

tortie (node t1) peers with the daemon through a global BGPPeer. tortie advertises its block with
next hop self and AS_PATH [tortie's AS]; it learns the ToR's routes inside a pool with AS_PATH
[ToR's AS] and next hop the ToR, and rejects (counted) a route outside every pool: its import policy.
The 4-octet case puts both sides above 65535 (4200000002 / 4200000001), so the AS numbers travel
in the 4-octet capability and AS_PATH both ways.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.daemons import DaemonNeighbor, Route
from tests.interop.interop_support import (
    D_ROUTES,
    DAEMONS,
    T1_BLOCK,
    Fabric,
    pair,
    peer_cluster,
    v4,
    wait_daemon_route,
)

pytestmark = [pytest.mark.root, pytest.mark.daemons]

OUTSIDE = "10.99.0.0/24"  # in no IPPool: tortie must not take it
AS_CASES = [
    pytest.param(64512, 65001, id="2octet", marks=pytest.mark.interop("ebgp-tor")),
    pytest.param(4200000002, 4200000001, id="4octet", marks=pytest.mark.interop("ebgp-tor-4octet")),
]


@pytest.mark.parametrize(("tortie_as", "tor_as"), AS_CASES)
@pytest.mark.parametrize("kind", DAEMONS)
def test_ebgp_tor(kind: str, tortie_as: int, tor_as: int, fabric: Fabric, work: Path) -> None:
    neighbor = DaemonNeighbor(v4(1), tortie_as, passive=True)
    routes = [Route(p) for p in D_ROUTES] + [Route(OUTSIDE)]
    with pair(kind, fabric, work, peer_cluster(tortie_as=tortie_as, peer_as=tor_as), neighbor, routes,
              asn=tor_as) as p, p.views():
        t, d = p.tortie, p.daemon
        t.wait_state(v4(10), timeout=60)
        d.wait_established(v4(1), 30)
        nb = t.neighbor(v4(10))
        assert nb["asn"] == tor_as and nb["capabilities"]["four_octet_as"], nb
        assert t.call("status")["asn"] == tortie_as

        # tortie -> ToR: next hop self, AS_PATH [tortie AS]
        r = wait_daemon_route(d, T1_BLOCK, timeout=30)
        assert r.next_hop == v4(1), r
        assert r.as_path == [tortie_as], r

        # ToR -> tortie: inside a pool accepted with AS_PATH [ToR AS]; outside every pool rejected
        got = t.wait_routes(v4(10), D_ROUTES, 30)
        for pfx in D_ROUTES:
            assert got[pfx]["as_path"] == str(tor_as), got[pfx]
            assert got[pfx]["next_hop"] == v4(10), got[pfx]
            assert got[pfx]["best"], got[pfx]
        assert OUTSIDE not in got
        nb = t.neighbor(v4(10))
        assert sum(nb["prefixes"]["rejected"].values()) >= 1, nb["prefixes"]
        # the ToR's routes are not sent back to it, and nothing but tortie's own block is
        out = {row["prefix"] for row in t.rib(peer=v4(10), direction="out")}
        assert out == {T1_BLOCK}, out
