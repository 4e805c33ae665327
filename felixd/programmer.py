"""Keeps the kernel equal to the plan as the cluster model, the host and the learned routes change.

Three inputs change at different rates, and each has its own cost:

- the cluster model (a file reload) and the host's network (netlink events, the periodic check)
  change rarely: they rebuild the planner's indexes (`PlanIndex`) and are followed by a full sync;
- the learned routes change all the time: a feed delta plans just the changed prefixes through the
  index and writes just their difference (`plan_delta`, `Reconciler.apply_ops`): O(changes), no
  kernel read, no rebuild;
- someone else touching a route felixd owns (a netlink event) is repaired by rewriting that route.

A full sync (plan everything, read the kernel, write the difference) runs at start, at the end of a
feed snapshot, after a model or host change, on the periodic check and on demand.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Mapping

from felixd.delta import mode_counts, plan_delta
from felixd.feed_table import FeedTable
from felixd.host import HostState
from felixd.inputs import plan_input
from felixd.metrics import FelixMetrics
from felixd.plan_index import PlanIndex
from felixd.plan_input import PlanInput
from felixd.planned import PlannedRoutes
from felixd.reconcile import Reconciler, ReconcileResult
from felixd.state import DesiredState, Mode, Op, RouteKey, RouteOp, RouteShape
from proto import prefix as pf
from proto.prefix import Address, Prefix
from proto.resources import ClusterModel

log = logging.getLogger("tortie.felix")


class Programmer:
    def __init__(self, reconciler: Reconciler, node: str, metrics: FelixMetrics, *,
                 install_poolless: bool = False) -> None:
        self.reconciler = reconciler
        self.node = node
        self.metrics = metrics
        self.install_poolless = install_poolless
        self.model: ClusterModel | None = None
        self.host: HostState | None = None
        self.index: PlanIndex | None = None
        self.desired: DesiredState | None = None
        self.planned: PlannedRoutes | None = None  # desired.routes between full syncs
        self.modes: Counter[Mode] = Counter()
        self.last_result: ReconcileResult | None = None
        self.last_sync: float | None = None
        # Until the feed's first snapshot (or its stale time), what a previous felixd left is kept: its
        # routes (`carry`, read at start) and its neighbour and FDB entries. A felixd restart over an
        # unchanged kernel must not delete and re-add them.
        self.carrying = True
        self.carry_expired = False  # set when the stale time ran out before a snapshot came
        self.carry: dict[RouteKey, RouteShape] = {}
        self.counts: Counter[str] = Counter()  # index builds, host reads, deltas, repairs (status, tests)
        self._base: PlanInput | None = None  # the model's part of the planner's input
        self._warned: set[str] = set()

    # ---------------------------------------------------------------- inputs

    def set_model(self, model: ClusterModel) -> None:
        self.model = model
        self._base = None
        self.index = None

    async def read_host(self) -> str | None:
        """Read the host's network: "host" when it differs from what the indexes were built from (they
        are dropped), "devices" when only felixd's own devices changed (someone else's doing, or a
        device felixd just made: a full sync puts them right or finds nothing to do), else None."""
        host = await self.reconciler.read_host()
        self.counts["host_reads"] += 1
        old, self.host = self.host, host
        if host != old:
            self.index = None
            return "host"
        if old is not None and host.devices != old.devices:
            return "devices"
        return None

    def _index(self) -> PlanIndex:
        if self.index is None:
            assert self.model is not None and self.host is not None
            if self._base is None:
                self._base = plan_input(self.model, self.node, {}, (), ())
            self.index = PlanIndex(dataclasses.replace(
                self._base, interfaces=self.host.interfaces, host_routes=self.host.routes,
                links=self.host.link_names, install_poolless=self.install_poolless,
                ipip_supported=not self.reconciler.device_stats.ipip_unsupported))
            self.counts["index_builds"] += 1
        return self.index

    # ---------------------------------------------------------------- full sync

    def plan(self, feed: FeedTable) -> DesiredState:
        """Everything, from the feed table as it is now (no await: the caller clears its pending deltas
        at the same moment, and keeps the table unchanged until the full sync is done). The routes
        are a view over the feed table, not a copy: a resync of 100k routes holds no second table."""
        if self.carrying and (feed.synced or self.carry_expired):
            self.stop_carrying()
        index = self._index()
        desired = index.plan(feed.routes, routes=False)
        self.planned = PlannedRoutes(index, feed, index.local_routes(), self.carry)
        return dataclasses.replace(desired, routes=self.planned)

    def stop_carrying(self) -> None:
        self.carrying = False
        self.carry.clear()  # the view holds this dict

    async def probe_devices(self) -> None:
        """Learn whether this kernel can do IP-in-IP before planning, so a plan never names a missing
        tunl0 (the index says whether tunl0 is wanted; nothing else of the plan is needed)."""
        rec = self.reconciler
        ipip = self._index().ipip
        if ipip is not None and not rec.device_stats.ipip_unsupported:
            devices = await rec.open_devices()
            await devices.sync_ipip(ipip)
            if rec.device_stats.ipip_unsupported:
                self.metrics.kernel_unsupported.labels("ipip").set(1)
                self.index = None

    async def full_sync(self, feed: FeedTable, trigger: str, planned: DesiredState | None = None) -> ReconcileResult:
        """Reconcile the kernel with `planned` (made by `plan` after `probe_devices`), or a plan made now.
        The feed table must not change until this returns (the worker thread reads it)."""
        rec = self.reconciler
        desired = planned or self.plan(feed)
        t0 = time.monotonic()
        result = await rec.reconcile(desired, prune=not self.carrying)
        self.metrics.programming_seconds.observe(time.monotonic() - t0)
        self.modes = mode_counts(desired.routes.values())
        # Deltas keep this view and the kernel in step from here on.
        self.desired = desired
        self.last_result = result
        self.last_sync = time.time()
        self.counts["full_syncs"] += 1
        self._after_full(desired, result, trigger)
        return result

    def _after_full(self, desired: DesiredState, result: ReconcileResult, trigger: str) -> None:
        m = self.metrics
        m.resyncs.labels(trigger).inc()
        if trigger in ("periodic", "netlink", "host", "devices") and result.changes:
            m.drift_repairs.labels("route").inc(result.routes_replaced + result.routes_deleted)
            m.drift_repairs.labels("device").inc(result.device_changes)
            m.drift_repairs.labels("neighbour").inc(result.neighbour_changes + result.fdb_changes)
        for err in result.route_errors:
            m.netlink_errors.labels(err.op.value).inc()
        for w in desired.warnings:
            if w not in self._warned:
                log.warning("%s", w)
                self._warned.add(w)
        self._warned &= set(desired.warnings)
        if result.changes:
            log.info("reconcile (%s): %d routes replaced, %d deleted, %d device, %d neighbour/FDB, %d NAT changes",
                     trigger, result.routes_replaced, result.routes_deleted, result.device_changes,
                     result.neighbour_changes + result.fdb_changes, result.nat_changes)

    # ---------------------------------------------------------------- deltas

    async def delta(self, changed: Mapping[Prefix, Address | None]) -> bool:
        """Plan and write only the changed prefixes (prefix -> the next hop last planned for it); False
        when a full sync is needed instead (the delta then wrote nothing)."""
        if self.desired is None or self.planned is None or self.planned.index is not self.index:
            return False
        t0 = time.monotonic()
        plan = plan_delta(changed, self.planned, self.desired, self.reconciler.protocol, self.modes)
        for prefix, reason in plan.reasons:
            if reason not in self._warned:
                log.warning("%s: %s", pf.text(prefix), reason)
                self._warned.add(reason)
        if plan.needs_full:
            return False
        self.counts["deltas"] += 1
        if not plan.ops:
            return True
        result = await self.reconciler.apply_ops(plan.ops)
        self.metrics.programming_seconds.observe(time.monotonic() - t0)
        # A refused route stays desired: the periodic check (or the netlink event of whatever the route
        # was waiting for, a device or an address) tries it again. Resyncing everything now would not
        # make the kernel take it, and would cost a full sync per batch while it refuses.
        for err in result.route_errors:
            self.metrics.netlink_errors.labels(err.op.value).inc()
        if result.route_errors:
            log.warning("%d route(s) refused by the kernel, first: %s", len(result.route_errors),
                        result.route_errors[0])
        return True

    async def repair(self, touched: dict[RouteKey, tuple[int, bool]]) -> int:
        """Rewrite routes of felixd's someone else added, changed or deleted (key -> (protocol, whether
        the route is there now)); returns the writes made."""
        if self.desired is None:
            return 0
        rec, routes = self.reconciler, self.desired.routes
        ops: list[RouteOp] = []
        for key, (protocol, present) in touched.items():
            shape = routes.get(key)
            if shape is not None:
                ops.append((Op.REPLACE, key, shape, rec.protocol))
            elif present:
                ops.append((Op.DELETE, key, None, protocol))
        if not ops:
            return 0
        result = await rec.apply_ops(ops)
        self.counts["repairs"] += len(ops)
        self.metrics.drift_repairs.labels("route").inc(result.routes_replaced + result.routes_deleted)
        log.info("repaired %d route(s) changed by someone else", result.routes_replaced + result.routes_deleted)
        return result.routes_replaced + result.routes_deleted

    # ---------------------------------------------------------------- reading

    def update_gauges(self, feed: FeedTable | None) -> None:
        d, m = self.desired, self.metrics
        if d is None:
            return
        for mode in Mode:
            m.routes.labels(mode.value).set(self.modes.get(mode, 0))
        m.stale_routes.set(len(feed.stale) if feed else 0)
        m.plan_warnings.set(d.unplanned)
        stats = self.reconciler.device_stats
        m.kernel_unsupported.labels("ipip").set(1 if stats.ipip_unsupported else 0)
        m.devices.labels("tunl0").set(1 if d.ipip is not None and not stats.ipip_unsupported else 0)
        m.devices.labels("vxlan.calico").set(1 if d.vxlan is not None else 0)
        m.devices.labels("vxlan-v6.calico").set(1 if d.vxlan_v6 is not None else 0)
