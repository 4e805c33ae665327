"""Make the kernel match a DesiredState, changing only the difference and only what felixd owns.

felixd owns routes of its protocol (80 by default) and routes on its own devices (tunl0,
vxlan.calico, vxlan-v6.calico), the permanent neighbour and FDB entries on those devices, the
nftables table `tortie` and the sysctls the plan names. Everything else in the namespace is read at
most, never written.

Order matters for traffic during a mode switch: wanted devices (and their neighbour / FDB entries)
come first so that routes can move onto them, then routes (replace moves a route in one step), and
only then are devices that are no longer wanted removed.

`reconcile` reads the kernel and is for start-up, mode switches, the periodic check and drift
repair. `apply_ops` writes a known delta without reading anything: it is the path of feed deltas.
Devices, neighbours and FDB entries go through pyroute2, imported and opened only when there is a
device to look at (a host in direct mode never loads it).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, Literal

from felixd.host import OWN_DEVICES, HostState, read_host_sync
from felixd.kernel.events import KernelEvents
from felixd.kernel.netns import NetnsWorker
from felixd.kernel.nft import NatTable
from felixd.kernel.route_codec import KernelRoute
from felixd.kernel.routes import KernelRoutes
from felixd.kernel.sysctl import SysctlError, Sysctls
from felixd.state import RTPROT_TORTIE, DesiredState, Op, RouteEntry, RouteError, RouteKey, RouteOp, key_text
from proto.record import record

if TYPE_CHECKING:
    from felixd.kernel.devices import Devices, DeviceStats

log = logging.getLogger(__name__)

OWN_DEVICE_NAMES = tuple(sorted(OWN_DEVICES))
BULK_THRESHOLD = 64  # from this many changes the write goes to the worker thread; fewer go inline
WritePath = Literal["auto", "bulk", "incremental"]


@record
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


class _NoDeviceStats:
    """DeviceStats until pyroute2 is needed (same fields; Devices takes over the object)."""

    def __init__(self) -> None:
        self.changes = 0
        self.ipip_unsupported = False
        self.ipip_unsupported_reports = 0


class Reconciler:
    """felixd's kernel side for one network namespace (`netns=None`: the process's own)."""

    def __init__(self, netns: str | None = None, protocol: int = RTPROT_TORTIE,
                 bulk_threshold: int = BULK_THRESHOLD) -> None:
        self.netns = netns
        self.protocol = protocol
        self.bulk_threshold = bulk_threshold
        self.device_stats: DeviceStats | _NoDeviceStats = _NoDeviceStats()
        self._worker: NetnsWorker | None = None
        self._ipr: Any = None
        self._devices: Devices | None = None
        self.routes: KernelRoutes
        self.nat = NatTable(netns)
        self.sysctls: Sysctls
        self.ifindex: dict[str, int] = {}
        self._foreign: set[RouteKey] = set()  # from the last reconcile: deltas must not overwrite these
        self._lock = asyncio.Lock()

    async def open(self) -> Reconciler:
        self._worker = NetnsWorker(self.netns)
        self.routes = KernelRoutes(self._worker, self.pyroute2)
        self.sysctls = Sysctls(self._worker)
        self.ifindex = await self.routes.links()
        return self

    async def close(self) -> None:
        if self._worker is not None:
            self.routes.close()
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None
            self._worker.close()
            self._worker = None

    async def pyroute2(self) -> Any:
        """pyroute2's AsyncIPRoute in the namespace, opened on first use."""
        if self._ipr is None:
            _allow_tls()
            from pyroute2 import AsyncIPRoute

            # flags=0: never create a namespace that is not there
            ipr = AsyncIPRoute(netns=self.netns, flags=0) if self.netns else AsyncIPRoute()
            await ipr.setup_endpoint()
            self._ipr = ipr
        return self._ipr

    @property
    def devices(self) -> Devices:
        if self._devices is None:
            raise RuntimeError("devices are opened by `open_devices`")
        return self._devices

    async def open_devices(self) -> Devices:
        if self._devices is None:
            _allow_tls()
            from felixd.kernel.devices import Devices, DeviceStats

            stats = DeviceStats(self.device_stats.changes, self.device_stats.ipip_unsupported,
                                self.device_stats.ipip_unsupported_reports)
            self._devices = Devices(await self.pyroute2(), stats)
            self.device_stats = stats
        return self._devices

    @property
    def worker(self) -> NetnsWorker:
        if self._worker is None:
            raise RuntimeError("Reconciler is not open")
        return self._worker

    @property
    def portid(self) -> int:
        """The netlink port id every route write of this reconciler carries."""
        return self.routes.portid

    async def __aenter__(self) -> Reconciler:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ full reconcile

    @staticmethod
    def own_devices(desired: DesiredState) -> set[str]:
        return set(OWN_DEVICE_NAMES) | desired.devices()

    async def reconcile(self, desired: DesiredState, path: WritePath = "auto", prune: bool = True) -> ReconcileResult:
        """`prune=False` keeps neighbour and FDB entries the plan does not name (a restarted felixd
        before its first feed snapshot: what a previous felixd set up is kept, as its routes are)."""
        async with self._lock:
            return await self._reconcile(desired, path, prune)

    async def _reconcile(self, desired: DesiredState, path: WritePath, prune: bool) -> ReconcileResult:
        res = ReconcileResult()
        self.ifindex = await self.routes.links()
        vx_devs = (("vxlan.calico", desired.vxlan), ("vxlan-v6.calico", desired.vxlan_v6))
        # Devices need pyroute2: only when one is wanted or one of ours exists.
        touch_devices = bool(desired.devices()) or any(n in self.ifindex for n in OWN_DEVICE_NAMES)
        vx_names = [d.name for _, d in vx_devs if d is not None]
        if touch_devices:
            devices = await self.open_devices()
            for default_name, dev in vx_devs:
                if dev is not None:
                    res.device_changes += await devices.sync_vxlan(dev.name or default_name, dev)
            if desired.ipip is not None:
                res.device_changes += await devices.sync_ipip(desired.ipip)
            res.neighbour_changes += await devices.sync_neighbours(desired.neighbours, vx_names, prune)
            res.fdb_changes += await devices.sync_fdb(desired.fdb, vx_names, prune)
            self.ifindex = await self.routes.links()

        wanted = desired.routes
        if desired.ipip is not None and self.device_stats.ipip_unsupported:
            # said once by Devices; here the IPIP routes are left out rather than failing every resync
            tunnel = desired.ipip.name
            res.routes_unsupported = sorted(key_text(k) for k, s in wanted.items() if s.dev == tunnel)
            wanted = {k: s for k, s in wanted.items() if s.dev != tunnel}
        diff = await self.routes.diff(wanted, self.protocol, self.ifindex, self.own_devices(desired))
        self._foreign = diff.foreign
        res.routes_conflicting = diff.conflicts
        if diff.conflicts:
            log.warning("%d desired route(s) collide with routes of other protocols and were not written, "
                        "first: %s", len(diff.conflicts), diff.conflicts[0])
        await self._apply(diff.ops, res, path)

        if touch_devices:
            devices = await self.open_devices()
            for default_name, dev in vx_devs:
                if dev is None:
                    res.device_changes += await devices.sync_vxlan(default_name, None)
            if desired.ipip is None:
                res.device_changes += await devices.sync_ipip(None)
        res.nat_changes += await self.nat.sync(desired.nat)
        changes, errors = await self.sysctls.sync(desired.sysctls)
        res.sysctl_changes += changes
        res.sysctl_errors.extend(errors)
        if res.route_errors:
            log.warning("%d route(s) refused by the kernel, first: %s", len(res.route_errors), res.route_errors[0])
        return res

    async def _apply(self, ops: Sequence[RouteOp], res: ReconcileResult, path: WritePath,
                     inline: bool = False) -> None:
        if not ops:
            return
        if path == "incremental":
            errors = await self.routes.apply_incremental(ops, self.ifindex)
            res.path = "incremental"
        else:
            inline = inline or (path == "auto" and len(ops) < self.bulk_threshold)
            errors = await self.routes.apply_bulk(ops, self.ifindex, inline=inline)
            res.path = "bulk"
        # a delete of a route that is not there (someone deleted it first) leaves the kernel as wanted
        errors = [e for e in errors if e.errno != errno.ESRCH or e.op is not Op.DELETE]
        replaces = [op[0] for op in ops].count(Op.REPLACE)
        failed_replaces = sum(1 for e in errors if e.op is Op.REPLACE)
        res.routes_replaced += replaces - failed_replaces
        res.routes_deleted += len(ops) - replaces - (len(errors) - failed_replaces)
        res.route_errors.extend(errors)

    # ------------------------------------------------------------ deltas

    async def apply_ops(self, ops: Sequence[RouteOp], path: WritePath = "auto") -> ReconcileResult:
        """Write a known change (from the feed) without reading the kernel first.

        Deletes name felixd's protocol, so a prefix that someone else also routes is never touched; a
        replace under a key a foreign route holds (as of the last reconcile) is left out.
        """
        res = ReconcileResult()
        foreign = self._foreign
        if foreign:
            kept = []
            for op in ops:
                if op[0] is Op.REPLACE and op[1] in foreign:
                    res.routes_conflicting.append(key_text(op[1]))
                else:
                    kept.append(op)
            ops = kept
        async with self._lock:
            await self._apply(ops, res, path, inline=len(ops) < self.bulk_threshold)
            # A device felixd has not seen yet (created since the last look): look again, once.
            missing = [e for e in res.route_errors if e.errno == errno.ENODEV and e.message.startswith("no device")]
            if missing:
                self.ifindex = await self.routes.links()
                keys = {e.key for e in missing}
                res.route_errors = [e for e in res.route_errors if e not in missing]
                await self._apply([op for op in ops if op[1] in keys], res, path)
        return res

    async def apply_routes(self, replace: Iterable[RouteEntry] = (), delete: Iterable[RouteEntry | RouteKey] = (),
                           path: WritePath = "auto") -> ReconcileResult:
        """`apply_ops` for RouteEntry values (tests, tools)."""
        ops: list[RouteOp] = [(Op.REPLACE, r.key, r.shape, self.protocol) for r in replace]
        ops += [(Op.DELETE, r.key if isinstance(r, RouteEntry) else r, None, self.protocol) for r in delete]
        return await self.apply_ops(ops, path)

    async def read_routes(self, desired: DesiredState | None = None) -> dict[RouteKey, KernelRoute]:
        """The routes felixd owns in the kernel now (for tortiectl, metrics and tests)."""
        async with self._lock:
            ifindex = await self.routes.links()
            own = self.own_devices(desired) if desired is not None else set(OWN_DEVICE_NAMES)
            owned, _foreign = await self.routes.read(self.protocol, ifindex, own)
        return owned

    async def read_host(self) -> HostState:
        """The host's own network (links, addresses, other protocols' routes), through the route socket."""
        async with self._lock:
            return await self.worker.acall(read_host_sync, self.routes.bulk, self.protocol)


