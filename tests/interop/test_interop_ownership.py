"""Scenario: block ownership with the daemon as the hijacker.

The daemon is a Node of tortie's cluster (node `peer`, 10.77.0.10, in the node-to-node mesh) holding
one block; it announces that block, another node's block (t2's, a Node that runs nothing here), a more
specific route inside tortie's own block, and a pool prefix nobody holds. tortie (strict ownership, the
default) accepts the daemon's own block only; the rest is refused with its reason, counted per reason,
logged once, and shown by `bgp rib --peer`; none of it reaches tortie's Loc-RIB. With
`policy.tortie.io/block-ownership: off` (a reload) the same routes are accepted (pool checks only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.daemons import DaemonNeighbor, Route, poll
from tests.interop.interop_support import DAEMONS, Fabric, block, cluster, node, pair, v4, write_atomic

pytestmark = [pytest.mark.root, pytest.mark.daemons]

T1_BLOCK, T2_BLOCK, D_BLOCK = "192.168.1.0/26", "192.168.2.0/26", "192.168.10.0/26"
INSIDE_T1 = "192.168.1.16/28"
NOBODYS = "192.168.50.0/26"
ANNOUNCED = (D_BLOCK, T2_BLOCK, INSIDE_T1, NOBODYS)
WANT = {T2_BLOCK: "not-block-owner", INSIDE_T1: "not-block-owner", NOBODYS: "no-block-affinity"}


def ownership_cluster(mode: str | None = None) -> str:
    text = cluster(node("t1", 1, ipv6=False), node("t2", 2, ipv6=False), node("peer", 10, ipv6=False),
                   block("t1", T1_BLOCK), block("t2", T2_BLOCK), block("peer", D_BLOCK))
    if mode is not None:
        text = text.replace("  name: default\n", "  name: default\n  annotations:\n"
                            f"    policy.tortie.io/block-ownership: '{mode}'\n", 1)
    return text


@pytest.mark.interop("ownership-daemon-hijacks")
@pytest.mark.parametrize("kind", DAEMONS)
def test_daemon_hijacks(kind: str, fabric: Fabric, work: Path) -> None:
    routes = [Route(p) for p in ANNOUNCED]
    # tortie's mesh rule: the side whose address is the higher text connects, so tortie (10.77.0.1) waits
    # for the daemon (10.77.0.10) to connect
    neighbor = DaemonNeighbor(v4(1), 64512, passive=False)
    with pair(kind, fabric, work, ownership_cluster(), neighbor, routes) as p, p.views():
        t, d = p.tortie, p.daemon
        t.wait_state(v4(10), timeout=60)
        assert poll(lambda: len(t.rib(peer=v4(10))) == len(ANNOUNCED), 30), t.rib(peer=v4(10))
        rows = {r["prefix"]: r for r in t.rib(peer=v4(10))}
        assert not rows[D_BLOCK].get("refused") and rows[D_BLOCK]["best"], rows[D_BLOCK]
        for prefix, reason in WANT.items():
            assert rows[prefix].get("refused") and reason in rows[prefix]["reason"], rows[prefix]
        loc = {r["prefix"] for r in t.rib() if r["best"]}
        assert D_BLOCK in loc and not (set(WANT) & loc), loc
        rejected = t.neighbor(v4(10))["prefixes"]["rejected"]
        assert rejected.get("not-block-owner", 0) >= 2 and rejected.get("no-block-affinity", 0) >= 1, rejected
        log = t.log.read_text()
        for prefix in WANT:
            assert log.count(f"route {prefix} refused by block ownership") == 1, prefix
        # ownership off (a reload): the same routes are judged again and accepted
        write_atomic(p.config, ownership_cluster("off"))
        assert poll(lambda: set(ANNOUNCED) <= {r["prefix"] for r in t.rib() if r["best"]}, 30), t.rib()
        assert not any(r.get("refused") for r in t.rib(peer=v4(10)))
        assert d.established(v4(1))
