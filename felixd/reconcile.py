"""Make the kernel match a DesiredState, changing only the difference and only what felixd owns.

felixd owns routes of its protocol (80 by default) and routes on its own devices (tunl0,
vxlan.calico, vxlan-v6.calico), the permanent neighbour and FDB entries on those devices, the
nftables table `tortie` and the sysctls the plan names. Everything else in the namespace is read at
most, never written.

Order matters for traffic during a mode switch: wanted devices (and their neighbour / FDB entries)
come first so that routes can move onto them, then routes (replace moves a route in one step), and
only then are devices that are no longer wanted removed.

`reconcile` reads the kernel and is for start-up, periodic resync and netlink events. `apply_routes`
writes a known delta without reading anything: it is the path of a single feed message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from pyroute2 import AsyncIPRoute

from felixd.kernel.devices import OWN_DEVICE_NAMES, Devices, DeviceStats
from felixd.kernel.events import KernelEvents
from felixd.kernel.netlink_bulk import (
    IPV6_DEFAULT_METRIC,
    KernelRoute,
    Op,
    RouteError,
    RouteOp,
    signature,
    to_route,
)
from felixd.kernel.netns import NetnsWorker
from felixd.kernel.nft import NatTable
from felixd.kernel.routes import RouteKey, RouteTable, kernel_key
from felixd.kernel.sysctl import SysctlError, Sysctls
from felixd.state import RTPROT_TORTIE, DesiredState, Route

log = logging.getLogger(__name__)

BULK_THRESHOLD = 64  # route changes from which one bulk netlink pass beats per-route pyroute2 calls

Path = Literal["auto", "bulk", "incremental"]


@dataclass
class ReconcileResult:
    routes_replaced: int = 0
    routes_deleted: int = 0
    route_errors: list[RouteError] = field(default_factory=list)
    device_changes: int = 0
    neighbour_changes: int = 0
    fdb_changes: int = 0
    nat_changes: int = 0
    sysctl_changes: int = 0
    sysctl_errors: list[SysctlError] = field(default_factory=list)
    path: str = "none"  # which route path was used: "bulk", "incremental" or "none"
    # desired routes this kernel cannot carry (IPIP without the ipip module): not attempted
    routes_unsupported: list[str] = field(default_factory=list)
    # desired routes not written because a foreign route holds the same (prefix, table, metric)
    routes_conflicting: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        """Every write made to the kernel (a restart over an unchanged kernel must make none)."""
        return (self.routes_replaced + self.routes_deleted + self.device_changes + self.neighbour_changes
                + self.fdb_changes + self.nat_changes + self.sysctl_changes)


def diff_routes(desired: Iterable[Route], actual: dict[RouteKey, KernelRoute], protocol: int,
                foreign: Collection[RouteKey] = (), conflicts: list[str] | None = None) -> list[RouteOp]:
    """Replaces for missing or different routes, deletes for owned routes not desired.

    A desired route whose (prefix, table, metric) is held by a foreign route is left out (and named in
    `conflicts`): writing it with replace would overwrite the other route.
    """
    ops: list[RouteOp] = []
    wanted: dict[RouteKey, Route] = {}
    for route in desired:
        metric = route.metric
        key = (route.dst, route.table, metric if metric or ":" not in route.dst else IPV6_DEFAULT_METRIC)
        wanted[key] = route
        if key in foreign:
            if conflicts is not None:
                conflicts.append(route.dst)
            continue
        have = actual.get(key)
        if have is None or have[8] != protocol or signature(route) != have[:8]:
            ops.append(RouteOp(Op.REPLACE, route, protocol))
    for key, kr in actual.items():
        if key not in wanted:
            ops.append(RouteOp(Op.DELETE, to_route(kr), kr[8]))
    return ops


class Reconciler:
    """felixd's kernel side for one network namespace (`netns=None`: the process's own)."""

    def __init__(self, netns: str | None = None, protocol: int = RTPROT_TORTIE,
                 bulk_threshold: int = BULK_THRESHOLD) -> None:
        self.netns = netns
        self.protocol = protocol
        self.bulk_threshold = bulk_threshold
        self.device_stats = DeviceStats()
        self._worker: NetnsWorker | None = None
        self._ipr: AsyncIPRoute | None = None
        self.routes: RouteTable
        self.devices: Devices
        self.nat = NatTable(netns)
        self.sysctls: Sysctls
        self._ifindex: dict[str, int] = {}
        self._foreign: set[RouteKey] = set()  # from the last reconcile: deltas must not overwrite these
        self._lock = asyncio.Lock()

    async def open(self) -> Reconciler:
        self._worker = NetnsWorker(self.netns)
        # flags=0: never create a namespace that is not there
        self._ipr = AsyncIPRoute(netns=self.netns, flags=0) if self.netns else AsyncIPRoute()
        await self._ipr.setup_endpoint()
        self.routes = RouteTable(self._worker, self._ipr)
        self.devices = Devices(self._ipr, self.device_stats)
        self.sysctls = Sysctls(self._worker)
        return self

    async def close(self) -> None:
        if self._ipr is not None:
            self.routes.close()
            self._ipr.close()
            self._ipr = None
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    @property
    def ipr(self) -> AsyncIPRoute:
        """The netlink socket of the namespace (the daemon reads the host's own network through it)."""
        if self._ipr is None:
            raise RuntimeError("Reconciler is not open")
        return self._ipr

    async def __aenter__(self) -> Reconciler:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ full reconcile

    @staticmethod
    def own_devices(desired: DesiredState) -> set[str]:
        names = set(OWN_DEVICE_NAMES)
        for dev in (desired.ipip, desired.vxlan, desired.vxlan_v6):
            if dev is not None:
                names.add(dev.name)
        return names

    async def reconcile(self, desired: DesiredState, path: Path = "auto") -> ReconcileResult:
        async with self._lock:
            return await self._reconcile(desired, path)

    async def _reconcile(self, desired: DesiredState, path: Path) -> ReconcileResult:
        res = ReconcileResult()
        own = self.own_devices(desired)
        vx_devs = [(n, d) for n, d in (("vxlan.calico", desired.vxlan), ("vxlan-v6.calico", desired.vxlan_v6))]
        for default_name, dev in vx_devs:
            if dev is not None:
                res.device_changes += await self.devices.sync_vxlan(dev.name or default_name, dev)
        if desired.ipip is not None:
            res.device_changes += await self.devices.sync_ipip(desired.ipip)
        vx_names = [d.name for _, d in vx_devs if d is not None]
        res.neighbour_changes += await self.devices.sync_neighbours(desired.neighbours, vx_names)
        res.fdb_changes += await self.devices.sync_fdb(desired.fdb, vx_names)

        wanted: Iterable[Route] = desired.routes.values()
        if desired.ipip is not None and self.device_stats.ipip_unsupported:
            # said once by Devices; here the IPIP routes are left out rather than failing every resync
            tunnel = desired.ipip.name
            res.routes_unsupported = sorted(r.dst for r in wanted if r.dev == tunnel)
            wanted = [r for r in wanted if r.dev != tunnel]
        self._ifindex = await self.routes.links()
        snap = await self.routes.dump(self.protocol, self._ifindex, own)
        self._foreign = snap.foreign
        ops = diff_routes(wanted, snap.owned, self.protocol, snap.foreign, res.routes_conflicting)
        if res.routes_conflicting:
            log.warning("%d desired route(s) collide with routes of other protocols and were not written, "
                        "first: %s", len(res.routes_conflicting), res.routes_conflicting[0])
        await self._apply(ops, res, path)

        for default_name, dev in vx_devs:
            if dev is None:
                res.device_changes += await self.devices.sync_vxlan(default_name, None)
        if desired.ipip is None:
            res.device_changes += await self.devices.sync_ipip(None)
        res.nat_changes += await self.nat.sync(desired.nat)
        changes, errors = await self.sysctls.sync(desired.sysctls)
        res.sysctl_changes += changes
        res.sysctl_errors.extend(errors)
        if res.route_errors:
            log.warning("%d route(s) refused by the kernel, first: %s", len(res.route_errors), res.route_errors[0])
        return res

    async def _apply(self, ops: list[RouteOp], res: ReconcileResult, path: Path) -> None:
        if not ops:
            return
        use_bulk = path == "bulk" or (path == "auto" and len(ops) >= self.bulk_threshold)
        if use_bulk:
            errors = await self.routes.apply_bulk(ops, self._ifindex)
            res.path = "bulk"
        else:
            errors = await self.routes.apply_incremental(ops, self._ifindex)
            res.path = "incremental"
        replaces = sum(1 for op in ops if op.op is Op.REPLACE)
        failed_replaces = sum(1 for e in errors if e.op is Op.REPLACE)
        res.routes_replaced += replaces - failed_replaces
        res.routes_deleted += len(ops) - replaces - (len(errors) - failed_replaces)
        res.route_errors.extend(errors)

    # ------------------------------------------------------------ deltas

    async def apply_routes(self, replace: Iterable[Route] = (), delete: Iterable[Route] = (),
                           path: Path = "auto") -> ReconcileResult:
        """Write a known change (from the feed) without reading the kernel first.

        Deletes name felixd's protocol, so a prefix that someone else also routes is never touched.
        """
        res = ReconcileResult()
        foreign = self._foreign
        ops = []
        for r in replace:
            if foreign and kernel_key(r) in foreign:
                res.routes_conflicting.append(r.dst)
            else:
                ops.append(RouteOp(Op.REPLACE, r, self.protocol))
        ops += [RouteOp(Op.DELETE, r, self.protocol) for r in delete]
        async with self._lock:
            if any(op.route.dev is not None and op.route.dev not in self._ifindex for op in ops):
                self._ifindex = await self.routes.links()
            await self._apply(ops, res, path)
        return res

    async def read_routes(self, desired: DesiredState | None = None) -> dict[RouteKey, KernelRoute]:
        """The routes felixd owns in the kernel now (for tortiectl, metrics and tests)."""
        ifindex = await self.routes.links()
        own = self.own_devices(desired) if desired is not None else set(OWN_DEVICE_NAMES)
        return (await self.routes.dump(self.protocol, ifindex, own)).owned


async def resync_loop(rec: Reconciler, desired: Callable[[], DesiredState], *, interval: float = 60.0,
                      debounce: float = 0.05,
                      on_result: Callable[[ReconcileResult], None] | None = None) -> None:
    """Reconcile every `interval` seconds and soon after the kernel announces a relevant change.

    Runs until cancelled. A burst of events (a link flapping, someone flushing routes) is collected
    for `debounce` seconds into one resync.
    """
    events = KernelEvents(rec.netns, rec.protocol)
    try:
        while True:
            try:
                await asyncio.wait_for(events.changed.wait(), timeout=interval)
                await asyncio.sleep(debounce)
            except TimeoutError:
                pass
            events.changed.clear()
            res = await rec.reconcile(desired())
            if on_result is not None:
                on_result(res)
    finally:
        events.close()
