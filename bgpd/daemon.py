"""tortie-bgpd as a process: configuration, the speaker and its transport, the feed, control, metrics.

Everything BGP-shaped happens in the sans-I/O `bgpd.speaker.Speaker`; `bgpd.transport` moves its
bytes and runs its one timer. This module only wires them to the rest of the process: it loads and
watches the cluster configuration and applies its changes to the speaker, serves the route feed
(`bgpd.feed_server` around the speaker's `RibFeed`), the control socket (`bgpd.control`) and the
management endpoint, and handles signals, sd_notify and the restart marker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from bgpd.bfd_transport import BfdTransport
from bgpd.control import Control
from bgpd.feed_server import FeedServer
from bgpd.fsm import State
from bgpd.interfaces import KernelInterfaces
from bgpd.metrics import BgpMetrics, forget_peer, refresh
from bgpd.ownership import BlockOwners, describe
from bgpd.speaker import Speaker
from bgpd.speaker_settings import pools_from_networks
from bgpd.topology import Topology, TopologyError, build, diff
from bgpd.transport import Transport
from datastore import open_datastore
from datastore.metrics import register as register_datastore_metrics
from datastore.metrics import with_datastore
from proto.bgp import CeaseSubcode
from proto.resources import DEFAULT_SECRETS_DIR, ClusterModel, NotFoundError, ValidationError
from runtime import logs
from runtime.cli import config_failed
from runtime.control import ControlServer
from runtime.http import ManagementServer
from runtime.sdnotify import Notifier
from startup.options import join_wanted

log = logging.getLogger("tortie.bgp")

STARTUP_READINESS = 30.0  # calico-node: strict readiness in the first 30 s


class BgpDaemon:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.node: str = args.node
        self.run_dir = Path(args.run_dir)
        self.secrets_dir = Path(getattr(args, "secrets_dir", None) or DEFAULT_SECRETS_DIR)
        self.metrics = BgpMetrics(per_peer=not getattr(args, "no_peer_metrics", False))
        self.notifier = Notifier()
        self.model: ClusterModel | None = None
        self.speaker: Speaker | None = None
        self.transport: Transport | None = None
        self.bfd: BfdTransport | None = None
        self.feed: FeedServer | None = None
        self.feed_ready = asyncio.Event()
        self.started = time.monotonic()
        self._stop = asyncio.Event()
        self._drained = False  # tortiectl node drain: every peer told to withdraw our routes

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    # ---------------------------------------------------------------- the speaker and its transport

    async def _start_speaker(self, model: ClusterModel, topo: Topology, restarting: bool) -> None:
        pools = pools_from_networks(p.cidr for p in model.pools)
        owners = BlockOwners.from_model(model)
        log.info("%s", describe(owners))
        speaker = Speaker(topo, pools, self.loop.time(), restarting=restarting, owners=owners)
        speaker.clock = time.perf_counter
        # read only when a BGPFilter rule tests an interface
        speaker.set_interface_resolver(KernelInterfaces())
        speaker.observe_update = self.metrics.update_processing_seconds.observe
        transport = Transport(speaker, after=self._after_service)
        for peer in speaker.peers.values():
            transport.peer_added(peer.transport)
        self.speaker, self.transport = speaker, transport
        addresses = [(a, topo.listen_port) for a in topo.listen_addresses]
        if self.args.listen_address:
            addresses = [(a, topo.listen_port) for a in self.args.listen_address]
        await transport.listen(addresses)
        log.info("listening on %s", ", ".join(f"{a}:{p}" for a, p in transport.bound))
        bfd = BfdTransport(speaker, transport.service)
        transport.before_timer = bfd.drain  # held-back BFD packets count before detection times do
        self.bfd = bfd
        for address, _port in addresses:
            try:
                bfd.listen([address])
            except OSError as exc:
                log.error("BFD: cannot listen on %s UDP %d: %s", address, bfd.port, exc.strerror or exc)
        if self.feed is not None and self.feed.source is not speaker.feed:
            self.feed.replace_source(speaker.feed)
        transport.service()

    def _after_service(self) -> None:
        speaker = self.speaker
        if speaker is None:
            return
        if self.bfd is not None and self.bfd.speaker is speaker:
            self.bfd.flush()
        if not speaker.deferring and not self.feed_ready.is_set():
            self.feed_ready.set()
        if self.feed is not None:
            self.feed.wake()

    # ---------------------------------------------------------------- configuration

    async def apply_model(self, model: ClusterModel) -> None:
        speaker, transport = self.speaker, self.transport
        assert speaker is not None and transport is not None
        try:
            topo = build(model, self.node, self.secrets_dir)
        except (TopologyError, NotFoundError) as exc:
            self.metrics.config_reloads.labels("invalid").inc()
            log.error("configuration not reloaded, keeping the running one: %s", exc)
            return
        d = diff(speaker.topology, topo)
        old_model, self.model = self.model, model
        now = transport.now()
        if d.identity_changed:
            log.warning("AS, router id, cluster id or port changed: restarting every session")
            speaker.stop(now, "configuration change", CeaseSubcode.OTHER_CONFIGURATION_CHANGE)
            speaker.stop_bfd(now)
            transport.service()
            if self.bfd is not None:
                self.bfd.close()
            await transport.close(graceful=False)
            for key in list(speaker.peers):
                forget_peer(self.metrics, key)
            await self._start_speaker(model, topo, restarting=False)
        else:
            for cfg in d.removed:
                log.info("peer %s removed from the configuration", cfg.address)
                self._remove_peer(cfg.key, CeaseSubcode.PEER_DECONFIGURED, "peer deconfigured")
            for old, new in d.changed:
                if speaker.reconfigure_peer(new, now):
                    continue  # only its BGPFilters changed: applied in place
                log.info("peer %s changed: restarting its session", new.address)
                self._remove_peer(old.key, CeaseSubcode.OTHER_CONFIGURATION_CHANGE, "configuration change")
                transport.peer_added(speaker.add_peer(new, now).transport)
            for cfg in d.added:
                transport.peer_added(speaker.add_peer(cfg, now).transport)
            for _old, new in d.bfd_changed:
                log.info("peer %s: BFD settings changed", new.address)
                speaker.peers[new.key].cfg = new
                speaker.set_bfd(new.key, new.bfd, now)
            if d.originate_changed:
                speaker.set_originated(topo, now)
            speaker.topology = topo
            pools_changed = old_model is None or {p.cidr for p in old_model.pools} != {p.cidr for p in model.pools}
            pools = pools_from_networks(p.cidr for p in model.pools) if pools_changed else None
            if d.routes_changed:
                speaker.set_routes(topo, now, pools)
            elif pools is not None:
                speaker.set_pools(pools, now)
            owners = BlockOwners.from_model(model)
            if owners != speaker.rib.owners:
                log.info("%s: routes from cluster nodes judged again", describe(owners))
                speaker.set_owners(owners, now)
            transport.service()
        self.metrics.config_reloads.labels("ok").inc()
        self.metrics.last_reload.set(time.time())
        log.info("configuration applied (revision %s): %d peers, %d added, %d removed, %d changed, "
                 "%d with new BFD settings", getattr(model, "revision", "?"), len(topo.peers), len(d.added),
                 len(d.removed), len(d.changed), len(d.bfd_changed))

    def _remove_peer(self, key: str, subcode: int, message: str) -> None:
        speaker, transport = self.speaker, self.transport
        assert speaker is not None and transport is not None
        peer = speaker.remove_peer(key, transport.now(), subcode, message)
        transport.service()  # the Cease goes out before the key is removed from the listener
        transport.peer_removed(peer.transport)
        forget_peer(self.metrics, key)

    # ---------------------------------------------------------------- control and readiness

    def ctl_graceful_stop(self) -> str:
        """Stop for an upgrade, as SIGTERM does: the peers keep our routes (RFC 4724 / 8538), the
        restart marker stays, so the next start is a restarting speaker; felixd keeps the kernel."""
        self._stop.set()
        return "stopping gracefully: peers keep this node's routes until it is back"

    def ctl_drain(self, message: str = "") -> str:
        """Leave the cluster: every session ends with a Hard Reset (RFC 8538; a plain Cease/2 to a
        peer without the N bit), so every peer withdraws this node's routes at once, and our RIB
        drops theirs. Sessions stay down until bgpd restarts or `tortiectl bgp enable`; the restart
        marker goes, so a stop after a drain is not a graceful restart."""
        speaker, transport = self.speaker, self.transport
        assert speaker is not None and transport is not None
        self._drained = True
        now = transport.now()
        for key in list(speaker.peers):
            speaker.shutdown_peer(key, now, message or "tortie-bgpd: node drained")
        transport.service()
        (self.run_dir / "bgpd.running").unlink(missing_ok=True)
        log.warning("drained: %d peers told to withdraw this node's routes", len(speaker.peers))
        return f"drained: {len(speaker.peers)} peers withdraw this node's routes; sessions stay down"

    def ready(self) -> tuple[bool, str]:
        speaker = self.speaker
        if speaker is None:
            return False, "not configured"
        peers = list(speaker.peers.values())
        up = [p for p in peers if p.state == State.ESTABLISHED]
        if not peers:
            return True, "no peers configured"
        gr_pending = speaker.deferring
        if time.monotonic() - self.started < STARTUP_READINESS:
            if len(up) == len(peers) and not gr_pending:
                return True, f"{len(up)}/{len(peers)} peers established"
            return False, f"starting: {len(up)}/{len(peers)} peers established" + \
                (", graceful restart pending" if gr_pending else "")
        if up:
            return True, f"{len(up)}/{len(peers)} peers established"
        return False, f"no peer established (0/{len(peers)})"

    def _update_gauges(self) -> None:
        if self.speaker is not None:
            refresh(self.metrics, self.speaker)

    # ---------------------------------------------------------------- running

    async def run(self) -> int:
        args = self.args
        try:
            store = open_datastore(args.config)
            model = store.load()
            joined = None
            if join_wanted(args, store.status.type):  # a host that joins by itself
                from startup.join import join_cluster

                joined = await join_cluster(store, model, self.node, args)
                model = joined.model
            topo = build(model, self.node, self.secrets_dir)
        except (ValidationError, NotFoundError, TopologyError, OSError) as exc:
            logs.setup(args.log_level or "info", args.log_format)
            return config_failed(log, exc, self.notifier)
        logs.setup(args.log_level or model.bgp_config_for(self.node).log_severity_screen, args.log_format)
        self.model = model
        self.run_dir.mkdir(parents=True, exist_ok=True)
        marker = self.run_dir / "bgpd.running"
        # A marker left by a bgpd that did not stop cleanly: we are a restarting speaker (RFC 4724).
        restarting = marker.exists()
        marker.write_text(str(os.getpid()))
        if restarting:
            log.warning("restarting after an unclean stop: graceful restart (waiting for peers' End-of-RIB)")
        self.feed = FeedServer(str(self.run_dir / "feed.sock"), on_clients=self.metrics.feed_clients.set,
                               ready=self.feed_ready)
        await self._start_speaker(model, topo, restarting)
        await self.feed.start()
        mgmt = ManagementServer(self.metrics.registry, args.metrics_address or
                                model.bgp_config.prometheus_metrics_host or "127.0.0.1",
                                args.metrics_port if args.metrics_port is not None else
                                (model.bgp_config.prometheus_metrics_port or 9092),
                                with_datastore(self.ready, store.status), on_scrape=self._update_gauges,
                                metrics=model.bgp_config.prometheus_metrics_enabled)
        register_datastore_metrics(self.metrics.registry, store.status)
        await mgmt.start()
        control = Control(self.node, lambda: self.speaker, lambda: self.transport, self.started)  # type: ignore[arg-type,return-value]
        server = ControlServer(str(self.run_dir / "bgpd.sock"))
        server.register("status", control.status)
        server.register("neighbors", control.neighbors)
        server.register("rib", control.rib)
        server.register("refresh", control.refresh)
        server.register("shutdown", control.shutdown)
        server.register("enable", control.enable)
        server.register("graceful_stop", self.ctl_graceful_stop)
        server.register("drain", self.ctl_drain)
        await server.start()
        watch = store.watch(initial=model)
        ready_message = (f"tortie-bgpd ready: node {self.node}, AS {topo.asn}, router id {topo.router_id}, "
                         f"{len(self.speaker.peers) if self.speaker else 0} peers")
        # this frame lives as long as the daemon: held here, the first model (every resource of the
        # cluster) would outlive every reload
        monitor = joined.monitor if joined is not None else None
        del model, topo, joined
        queue = watch.asyncio_queue()
        loop = self.loop
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)

        def sighup() -> None:
            self.notifier.reloading()
            if watch.check_now() is None:
                log.info("SIGHUP: configuration unchanged")
            self.notifier.ready("reloaded")

        loop.add_signal_handler(signal.SIGHUP, sighup)

        async def watcher() -> None:
            while True:
                event = await queue.get()
                if event.error is not None:
                    self.metrics.config_reloads.labels("invalid").inc()
                    log.error("configuration not reloaded, keeping the running one: %s", event.error)
                    continue
                await self.apply_model(event.model)

        async def gauges() -> None:
            while True:
                await asyncio.sleep(5)
                self._update_gauges()

        tasks = [loop.create_task(watcher()), loop.create_task(gauges())]
        assert self.speaker is not None
        self.notifier.ready(f"{len(self.speaker.peers)} peers configured")
        wd = self.notifier.start_watchdog()
        log.info("%s", ready_message)
        try:
            await self._stop.wait()
        finally:
            self.notifier.stopping()
            await Notifier.cancel(wd)
            for t in tasks:
                t.cancel()
            if self._drained:
                log.info("stopping after a drain: the peers have withdrawn this node's routes")
            else:
                log.info("stopping: graceful restart, the peers keep this node's routes until it is back")
            if self.speaker is not None and self.transport is not None:
                # BFD AdminDown first: peers must not take it for a failed path (RFC 5882 3.2), so a
                # graceful stop keeps its routes at the peers, and a drained one has withdrawn them
                now = self.transport.now()
                self.speaker.stop_bfd(now)
                if not self._drained:
                    self.speaker.stop_for_restart(now)  # RFC 8538 peers: Cease/4
                self.transport.service()  # sends both, BFD through _after_service
            if self.bfd is not None:
                self.bfd.close()
            if self.transport is not None:
                await self.transport.close(graceful=True)
            watch.close()
            if monitor is not None:
                monitor.close()
            await server.close()
            await mgmt.close()
            await self.feed.close()
            if self._drained:
                marker.unlink(missing_ok=True)
        return 0
