"""Scenario: scale sanity, the daemon sends 100,000 routes.

BIRD (2 and 1.6) originates them from a static protocol; FRR redistributes them from its kernel
table (one `ip -batch` into the daemon's namespace). GoBGP takes bulk input only through its gRPC API
(its CLI costs ~10 ms a route), so a BIRD 2 on a second address of the daemon's host originates them
and GoBGP learns them over eBGP and passes them on to tortie. tortie must hold every one, answer
`status` within a second all along, and keep the session Established (keepalives on time) on both sides.
The routes are /32s inside an extra pool, 100.64.0.0/10, since tortie only takes prefixes in a pool.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import pytest

from lab.daemons import Bird2, Daemon, DaemonNeighbor, Frr, Route, poll
from tests.interop.interop_support import DAEMONS, Fabric, both_views, pair, peer_cluster, require_runner, v4

pytestmark = [pytest.mark.root, pytest.mark.daemons]

N = 100_000
BASE = int(ipaddress.IPv4Address("100.64.0.0"))
FEEDER, FEEDER_AS = 11, 65010  # GoBGP's source of routes: BIRD 2 on 10.77.0.11, the daemon's host
SCALE_POOL = {"kind": "IPPool", "metadata": {"name": "scale"},
              "spec": {"cidr": "100.64.0.0/10", "blockSize": 26, "vxlanMode": "Always"}}


def prefixes() -> list[str]:
    return [f"{ipaddress.IPv4Address(BASE + i)}/32" for i in range(N)]


def scale_cluster() -> str:
    import yaml

    return peer_cluster() + "---\n" + yaml.safe_dump({"apiVersion": "projectcalico.org/v3", **SCALE_POOL},
                                                     sort_keys=False)


@pytest.mark.interop("scale-100k")
@pytest.mark.parametrize("kind", DAEMONS)
def test_scale(kind: str, fabric: Fabric, work: Path) -> None:
    if kind == "gobgp":
        scale_gobgp(fabric, work)
        return
    frr = kind == "frr"
    routes = [] if frr else [Route(p) for p in prefixes()]
    if frr:
        # into the kernel before zebra starts: zebra then reads them in its initial dump (100k routes
        # added under a running zebra overflow its netlink socket and it misses some)
        batch = work / "routes.batch"
        batch.write_text("".join(f"route add blackhole {pfx}\n" for pfx in prefixes()))
        fabric.hosts["d"].exec("ip", "-batch", str(batch), timeout=120)
    try:
        scale_run(kind, fabric, work, routes)
    finally:
        if frr:
            fabric.hosts["d"].exec("ip", "route", "flush", "type", "blackhole", check=False, timeout=120)


def scale_gobgp(fabric: Fabric, work: Path) -> None:
    """The feeding BIRD and gobgpd share the namespace: each listens on its own address only. Their session
    is multihop: BIRD stays Idle on a direct neighbor that is an address of its own host."""
    require_runner("bird2")
    host = fabric.hosts["d"]
    host.ip("addr", "add", f"{v4(FEEDER)}/24", "dev", "eth0")
    feeder = Bird2(host, work / "bird2-feeder", router_id=v4(FEEDER), asn=FEEDER_AS,
                   neighbors=[DaemonNeighbor(v4(10), 64512, local_address=v4(FEEDER), multihop=True)],
                   routes=[Route(p) for p in prefixes()], owner=fabric.nsset, strict_bind=True)
    try:
        scale_run("gobgp", fabric, work, [], feeder=feeder)
    finally:
        feeder.stop()
        host.ip("addr", "del", f"{v4(FEEDER)}/24", "dev", "eth0", check=False)


def scale_run(kind: str, fabric: Fabric, work: Path, routes: list[Route], feeder: Daemon | None = None) -> None:
    frr = kind == "frr"
    neighbor = DaemonNeighbor(v4(1), 64512, passive=True)
    extra: dict[str, Any] = {}
    if feeder is not None:
        extra = {"extra_neighbors": [DaemonNeighbor(v4(FEEDER), FEEDER_AS, multihop=True)],
                 "listen_addresses": [v4(10)]}
    with (pair(kind, fabric, work, scale_cluster(), neighbor, routes, start_tortie=False, **extra) as p,
          both_views(p.tortie, p.daemon, *([feeder] if feeder is not None else []))):
        t, d = p.tortie, p.daemon
        if feeder is not None:
            feeder.start(timeout=60)
        t0 = time.monotonic()
        # only until its control socket exists: the latency of every answer after that is measured
        t.start(wait=False)
        if frr:
            assert isinstance(d, Frr)
            d.configure(f"router bgp {d.asn}", "address-family ipv4 unicast", "redistribute kernel")
        worst = 0.0
        states: list[str] = []

        def all_in() -> bool:
            # from tortie's start on: the table arrives as soon as the session is up
            nonlocal worst
            s0 = time.monotonic()
            status = t.call("status", timeout=5)
            worst = max(worst, time.monotonic() - s0)
            state = status["peers"][0]["state"]
            if states or state == "Established":
                states.append(state)
            return int(t.neighbor(v4(10))["prefixes"]["received"]) >= N

        assert poll(all_in, 120, 0.5), f"tortie holds {t.neighbor(v4(10))['prefixes']} after 300 s"
        took = time.monotonic() - t0
        # a few more answers with the table in place
        for _ in range(5):
            all_in()
        nb = t.neighbor(v4(10))
        assert nb["prefixes"]["received"] == N, nb["prefixes"]
        assert not nb["prefixes"]["rejected"], nb["prefixes"]
        assert states and set(states) == {"Established"}, states
        assert worst < 1.0, f"status took {worst:.2f} s at worst"
        assert d.established(v4(1))
        sample = f"{ipaddress.IPv4Address(BASE + N - 1)}/32"
        best = [row for row in t.rib(prefix=sample) if row["best"]]
        assert best and best[0]["from"] == v4(10), best
        if feeder is not None:
            assert d.established(v4(FEEDER)) and feeder.established(v4(10))
            # through GoBGP (iBGP to tortie, so it adds no AS) from the feeder, next hop unchanged
            assert best[0]["as_path"] == str(FEEDER_AS) and best[0]["next_hop"] == v4(FEEDER), best
        assert not nb["last_notification_sent"] and not nb["last_notification_received"], nb
        print(f"{kind}: {N} routes in tortie after {took:.1f} s; status worst {worst * 1000:.0f} ms")
