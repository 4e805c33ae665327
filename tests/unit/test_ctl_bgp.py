"""`tortiectl bgp neighbors` and `tortiectl bgp rib` against a real control socket with canned answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ctl import daemons
from ctl.bgp_cmd import rib_rows
from runtime.control import ControlError
from tests.unit.daemon_stub import StubDaemons, run_ctl, stub_daemons

NOW = datetime(2026, 11, 26, 19, 0, 0, tzinfo=UTC).timestamp()


def detail(address: str, state: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "address": address, "family": "ipv4", "peer_type": "node-to-node mesh", "state": state,
        "since": NOW - 3723, "last_error": "", "asn": 64512, "node": None, "admin_down": False,
        "hold_time": 90, "keepalive_time": 30.0, "local_address": None, "remote_router_id": None,
        "uptime_seconds": None,
        "capabilities": {"families": [], "four_octet_as": False, "route_refresh": False,
                         "enhanced_route_refresh": False, "extended_message": False, "add_path_receive": [],
                         "graceful_restart": {"local": True, "remote": False, "remote_restart_time": None}},
        "messages": {"sent": dict.fromkeys(("OPEN", "UPDATE", "KEEPALIVE", "NOTIFICATION", "ROUTE_REFRESH"), 0),
                     "received": dict.fromkeys(("OPEN", "UPDATE", "KEEPALIVE", "NOTIFICATION",
                                                "ROUTE_REFRESH"), 0)},
        "prefixes": {"received": 0, "accepted": 0, "rejected": {}, "advertised": 0},
        "graceful_restart_state": "", "last_notification_sent": None, "last_notification_received": None,
    }
    base.update(extra)
    return base


UP = detail(
    "10.30.0.206", "Established", node="worker-2", local_address="10.30.0.56", remote_router_id="10.30.0.206",
    uptime_seconds=3723.4,
    capabilities={"families": ["ipv4_unicast", "ipv6_unicast"], "four_octet_as": True, "route_refresh": True,
                  "enhanced_route_refresh": True, "extended_message": False, "add_path_receive": ["ipv4_unicast"],
                  "graceful_restart": {"local": True, "remote": True, "remote_restart_time": 120}},
    messages={"sent": {"OPEN": 1, "UPDATE": 4, "KEEPALIVE": 125, "NOTIFICATION": 0, "ROUTE_REFRESH": 0},
              "received": {"OPEN": 1, "UPDATE": 12, "KEEPALIVE": 124, "NOTIFICATION": 0, "ROUTE_REFRESH": 1}},
    prefixes={"received": 12, "accepted": 9, "rejected": {"as-path loop": 1, "next hop invalid": 2},
              "advertised": 3},
    graceful_restart_state="peer restarting, 12 stale routes kept",
    last_notification_received="Cease/Administrative reset",
)
DOWN = detail("10.30.0.1", "Active", peer_type="global", asn=65001, last_error="Hold timer expired",
              last_notification_sent="Hold Timer Expired")
NEIGHBORS = [UP, DOWN]


def rib_entry(prefix: str, next_hop: str, source: str, best: bool, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "prefix": prefix, "next_hop": next_hop, "from": source, "best": best, "reason": "", "stale": False,
        "origin": "IGP", "as_path": "", "local_pref": 100, "med": None, "communities": [],
        "large_communities": [], "originator_id": None, "cluster_list": [],
    }
    base.update(extra)
    return base


RIB = [
    rib_entry("192.168.226.64/26", "10.30.0.56", "local", True, reason="local route", origin="INCOMPLETE",
              local_pref=None),
    rib_entry("192.168.105.128/26", "10.30.1.66", "10.30.1.66", True, reason="only route", stale=True),
    rib_entry("192.168.25.0/26", "10.30.0.206", "10.30.0.206", True, reason="lowest MED", med=0,
              communities=["64512:100"], large_communities=["64512:1:2"]),
    rib_entry("192.168.25.0/26", "10.30.0.1", "10.30.0.1", False, as_path="65001", med=10,
              originator_id="10.30.0.9", cluster_list=["10.30.0.9", "10.30.0.10"]),
    rib_entry("fd00:1::/122", "fd00:30::206", "fd00:30::206", True, reason="only route"),
]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(daemons, "now", lambda: NOW)
    yield
    monkeypatch.undo()
    time.tzset()


def neighbors(peer: str | None = None) -> list[dict[str, Any]]:
    if peer is None:
        return [DOWN, UP]  # the daemon's order; tortiectl sorts by address
    if peer == "10.9.9.9":
        raise ControlError(f"no peer {peer}")
    return [p for p in NEIGHBORS if p["address"] == peer]


def rib(prefix: str | None = None, peer: str | None = None, direction: str = "in") -> list[dict[str, Any]]:
    entries = [e for e in RIB if prefix is None or e["prefix"] == prefix]
    if peer is not None:
        entries = [e for e in entries if e["from"] == peer] if direction == "in" else entries[:1]
    return entries


@pytest.fixture
def bgpd() -> Iterator[StubDaemons]:
    with stub_daemons() as stubs:
        stubs.start("bgpd", {"neighbors": neighbors, "rib": rib})
        yield stubs


# --------------------------------------------------------------------------------------- neighbors

UP_BLOCK = """\
BGP peer 10.30.0.206 (node-to-node mesh, node worker-2)
  State:                      Established, up 1h02m03s (since 17:57:57)
  Last error:                 -
  Neighbor AS:                64512
  Neighbor ID:                10.30.0.206
  Source address:             10.30.0.56
  Hold time:                  90 s
  Keepalive time:             30 s
  Address families:           ipv4_unicast, ipv6_unicast
  Capabilities:               four-octet AS, route refresh, enhanced route refresh
  ADD-PATH receive:           ipv4_unicast
  Graceful restart:           local yes, remote yes (restart time 120 s); peer restarting, 12 stale routes kept
  Prefixes:                   12 received, 9 accepted, 3 rejected (as-path loop 1, next hop invalid 2), 3 advertised
  Last NOTIFICATION sent:     -
  Last NOTIFICATION received: Cease/Administrative reset
  Messages:                   OPEN  UPDATE  KEEPALIVE  NOTIFICATION  ROUTE_REFRESH
    sent                         1       4        125             0              0
    received                     1      12        124             0              1
