"""felixd's kernel side against a real kernel: route shapes, both write paths, ownership, drift, restart."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from felixd.reconcile import Reconciler, ReconcileResult, resync_loop
from felixd.state import (
    DesiredState,
    FdbEntry,
    IpipDevice,
    Mode,
    NatOutgoing,
    Neighbour,
    RouteEntry,
    RouteKey,
    RouteKind,
    RouteShape,
    Sysctl,
    VxlanDevice,
    key_parts,
    route,
    route_map,
)
from lab.netns import NetnsSet
from proto import prefix as pf
from tests.conftest import require_root, require_tools
from tests.kernel.felix_support import PREFIX, ChangeWitness, Host, route_lines, routes_json, two_hosts

VTEP_MAC_A = "66:00:00:00:00:01"
VTEP_MAC_C = "66:00:00:00:00:03"


def routes(*rs: RouteEntry) -> dict[RouteKey, RouteShape]:
    return route_map(*rs)


GW2, GW3 = pf.parse_address("172.31.0.2"), pf.parse_address("172.31.0.3")


def plan(host: Host) -> DesiredState:
    """One route of every shape felixd programs (ARCHITECTURE.md), IPv4 and IPv6."""
    return DesiredState(
        routes=routes(
            route("10.244.1.0/26", gateway="172.31.0.2", dev=host.uplink, mode=Mode.DIRECT),
            route("10.244.0.0/26", kind=RouteKind.BLACKHOLE, mode=Mode.LOCAL_BLOCK),
            route("10.244.0.5/32", dev="cali1", scope_link=True, mode=Mode.WORKLOAD),
            route("10.244.2.0/26", gateway="10.244.2.1", dev="vxlan.calico", onlink=True, mode=Mode.VXLAN),
            route("fd00:244::/122", kind=RouteKind.BLACKHOLE, mode=Mode.LOCAL_BLOCK),
            route("fd00:244:0:1::/122", gateway="fd00:31::2", dev=host.uplink, mode=Mode.DIRECT),
        ),
        vxlan=VxlanDevice(local=host.address, mac=VTEP_MAC_A, address="10.244.0.1", mtu=1450,
                          parent=host.uplink),
        neighbours=frozenset({Neighbour("vxlan.calico", "10.244.2.1", VTEP_MAC_C)}),
        fdb=frozenset({FdbEntry("vxlan.calico", VTEP_MAC_C, "172.31.0.3")}),
        nat=NatOutgoing(nat_pools_v4=frozenset({"10.244.0.0/16"}), all_pools_v4=frozenset({"10.244.0.0/16"})),
        sysctls=frozenset({Sysctl("net/ipv4/conf/cali1/proxy_arp", "1"), Sysctl("net/ipv4/ip_forward", "1")}),
    )


@pytest.fixture
def nss() -> Iterator[NetnsSet]:
    require_root()
    require_tools("ip", "nft", "bridge")
    with NetnsSet(prefix=PREFIX) as s:
        yield s


def prepare(host: Host) -> None:
    host.ns.ip("addr", "add", "fd00:31::1/64", "dev", host.uplink, "nodad")
    host.ns.ip("link", "add", "cali1", "type", "veth", "peer", "name", "cali1p")
    host.ns.ip("link", "set", "cali1", "up")
    host.ns.ip("link", "set", "cali1p", "up")


@pytest.fixture
async def host(nss: NetnsSet) -> AsyncIterator[Host]:
    a, _b = two_hosts(nss)
    prepare(a)
    yield a


async def test_every_route_shape(host: Host) -> None:
    async with Reconciler(host.ns.name) as rec:
        res = await rec.reconcile(plan(host))
    assert res.route_errors == [] and res.sysctl_errors == []
    assert res.routes_replaced == 6
    assert route_lines(host.ns, "-4", "proto", "80") == sorted([
        "10.244.1.0/26 via 172.31.0.2 dev eth0",
        "blackhole 10.244.0.0/26",
        "10.244.0.5 dev cali1 scope link",
        "10.244.2.0/26 via 10.244.2.1 dev vxlan.calico onlink",
    ])
    v6 = route_lines(host.ns, "-6", "proto", "80")
    assert "blackhole fd00:244::/122 dev lo metric 1024 pref medium" in v6
    assert "fd00:244:0:1::/122 via fd00:31::2 dev eth0 metric 1024 pref medium" in v6
    # every route carries felixd's protocol
    assert sum(r.get("protocol") == "80" for r in routes_json(host.ns, "table", "all")) == 6

    link = host.ns.ip("-d", "-j", "link", "show", "vxlan.calico").stdout
    import json
    (info,) = json.loads(link)
    data = info["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data["local"], data["learning"]) == (4096, 4789, host.address, False)
    assert info["mtu"] == 1450 and info["address"] == VTEP_MAC_A and "UP" in info["flags"]
    assert "10.244.0.1/32" in host.ns.ip("-4", "addr", "show", "dev", "vxlan.calico").stdout
    assert "10.244.2.1 lladdr 66:00:00:00:00:03 PERMANENT" in host.ns.ip("neigh", "show", "dev", "vxlan.calico").stdout
    fdb = host.ns.exec("bridge", "fdb", "show", "dev", "vxlan.calico").stdout
    assert "66:00:00:00:00:03 dst 172.31.0.3 self permanent" in fdb
    assert host.ns.exec("sysctl", "-n", "net.ipv4.conf.cali1.proxy_arp").stdout.strip() == "1"
    assert host.ns.exec("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    nft = host.ns.exec("nft", "list", "table", "inet", "tortie").stdout
    assert "10.244.0.0/16" in nft and "masquerade" in nft


async def test_ipip_shape_or_clear_report(host: Host) -> None:
    """IPIP routes need the kernel's ipip module; without it felixd reports once and programs the rest."""
    desired = dataclasses.replace(
        plan(host), ipip=IpipDevice(address="10.244.0.1", mtu=1480),
        routes={**plan(host).routes, **routes(
            route("10.244.3.0/26", gateway="172.31.0.2", dev="tunl0", onlink=True, mode=Mode.IPIP))})
    async with Reconciler(host.ns.name) as rec:
        res = await rec.reconcile(desired)
        res2 = await rec.reconcile(desired)
        if rec.device_stats.ipip_unsupported:
            assert rec.device_stats.ipip_unsupported_reports == 1  # said once, not on every resync
            assert res.route_errors == [] and res2.route_errors == []
            assert res.routes_unsupported == res2.routes_unsupported == ["10.244.3.0/26"]
            assert res.routes_replaced == 6 and res2.routes_replaced == 0
            assert "blackhole 10.244.0.0/26" in route_lines(host.ns, "-4", "proto", "80")
            pytest.skip("this kernel has no IP-in-IP: the IPIP route shape is tested in the VM tier")
    assert res.route_errors == []
    assert "10.244.3.0/26 via 172.31.0.2 dev tunl0 onlink" in route_lines(host.ns, "-4", "proto", "80")


