"""Scenario: route refresh (RFC 2918) in both directions.

tortie asks (its `refresh` control method): the daemon sends its table again, seen as more UPDATEs
received in tortie's `neighbors` counters, with the routes still there. The daemon asks (birdc
`reload in`, vtysh `clear bgp X soft in`): tortie counts the ROUTE-REFRESH and sends its table again
(more UPDATEs sent), and the daemon still holds tortie's block.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.daemons import DaemonNeighbor, poll
from tests.interop.interop_support import D_ROUTES, DAEMONS, T1_BLOCK, Fabric, pair, peer_cluster, v4

pytestmark = [pytest.mark.root, pytest.mark.daemons]


def counter(nb: dict, direction: str, kind: str) -> int:
    return int(nb["messages"][direction].get(kind, 0))


@pytest.mark.interop("refresh-tortie-asks")
@pytest.mark.parametrize("kind", DAEMONS)
def test_tortie_asks(kind: str, fabric: Fabric, work: Path) -> None:
    with pair(kind, fabric, work, peer_cluster(), DaemonNeighbor(v4(1), 64512, passive=True)) as p, p.views():
        t = p.tortie
        t.wait_state(v4(10), timeout=60)
        t.wait_routes(v4(10), D_ROUTES, 30)
        before = counter(t.neighbor(v4(10)), "received", "UPDATE")
        t.call("refresh", peer=v4(10))
        assert counter(t.neighbor(v4(10)), "sent", "ROUTE_REFRESH") >= 1
        # the table again: at least one UPDATE per announced route or a packed one, then End-of-RIB
        assert poll(lambda: counter(t.neighbor(v4(10)), "received", "UPDATE") > before, 20), \
            f"no UPDATE after tortie's ROUTE-REFRESH (had {before})"
        t.wait_routes(v4(10), D_ROUTES, 5)
        assert t.state(v4(10)) == "Established"


@pytest.mark.interop("refresh-daemon-asks")
@pytest.mark.parametrize("kind", DAEMONS)
def test_daemon_asks(kind: str, fabric: Fabric, work: Path) -> None:
    if kind == "gobgp":
        pytest.skip("GoBGP 3.10 sends no ROUTE-REFRESH: `gobgp neighbor X softresetin` (and `softreset`) "
                    "re-run its import policy over the Adj-RIB-In it keeps; tortie counted none")
    with pair(kind, fabric, work, peer_cluster(), DaemonNeighbor(v4(1), 64512, passive=True)) as p, p.views():
        t, d = p.tortie, p.daemon
        t.wait_state(v4(10), timeout=60)
        d.wait_prefixes([T1_BLOCK], 30)
        nb = t.neighbor(v4(10))
        sent_before = counter(nb, "sent", "UPDATE")
        d.refresh_in(v4(1))
        assert poll(lambda: counter(t.neighbor(v4(10)), "received", "ROUTE_REFRESH") >= 1, 20), \
            "tortie saw no ROUTE-REFRESH"
        assert poll(lambda: counter(t.neighbor(v4(10)), "sent", "UPDATE") > sent_before, 20), \
            f"tortie sent no UPDATE after the ROUTE-REFRESH (had sent {sent_before})"
        d.wait_prefixes([T1_BLOCK], 10)
        assert t.state(v4(10)) == "Established"
