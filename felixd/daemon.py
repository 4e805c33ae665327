"""tortie-felixd: keeps the kernel's pod routing equal to the plan for this node.

Inputs: the cluster model (watched file), the learned routes (route feed from bgpd) and the host's
own network (read from the kernel, followed by netlink events). `felixd.programmer.Programmer` turns
them into kernel writes; this module is the process around it: one worker task that runs the
Programmer's jobs in order, the tasks that feed it (feed client, netlink events, config watch,
periodic check), the control verbs and start-up and shutdown.

The worker's jobs, most urgent first: a full sync (start, snapshot end, model or host change,
periodic, on demand), a host re-read (links, addresses or other routes changed), repairs of routes
someone else touched, then feed deltas in bounded batches. A big stream of deltas (a peer
announcing 100k routes) is written batch by batch while the feed client keeps reading: kernel
programming overlaps bgpd's ingest, and no batch holds more than `BATCH` routes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import gc
import logging
import os
import signal
import sys
import time
from itertools import islice
from pathlib import Path

from datastore import open_datastore
from datastore.metrics import register as register_datastore_metrics
from datastore.metrics import with_datastore
from felixd.feed_client import FeedClient
from felixd.kernel.events import KernelEvents
from felixd.kernel.rtnl import KernelRefused
from felixd.metrics import FelixMetrics
from felixd.programmer import Programmer
from felixd.reconcile import Reconciler, ReconcileResult
from felixd.state import RTPROT_TORTIE, RouteKey, RouteShape, key_parts
from proto import prefix as pf
from proto.prefix import Address, Prefix
from proto.resources import ClusterModel, NotFoundError, ValidationError
from runtime import logs
from runtime.caps import capability_report
from runtime.cli import EXIT_NOPERM, config_failed
from runtime.control import ControlServer
from runtime.http import ManagementServer
from runtime.sdnotify import Notifier

log = logging.getLogger("tortie.felix")

BATCH = 4096  # feed changes planned and written at once at most (one bulk netlink chunk)
BACKLOG = 2 * BATCH  # feed changes waiting beyond which the feed socket is not read
EVENT_DEBOUNCE = 0.02  # a burst of netlink events (a link flapping, a flush) is handled once
PERIODIC_QUIET = 1.0  # seconds without feed deltas before a due periodic check runs
TRIM_AFTER = 8192  # route writes after which an idle worker returns freed heap memory to the system


class FelixDaemon:
    def __init__(self, args: argparse.Namespace, netns: str | None = None) -> None:
        self.args = args
        self.node: str = args.node
        self.run_dir = Path(args.run_dir)
        self.netns = netns
        self.protocol: int = getattr(args, "route_protocol", RTPROT_TORTIE)
        self.resync_interval: float = getattr(args, "resync_interval", 30.0)
        self.stale_time: float = getattr(args, "stale_time", 120.0)
        self.metrics = FelixMetrics()
        for op in ("replace", "delete", "sync"):
            self.metrics.netlink_errors.labels(op)  # exported at 0 before the first error
        for kind in ("route", "device", "neighbour"):
            self.metrics.drift_repairs.labels(kind)  # at 0 too: an alert's increase() needs the series
        self.notifier = Notifier()
        self.reconciler = Reconciler(netns=netns, protocol=self.protocol)
        self.programmer = Programmer(self.reconciler, self.node, self.metrics,
                                     install_poolless=getattr(args, "install_poolless", False))
        self.feed: FeedClient | None = None
        self.ready = False
        self.started = time.monotonic()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._full: str | None = None  # trigger of a requested full sync
        self._host_dirty = False
        # changed prefixes, in arrival order, not yet written, with the next hop each had when planned
        self._pending: dict[Prefix, Address | None] = {}
        self._touched: dict[RouteKey, tuple[int, bool]] = {}
        self._full_waiters: list[asyncio.Future[ReconcileResult]] = []
        self._trimmed_at = 0  # route messages written when the heap was last trimmed
        self._last_feed = -PERIODIC_QUIET  # monotonic time the feed last brought or wrote a change
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._full_done = time.monotonic()  # when the last full sync ended

    @property
    def model(self) -> ClusterModel | None:
        return self.programmer.model

    @property
    def desired(self):  # type: ignore[no-untyped-def]
        return self.programmer.desired

    # ---------------------------------------------------------------- the worker

    def request_full(self, trigger: str) -> None:
        # the first trigger names the sync, except that any other outranks a waiting periodic one
        if self._full is None or self._full == "periodic":
            self._full = trigger
        self._wake.set()

    def _on_feed(self, changed: dict[Prefix, Address | None], ended: bool) -> None:
        if ended:
            self.request_full("feed")
        elif changed:
            self._last_feed = time.monotonic()
            pending = self._pending
            if pending:
                # a prefix already waiting keeps the next hop it had when it first changed
                for prefix, old in changed.items():
                    if prefix not in pending:
                        pending[prefix] = old
            else:
                self._pending = pending = changed
            if len(pending) >= BACKLOG and self.feed is not None:
                self.feed.resume.clear()
        self._wake.set()

    def _take(self) -> dict[Prefix, Address | None]:
        pending = self._pending
        if len(pending) <= BATCH:
            self._pending = {}
            batch = pending
        else:
            batch = {prefix: pending[prefix] for prefix in islice(pending, BATCH)}
            for prefix in batch:
                del pending[prefix]
        if len(self._pending) < BATCH and self.feed is not None:
            self.feed.resume.set()
        return batch

    async def full_sync(self, trigger: str) -> ReconcileResult:
        assert self.feed is not None
        prog, feed = self.programmer, self.feed
        # The feed table stays as it is until the kernel has been compared with it (the comparison runs
        # in a worker thread, over a view of the table); bgpd coalesces what it sends meanwhile.
        feed.resume.clear()
        try:
            # a full sync looks at the host too when it may have missed a change (or never looked)
            look = prog.host is None or trigger in ("periodic", "netlink", "manual")
            if look and await prog.read_host() == "host" and trigger == "periodic":
                trigger = "host"
            await prog.probe_devices()
            planned = prog.plan(feed.table)
            self._pending = {}  # the plan has them all
            result = await prog.full_sync(feed.table, trigger, planned)
        finally:
            feed.resume.set()
        prog.update_gauges(feed.table)
        return result

    async def _run_one(self) -> bool:
        """Run the most urgent job; False when there is none."""
        prog, feed = self.programmer, self.feed
        assert feed is not None
        if self._full is not None and not self._periodic_waits():
            trigger, self._full = self._full, None
            waiters, self._full_waiters = self._full_waiters, []
            try:
                result = await self.full_sync(trigger)
            except Exception as exc:
                for w in waiters:
                    w.set_exception(exc)
                raise
            for w in waiters:
                w.set_result(result)
            self._last_feed = self._full_done = time.monotonic()  # the feed was held meanwhile, not quiet
            return True
        if self._host_dirty:
            self._host_dirty = False
            changed = await prog.read_host()
            if changed is not None:
                self.request_full(changed)
            return True
        if self._touched:
            touched, self._touched = self._touched, {}
            await prog.repair(touched)
            return True
        if self._pending:
            self._last_feed = time.monotonic()
            if await prog.delta(self._take()):
                prog.update_gauges(feed.table)
            else:
                self.request_full("feed")
            return True
        return False

    def _periodic_waits(self) -> bool:
        """The periodic check is drift repair, not news: it waits while feed changes stream in (a full
        sync in the middle of a table load dumps and compares the whole kernel table, holding the feed
        meanwhile: at 1M routes, every interval). It runs once the feed has been quiet for
        PERIODIC_QUIET seconds; a timer wakes the worker then."""
        if self._full != "periodic":
            return False
        quiet = time.monotonic() - self._last_feed
        if not self._pending and quiet >= PERIODIC_QUIET:
            return False
        if self._quiet_timer is None:
            def wake() -> None:
                self._quiet_timer = None
                self._wake.set()
            self._quiet_timer = asyncio.get_running_loop().call_later(max(0.0, PERIODIC_QUIET - quiet), wake)
        return True

    def _trim(self, after: int) -> None:
        """Hand the heap's freed memory back to the system once `after` route writes went by since the
        last time (glibc keeps it otherwise: 100k routes in and out leave ~10 MB behind)."""
        written = self.reconciler.routes.bulk.messages
        if written - self._trimmed_at >= after:
            self._trimmed_at = written
            _malloc_trim()

    async def _worker(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            try:
                while await self._run_one():
                    pass
                self._trim(TRIM_AFTER)
            except Exception:
                log.exception("kernel programming failed; retrying on the next resync")
                self.metrics.netlink_errors.labels("sync").inc()

    async def _periodic(self) -> None:
        """A full check `resync_interval` after the last full sync ended (whatever its trigger): at 1M
        routes one takes tens of seconds on a loaded machine, and counted from its start the next
        would be due at once."""
        while True:
            wait = self._full_done + self.resync_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self.request_full("periodic")
            await asyncio.sleep(self.resync_interval)

    async def _kernel_events(self, events: KernelEvents) -> None:
        while True:
            await events.changed.wait()
            await asyncio.sleep(EVENT_DEBOUNCE)
            events.changed.clear()
            touched, host, neighbours, overflow = events.sorter.take()
            if overflow or neighbours:
                self.request_full("netlink")
            if host:
                self._host_dirty = True
            if touched:
                self._touched.update(touched)
            self._wake.set()

    # ---------------------------------------------------------------- control

    async def ctl_status(self) -> dict[str, object]:
        d, prog, feed = self.desired, self.programmer, self.feed
        return {
            "node": self.node, "ready": self.ready, "feed_connected": bool(feed and feed.connected),
            "feed_synced": bool(feed and feed.table.synced),
            # kept per mode as deltas come: counting the view would plan every route again
            "routes": sum(prog.modes.values()) if d else 0, "stale": len(feed.table.stale) if feed else 0,
            "warnings": list(d.warnings) if d else [], "last_sync": prog.last_sync,
            "ipip_supported": not self.reconciler.device_stats.ipip_unsupported,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            # what felixd did so far: tests and operators see a delta cost no dump and no rebuild
            "counts": {**prog.counts, "route_dumps": self.reconciler.routes.bulk.dumps,
                       "route_messages": self.reconciler.routes.bulk.messages,
                       "feed_frames": feed.frames if feed else 0},
        }

    async def ctl_routes(self) -> list[dict[str, object]]:
        d = self.desired
        if d is None:
            return []
        kernel = await self.reconciler.read_routes(d)
        feed = self.feed
        rows = []
        for key, shape in sorted(d.routes.items(), key=lambda kv: _sort_key(kv[0])):
            prefix, _table, _metric = key_parts(key)
            have = kernel.get(key)
            rows.append({"prefix": pf.text(prefix), "kind": shape.kind.value,
                         "gateway": pf.address_text(shape.gateway) if shape.gateway else None, "dev": shape.dev,
                         "onlink": shape.onlink, "scope_link": shape.scope_link, "mode": shape.mode.value,
                         "pool": shape.pool, "stale": bool(feed and feed.table.is_stale(prefix)),
                         "in_kernel": _in_kernel(have, shape, prefix[0], self.protocol)})
        return rows

    async def ctl_resync(self) -> dict[str, int]:
        """A full sync now (by the worker, after the job it is doing), answered when done."""
        done: asyncio.Future[ReconcileResult] = asyncio.get_running_loop().create_future()
        self._full_waiters.append(done)
        self.request_full("manual")
        return {"changes": (await done).changes}

    # ---------------------------------------------------------------- running

    def _ready_check(self) -> tuple[bool, str]:
        if not self.ready:
            return False, "first reconcile not done"
        return True, "ok"

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
        self.programmer.set_model(model)
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
        _mmap_big_buffers()
        try:
            store = open_datastore(args.config)
            model = store.load()
            model.node(self.node)
        except (ValidationError, NotFoundError, OSError) as exc:
            logs.setup(args.log_level or "info", args.log_format)
            return config_failed(log, exc, self.notifier)
        logs.setup(args.log_level or model.bgp_config.log_severity_screen, args.log_format)
        self.programmer.set_model(model)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await self.reconciler.open()
        # routes a previous felixd left are kept until the feed's first snapshot (or its stale time)
        for key, kr in (await self.reconciler.read_routes()).items():
            self.programmer.carry[key] = RouteShape(kind=kr[1], gateway=kr[2], dev=kr[3], onlink=kr[4],
                                                    scope_link=kr[5])
        mgmt = ManagementServer(self.metrics.registry, args.metrics_address or "127.0.0.1",
                                9091 if args.metrics_port is None else args.metrics_port,
                                with_datastore(self._ready_check, store.status),
                                metrics=model.bgp_config.prometheus_metrics_enabled)
        register_datastore_metrics(self.metrics.registry, store.status)
        await mgmt.start()
        control = ControlServer(str(self.run_dir / "felixd.sock"))
        control.register("status", self.ctl_status)
        control.register("routes", self.ctl_routes)
        control.register("resync", self.ctl_resync)
        await control.start()
        self.feed = FeedClient(str(self.run_dir / "feed.sock"), self._on_feed, stale_time=self.stale_time,
                               on_connected=lambda up: self.metrics.feed_connected.set(1 if up else 0))
        events = KernelEvents(self.netns, self.protocol, (self.reconciler.portid,))
        watch = store.watch(initial=model)
        del model  # this frame lives as long as the daemon: the first model must not outlive a reload
        queue = watch.asyncio_queue()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)

        def reload() -> None:
            self.notifier.reloading()
            if watch.check_now() is None:
                self.request_full("config")
            self.notifier.ready("reloaded")

        loop.add_signal_handler(signal.SIGHUP, reload)

        def carry_expired() -> None:
            if not self.programmer.carrying:
                return  # the feed's snapshot came first: nothing is carried (no full sync mid-load)
            self.programmer.carry_expired = True  # dropped by the next plan, not under a running sync
            self.request_full("stale")

        carry_deadline = loop.call_later(self.stale_time, carry_expired)
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                await self.full_sync("startup")
            except Exception as exc:
                if not isinstance(exc, OSError) and not _pyroute2_error(exc):
                    raise
                return self._cannot_program(exc)
            self.feed.start()
            tasks = [loop.create_task(self._worker()), loop.create_task(self._periodic()),
                     loop.create_task(self._kernel_events(events)), loop.create_task(self._watch_config(queue))]
            # what start-up built lives as long as the process: keep the collector off it
            gc.collect()
            gc.freeze()
            self.ready = True
            routes = sum(self.programmer.modes.values())
            self.notifier.ready(f"programmed {routes} routes")
            wd = self.notifier.start_watchdog()
            log.info("felixd ready on node %s: %d routes", self.node, routes)
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


def _pyroute2_error(exc: BaseException) -> bool:
    """A pyroute2 NetlinkError (not an OSError), without importing pyroute2 where it never ran."""
    module = sys.modules.get("pyroute2.netlink.exceptions")
    return module is not None and isinstance(exc, module.NetlinkError)


def _malloc_trim() -> None:
    """glibc's malloc_trim(0); nothing where there is no such call (another libc)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


M_MMAP_THRESHOLD = -3


def _mmap_big_buffers(threshold: int = 64 << 10) -> None:
    """Serve allocations from `threshold` up (a batch of encoded routes, a socket read, a dict table)
    with their own mappings, returned to the system when freed. glibc's default raises this threshold
    after the first such free, and the big transient buffers of a route burst then stay in the heap."""
    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError):
        pass


def _sort_key(key: RouteKey) -> tuple[object, ...]:
    prefix, table, metric = key_parts(key)
    return (*pf.sort_key(prefix), table, metric)


def _in_kernel(have: tuple[object, ...] | None, shape: RouteShape, version: int, protocol: int) -> bool:
    return have is not None and have[6] == protocol and have[1:6] == shape.signature(version)
