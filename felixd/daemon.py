"""tortie-felixd: keeps the kernel's pod routing equal to the plan for this node.

Inputs: the cluster model (watched file), the learned routes (route feed from bgpd) and the host's
own network (read from the kernel). Output: a DesiredState that the Reconciler makes true.

Two paths: a full sync (plan everything, reconcile against a read of the kernel) at start-up, at the
end of every feed snapshot, on configuration changes, periodically and on demand; and a delta path for
single feed messages that plans only the changed prefixes and writes them without reading the kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import time
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from datastore import open_datastore
from datastore.metrics import register as register_datastore_metrics
from datastore.metrics import with_datastore
from felixd.feed_client import FeedClient
from felixd.host import read_host, read_links
from felixd.inputs import learned_routes, plan_input
from felixd.kernel.devices import KernelRefused
from felixd.kernel.events import KernelEvents
from felixd.kernel.netlink_bulk import to_route
from felixd.metrics import FelixMetrics
from felixd.plan import PartialPlan, PlanInput, Planner
from felixd.reconcile import Reconciler, ReconcileResult
from felixd.state import RTPROT_TORTIE, DesiredState, Mode, Route
from proto.resources import ClusterModel, NotFoundError, ValidationError
from runtime import logs
from runtime.caps import capability_report
from runtime.cli import EXIT_NOPERM, config_failed
from runtime.control import ControlServer
from runtime.http import ManagementServer
from runtime.sdnotify import Notifier

log = logging.getLogger("tortie.felix")


class FelixDaemon:
    def __init__(self, args: argparse.Namespace, netns: str | None = None) -> None:
        self.args = args
        self.node: str = args.node
        self.run_dir = Path(args.run_dir)
        self.netns = netns
        self.protocol: int = getattr(args, "route_protocol", RTPROT_TORTIE)
        self.resync_interval: float = getattr(args, "resync_interval", 30.0)
        self.stale_time: float = getattr(args, "stale_time", 120.0)
        self.install_poolless: bool = getattr(args, "install_poolless", False)
        self.metrics = FelixMetrics()
        for op in ("replace", "delete", "sync"):
            self.metrics.netlink_errors.labels(op)  # exported at 0 before the first error
        for kind in ("route", "device", "neighbour"):
            self.metrics.drift_repairs.labels(kind)  # at 0 too: an alert's increase() needs the series
        self.notifier = Notifier()
        self.model: ClusterModel | None = None
        self.desired: DesiredState | None = None
        self.reconciler = Reconciler(netns=netns, protocol=self.protocol)
        self.feed: FeedClient | None = None
        self.ready = False
        self.started = time.monotonic()
        self.last_sync: float | None = None
        self.last_result: ReconcileResult | None = None
        self._full = asyncio.Event()
        self._stop = asyncio.Event()
        self._carry: dict[tuple[str, int, int], Route] = {}  # kernel routes kept until the feed syncs
        self._warned: set[str] = set()
        self._sync_lock = asyncio.Lock()  # one sync at a time: they share one netlink socket

    # ---------------------------------------------------------------- planning

    async def _input(self) -> PlanInput:
        assert self.model is not None and self.feed is not None
        ipr = self.reconciler.ipr
        interfaces, host_routes = await read_host(ipr, self.protocol)
        links = await read_links(ipr)
        table = self.feed.table
        routes = learned_routes((p, r.next_hop, table.is_stale(p)) for p, r in table.routes.items())
        return plan_input(self.model, self.node, routes, interfaces, host_routes,
                          install_poolless=self.install_poolless,
                          ipip_supported=not self.reconciler.device_stats.ipip_unsupported, links=links)

    def _with_carry(self, desired: DesiredState) -> DesiredState:
        """Until the first snapshot arrives, keep the routes a previous felixd left: a felixd restart
        over an unchanged kernel must not delete and re-add them."""
        if not self._carry or (self.feed is not None and self.feed.table.synced):
            self._carry = {}
            return desired
        routes = dict(self._carry)
        routes.update(desired.routes)
        return DesiredState(routes=routes, ipip=desired.ipip, vxlan=desired.vxlan, vxlan_v6=desired.vxlan_v6,
                            neighbours=desired.neighbours, fdb=desired.fdb, nat=desired.nat,
                            sysctls=desired.sysctls, warnings=desired.warnings)

    async def full_sync(self, trigger: str) -> ReconcileResult:
        async with self._sync_lock:
            return await self._full_sync(trigger)

    async def _full_sync(self, trigger: str) -> ReconcileResult:
        data = await self._input()
        desired = Planner(data).plan()
        if desired.ipip is not None and not self.reconciler.device_stats.ipip_unsupported:
            # Learn now whether this kernel can do IP-in-IP, so the plan never names a missing tunl0.
            await self.reconciler.devices.sync_ipip(desired.ipip)
            if self.reconciler.device_stats.ipip_unsupported:
                self.metrics.kernel_unsupported.labels("ipip").set(1)
                data = await self._input()
                desired = Planner(data).plan()
        desired = self._with_carry(desired)
        t0 = time.monotonic()
        result = await self.reconciler.reconcile(desired)
        self.metrics.programming_seconds.observe(time.monotonic() - t0)
        self._after(desired, result, trigger)
        return result

    def _after(self, desired: DesiredState, result: ReconcileResult, trigger: str) -> None:
        self.desired = desired
        self.last_result = result
        self.last_sync = time.time()
        self.metrics.resyncs.labels(trigger).inc()
        if trigger in ("periodic", "netlink") and result.changes:
            self.metrics.drift_repairs.labels("route").inc(result.routes_replaced + result.routes_deleted)
            self.metrics.drift_repairs.labels("device").inc(result.device_changes)
            self.metrics.drift_repairs.labels("neighbour").inc(result.neighbour_changes + result.fdb_changes)
        for err in result.route_errors:
            self.metrics.netlink_errors.labels(err.op.name.lower()).inc()
        self._update_gauges()
        for w in desired.warnings:
            if w not in self._warned:
                log.warning("%s", w)
                self._warned.add(w)
        self._warned &= set(desired.warnings)
        if result.changes:
            log.info("reconcile (%s): %d routes replaced, %d deleted, %d device, %d neighbour/FDB, %d NAT changes",
                     trigger, result.routes_replaced, result.routes_deleted, result.device_changes,
                     result.neighbour_changes + result.fdb_changes, result.nat_changes)

    def _update_gauges(self) -> None:
        d = self.desired
        if d is None:
            return
        counts = dict.fromkeys(Mode, 0)
        for r in d.routes.values():
            counts[r.mode] += 1
        for mode, n in counts.items():
            self.metrics.routes.labels(mode.value).set(n)
        self.metrics.stale_routes.set(len(self.feed.table.stale) if self.feed else 0)
        self.metrics.plan_warnings.set(len(d.warnings))
        stats = self.reconciler.device_stats
        self.metrics.kernel_unsupported.labels("ipip").set(1 if stats.ipip_unsupported else 0)
        self.metrics.devices.labels("tunl0").set(1 if d.ipip is not None and not stats.ipip_unsupported else 0)
        self.metrics.devices.labels("vxlan.calico").set(1 if d.vxlan is not None else 0)
        self.metrics.devices.labels("vxlan-v6.calico").set(1 if d.vxlan_v6 is not None else 0)

    async def delta(self, changed: set[str]) -> bool:
        """Plan only the changed prefixes and write them; False when a full sync is needed instead."""
        async with self._sync_lock:
            return await self._delta(changed)

    async def _delta(self, changed: set[str]) -> bool:
        if self.desired is None or self.model is None or self.feed is None:
            return False
        t0 = time.monotonic()
        planner = Planner(await self._input())
        out = PartialPlan()
        table = self.feed.table
        for prefix in changed:
            route = table.routes.get(prefix)
            if route is not None:
                planner.plan_remote(learned_routes([(prefix, route.next_hop, table.is_stale(prefix))])[0], out)
        # New VXLAN neighbours/FDB entries or devices need the full path.
        if not (out.neighbours <= self.desired.neighbours and out.fdb <= self.desired.fdb):
            return False
        if any(r.dev in ("tunl0", "vxlan.calico", "vxlan-v6.calico") and
               not self._device_wanted(r.dev) for r in out.routes.values()):
            return False
        routes = dict(self.desired.routes)
        replace, delete = [], []
        planned = {r.dst: r for r in out.routes.values()}
        for prefix in changed:
            key = (prefix, 254, 0)
            new = planned.get(prefix)
            old = routes.get(key)
            if old is not None and old.mode in (Mode.LOCAL_BLOCK, Mode.WORKLOAD):
                continue  # never displaced by a learned route
            if new is None:
                if old is not None:
                    delete.append(old)
                    del routes[key]
            elif old is None or not old.kernel_equal(new):
                replace.append(new)
                routes[key] = new
            else:
                routes[key] = new
        result = await self.reconciler.apply_routes(replace, delete)
        self.metrics.programming_seconds.observe(time.monotonic() - t0)
        for err in result.route_errors:
            self.metrics.netlink_errors.labels(err.op.name.lower()).inc()
        self.desired = DesiredState(routes=routes, ipip=self.desired.ipip, vxlan=self.desired.vxlan,
                                    vxlan_v6=self.desired.vxlan_v6, neighbours=self.desired.neighbours,
                                    fdb=self.desired.fdb, nat=self.desired.nat, sysctls=self.desired.sysctls,
                                    warnings=self.desired.warnings)
        self._update_gauges()
        return not result.route_errors

    def _device_wanted(self, dev: str | None) -> bool:
        d = self.desired
        assert d is not None
        return (dev == "tunl0" and d.ipip is not None) or (dev == "vxlan.calico" and d.vxlan is not None) or \
            (dev == "vxlan-v6.calico" and d.vxlan_v6 is not None)

    # ---------------------------------------------------------------- control

    async def ctl_status(self) -> dict[str, object]:
        d = self.desired
        return {
            "node": self.node, "ready": self.ready, "feed_connected": bool(self.feed and self.feed.connected),
            "feed_synced": bool(self.feed and self.feed.table.synced),
            "routes": len(d.routes) if d else 0, "stale": len(self.feed.table.stale) if self.feed else 0,
            "warnings": list(d.warnings) if d else [], "last_sync": self.last_sync,
            "ipip_supported": not self.reconciler.device_stats.ipip_unsupported,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
        }

    async def ctl_routes(self) -> list[dict[str, object]]:
        d = self.desired
        if d is None:
            return []
        async with self._sync_lock:
            actual = await self.reconciler.read_routes(d)
        kernel = {}
        for kr in actual.values():
            r = to_route(kr)
            kernel[(r.dst, r.table, r.metric)] = r
        rows = []
        for key, r in sorted(d.routes.items(), key=lambda kv: _sort_key(kv[1].dst)):
            have = kernel.get(key)
            rows.append({"prefix": r.dst, "kind": r.kind.value, "gateway": r.gateway, "dev": r.dev,
                         "onlink": r.onlink, "scope_link": r.scope_link, "mode": r.mode.value, "pool": r.pool,
                         "stale": bool(self.feed and self.feed.table.is_stale(r.dst)),
                         "in_kernel": have is not None and have.kernel_equal(r)})
        return rows

    async def ctl_resync(self) -> dict[str, int]:
        result = await self.full_sync("manual")
        return {"changes": result.changes}

    # ---------------------------------------------------------------- running

    def _ready_check(self) -> tuple[bool, str]:
        if not self.ready:
            return False, "first reconcile not done"
        return True, "ok"

    def _on_feed(self, changed: set[str], full: bool) -> None:
        self._pending_changes |= changed
        if full:
            self._full_trigger = "feed"
            self._full.set()
        self._wake.set()

    async def _worker(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            changed, self._pending_changes = self._pending_changes, set()
            try:
                if self._full.is_set():
                    self._full.clear()
                    await self.full_sync(self._full_trigger)
                elif changed and not await self.delta(changed):
                    await self.full_sync("feed")
            except Exception:
                log.exception("kernel programming failed; retrying on the next resync")
                self.metrics.netlink_errors.labels("sync").inc()

    def request_full(self, trigger: str) -> None:
        self._full_trigger = trigger
        self._full.set()
        self._wake.set()

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.resync_interval)
            self.request_full("periodic")

    async def _watch_config(self, queue: asyncio.Queue[object]) -> None:
        while True:
            event = await queue.get()
            self._apply_config_event(event)

    def _apply_config_event(self, event: object) -> None:
        error = getattr(event, "error", None)
        if error is not None:
            self.metrics.config_reloads.labels("invalid").inc()
            log.error("configuration not reloaded, keeping the running one: %s", error)
            return
        model = event.model  # type: ignore[attr-defined]
        try:
            model.node(self.node)
        except NotFoundError:
            self.metrics.config_reloads.labels("invalid").inc()
            log.error("configuration not reloaded: it has no Node %s", self.node)
            return
        self.model = model
        self.metrics.config_reloads.labels("ok").inc()
        log.info("configuration reloaded (revision %s)", getattr(model, "revision", "?"))
        self.request_full("config")

    def _cannot_program(self, exc: BaseException) -> int:
        """The first reconcile failed: one line that says what and why, not a traceback, and an exit
        code systemd does not retry (77) when retrying cannot help."""
        code = getattr(exc, "errno", None) or getattr(exc, "code", None) or 0
        hint = ""
        if code in (errno.EPERM, errno.EACCES):
            hint = ("; felixd needs CAP_NET_ADMIN: " + capability_report("CAP_NET_ADMIN"))
        text = str(exc) if isinstance(exc, KernelRefused) else \
            f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"
        log.error("cannot program the kernel at start-up: %s%s", text, hint)
        self.notifier.status(f"cannot program the kernel: {text}")
        return EXIT_NOPERM if code in (errno.EPERM, errno.EACCES) else 1

    async def run(self) -> int:
        args = self.args
        try:
            store = open_datastore(args.config)
            self.model = store.load()
            self.model.node(self.node)
        except (ValidationError, NotFoundError, OSError) as exc:
            logs.setup(args.log_level or "info", args.log_format)
            return config_failed(log, exc, self.notifier)
        logs.setup(args.log_level or self.model.bgp_config.log_severity_screen, args.log_format)
        self._wake = asyncio.Event()
        self._pending_changes: set[str] = set()
        self._full_trigger = "startup"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await self.reconciler.open()
        # routes a previous felixd left are kept until the feed's first snapshot (or its stale time)
        for kr in (await self.reconciler.read_routes()).values():
            r = to_route(kr)
            self._carry[(r.dst, r.table, r.metric)] = r
        mgmt = ManagementServer(self.metrics.registry, args.metrics_address or "127.0.0.1",
                                9091 if args.metrics_port is None else args.metrics_port,
                                with_datastore(self._ready_check, store.status),
                                metrics=self.model.bgp_config.prometheus_metrics_enabled)
        register_datastore_metrics(self.metrics.registry, store.status)
        await mgmt.start()
        control = ControlServer(str(self.run_dir / "felixd.sock"))
        control.register("status", self.ctl_status)
        control.register("routes", self.ctl_routes)
        control.register("resync", self.ctl_resync)
        await control.start()
        self.feed = FeedClient(str(self.run_dir / "feed.sock"), self._on_feed, stale_time=self.stale_time,
                               on_connected=lambda up: self.metrics.feed_connected.set(1 if up else 0))
        self.feed.start()
        events = KernelEvents(self.netns, self.protocol)

        async def kernel_events() -> None:
            while True:
                await events.changed.wait()
                await asyncio.sleep(0.05)  # a burst (a link flapping, a flush) becomes one resync
                events.changed.clear()
                self.request_full("netlink")

        watch = store.watch(initial=self.model)
        queue = watch.asyncio_queue()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)

        def reload() -> None:
            self.notifier.reloading()
            event = watch.check_now()
            if event is None:
                self.request_full("config")
            self.notifier.ready("reloaded")

        loop.add_signal_handler(signal.SIGHUP, reload)
        tasks = [loop.create_task(self._worker()), loop.create_task(self._periodic()),
                 loop.create_task(kernel_events()),
                 loop.create_task(self._watch_config(queue))]
        carry_deadline = loop.call_later(self.stale_time, lambda: (self._carry.clear(), self.request_full("stale")))
        try:
            try:
                await self.full_sync("startup")
            except (OSError, NetlinkError) as exc:
                return self._cannot_program(exc)
            # what start-up built lives as long as the process: keep the collector off it, so a full
            # collection over a large table never stalls a feed message
            gc.collect()
            gc.freeze()
            self.ready = True
            self.notifier.ready(f"programmed {len(self.desired.routes) if self.desired else 0} routes")
            wd = self.notifier.start_watchdog()
            log.info("felixd ready on node %s: %d routes", self.node, len(self.desired.routes) if self.desired else 0)
            await self._stop.wait()
            await Notifier.cancel(wd)
        finally:
            self.notifier.stopping()
            carry_deadline.cancel()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            watch.close()
            events.close()
            await self.feed.close()
            await control.close()
            await mgmt.close()
            await self.reconciler.close()
        # SIGTERM leaves the kernel as it is: routes keep forwarding while felixd is away.
        log.info("felixd stopped; kernel state left in place")
        return 0


def _sort_key(dst: str) -> tuple[int, int, int]:
    import ipaddress

    net = ipaddress.ip_network(dst)
    return (net.version, int(net.network_address), net.prefixlen)
