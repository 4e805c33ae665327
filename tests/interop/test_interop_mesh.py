"""Scenario: the daemon as a member of tortie's node-to-node mesh (iBGP, AS 64512).

The daemon is a Node of the cluster file (10.77.0.10, fd77::a). Calico's BIRD template sets `passive on`
towards a node whose address is greater *as text*; "10.77.0.1" < "10.77.0.10" and "fd77::1" < "fd77::a",
so tortie (node t1) waits and the daemon connects, as a Calico node with those addresses would.
One session per address family, as Calico runs them (BIRD 1.6 in two processes, bird and bird6).
Checked: Established, the negotiated capabilities on both sides, blocks both ways, withdrawals both
ways.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab.daemons import Bird16, Daemon, DaemonNeighbor, Frr, GoBgp, Route
from tests.interop.interop_support import (
    DAEMONS,
    Fabric,
    Tortie,
    block,
    both_views,
    caps_text,
    cluster,
    make_daemon,
    node,
    v4,
    v6,
    wait_daemon_route,
    write_atomic,
)

pytestmark = [pytest.mark.root, pytest.mark.daemons]

T_BLOCK4, T_BLOCK6 = "192.168.1.0/26", "fd00:77::1:0/122"
T_EXTRA4 = "192.168.1.64/26"
D_BLOCK4, D_BLOCK6 = "192.168.10.0/26", "fd00:77::a:0/122"
D_EXTRA4 = "192.168.10.64/26"


def mesh_cluster(extra_block: bool) -> str:
    blocks = [block("t1", T_BLOCK4), block("t1", T_BLOCK6), block("peer", D_BLOCK4)]
    if extra_block:
        blocks.append(block("t1", T_EXTRA4))
    return cluster(node("t1", 1), node("peer", 10), *blocks)


def start_daemons(kind: str, fabric: Fabric, work: Path) -> list[Daemon]:
    """The daemon's side of both sessions; BIRD 1.6 needs bird for IPv4 and bird6 for IPv6."""
    calico = {"passive": False, "add_path": "both", "graceful_restart": True}
    n4 = DaemonNeighbor(v4(1), 64512, families=("ipv4",), **calico)  # type: ignore[arg-type]
    n6 = DaemonNeighbor(v6(1), 64512, families=("ipv6",), **calico)  # type: ignore[arg-type]
    routes = [Route(D_BLOCK4), Route(D_BLOCK6)]
    if kind == "bird16":
        out = [make_daemon(kind, fabric, work, asn=64512, neighbors=[n4], routes=routes),
               make_daemon(kind, fabric, work / "six", asn=64512, neighbors=[n6], routes=routes, ipv6=True)]
    else:
        out = [make_daemon(kind, fabric, work, asn=64512, neighbors=[n4, n6], routes=routes)]
    for d in out:
        d.start()
    return out


def owner(daemons: list[Daemon], address: str) -> Daemon:
    return next(d for d in daemons if any(n.address == address for n in d.neighbors))


def check_daemon_caps(d: Daemon, address: str, family: str) -> None:
    """The daemon's CLI confirms what was negotiated: 4-octet AS, route refresh, GR, ADD-PATH, the family."""
    text = caps_text(d, address)
    fam = {"ipv4": "IPv4", "ipv6": "IPv6"}[family]
    if isinstance(d, Frr):
        peer = next(iter(json.loads(text).values()))
        caps = peer["neighborCapabilities"]
        fam_key = f"{family}Unicast"
        assert caps["4byteAs"] == "advertisedAndReceived", caps
        assert caps["routeRefresh"].startswith("advertisedAndReceived"), caps
        assert caps["gracefulRestart"] == "advertisedAndReceived", caps
        assert caps["multiprotocolExtensions"][fam_key].get("advertisedAndReceived"), caps
        # FRR offers to send all paths (addpath-tx-all-paths) and has tortie's offer to receive them
        ap = caps["addPath"][fam_key]
        assert ap.get("txAdvertised") or ap.get("txAdvertisedAndReceived"), caps
        assert ap.get("rxReceived") or ap.get("rxAdvertisedAndReceived"), caps
    elif isinstance(d, GoBgp):
        lines = text.splitlines()
        for cap in ("4-octet-as", "route-refresh", "graceful-restart", "add-path"):
            line = next((ln for ln in lines if ln.strip().startswith(cap + ":")), "")
            assert "advertised and received" in line, f"{cap}: {line!r}\n{text}"
        line = next((ln for ln in lines if ln.strip().startswith(f"{family}-unicast:")), "")
        assert "advertised and received" in line, f"multiprotocol {family}: {line!r}\n{text}"
    elif isinstance(d, Bird16):
        m = re.search(r"Neighbor caps:\s*(.*)", text)
        assert m, text
        for cap in ("refresh", "restart-able", "AS4", "add-path-rx"):
            assert cap in m.group(1).split(), f"{cap} not in {m.group(1)!r}\n{text}"
    else:
        nc = text.split("Neighbor capabilities", 1)[1] if "Neighbor capabilities" in text else ""
        assert nc, text
        for cap in ("Route refresh", "Graceful restart", "4-octet AS numbers", "ADD-PATH"):
            assert cap in nc, f"{cap} not in BIRD's neighbor capabilities\n{text}"
        assert fam.lower() in nc.lower(), text


