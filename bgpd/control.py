"""tortie-bgpd's control verbs and the JSON they answer (what `tortiectl` shows).

Reads the speaker's state through its public members; the only thing it asks the transport is what a
socket knows (the local address of a connection). Text for prefixes and addresses is made here, at the
edge; the speaker holds `proto.prefix` values.
"""

from __future__ import annotations

import ipaddress
import sys
import time
from collections.abc import Callable

from bgpd.export_policy import ExportTarget
from bgpd.fsm import State
from bgpd.ownership import Refusal
from bgpd.peer import Peer
from bgpd.rib.path import Path
from bgpd.speaker import Speaker
from bgpd.speaker_settings import FAMILIES, FAMILY_NAMES
from bgpd.transport import Transport
from proto import prefix as pf
from proto.bfd import STATE_NAMES as BFD_STATES
from proto.bfd import AuthType, diag_text
from proto.bgp import IPV4_UNICAST, AfiSafi, EnhancedRouteRefreshCap, MsgType, RouteRefreshCap
from proto.bgp.constants import Origin
from runtime.control import ControlError

ON_DEMAND = ("construct", "ssl")
STATE_NAMES = {State.IDLE: "Idle", State.CONNECT: "Connect", State.ACTIVE: "Active", State.OPENSENT: "OpenSent",
               State.OPENCONFIRM: "OpenConfirm", State.ESTABLISHED: "Established"}