def _allow_tls() -> None:
    """pyroute2 imports `ssl` (for a probe it never uses here), which the entry point keeps out of a
    daemon that needs no TLS (runtime/lean.py): let it load once pyroute2 is needed, for a device."""
    if "ssl" in sys.modules and sys.modules["ssl"] is None:
        del sys.modules["ssl"]


async def resync_loop(rec: Reconciler, desired: Callable[[], DesiredState], *, interval: float = 60.0,
                      debounce: float = 0.05,
                      on_result: Callable[[ReconcileResult], None] | None = None) -> None:
    """Reconcile every `interval` seconds and soon after the kernel announces a relevant change.

    Runs until cancelled. A burst of events (a link flapping, someone flushing routes) is collected
    for `debounce` seconds into one resync. The reconciler's own route writes are not announced to it.
    """
    events = KernelEvents(rec.netns, rec.protocol, (rec.portid,))
    try:
        while True:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that
                # arrives as the event is set, and the loop would then outlive its stop
                async with asyncio.timeout(interval):
                    await events.changed.wait()
                await asyncio.sleep(debounce)
            except TimeoutError:
                pass
            events.changed.clear()
            events.sorter.take()
            res = await rec.reconcile(desired())
            if on_result is not None:
                on_result(res)
    finally:
        events.close()
