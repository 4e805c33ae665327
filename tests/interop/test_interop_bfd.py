"""Scenario: BFD (RFC 5880/5881) on the BGP session between tortie and the daemon, both directions.

tortie's BGPPeer carries `bfd.tortie.io/enabled: "true"` (300 ms x 3); the daemon runs BFD on the
session too (BIRD 1.6 and 2: `protocol bfd` and `bfd on`; FRR: bfdd and `neighbor X bfd`). GoBGP 3.10
has no BFD: its cells are skips.

- bfd-tortie-detects: the daemon's BFD packets are dropped (nftables in its namespace, BGP untouched):
  tortie's session goes Down on its detection time, tortie takes BGP down with Cease/10 (BFD Down,
  RFC 9384) and drops the daemon's routes; the rule removed, BFD and BGP come back by themselves.
- bfd-daemon-detects: tortie's BFD packets are dropped: the daemon's BFD times out and takes its BGP
  session down; its RIB loses tortie's block; everything comes back by itself.
- bfd-auth: both sides with meticulous keyed SHA1 and the same key: Up, routes flow (BIRD only: FRR
  8.4's bfdd has no authentication).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from lab.daemons import Bfd, DaemonNeighbor, poll
from tests.interop.interop_support import (
    D_ROUTES,
    DAEMONS,
    T1_BLOCK,
    Fabric,
    Pair,
    block,
    cluster,
    node,
    pair,
    v4,
)

pytestmark = [pytest.mark.root, pytest.mark.daemons]

CUT = "table inet bfdcut { chain out { type filter hook output priority 0; policy accept; udp dport 3784 drop; }; }"


def bfd_cluster(**annotations: str) -> str:
    peer: dict[str, Any] = {"kind": "BGPPeer",
                            "metadata": {"name": "daemon",
                                         "annotations": {"bfd.tortie.io/enabled": "true", **annotations}},
                            "spec": {"peerIP": v4(10), "asNumber": 64512}}
    return cluster(node("t1", 1), block("t1", T1_BLOCK), peer)


def no_bfd(kind: str) -> None:
    if kind == "gobgp":
        pytest.skip("GoBGP 3.10 has no BFD")


def both_up(p: Pair, timeout: float = 60) -> None:
    t, d = p.tortie, p.daemon
    t.wait_state(v4(10), timeout=timeout)
    assert poll(lambda: (t.neighbor(v4(10))["bfd_session"] or {}).get("state") == "Up"
                and d.bfd_state(v4(1)) == "Up", timeout), \
        f"BFD not Up on both sides: tortie {t.neighbor(v4(10))['bfd_session']}, daemon {d.bfd_state(v4(1))}"
    t.wait_routes(v4(10), D_ROUTES, 30)
    d.wait_prefixes([T1_BLOCK], 30)


def timed(check: Any, timeout: float) -> float:
    t0 = time.monotonic()
    assert poll(check, timeout, 0.02), f"not within {timeout} s"
    return time.monotonic() - t0


@pytest.mark.interop("bfd-tortie-detects")
@pytest.mark.parametrize("kind", DAEMONS)
def test_tortie_detects(kind: str, fabric: Fabric, work: Path) -> None:
    no_bfd(kind)
    with pair(kind, fabric, work, bfd_cluster(), DaemonNeighbor(v4(1), 64512, passive=True, bfd=Bfd())) as p, p.views():
        t, d = p.tortie, p.daemon
        both_up(p)
        s = t.neighbor(v4(10))["bfd_session"]
        assert s["remote_discriminator"] and s["detection_time_ms"] == 900, s
        d.ns.exec("nft", CUT)
        try:
            took = timed(lambda: not t.routes_from(v4(10)), 10)
            print(f"{kind}: tortie dropped the daemon's routes {took * 1000:.0f} ms after its BFD was cut")
            assert took < 3.0
            # tortie's BFD times out (no packet within 900 ms). FRR's bfdd may go Down first (its own sends
            # are refused by the rule) and end the BGP session with Cease/BFD Down itself: then tortie's
            # detection follows within the detection time, with no session left to notify
            assert poll(lambda: t.neighbor(v4(10))["bfd_session"]["state"] == "Down", 3, 0.02), \
                t.neighbor(v4(10))["bfd_session"]
            nb = t.neighbor(v4(10))
            assert nb["bfd_session"]["diagnostic"] == "control detection time expired", nb["bfd_session"]
            assert nb["bfd_session"]["failures"] >= 1
            said = f"{nb['last_notification_sent'] or ''} {nb['last_notification_received'] or ''}"
            assert "BFD" in said, said
            assert poll(lambda: not d.established(v4(1)), 10)
        finally:
            d.ns.exec("nft", "delete", "table", "inet", "bfdcut")
        back = timed(lambda: t.state(v4(10)) == "Established" and bool(t.routes_from(v4(10))), 60)
        print(f"{kind}: BFD and BGP back {back:.1f} s after the rule went")
        both_up(p)


@pytest.mark.interop("bfd-daemon-detects")
@pytest.mark.parametrize("kind", DAEMONS)
def test_daemon_detects(kind: str, fabric: Fabric, work: Path) -> None:
    no_bfd(kind)
    with pair(kind, fabric, work, bfd_cluster(), DaemonNeighbor(v4(1), 64512, passive=True, bfd=Bfd())) as p, p.views():
        t, d = p.tortie, p.daemon
        both_up(p)
        t.ns.exec("nft", CUT)
        try:
            took = timed(lambda: T1_BLOCK not in d.rib_prefixes(), 15)
            print(f"{kind}: the daemon dropped tortie's block {took * 1000:.0f} ms after tortie's BFD was cut")
            assert took < 5.0
            assert d.bfd_state(v4(1)) != "Up"
            assert poll(lambda: t.state(v4(10)) != "Established", 10)
            # the daemon's Down reached tortie (tortie's own packets were the ones dropped)
            assert poll(lambda: t.neighbor(v4(10))["bfd_session"]["state"] != "Up", 10)
        finally:
            t.ns.exec("nft", "delete", "table", "inet", "bfdcut")
        back = timed(lambda: T1_BLOCK in d.rib_prefixes(), 60)
        print(f"{kind}: back at the daemon {back:.1f} s after the rule went")
        both_up(p)


@pytest.mark.interop("bfd-auth")
@pytest.mark.parametrize("kind", DAEMONS)
def test_authenticated(kind: str, fabric: Fabric, work: Path) -> None:
    no_bfd(kind)
    if kind == "frr":
        pytest.skip("FRR 8.4's bfdd has no BFD authentication")
    key = work / "bfd-key"
    key.write_text("bfd-s3cret\n")
    key.chmod(0o600)
    cfg = bfd_cluster(**{"bfd.tortie.io/auth": "meticulous-keyed-sha1", "bfd.tortie.io/auth-key-id": "7",
                         "bfd.tortie.io/auth-key-file": str(key)})
    bfd = Bfd(auth="meticulous keyed sha1", key_id=7, password="bfd-s3cret")
    with pair(kind, fabric, work, cfg, DaemonNeighbor(v4(1), 64512, passive=True, bfd=bfd)) as p, p.views():
        both_up(p)
        s = p.tortie.neighbor(v4(10))["bfd_session"]
        assert s["authentication"] == "meticulous-keyed-sha1"
        received = s["packets"]["received"]
        assert poll(lambda: p.tortie.neighbor(v4(10))["bfd_session"]["packets"]["received"] > received + 5, 10)
        assert not p.tortie.neighbor(v4(10))["bfd_session"]["packets"]["dropped"]
