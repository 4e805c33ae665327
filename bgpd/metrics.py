"""tortie-bgpd's Prometheus metrics. docs/metrics.md lists each; a test keeps the two in step.

Series stay bounded: the per-peer families (label `peer`) live in their own registry and are exported
either as they are or, with `per_peer=False` (`tortie-bgpd --no-peer-metrics`), summed over peers
under the same names without the `peer` label, so a reflector with a thousand clients exports a few
dozen series instead of tens of thousands, and the same `sum by (...)` queries work in both modes.
`tortie_bgp_peers{state}` (peers per session state) is exported in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bgpd.peer import Peer
from bgpd.speaker import Speaker
from bgpd.speaker_settings import FAMILY_NAMES
from proto.bfd import BfdState
from proto.bgp import AfiSafi, MsgType
from runtime.prom import Collector, CollectorRegistry, Counter, Gauge, Histogram, Metric

SESSION_STATES = ("idle", "connect", "active", "opensent", "openconfirm", "established")
BFD_STATES = ("admindown", "down", "init", "up")  # by BfdState value


class PeerFamilies(Collector):
    """The per-peer families, exported as they are or summed over `peer`."""

    def __init__(self, registry: CollectorRegistry, per_peer: Callable[[], bool]) -> None:
        self.source = registry
        self.per_peer = per_peer

    def collect(self) -> Iterator[Metric]:
        if self.per_peer():
            yield from self.source.collect()
            return
        for family in self.source.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # a creation time cannot be summed
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "peer"))
                key = (sample.name, labels)
                sums[key] = sums.get(key, 0.0) + sample.value
            for (name, labels), value in sums.items():
                out.add_sample(name, dict(labels), value)
            yield out


class BgpMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, per_peer: bool = True) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.per_peer = per_peer
        p = self.peer_registry = CollectorRegistry()
        r.register(PeerFamilies(p, lambda: self.per_peer))
        self._states: dict[str, str] = {}
        self.session_state = Gauge(
            "tortie_bgp_session_state",
            "1 for the state each peer's session is in, 0 for the others",
            ["peer", "state"],
            registry=p,
        )
        self.established_transitions = Counter(
            "tortie_bgp_established_transitions", "Sessions that reached Established", ["peer"], registry=p
        )
        self.messages_sent = Counter(
            "tortie_bgp_messages_sent", "BGP messages sent, by type", ["peer", "type"], registry=p
        )
        self.messages_received = Counter(
            "tortie_bgp_messages_received", "BGP messages received, by type", ["peer", "type"], registry=p
        )
        self.notifications_sent = Counter(
            "tortie_bgp_notifications_sent",
            "NOTIFICATIONs sent, by code and subcode",
            ["peer", "code", "subcode"],
            registry=p,
        )
        self.notifications_received = Counter(
            "tortie_bgp_notifications_received",
            "NOTIFICATIONs received, by code and subcode",
            ["peer", "code", "subcode"],
            registry=p,
        )
        self.prefixes_received = Gauge(
            "tortie_bgp_prefixes_received",
            "Prefixes held in the peer's Adj-RIB-In",
            ["peer", "afi_safi"],
            registry=p,
        )
        self.prefixes_accepted = Gauge(
            "tortie_bgp_prefixes_accepted",
            "Prefixes from the peer accepted by import policy",
            ["peer", "afi_safi"],
            registry=p,
        )
        self.prefixes_rejected = Counter(
            "tortie_bgp_prefixes_rejected",
            "Prefixes from the peer rejected, by reason",
            ["peer", "reason"],
            registry=p,
        )
        self.prefixes_advertised = Gauge(
            "tortie_bgp_prefixes_advertised",
            "Prefixes in the peer's Adj-RIB-Out",
            ["peer", "afi_safi"],
            registry=p,
        )
        self.collisions = Counter(
            "tortie_bgp_connection_collisions",
            "Connection collisions resolved (RFC 4271 6.8): both sides connected at once",
            ["peer"],
            registry=p,
        )
        self.treat_as_withdraw = Counter(
            "tortie_bgp_treat_as_withdraw",
            "UPDATEs handled as withdrawals under RFC 7606",
            ["peer"],
            registry=p,
        )
        self.loc_rib_routes = Gauge(
            "tortie_bgp_loc_rib_routes", "Best routes in the Loc-RIB", ["afi_safi"], registry=r
        )
        self.update_processing_seconds = Histogram(
            "tortie_bgp_update_processing_seconds",
            "Time to process one received UPDATE",
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=r,
        )
        self.feed_clients = Gauge("tortie_bgp_feed_clients", "Route-feed readers connected", registry=r)
        self.feed_lag = Gauge(
            "tortie_bgp_feed_lag_changes", "Changes waiting to be sent to the slowest feed reader", registry=r
        )
        self.gr_stale_routes = Gauge(
            "tortie_bgp_graceful_restart_stale_routes",
            "Routes kept as stale for restarting peers",
            ["peer"],
            registry=p,
        )
        self.config_reloads = Counter(
            "tortie_bgp_config_reloads", "Configuration reloads, by result", ["result"], registry=r
        )
        self.last_reload = Gauge(
            "tortie_bgp_config_last_reload_timestamp_seconds",
            "When the configuration was last loaded",
            registry=r,
        )

        self.prefix_limit_hits = Counter(
            "tortie_bgp_prefix_limit_exceeded",
            "Times a peer sent more prefixes than its limit (its session is reset)",
            ["peer"],
            registry=p,
        )
        self.bfd_session_state = Gauge(
            "tortie_bgp_bfd_session_state",
            "1 for the state each peer's BFD session is in, 0 for the others",
            ["peer", "state"],
            registry=p,
        )
        self.bfd_transitions = Counter(
            "tortie_bgp_bfd_transitions", "BFD session state changes, by the state entered", ["peer", "state"],
            registry=p,
        )
        self.bfd_failures = Counter(
            "tortie_bgp_bfd_failures",
            "BFD sessions that went from Up to Down on a failure (not AdminDown)",
            ["peer"],
            registry=p,
        )
        self.bfd_detection_time = Gauge(
            "tortie_bgp_bfd_detection_time_seconds",
            "How long the peer's silence takes the BFD session down",
            ["peer"],
            registry=p,
        )
        self.bfd_packets_sent = Counter(
            "tortie_bgp_bfd_packets_sent", "BFD Control packets sent", ["peer"], registry=p
        )
        self.bfd_packets_received = Counter(
            "tortie_bgp_bfd_packets_received", "BFD Control packets accepted", ["peer"], registry=p
        )
        self.bfd_packets_dropped = Counter(
            "tortie_bgp_bfd_packets_dropped",
            "BFD packets dropped (malformed, TTL not 255, unknown session, authentication), by reason",
            ["reason"],
            registry=r,
        )

        self.bfd_children: dict[str, _BfdChildren] = {}
        self.peer_children: dict[str, _PeerChildren] = {}
        self.peers = Gauge(
            "tortie_bgp_peers", "Configured peers whose session is in each state", ["state"], registry=r
        )
        for s in SESSION_STATES:
            self.peers.labels(s)

    def set_state(self, peer: str, state: str, count: bool = True) -> None:
        """`count=False` when setting many: the per-state totals then wait for one `_count_states`
        (counting after each of a thousand reflector clients was a million steps per scrape)."""
        state = state.lower()
        if self._states.get(peer) != state:
            for s in SESSION_STATES:
                self.session_state.labels(peer, s).set(1 if s == state else 0)
            self._states[peer] = state
        if count:
            self._count_states()

    def _count_states(self) -> None:
        counts = dict.fromkeys(SESSION_STATES, 0)
        for s in self._states.values():
            counts[s] = counts.get(s, 0) + 1
        for s, n in counts.items():
            self.peers.labels(s).set(n)


def _sync_counter(child: object, value: int) -> None:
    """Bring a counter up to a total kept elsewhere (the speaker counts; Prometheus only increments)."""
    delta = value - child._value.get()  # type: ignore[attr-defined]
    if delta > 0:
        child.inc(delta)  # type: ignore[attr-defined]


class _PeerChildren:
    """One peer's series, looked up once: a scrape of a thousand-client reflector made some thirty
    thousand `labels()` lookups (label tuples built and hashed) to find the same objects each time."""

    __slots__ = ("collisions", "established", "families", "key", "limit_hits", "received", "sent", "stale",
                 "treat_as_withdraw")

    def __init__(self, metrics: BgpMetrics, key: str) -> None:
        self.key = key
        self.established = metrics.established_transitions.labels(key)
        self.treat_as_withdraw = metrics.treat_as_withdraw.labels(key)
        self.limit_hits = metrics.prefix_limit_hits.labels(key)
        self.collisions = metrics.collisions.labels(key)
        self.stale = metrics.gr_stale_routes.labels(key)
        self.sent: dict[int, Any] = {}
        self.received: dict[int, Any] = {}
        self.families: dict[AfiSafi, tuple[Any, Any, Any]] = {}

    def message(self, cache: dict[int, Any], metric: Counter, msg_type: int) -> Any:
        """The series of one message type, sent (`cache` = self.sent) or received."""
        got = cache.get(msg_type)
        if got is None:
            got = cache[msg_type] = metric.labels(self.key, MsgType(msg_type).name.lower())
        return got

    def family(self, metrics: BgpMetrics, family: AfiSafi) -> tuple[Any, Any, Any]:
        """The received, accepted and advertised gauges of one address family."""
        got = self.families.get(family)
        if got is None:
            name = FAMILY_NAMES[family]
            got = self.families[family] = (metrics.prefixes_received.labels(self.key, name),
                                           metrics.prefixes_accepted.labels(self.key, name),
                                           metrics.prefixes_advertised.labels(self.key, name))
        return got


def refresh(metrics: BgpMetrics, speaker: Speaker) -> None:
    """Read the speaker's state into the metrics: on every scrape and periodically, never per event."""
    for family, loc in speaker.rib.loc.items():
        metrics.loc_rib_routes.labels(FAMILY_NAMES[family]).set(len(loc))
    adverts: dict[object, object] = {}  # per update group and family, shared by its members
    children = metrics.peer_children
    for key, peer in speaker.peers.items():
        metrics.set_state(key, peer.state.name, count=False)
        c = children.get(key)
        if c is None:
            c = children[key] = _PeerChildren(metrics, key)
        _sync_counter(c.established, peer.established_count)
        _sync_counter(c.treat_as_withdraw, peer.treat_as_withdraw)
        _sync_counter(c.limit_hits, peer.prefix_limit_hits)
        _sync_counter(c.collisions, peer.neighbor.collisions)
        for (code, subcode), n in peer.notifications_sent.items():
            _sync_counter(metrics.notifications_sent.labels(key, str(code), str(subcode)), n)
        for (code, subcode), n in peer.notifications_received.items():
            _sync_counter(metrics.notifications_received.labels(key, str(code), str(subcode)), n)
        if peer.bfd is not None:
            _bfd(metrics, key, peer)
        session = peer.session
        for counts, cache, metric in ((session.sent, c.sent, metrics.messages_sent),
                                      (session.received, c.received, metrics.messages_received)):
            for t, n in counts.items():
                _sync_counter(c.message(cache, metric, t), n)
        pr = speaker.rib.peers.get(peer.info)
        if pr is None:
            continue
        for family, rib_in in pr.ins.items():
            received, accepted, advertised = c.family(metrics, family)
            received.set(len(rib_in))
            accepted.set(len(rib_in))
            advertised.set(speaker.advertised_count(peer, family, adverts))
        c.stale.set(sum(rib_in.stale_count() for rib_in in pr.ins.values()))
        for reason, n in pr.policy.rejected.items():
            _sync_counter(metrics.prefixes_rejected.labels(key, reason), n)
    metrics._count_states()
    metrics.feed_lag.set(speaker.feed.lag)
    for reason, n in speaker.bfd.dropped.items():
        _sync_counter(metrics.bfd_packets_dropped.labels(reason), n)