@pytest.mark.interop("ibgp-mesh")
@pytest.mark.parametrize("kind", DAEMONS)
def test_mesh_member(kind: str, fabric: Fabric, work: Path) -> None:
    cfg = work / "cluster.yaml"
    write_atomic(cfg, mesh_cluster(extra_block=True))
    tortie = Tortie(fabric, "t1", "t1", cfg, work)
    daemons: list[Daemon] = []
    try:
        # tortie first: it is the passive side here, so the daemon's first connection finds it listening
        # (a refused first attempt would leave the daemon waiting out its 120 s connect-retry timer)
        tortie.start()
        daemons = start_daemons(kind, fabric, work)
        with both_views(tortie, *daemons):
            for addr, family in ((v4(10), "ipv4"), (v6(10), "ipv6")):
                tortie.wait_state(addr, timeout=60)
                nb = tortie.neighbor(addr)
                caps = nb["capabilities"]
                assert f"{family}_unicast" in caps["families"], caps
                assert caps["four_octet_as"] and caps["route_refresh"], caps
                assert caps["graceful_restart"]["remote"], caps
                assert caps["graceful_restart"]["remote_restart_time"] == 120, caps
                assert f"{family}_unicast" in caps["add_path_receive"], caps
                assert nb["peer_type"] == "node-to-node mesh" and nb["node"] == "peer", nb
                d = owner(daemons, v4(1) if family == "ipv4" else v6(1))
                d.wait_established(v4(1) if family == "ipv4" else v6(1), 30)
                check_daemon_caps(d, v4(1) if family == "ipv4" else v6(1), family)

            # blocks both ways: the daemon holds tortie's blocks (next hop tortie, empty AS_PATH) ...
            d4, d6 = owner(daemons, v4(1)), owner(daemons, v6(1))
            for d, pfx, nh in ((d4, T_BLOCK4, v4(1)), (d4, T_EXTRA4, v4(1)), (d6, T_BLOCK6, v6(1))):
                r = wait_daemon_route(d, pfx, lambda r: True, 30)
                assert r.next_hop == nh and r.as_path == [], r
            # ... and tortie holds the daemon's (inside the pools), next hop the daemon
            got4 = tortie.wait_routes(v4(10), [D_BLOCK4], 30)
            got6 = tortie.wait_routes(v6(10), [D_BLOCK6], 30)
            assert got4[D_BLOCK4]["next_hop"] == v4(10) and got4[D_BLOCK4]["as_path"] == "", got4
            assert got6[D_BLOCK6]["next_hop"] == v6(10), got6
            assert got4[D_BLOCK4]["best"], got4

            # withdrawals both ways: tortie loses a block from its cluster file, the daemon a route
            write_atomic(cfg, mesh_cluster(extra_block=False))
            d4.wait_prefixes([T_EXTRA4], 30, present=False)
            assert T_BLOCK4 in d4.rib_prefixes()
            d4.withdraw_route(D_BLOCK4)
            tortie.wait_routes(v4(10), [D_BLOCK4], 30, present=False)
            assert D_BLOCK6 in tortie.routes_from(v6(10))
            assert tortie.state(v4(10)) == "Established"
    finally:
        tortie.stop()
        for d in daemons:
            d.stop()
