"""A feed delta planned through the index equals a full plan, and touches only the changed prefixes;
the desired routes as a view over the feed table equal the materialized plan."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_interface, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from felixd.delta import mode_counts, plan_delta
from felixd.feed_table import FeedTable
from felixd.plan import HostAddress, HostRoute, PlanInput, PlanNode, PlanPool, Workload
from felixd.plan_index import PlanIndex
from felixd.planned import PlannedRoutes
from felixd.state import IP_FORWARD, Op
from proto import prefix as pf
from proto.feed_wire import WireRoute, WireWithdraw

NODES = {"worker-1": "10.30.0.206/24", "worker-2": "10.30.0.56/24", "worker-3": "10.30.1.66/24"}
BLOCKS = {"worker-1": "192.168.226.64/26", "worker-2": "192.168.133.192/26", "worker-3": "192.168.97.192/26"}
# next hops: two nodes (one across the subnet boundary), a ToR, one unreachable, and this host itself
HOPS = [pf.parse_address(a) for a in ("10.30.0.56", "10.30.1.66", "10.30.0.1", "203.0.113.9", "10.30.0.206")]
# prefixes: inside the VXLAN CrossSubnet pool, inside a plain pool, outside every pool, and this host's block
PREFIXES = ([pf.parse(f"192.168.{i}.0/26") for i in range(12)] + [pf.parse(f"172.17.{i}.0/24") for i in range(6)]
            + [pf.parse(f"198.51.{i}.0/24") for i in range(6)] + [pf.parse(BLOCKS["worker-1"])])


def index(install_poolless: bool) -> PlanIndex:
    nodes = {n: PlanNode(n, ipv4=ip_interface(a), blocks=(ip_network(BLOCKS[n]),))  # type: ignore[arg-type]
             for n, a in NODES.items()}
    data = PlanInput(
        node="worker-1", nodes=nodes,
        pools=(PlanPool("vx", ip_network("192.168.0.0/16"), vxlan_mode="CrossSubnet"),
               PlanPool("plain", ip_network("172.17.0.0/16"))),
        workloads=(Workload(ip_network("192.168.226.65/32"), "cali1"),),
        interfaces=(HostAddress("eth0", ip_interface("10.30.0.206/24")),),
        host_routes=(HostRoute(pf.parse("0.0.0.0/0"), pf.parse_address("10.30.0.1"), "eth0"),),
        install_poolless=install_poolless)
    return PlanIndex(data)


changes = st.lists(st.lists(st.tuples(st.sampled_from(PREFIXES), st.one_of(st.none(), st.sampled_from(HOPS))),
                            min_size=1, max_size=8), min_size=1, max_size=10)


def frame(prefix: bytes, hop: bytes | None, seq: int) -> WireRoute | WireWithdraw:
    return WireRoute(seq, prefix, hop, 0, 100, 0, None) if hop is not None else WireWithdraw(seq, prefix)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(PREFIXES), st.sampled_from(HOPS), min_size=1), changes, st.booleans())
def test_delta_equals_a_full_plan(start: dict[bytes, bytes], batches: list[list[tuple[bytes, bytes | None]]],
                                  poolless: bool) -> None:
    idx = index(poolless)
    table = FeedTable()
    table.receive([frame(p, h, 0) for p, h in start.items()], {})
    full = idx.plan(table.routes)
    view = PlannedRoutes(idx, table, idx.local_routes(), {})
    desired = dataclasses.replace(full, routes=view)
    assert dict(view.items()) == full.routes and len(view) == len(full.routes)
    kernel = dict(full.routes)  # what the kernel holds: the ops of each delta applied to it
    modes = mode_counts(full.routes.values())
    for batch in batches:
        changed: dict[bytes, bytes | None] = {}
        table.receive([frame(p, h, i) for i, (p, h) in enumerate(batch)], changed)
        delta = plan_delta(changed, view, desired, 80, modes)
        if delta.needs_full:  # a VXLAN neighbour the last full plan did not have: the daemon replans
            full = idx.plan(table.routes)
            desired = dataclasses.replace(full, routes=view)
            kernel = dict(full.routes)
            modes = mode_counts(full.routes.values())
            continue
        assert {key for _op, key, _shape, _proto in delta.ops} <= set(changed)  # only the changed prefixes
        for op, key, shape, proto in delta.ops:
            assert proto == 80
            if op is Op.REPLACE:
                kernel[key] = shape  # type: ignore[assignment]
            else:
                del kernel[key]
        full = idx.plan(table.routes)
        assert dict(view.items()) == full.routes
        assert all(view.get(k) is s for k, s in full.routes.items())
        assert {k: s.signature(k[0]) for k, s in kernel.items()} == \
            {k: s.signature(k[0]) for k, s in full.routes.items()}  # type: ignore[index]
        assert +modes == mode_counts(full.routes.values())
        assert IP_FORWARD in full.sysctls


def test_decisions_are_made_once_per_pool_and_next_hop() -> None:
    idx = index(True)
    learned = {pf.parse(f"192.168.{i}.0/26"): HOPS[i % 2] for i in range(200)}
    idx.plan(learned)
    assert len(idx._decided) == 2  # one per (pool, next hop)
    assert len(idx._decisions) == 2  # the pool /16 decides with two octets: one key per next hop
    shapes = {id(s) for s in idx.plan(learned).routes.values()}
    assert len(shapes) <= 4  # two remote shapes, the local blackhole and the workload: shared objects


def test_the_view_follows_the_feed_table_through_a_compaction() -> None:
    """After most of a big table is withdrawn the feed table moves to a smaller dict; the desired-route
    view reads through the table, so it follows, and a delta still plans against the right routes."""
    idx = index(True)
    table = FeedTable()
    prefixes = [pf.parse(f"198.{18 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32") for i in range(6000)]
    table.receive([frame(p, HOPS[2], i) for i, p in enumerate(prefixes)], {})
    view = PlannedRoutes(idx, table, idx.local_routes(), {})
    before = table.routes
    changed: dict[bytes, bytes | None] = {}
    table.receive([frame(p, None, i) for i, p in enumerate(prefixes[100:])], changed)
    assert table.routes is not before and len(table.routes) == 100  # compacted
    desired = dataclasses.replace(idx.plan(table.routes), routes=view)
    assert dict(view.items()) == idx.plan(table.routes).routes
    delta = plan_delta(changed, view, desired, 80)
    assert len(delta.ops) == 5900 and {op[0] for op in delta.ops} == {Op.DELETE}