class Control:
    """The verbs of the control socket, over a speaker that the daemon may replace (identity change)."""

    def __init__(self, node: str, speaker: Callable[[], Speaker], transport: Callable[[], Transport],
                 started: float, status_extra: Callable[[], dict[str, object]] | None = None) -> None:
        self.node = node
        self._speaker = speaker
        self._transport = transport
        self.started = started
        self.status_extra = status_extra

    @property
    def speaker(self) -> Speaker:
        return self._speaker()

    def now(self) -> float:
        return self._transport().now()

    # ------------------------------------------------------------ views

    def summary(self, peer: Peer) -> dict[str, object]:
        cfg = peer.cfg
        return {"address": cfg.key, "family": f"ipv{cfg.address.version}", "peer_type": cfg.peer_type,
                "state": STATE_NAMES[peer.state], "since": peer.since, "last_error": peer.session.last_error,
                "asn": cfg.asn, "local_asn": cfg.local_asn, "node": cfg.node, "admin_down": peer.admin_down,
                "bfd": BFD_STATES[peer.bfd.state] if peer.bfd is not None else None}

    def bfd(self, peer: Peer) -> dict[str, object] | None:
        """The peer's BFD session as `bgp neighbors` shows it (None: BFD not configured)."""
        s = peer.bfd
        if s is None:
            return None
        now = self.now()
        cfg = s.settings
        detect = s.detection_time
        return {
            "state": BFD_STATES[s.state], "remote_state": BFD_STATES[s.remote_state],
            "diagnostic": diag_text(s.local_diag), "remote_diagnostic": diag_text(s.remote_diag),
            "local_address": s.local, "multihop": s.multihop, "local_discriminator": s.local_discr,
            "remote_discriminator": s.remote_discr,
            "since": time.time() - (now - s.changed_at),
            "uptime_seconds": None if s.up_since is None else round(now - s.up_since, 3),
            "min_rx_ms": cfg.min_rx_ms, "min_tx_ms": cfg.min_tx_ms, "multiplier": cfg.multiplier,
            "remote_min_rx_ms": s.remote_min_rx / 1000, "remote_min_tx_ms": s.remote_desired_tx / 1000,
            "remote_multiplier": s.remote_mult,
            "tx_interval_ms": round(s.tx_interval * 1000, 3),
            "detection_time_ms": None if detect is None else round(detect * 1000, 3),
            "authentication": AuthType(cfg.auth_type).name.lower().replace("_", "-") if cfg.auth_type else None,
            "packets": {"sent": s.sent, "received": s.received, "dropped": dict(s.dropped)},
            "failures": peer.bfd_failures,
        }

    def sorted_peers(self) -> list[Peer]:
        return sorted(self.speaker.peers.values(), key=lambda p: p.info.address_key)

    def status(self) -> dict[str, object]:
        sp = self.speaker
        topo = sp.topology
        out: dict[str, object] = {
            "node": self.node, "asn": topo.asn, "router_id": str(topo.router_id),
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "graceful_restart": "restarting: waiting for peers' End-of-RIB" if sp.deferring else "",
            "route_feed": "" if not sp.feed.holding else
            f"felixd keeps its routes until End-of-RIB from {len(sp.feed_hold.waiting)} more peers",
            "peers": [self.summary(p) for p in self.sorted_peers()],
        }
        if self.status_extra is not None:
            out.update(self.status_extra())
        # what a speaker loads only on demand and has loaded (docs/architecture.md): construct for a
        # malformed message, OpenSSL for an etcd over TLS
        out["loaded_on_demand"] = [name for name in ON_DEMAND if sys.modules.get(name) is not None]
        return out

    @staticmethod
    def messages(peer: Peer) -> dict[str, dict[str, int]]:
        session = peer.session
        return {"sent": {MsgType(t).name: n for t, n in session.sent.items()},
                "received": {MsgType(t).name: n for t, n in session.received.items()}}

    def neighbors(self, peer: str | None = None) -> list[dict[str, object]]:
        sp = self.speaker
        rows = []
        targets = [self.peer(peer)] if peer else self.sorted_peers()
        transport = self._transport()
        adverts: dict[object, object] = {}  # per update group: what its members are sent, counted once
        for p in targets:
            session = p.session
            neg = p.negotiated
            pr = sp.rib.peers.get(p.info)
            accepted = sum(len(r) for r in pr.ins.values()) if pr else 0
            received = accepted + (sum(len(r.filtered) for r in pr.ins.values()) if pr else 0)
            advertised = sum(sp.advertised_count(p, f, adverts) for f in p.families)
            remote = session.remote_open
            caps = {
                "families": [FAMILY_NAMES[f] for f in p.families],
                "four_octet_as": bool(neg and neg.four_octet_as),
                "route_refresh": bool(remote and remote.capability(RouteRefreshCap) is not None),
                "enhanced_route_refresh": bool(remote and remote.capability(EnhancedRouteRefreshCap) is not None),
                "extended_message": bool(neg and neg.extended_message),
                "add_path_receive": sorted(FAMILY_NAMES.get(f, str(f)) for f in (neg.add_path_receive if neg else ())),
                "graceful_restart": {"local": True, "remote": p.remote_gr is not None,
                                     "remote_restart_time": p.remote_gr.restart_time if p.remote_gr else None,
                                     # RFC 8538: both N bits set, so restarts may send a NOTIFICATION
                                     "notification": "negotiated" if p.remote_gr is not None
                                     and p.remote_gr.notification else "local only"},
            }
            gr_state = ""
            if sp.gr.is_restarting(p.info):
                stale = sum(r.stale_count() for r in pr.ins.values()) if pr else 0
                gr_state = f"peer restarting, {stale} stale routes kept"
            conn = transport.connection(session)
            sock = conn.sock if conn is not None else None
            local = sock.getsockname()[0] if sock is not None else None
            rows.append({
                **self.summary(p),
                "hold_time": session.hold_time, "keepalive_time": session.keepalive_time,
                "local_address": local, "remote_router_id": session.remote_router_id,
                "uptime_seconds": None if session.established_at is None
                else round(self.now() - session.established_at, 3),
                "capabilities": caps,
                "messages": self.messages(p),
                "prefixes": {"received": received, "accepted": accepted,
                             "rejected": dict(pr.policy.rejected) if pr else {}, "advertised": advertised},
                "graceful_restart_state": gr_state,
                "last_notification_sent": p.last_sent, "last_notification_received": p.last_received,
                "source": p.cfg.source, "bfd_session": self.bfd(p),
                # start storms (issue 12): both sides connecting at once, and sessions that had to restart
                "collisions": p.neighbor.collisions, "established_count": p.established_count,
            })
        return rows

    def peer(self, address: str) -> Peer:
        peers = self.speaker.peers
        try:
            return peers[str(ipaddress.ip_address(address))]
        except (KeyError, ValueError):
            raise ControlError(f"no peer {address}; peers: {', '.join(sorted(peers)) or 'none'}") from None

    def rib(self, prefix: str | None = None, peer: str | None = None, direction: str = "in") -> list[dict[str, object]]:
        sp = self.speaker
        rows: list[dict[str, object]] = []
        want = pf.from_network(ipaddress.ip_network(prefix, strict=False)) if prefix else None
        families = [f for f in FAMILIES if want is None or (want[0] == 4) == (f == IPV4_UNICAST)]
        if peer is None:
            for family in families:
                loc = sp.rib.loc[family]
                keys = [want] if want is not None else sorted(
                    {k for src in loc.sources for k, _ in src.iter_paths()} | set(loc.best), key=pf.sort_key)
                for key in keys:
                    best, reason, candidates = loc.explain(key)
                    for path in candidates:
                        rows.append(_entry(pf.text(key), path, path is best, reason if path is best else ""))
            return rows
        p = self.peer(peer)
        if direction == "out":
            return self._rib_out(p, families, want)
        pr = sp.rib.peers.get(p.info)
        if pr is None:
            return []
        for family in families:
            loc = sp.rib.loc[family]
            rib_in = pr.ins[family]
            for key, path in rib_in.iter_paths():
                if want is not None and key != want:
                    continue
                rows.append(_entry(pf.text(key), path, loc.best.get(key) is path, ""))
            # what import policy rejected, and why (BIRD's `show route filtered`)
            for key, path, reason in rib_in.iter_filtered():
                if want is not None and key != want:
                    continue
                rows.append({**_entry(pf.text(key), path, False, reason), "filtered": True})
            add_path = pr.ins[family].add_path
            for nlri, refusal in pr.refused.get(family, {}).items():
                key = nlri[4:] if add_path else nlri
                if want is not None and key != want:
                    continue
                rows.append(_refused_entry(pf.text(key), refusal, p.key))
        return rows

    def _rib_out(self, p: Peer, families: list[AfiSafi], want: bytes | None) -> list[dict[str, object]]:
        """What we advertise to the peer and, where an export rule or the default policy decided,
        why; with export rules, also the routes a rule keeps from it."""
        sp = self.speaker
        rows: list[dict[str, object]] = []
        target = ExportTarget.of(p.info)
        for family in families:
            loc = sp.rib.loc[family]
            chain = target.filters.get(family) if target.filters is not None else None
            explain = chain is not None or family in sp.export.taggers
            advertised = sp.advertised(p, family)
            for key, adv in sorted(advertised.items(), key=lambda kv: pf.sort_key(kv[0])):
                if want is not None and key != want:
                    continue
                best = loc.best.get(key)
                why = sp.export.decide(key, best, target, family)[1] if explain and best is not None else ""
                rows.append(_advert_entry(pf.text(key), adv, p.key, why))
            if chain is None:
                continue
            for key, best in sorted(loc.best.items(), key=lambda kv: pf.sort_key(kv[0])):
                if key in advertised or (want is not None and key != want):
                    continue
                adv, why = sp.export.decide(key, best, target, family)
                if adv is None and why.startswith("rejected by"):
                    rows.append({**_entry(pf.text(key), best, False, why), "to": p.key, "filtered": True})
        return rows

    # ------------------------------------------------------------ actions

    def refresh(self, peer: str) -> str:
        p = self.peer(peer)
        if p.state != State.ESTABLISHED:
            raise ControlError(f"peer {peer} is not Established")
        self.speaker.request_refresh(p.key, self.now())
        self._transport().service()
        return f"route refresh requested from {peer}"

    def shutdown(self, peer: str, message: str = "") -> str:
        p = self.peer(peer)
        self.speaker.shutdown_peer(p.key, self.now(), message)
        self._transport().service()
        return f"peer {peer} shut down"

    def enable(self, peer: str) -> str:
        p = self.peer(peer)
        self.speaker.enable_peer(p.key, self.now())
        self._transport().service()
        return f"peer {peer} enabled"


