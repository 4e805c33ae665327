"""Scenario: BGPFilter rules and BGP communities on the wire, against real daemons.

tortie (t1, AS 64512) has three blocks and peers over eBGP with the daemon (AS 65001), which sends
three routes, one of them tagged with the community 65001:666. The cluster file says:

- `prefixAdvertisements`: the pool's blocks carry the community `blocks` (64512:100, by name) and
  the large community 64512:3:4; the daemon sees both on the block no export rule decides.
- BGPFilter `out` (export): rule 1 rejects the third block, which the daemon never receives and
  `tortiectl bgp rib --out` shows as kept back by that rule; rule 2 accepts the second block with
  an AS-path prepend (64512 twice) and the community 64512:7, which the daemon sees (and not the
  advertisement's communities: an Accept skips Calico's default export policy).
- BGPFilter `in` (import): rule 1 rejects 192.168.20.0/24 by CIDR, rule 2 rejects whatever carries
  65001:666; both are shown with the rule that rejected them, the third route comes in.
- Then the import rule is dropped from the file: bgpd asks the daemon for its routes again
  (ROUTE-REFRESH) and takes the route, without restarting the session.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lab.daemons import DaemonNeighbor, Frr, GoBgp, Route, poll
from tests.interop.interop_support import (
    Fabric,
    bgp_peer,
    block,
    cluster,
    daemon_route,
    node,
    pair,
    v4,
    wait_daemon_route,
    write_atomic,
)

pytestmark = [pytest.mark.root, pytest.mark.daemons]

TORTIE_AS, TOR_AS = 64512, 65001
BLOCKS = ("192.168.1.0/26", "192.168.1.64/26", "192.168.1.128/26")
PLAIN, TAGGED, REJECTED = BLOCKS  # default policy; Accept with operations; rejected on export
D_TAKEN, D_BY_CIDR, D_BY_COMMUNITY = "192.168.21.0/24", "192.168.20.0/24", "192.168.22.0/24"
DAEMON_ROUTES = (Route(D_TAKEN), Route(D_BY_CIDR), Route(D_BY_COMMUNITY, communities=((TOR_AS, 666),)))

EXPORT_RULES = [
    {"cidr": REJECTED, "matchOperator": "Equal", "action": "Reject"},
    {"cidr": TAGGED, "matchOperator": "Equal", "action": "Accept",
     "operations": [{"prependASPath": {"prefix": [TORTIE_AS, TORTIE_AS]}}, {"addCommunity": {"value": "64512:7"}}]},
]
IMPORT_RULES = [
    {"cidr": D_BY_CIDR, "matchOperator": "Equal", "action": "Reject"},
    {"communities": {"values": [f"{TOR_AS}:666"]}, "action": "Reject"},
]


def filter_cluster(import_rules: list[dict[str, Any]]) -> str:
    config = {"communities": [{"name": "blocks", "value": "64512:100"}],
              "prefixAdvertisements": [{"cidr": "192.168.0.0/16", "communities": ["blocks", "64512:3:4"]}]}
    return cluster(
        node("t1", 1), *(block("t1", b) for b in BLOCKS),
        {"kind": "BGPFilter", "metadata": {"name": "out"}, "spec": {"exportV4": EXPORT_RULES}},
        {"kind": "BGPFilter", "metadata": {"name": "in"}, "spec": {"importV4": import_rules}},
        bgp_peer("daemon", peerIP=v4(10), asNumber=TOR_AS, filters=["in", "out"]),
        asn=TORTIE_AS, config=config)


def communities(daemon: Any, prefix: str) -> tuple[set[str], set[str]]:
    """(standard, large) communities on the daemon's best route for `prefix`, as `a:b` / `a:b:c`."""
    r = daemon_route(daemon, prefix)
    assert r is not None, f"{daemon.kind} has no route {prefix}"
    if isinstance(daemon, Frr):
        paths = json.loads(r.raw).get("paths") or []
        best = next((p for p in paths if p.get("bestpath", {}).get("overall")), paths[0])
        return (set(str(best.get("community", {}).get("string", "")).split()),
                set(str(best.get("largeCommunity", {}).get("string", "")).split()))
    if isinstance(daemon, GoBgp):
        table = json.loads(r.raw)
        paths = next(iter(table.values()), []) if isinstance(table, dict) else []
        best = next((p for p in paths if p.get("best")), paths[0])
        std_set: set[str] = set()
        large_set: set[str] = set()
        for a in best.get("attrs", []):
            if a.get("type") == 8:  # COMMUNITIES: 32-bit numbers
                std_set |= {f"{c >> 16}:{c & 0xFFFF}" for c in a.get("communities", [])}
            elif a.get("type") == 32:  # LARGE_COMMUNITY
                for c in a.get("value", []):
                    parts = list(c.values()) if isinstance(c, dict) else str(c).split(":")
                    large_set.add(":".join(str(x) for x in parts))
        return std_set, large_set
    std = re.search(r"BGP\.community:([^\n]*)", r.raw)
    large = re.search(r"BGP\.large_community:([^\n]*)", r.raw)
    return ({f"{a}:{b}" for a, b in re.findall(r"\((\d+),\s*(\d+)\)", std.group(1))} if std else set(),
            {f"{a}:{b}:{c}" for a, b, c in re.findall(r"\((\d+),\s*(\d+),\s*(\d+)\)", large.group(1))}
            if large else set())