def many_routes(host: Host, n: int, gw: str = "172.31.0.2") -> list[RouteEntry]:
    out = []
    for i in range(n):
        block = f"10.{100 + i // 1024}.{(i // 4) % 256}.{(i % 4) * 64}/26"
        match i % 4:
            case 0:
                out.append(route(block, gateway=gw, dev=host.uplink))
            case 1:
                out.append(route(block, kind=RouteKind.BLACKHOLE))
            case 2:
                out.append(route(block, gateway="10.244.2.1", dev="vxlan.calico", onlink=True))
            case _:
                out.append(route(block.replace("/26", "/32").replace(".64/", ".65/").replace(".128/", ".129/")
                                 .replace(".192/", ".193/"), dev="cali1", scope_link=True))
    out.append(route("fd00:99::/122", kind=RouteKind.BLACKHOLE))
    out.append(route("fd00:98::/122", gateway="fd00:31::2", dev=host.uplink, metric=100))
    return out


async def test_bulk_and_incremental_paths_make_identical_state(nss: NetnsSet) -> None:
    a, b = two_hosts(nss)
    hosts = (a, b)
    for h in hosts:
        prepare(h)
    # both hosts get the same plan, so they need the same uplink address on eth0
    base = plan(a)
    first = many_routes(a, 400)
    # second plan: every fifth route removed (all four shapes), direct routes moved, twenty new
    second = [RouteEntry(r.key, dataclasses.replace(r.shape, gateway=GW3)) if r.shape.gateway == GW2 else r
              for i, r in enumerate(first) if i % 5 != 1] + many_routes(a, 420)[400:420]
    gone = {r.key for r in first} - {r.key for r in second}
    changed = {r.key for r in second} - {r.key for r in first} | {
        r.key for r in second if r.shape.gateway == GW3}
    results = []
    for h, path in ((a, "bulk"), (b, "incremental")):
        async with Reconciler(h.ns.name, bulk_threshold=10**9) as rec:
            s1 = dataclasses.replace(base, routes={**base.routes, **routes(*first)},
                                     vxlan=dataclasses.replace(base.vxlan, local=h.address))
            r1 = await rec.reconcile(s1, path=path)  # type: ignore[arg-type]
            assert r1.path == path and r1.route_errors == []
            after_first = (route_lines(h.ns, "-4", "table", "all"), route_lines(h.ns, "-6", "table", "all"))
            s2 = dataclasses.replace(s1, routes={**base.routes, **routes(*second)})
            r2 = await rec.reconcile(s2, path=path)  # type: ignore[arg-type]
            assert r2.route_errors == [] and r2.routes_deleted == len(gone)
            results.append((after_first, (route_lines(h.ns, "-4", "table", "all"),
                                          route_lines(h.ns, "-6", "table", "all")), r1.routes_replaced,
                            r2.routes_replaced))
    # the namespaces differ only by eth0's own address: drop the kernel's routes for addresses
    def strip(state: tuple[list[str], list[str]]) -> tuple[list[str], ...]:
        return tuple([ln for ln in lines if "proto kernel" not in ln] for lines in state)
    (a1, a2, ar1, ar2), (b1, b2, br1, br2) = results
    for x, y in ((strip(a1), strip(b1)), (strip(a2), strip(b2))):
        for fam in (0, 1):
            assert (sorted(set(x[fam]) - set(y[fam])), sorted(set(y[fam]) - set(x[fam]))) == ([], [])
            assert x[fam] == y[fam]
    assert (ar1, ar2) == (br1, br2) == (len(first) + 6, len(changed))
    assert {pf.text(key_parts(k)[0])[-3:] for k in gone} >= {"/26", "/32"} and len(gone) > 80
    assert sum("proto 80" in ln for ln in a2[0]) >= 300