"""

DOWN_BLOCK = """\
BGP peer 10.30.0.1 (global)
  State:                      Active (since 17:57:57)
  Last error:                 Hold timer expired
  Neighbor AS:                65001
  Neighbor ID:                -
  Source address:             -
  Hold time:                  90 s
  Keepalive time:             30 s
  Address families:           -
  Capabilities:               -
  ADD-PATH receive:           -
  Graceful restart:           local yes, remote no
  Prefixes:                   0 received, 0 accepted, 0 rejected, 0 advertised
  Last NOTIFICATION sent:     Hold Timer Expired
  Last NOTIFICATION received: -
  Messages:                   OPEN  UPDATE  KEEPALIVE  NOTIFICATION  ROUTE_REFRESH
    sent                         0       0          0             0              0
    received                     0       0          0             0              0
"""


def test_neighbors_blocks_in_address_order(bgpd: StubDaemons, clock: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_ctl(capsys, "bgp", "neighbors", "--run-dir", str(bgpd.run_dir))
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == DOWN_BLOCK + "\n" + UP_BLOCK
    assert bgpd.calls == [("bgpd", "neighbors", {})]


def test_one_neighbor(bgpd: StubDaemons, clock: None, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_ctl(capsys, "bgp", "neighbors", "10.30.0.206", "--run-dir", str(bgpd.run_dir))
    assert (ran.code, ran.out) == (0, UP_BLOCK)
    assert bgpd.calls == [("bgpd", "neighbors", {"peer": "10.30.0.206"})]


def test_admin_down_neighbor(bgpd: StubDaemons, clock: None, capsys: pytest.CaptureFixture[str]) -> None:
    bgpd.stop("bgpd")
    bgpd.start("bgpd", {"neighbors": lambda peer=None: [detail("10.30.0.7", "Idle", admin_down=True)]})
    ran = run_ctl(capsys, "bgp", "neighbors", "--run-dir", str(bgpd.run_dir))
    assert ran.out.splitlines()[1] == "  State:                      Idle (since 17:57:57), administratively down"


def test_unknown_neighbor(bgpd: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_ctl(capsys, "bgp", "neighbors", "10.9.9.9", "--run-dir", str(bgpd.run_dir))
    assert (ran.code, ran.out, ran.err) == (1, "", "tortiectl: tortie-bgpd: no peer 10.9.9.9\n")
    ran = run_ctl(capsys, "bgp", "neighbors", "10.9.9.8", "--run-dir", str(bgpd.run_dir))  # answered []
    assert (ran.code, ran.err) == (1, "tortiectl: tortie-bgpd has no peer 10.9.9.8\n")


def test_neighbors_json_and_none(bgpd: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_ctl(capsys, "bgp", "neighbors", "-o", "json", "--run-dir", str(bgpd.run_dir))
    assert ran.code == 0 and json.loads(ran.out) == [DOWN, UP]  # raw: the daemon's order and fields
    bgpd.stop("bgpd")
    bgpd.start("bgpd", {"neighbors": lambda peer=None: []})
    assert run_ctl(capsys, "bgp", "neighbors", "--run-dir", str(bgpd.run_dir)).out == "No BGP peers configured.\n"


def test_neighbors_without_bgpd(capsys: pytest.CaptureFixture[str]) -> None:
    with stub_daemons() as stubs:
        ran = run_ctl(capsys, "bgp", "--run-dir", str(stubs.run_dir), "neighbors")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == f"tortiectl: tortie-bgpd is not running (no socket at {stubs.socket('bgpd')}).\n"


# --------------------------------------------------------------------------------------------- rib

RIB_TABLE = [
    "PREFIX               NEXT HOP       FROM           BEST          AS PATH   ORIGIN       LOCAL PREF   MED"
    "   REASON",
    "192.168.25.0/26      10.30.0.206    10.30.0.206    yes           -         IGP          100          0"
    "     lowest MED",
    "192.168.25.0/26      10.30.0.1      10.30.0.1      no            65001     IGP          100          10"
    "    -",
    "192.168.105.128/26   10.30.1.66     10.30.1.66     yes (stale)   -         IGP          100          -"
    "     only route",
    "192.168.226.64/26    10.30.0.56     local          yes           -         INCOMPLETE   -            -"
    "     local route",
    "fd00:1::/122         fd00:30::206   fd00:30::206   yes           -         IGP          100          -"
    "     only route",
]


def test_loc_rib_table(bgpd: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_ctl(capsys, "bgp", "rib", "--run-dir", str(bgpd.run_dir))
    assert (ran.code, ran.err) == (0, "")
    assert ran.out.splitlines() == RIB_TABLE  # prefixes in address order, best first within a prefix
    assert bgpd.calls == [("bgpd", "rib", {})]


def test_rib_wide_shows_communities_and_reflection(bgpd: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_ctl(capsys, "bgp", "rib", "192.168.25.0/26", "-o", "wide", "--run-dir", str(bgpd.run_dir))
    assert ran.code == 0
    lines = ran.out.splitlines()
    assert lines[0].endswith("REASON       COMMUNITIES   LARGE COMMUNITIES   ORIGINATOR ID   CLUSTER LIST")
    assert lines[1].endswith("lowest MED   64512:100     64512:1:2           -               -")
    assert lines[2].endswith("-            -             -                   10.30.0.9       10.30.0.9 10.30.0.10")
    assert len(lines) == 3
    assert bgpd.calls == [("bgpd", "rib", {"prefix": "192.168.25.0/26"})]


def test_adj_rib_in_and_out(bgpd: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_ctl(capsys, "bgp", "rib", "--peer", "10.30.0.1", "--run-dir", str(bgpd.run_dir))
    assert [line.split() for line in ran.out.splitlines()] == [RIB_TABLE[0].split(), RIB_TABLE[2].split()]
    ran = run_ctl(capsys, "bgp", "rib", "--peer", "10.30.0.1", "--out", "--run-dir", str(bgpd.run_dir))
    assert ran.out.splitlines()[1].split()[:3] == ["192.168.226.64/26", "10.30.0.56", "local"]
    assert bgpd.calls == [("bgpd", "rib", {"peer": "10.30.0.1", "direction": "in"}),
                          ("bgpd", "rib", {"peer": "10.30.0.1", "direction": "out"})]


def test_rib_json_empty_and_usage(bgpd: StubDaemons, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run_ctl(capsys, "bgp", "rib", "-o", "json", "--run-dir", str(bgpd.run_dir))
    assert ran.code == 0 and json.loads(ran.out) == RIB
    ran = run_ctl(capsys, "bgp", "rib", "10.1.0.0/16", "--peer", "10.30.0.206", "--run-dir", str(bgpd.run_dir))
    assert (ran.code, ran.out) == (0, "No routes found for 10.1.0.0/16 received from 10.30.0.206.\n")
    calls = len(bgpd.calls)
    ran = run_ctl(capsys, "bgp", "rib", "--out", "--run-dir", str(bgpd.run_dir))
    assert ran.code == 2 and "--out needs --peer" in ran.err
    assert len(bgpd.calls) == calls  # refused before asking the daemon


def test_rib_rows_show_filtered_routes_with_the_rule() -> None:
    rows = rib_rows([
        {"prefix": "192.168.20.0/24", "next_hop": "10.77.0.10", "from": "10.77.0.10", "best": False,
         "filtered": True, "reason": "rejected by BGPFilter in importV4 rule 1", "as_path": "65001"},
        {"prefix": "192.168.21.0/24", "next_hop": "10.77.0.10", "from": "10.77.0.10", "best": True,
         "reason": "only route", "as_path": "65001"},
    ])
    assert [r[3] for r in rows] == ["filtered", "yes"]
    assert rows[0][-1] == "rejected by BGPFilter in importV4 rule 1"