def _attrs_entry(attrs: object) -> dict[str, object]:
    a = attrs
    as_path = " ".join(
        ("{" + ",".join(map(str, s.asns)) + "}") if s.type == 1 else " ".join(map(str, s.asns))
        for s in (getattr(a, "as_path", None) or ()))
    return {
        "origin": Origin(a.origin).name if getattr(a, "origin", None) is not None else "IGP",  # type: ignore[attr-defined]
        "as_path": as_path,
        "med": getattr(a, "med", None),
        "communities": [f"{c >> 16}:{c & 0xFFFF}" for c in (getattr(a, "communities", None) or ())],
        "large_communities": [":".join(map(str, c)) for c in (getattr(a, "large_communities", None) or ())],
        "originator_id": getattr(a, "originator_id", None),
        "cluster_list": list(getattr(a, "cluster_list", None) or ()),
    }


def _entry(prefix: str, path: Path, best: bool, reason: str) -> dict[str, object]:
    return {"prefix": prefix, "next_hop": path.next_hop[0] if path.next_hop else "self",
            "from": "local" if path.source.local else path.source.address, "best": best, "reason": reason,
            "stale": path.stale, "local_pref": path.local_pref, **_attrs_entry(path.attrs)}


def _refused_entry(prefix: str, refusal: Refusal, source: str) -> dict[str, object]:
    """A route block ownership refused (bgpd.ownership): in the peer's view, never in the Loc-RIB."""
    return {"prefix": prefix, "next_hop": refusal.next_hop[0] if refusal.next_hop else "-", "from": source,
            "best": False, "refused": True, "reason": f"refused: {refusal.reason} ({refusal.detail})",
            "stale": False, "local_pref": refusal.attrs.local_pref, **_attrs_entry(refusal.attrs)}


def _advert_entry(prefix: str, adv: object, to: str, reason: str = "") -> dict[str, object]:
    attrs = getattr(adv, "attrs", None)
    nh = getattr(adv, "next_hop", ())
    return {"prefix": prefix, "next_hop": nh[0] if nh else "self", "from": "local", "to": to, "best": True,
            "reason": reason, "stale": False, "local_pref": getattr(attrs, "local_pref", None),
            **_attrs_entry(attrs)}