FOREIGN = [
    # same prefixes as felixd's, other protocols / metrics / tables
    ("route", "add", "10.244.1.0/26", "via", "172.31.0.2", "dev", "eth0", "proto", "static", "metric", "50"),
    ("route", "add", "10.244.0.0/26", "via", "172.31.0.2", "dev", "eth0", "proto", "boot", "metric", "10"),
    ("route", "add", "10.244.1.0/26", "via", "172.31.0.2", "dev", "eth0", "proto", "81", "table", "100"),
    ("route", "add", "10.244.0.5/32", "dev", "eth0", "proto", "bird", "table", "200"),
    ("route", "add", "192.0.2.0/24", "via", "172.31.0.2", "proto", "zebra"),
    ("route", "add", "blackhole", "198.51.100.0/24", "proto", "81"),
    ("route", "add", "10.244.2.0/26", "via", "172.31.0.2", "dev", "eth0", "proto", "80", "table", "300"),
    ("-6", "route", "add", "fd00:244::/122", "via", "fd00:31::9", "dev", "eth0", "proto", "static", "metric", "7"),
    ("-6", "route", "add", "blackhole", "fd00:244:0:1::/122", "proto", "81", "table", "100"),
]


def foreign_snapshot(host: Host) -> list[str]:
    lines = route_lines(host.ns, "-4", "table", "all") + route_lines(host.ns, "-6", "table", "all")
    # the kernel's own routes come and go with devices and addresses: not part of the comparison
    return sorted(ln for ln in lines if "proto kernel" not in ln and ("proto 80" not in ln or "table 300" in ln))