class _BfdChildren:
    """One peer's BFD metric children, looked up once: `labels()` costs microseconds, and a scrape
    of a hundred peers would make several thousand lookups."""

    __slots__ = ("detect", "failures", "received", "sent", "states", "transitions")

    def __init__(self, metrics: BgpMetrics, key: str) -> None:
        self.states = {st: metrics.bfd_session_state.labels(key, BFD_STATES[st]) for st in BfdState}
        self.transitions = {st: metrics.bfd_transitions.labels(key, BFD_STATES[st]) for st in BfdState}
        self.failures = metrics.bfd_failures.labels(key)
        self.sent = metrics.bfd_packets_sent.labels(key)
        self.received = metrics.bfd_packets_received.labels(key)
        self.detect = metrics.bfd_detection_time.labels(key)


def _bfd(metrics: BgpMetrics, key: str, peer: Peer) -> None:
    b = peer.bfd
    assert b is not None
    c = metrics.bfd_children.get(key)
    if c is None:
        c = metrics.bfd_children[key] = _BfdChildren(metrics, key)
    for st, child in c.states.items():
        child.set(1 if st == b.state else 0)
    for st, n in b.transitions.items():
        _sync_counter(c.transitions[st], n)
    _sync_counter(c.failures, peer.bfd_failures)
    _sync_counter(c.sent, b.sent)
    _sync_counter(c.received, b.received)
    detect = b.detection_time
    c.detect.set(detect if detect is not None else 0)


def forget_peer(metrics: BgpMetrics, key: str) -> None:
    """A peer left the configuration: none of its series stays behind."""
    metrics._states.pop(key, None)
    metrics.bfd_children.pop(key, None)
    metrics.peer_children.pop(key, None)
    metrics._count_states()
    for value in vars(metrics).values():
        if isinstance(value, (Counter, Gauge)) and "peer" in value._labelnames:
            value.remove_where("peer", key)
