"""The desired routes without a copy of the table: a view over the learned routes through the index.

A learned route's shape is a function of its prefix and next hop under the current `PlanIndex`, and
the feed table already holds every (prefix, next hop). So between full syncs felixd does not keep a
second per-route dict of desired shapes: `PlannedRoutes` answers `get(key)` by asking the index
(one cached decision), and adds this host's own routes (blackholes, workloads) and, before the first
snapshot, the routes a previous felixd left (`carry`). That halves felixd's per-route memory.

The view follows the feed table as it changes. A full sync compares the kernel with it from a
worker thread, so the daemon keeps the table still meanwhile (the feed client holds what arrives);
`PlanIndex.plan` makes a materialized plan for tests and tools.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from felixd.feed_table import FeedTable
from felixd.plan_index import PlanIndex
from felixd.state import RouteKey, RouteShape
from proto.prefix import Address, Prefix


class PlannedRoutes(Mapping[RouteKey, RouteShape]):
    def __init__(self, index: PlanIndex, table: FeedTable, local: dict[RouteKey, RouteShape],
                 carry: Mapping[RouteKey, RouteShape]) -> None:
        self.index = index
        self.table = table  # its `routes` dict may be replaced (compacted): always read through it
        self.local = local
        self.carry = carry  # emptied (not replaced) when carrying stops

    @property
    def learned(self) -> Mapping[Prefix, Address]:
        return self.table.routes

    def shape(self, prefix: Prefix, next_hop: Address | None) -> RouteShape | None:
        """The shape a learned route with this next hop has (None: not programmed)."""
        if next_hop is None or next_hop in self.index.own_addresses or prefix in self.local:
            return None
        return self.index.decide(prefix, next_hop)[0]

    def get(self, key: RouteKey, default: RouteShape | None = None) -> RouteShape | None:  # type: ignore[override]
        shape = self.local.get(key)
        if shape is not None:
            return shape
        nh = self.learned.get(key)  # type: ignore[call-overload]  # a tuple key is never learned
        if nh is not None and nh not in self.index.own_addresses:
            shape = self.index.decide(key, nh)[0]  # type: ignore[arg-type]
            if shape is not None:
                return shape
        return self.carry.get(key, default) if self.carry else default

    def __getitem__(self, key: RouteKey) -> RouteShape:
        shape = self.get(key)
        if shape is None:
            raise KeyError(key)
        return shape

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def items(self) -> Iterator[tuple[RouteKey, RouteShape]]:  # type: ignore[override]
        yield from self.local.items()
        local, own, decide = self.local, self.index.own_addresses, self.index.decide
        for prefix, nh in self.learned.items():
            if prefix in local or nh in own:
                continue
            shape = decide(prefix, nh)[0]
            if shape is not None:
                yield prefix, shape
        for key, shape in self.carry.items():
            if key not in local and self.get(key) is shape:
                yield key, shape

    def __iter__(self) -> Iterator[RouteKey]:
        return (key for key, _shape in self.items())

    def values(self) -> Iterator[RouteShape]:  # type: ignore[override]
        return (shape for _key, shape in self.items())

    def __len__(self) -> int:
        return sum(1 for _ in self.items())