async def test_foreign_routes_survive_every_operation(host: Host) -> None:
    for args in FOREIGN:
        host.ns.ip(*args)
    before = foreign_snapshot(host)
    assert len(before) == len(FOREIGN)
    p = plan(host)
    # felixd's table is 254; a proto-80 route in table 300 is still felixd's by protocol: the plan names it
    # there so it stays; every other foreign route must come through untouched
    keep300 = route("10.244.2.0/26", gateway="172.31.0.2", dev="eth0", table=300)
    p = dataclasses.replace(p, routes={**p.routes, keep300.key: keep300.shape})
    big = dataclasses.replace(p, routes={**p.routes, **routes(*many_routes(host, 200))})
    async with Reconciler(host.ns.name) as rec:
        for desired, path in ((p, "incremental"), (big, "bulk"), (p, "bulk"), (big, "incremental"),
                              (p, "auto")):
            res = await rec.reconcile(desired, path=path)  # type: ignore[arg-type]
            assert res.route_errors == []
            assert foreign_snapshot(host) == before, (path, res)
        deleted = await rec.apply_routes(delete=list(p.routes))
        assert deleted.route_errors == [] and deleted.routes_deleted == len(p.routes)
        assert foreign_snapshot(host) == [ln for ln in before if "table 300" not in ln]
        empty = await rec.reconcile(DesiredState())
        assert empty.route_errors == []
    assert foreign_snapshot(host) == [ln for ln in before if "table 300" not in ln]
    assert route_lines(host.ns, "-4", "proto", "80") == []
    assert "vxlan.calico" not in host.ns.ip("link", "show").stdout


async def test_drift_is_repaired(host: Host) -> None:
    p = plan(host)
    async with Reconciler(host.ns.name) as rec:
        await rec.reconcile(p)
        host.ns.ip("route", "del", "10.244.1.0/26", "proto", "80")
        host.ns.ip("route", "replace", "10.244.2.0/26", "via", "172.31.0.9", "dev", "eth0", "proto", "80")
        host.ns.ip("route", "add", "10.77.0.0/26", "via", "172.31.0.2", "dev", "eth0", "proto", "80")
        # a route someone else put on felixd's own device is felixd's to remove; on eth0 it would stay
        host.ns.ip("route", "add", "10.66.0.0/26", "dev", "vxlan.calico", "proto", "static")
        host.ns.ip("route", "add", "10.65.0.0/26", "dev", "eth0", "proto", "static")
        host.ns.ip("neigh", "del", "10.244.2.1", "dev", "vxlan.calico")
        host.ns.exec("sysctl", "-w", "net.ipv4.conf.cali1.proxy_arp=0")
        host.ns.ip("link", "set", "vxlan.calico", "mtu", "1400")
        res = await rec.reconcile(p)
    assert (res.routes_replaced, res.routes_deleted) == (2, 2)
    assert (res.neighbour_changes, res.sysctl_changes, res.device_changes) == (1, 1, 1)
    lines = route_lines(host.ns, "-4", "proto", "80")
    assert "10.244.1.0/26 via 172.31.0.2 dev eth0" in lines
    assert "10.244.2.0/26 via 10.244.2.1 dev vxlan.calico onlink" in lines
    assert not any(ln.startswith("10.77.0.0") for ln in lines)
    everything = route_lines(host.ns, "-4")
    assert not any(ln.startswith("10.66.0.0") for ln in everything)
    assert "10.65.0.0/26 dev eth0 proto static scope link" in everything
    assert "mtu 1450" in host.ns.ip("link", "show", "vxlan.calico").stdout