@pytest.mark.interop("bgpfilter-communities")
@pytest.mark.parametrize("kind", ["bird16", "bird2", "gobgp", "frr"])
def test_filters_and_communities_on_the_wire(kind: str, fabric: Fabric, work: Path) -> None:
    with pair(kind, fabric, work, filter_cluster(IMPORT_RULES), DaemonNeighbor(v4(1), TORTIE_AS),
              DAEMON_ROUTES, asn=TOR_AS) as p, p.views():
        t, d = p.tortie, p.daemon
        t.wait_state(v4(10), timeout=60)
        d.wait_established(v4(1), 30)

        # export: the advertisement's communities, the Accept rule's prepend and community, the Reject
        plain = wait_daemon_route(d, PLAIN, timeout=30)
        assert plain.as_path == [TORTIE_AS], plain
        assert communities(d, PLAIN) == ({"64512:100"}, {"64512:3:4"})
        tagged = wait_daemon_route(d, TAGGED, timeout=30)
        assert tagged.as_path == [TORTIE_AS] * 3, tagged
        assert communities(d, TAGGED) == ({"64512:7"}, set())
        assert daemon_route(d, REJECTED) is None  # sent with the others, in the same table walk
        out = {r["prefix"]: r for r in t.rib(peer=v4(10), direction="out")}
        assert out[REJECTED].get("filtered") and out[REJECTED]["reason"] == "rejected by BGPFilter out exportV4 rule 1"
        assert out[TAGGED]["reason"].startswith("accepted by BGPFilter out exportV4 rule 2"), out[TAGGED]
        assert out[PLAIN]["reason"] == "prefix advertisement", out[PLAIN]

        # import: one route taken, one rejected by CIDR, one by its community, each with its rule
        got = t.wait_routes(v4(10), [D_TAKEN], 30)
        assert D_BY_CIDR not in got and D_BY_COMMUNITY not in got, sorted(got)
        filtered: dict[str, dict[str, Any]] = {}
        assert poll(lambda: {D_BY_CIDR, D_BY_COMMUNITY} <= set(filtered.update(t.filtered_from(v4(10))) or filtered),
                    30), filtered
        assert filtered[D_BY_CIDR]["reason"] == "rejected by BGPFilter in importV4 rule 1", filtered
        assert filtered[D_BY_COMMUNITY]["reason"] == "rejected by BGPFilter in importV4 rule 2", filtered
        assert f"{TOR_AS}:666" in filtered[D_BY_COMMUNITY]["communities"], filtered[D_BY_COMMUNITY]
        nb = t.neighbor(v4(10))
        # received: also our own blocks, which the daemon sends back and the AS-path loop check rejects
        assert nb["prefixes"]["accepted"] == 1 and nb["prefixes"]["rejected"]["bgp-filter"] == 2, nb["prefixes"]

        # drop the CIDR rule: the route comes in by a route refresh, the session stays up
        before = t.neighbor(v4(10))
        write_atomic(p.config, filter_cluster(IMPORT_RULES[1:]))
        got = t.wait_routes(v4(10), [D_TAKEN, D_BY_CIDR], 60)
        assert D_BY_COMMUNITY not in got
        after = t.neighbor(v4(10))
        assert after["messages"]["sent"].get("ROUTE_REFRESH", 0) > before["messages"]["sent"].get("ROUTE_REFRESH", 0)
        assert after["uptime_seconds"] >= before["uptime_seconds"], (before["uptime_seconds"], after["uptime_seconds"])
        assert after["since"] == before["since"], (before["since"], after["since"])