async def test_drift_is_repaired_on_kernel_events(host: Host) -> None:
    """No timer: the kernel's own notification of the deletion makes felixd put the route back."""
    p = plan(host)
    results: list[ReconcileResult] = []
    async with Reconciler(host.ns.name) as rec:
        await rec.reconcile(p)
        task = asyncio.create_task(resync_loop(rec, lambda: p, interval=3600, on_result=results.append))
        try:
            await asyncio.sleep(0)  # let the loop subscribe before the kernel changes
            host.ns.ip("route", "del", "10.244.1.0/26", "proto", "80")
            host.ns.ip("route", "del", "blackhole", "10.244.0.0/26", "proto", "80")
            deadline = time.monotonic() + 10
            while not any(r.routes_replaced == 2 for r in results) and time.monotonic() < deadline:
                await asyncio.wait_for(_next_result(results), timeout=max(0.01, deadline - time.monotonic()))
            assert any(r.routes_replaced == 2 for r in results), results
            lines = route_lines(host.ns, "-4", "proto", "80")
            assert "10.244.1.0/26 via 172.31.0.2 dev eth0" in lines and "blackhole 10.244.0.0/26" in lines
            # felixd's own repair is not announced to it (its writes carry its port id, which the event
            # socket's filter drops in the kernel): no second resync follows
            seen = len(results)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(_next_result(results, seen), timeout=0.5)
            assert len(results) == seen and results[-1].routes_replaced == 2
            # a foreign route outside the main table cannot change how next hops resolve: nothing happens
            host.ns.ip("route", "add", "192.0.2.0/24", "via", "172.31.0.2", "proto", "static", "table", "100")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(_next_result(results, seen), timeout=0.5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _next_result(results: list[ReconcileResult], seen: int | None = None) -> None:
    """Wait (on the event loop, no sleeping thread) until another result is appended."""
    start = len(results) if seen is None else seen
    while len(results) <= start:
        await asyncio.sleep(0.01)


async def test_restart_over_unchanged_kernel_changes_nothing(host: Host) -> None:
    desired = dataclasses.replace(plan(host), routes={**plan(host).routes, **routes(*many_routes(host, 300))})
    async with Reconciler(host.ns.name) as rec:
        first = await rec.reconcile(desired)
    assert first.route_errors == [] and first.path == "bulk"
    witness = ChangeWitness(host.ns.name)
    try:
        witness.drain()
        async with Reconciler(host.ns.name) as rec:  # a new felixd process over the same kernel
            again = await rec.reconcile(desired)
            assert again.changes == 0, again
            assert witness.drain() == []  # the kernel saw no write at all
            # the witness does see a real change: felixd would not get away with a silent rewrite
            await rec.apply_routes(replace=[route("10.88.0.0/26", kind=RouteKind.BLACKHOLE)])
            assert 24 in witness.drain()  # RTM_NEWROUTE
    finally:
        witness.close()


async def test_mode_switch_direct_vxlan_and_back_leaves_nothing_behind(host: Host) -> None:
    blocks = [f"10.244.{i}.0/26" for i in range(1, 41)]
    direct = DesiredState(routes=routes(*[route(b, gateway="172.31.0.2", dev="eth0", mode=Mode.DIRECT)
                                           for b in blocks]))
    vx = plan(host)
    vxlan = dataclasses.replace(vx, routes=routes(*[
        route(b, gateway="10.244.2.1", dev="vxlan.calico", onlink=True, mode=Mode.VXLAN) for b in blocks]),
        nat=NatOutgoing(), sysctls=frozenset())
    async with Reconciler(host.ns.name) as rec:
        for name, desired in (("direct", direct), ("vxlan", vxlan), ("direct", direct), ("vxlan", vxlan)):
            res = await rec.reconcile(desired)
            assert res.route_errors == []
            lines = route_lines(host.ns, "-4", "proto", "80")
            assert len(lines) == len(blocks), (name, lines)
            if name == "vxlan":
                assert all("dev vxlan.calico onlink" in ln for ln in lines)
                assert "PERMANENT" in host.ns.ip("neigh", "show", "dev", "vxlan.calico").stdout
            else:
                assert all("via 172.31.0.2 dev eth0" in ln for ln in lines)
                assert "vxlan.calico" not in host.ns.ip("link", "show").stdout
                assert host.ns.ip("neigh", "show", "10.244.2.1").stdout.strip() == ""
            assert (await rec.reconcile(desired)).changes == 0


async def test_bulk_path_reports_each_refused_route_and_applies_the_rest(host: Host) -> None:
    good = [r for r in many_routes(host, 60) if r.shape.dev != "vxlan.calico"]  # no VXLAN device here
    bad = [route("10.200.0.0/26", gateway="192.0.2.1", dev="eth0"),  # gateway not on-link: ENETUNREACH
           route("10.200.1.0/26", gateway="172.31.0.2", dev="nosuchdev")]  # unknown device
    async with Reconciler(host.ns.name) as rec:
        res = await rec.apply_routes(replace=[*good[:20], bad[0], *good[20:], bad[1]], path="bulk")
    assert sorted((e.dst, e.errno) for e in res.route_errors) == [
        ("10.200.0.0/26", errno.ENETUNREACH), ("10.200.1.0/26", errno.ENODEV)]
    assert res.routes_replaced == len(good)
    assert len(route_lines(host.ns, "-4", "proto", "80")) + len(route_lines(host.ns, "-6", "proto", "80")) == len(good)


async def test_a_foreign_route_under_the_same_key_is_never_overwritten(host: Host) -> None:
    """Replace would silently take over a static route with the same prefix, table and metric."""
    host.ns.ip("route", "add", "10.244.1.0/26", "via", "172.31.0.2", "dev", "eth0", "proto", "static")
    host.ns.ip("-6", "route", "add", "blackhole", "fd00:244::/122", "proto", "static")  # metric 1024 too
    p = plan(host)
    async with Reconciler(host.ns.name) as rec:
        res = await rec.reconcile(p)
        assert sorted(res.routes_conflicting) == ["10.244.1.0/26", "fd00:244::/122"]
        assert res.routes_replaced == len(p.routes) - 2 and res.route_errors == []
        # the feed path remembers the collision too
        moved = route("10.244.1.0/26", gateway="172.31.0.3", dev="eth0")
        delta = await rec.apply_routes(replace=[moved])
        assert delta.routes_conflicting == ["10.244.1.0/26"] and delta.changes == 0
    assert "10.244.1.0/26 via 172.31.0.2 dev eth0 proto static" in route_lines(host.ns, "-4")
    assert any(ln.startswith("blackhole fd00:244::/122") and "proto static" in ln
               for ln in route_lines(host.ns, "-6"))


async def test_dump_fast_path_equals_attribute_walk(host: Host) -> None:
    """The per-shape struct parser reads exactly what the attribute-by-attribute reference reads."""
    for args in FOREIGN:
        host.ns.ip(*args)
    host.ns.ip("route", "add", "10.250.0.0/24", "proto", "static", "nexthop", "via", "172.31.0.2", "dev", "eth0",
               "nexthop", "via", "172.31.0.3", "dev", "eth0")  # multipath
    host.ns.ip("-6", "route", "add", "::ffff:0.0.0.0/96", "via", "fd00:31::2", "dev", "eth0")  # ::a.b.c.d text
    desired = dataclasses.replace(plan(host), routes={**plan(host).routes, **routes(*many_routes(host, 300))})
    async with Reconciler(host.ns.name) as rec:
        await rec.reconcile(desired)
        links = await rec.routes.links()
        names = {i: n for n, i in links.items()}
        for family in (socket.AF_INET, socket.AF_INET6):
            def dump(fast: bool, family: int = family) -> list[object]:
                return list(rec.routes.bulk.dump_routes(family, None, names, fast=fast))

            fast = await rec.worker.acall(dump, True)
            slow = await rec.worker.acall(dump, False)
            assert fast == slow and len(fast) > (300 if family == socket.AF_INET else 5)
    dumped = {r[0] for r in fast + slow}
    assert pf.parse("::ffff:0.0.0.0/96") in dumped  # bytes: no text spelling to get wrong
