"""Export policy: what bgpd sends to a peer.

Per target peer: routes this node originates go to everyone; nothing learned ever goes to a
node-to-node mesh peer (every node announces its own blocks there); routes learned from eBGP go to
every other peer but their source; routes learned from iBGP go to other iBGP peers only by the
reflection rules (`bgpd.reflection`); to eBGP, learned routes are exported only inside the pools
(`bgpd.pool_set`). Towards eBGP the own AS is prepended, the next hop is ours unless `keep_next_hop`,
LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST are removed, and MED only leaves the AS when it is ours
(RFC 4271 5.1.4). A target's BGPFilter export rules (`bgpd.filters`) and the node's prefix
advertisements (`bgpd.advertise`) apply on top; `ExportPolicy.exporter` does that work once per path
(and prefix class), not per prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bgpd.advertise import ClusterRoutes, Tagger
from bgpd.filters import FamilyChains, InterfaceOf, RuleChain
from bgpd.identity import Identity
from bgpd.pool_set import PoolSet
from bgpd.reflection import reflected_attributes, reflects
from bgpd.rib.path import DEFAULT_LOCAL_PREF, Advert, NextHop, Path, PeerInfo, advert
from bgpd.route_match import local_pref_of_priority
from proto.bgp.attributes import readvertised
from proto.bgp.constants import IPV4_UNICAST, AfiSafi, Origin, SegmentType
from proto.bgp.model import AsPathSegment, PathAttributes
from proto.record import record


def originated_attributes(local_pref: int = DEFAULT_LOCAL_PREF) -> PathAttributes:
    """The attribute set of this node's own blocks (next hop: ourselves, set per session)."""
    return PathAttributes(origin=Origin.IGP, as_path=(), local_pref=local_pref)


def prepend_as(as_path: tuple[AsPathSegment, ...] | None, asn: int) -> tuple[AsPathSegment, ...]:
    segs = as_path or ()
    if segs and segs[0].type == SegmentType.AS_SEQUENCE and len(segs[0].asns) < 255:
        return (AsPathSegment(SegmentType.AS_SEQUENCE, (asn, *segs[0].asns)), *segs[1:])
    return (AsPathSegment(SegmentType.AS_SEQUENCE, (asn,)), *segs)


Exporter = Callable[[bytes, Path], Advert | None]
_NOT_CACHED = object()


@record(frozen=True, slots=True)
class ExportTarget:
    """What export policy needs to know of a receiving peer. Peers with equal targets get the same
    routes with the same attributes, so they share one update group (`bgpd.update_group`)."""

    ebgp: bool
    mesh: bool = False
    rr_client: bool = False
    keep_next_hop: bool = False
    next_hop_self: tuple[tuple[AfiSafi, NextHop], ...] = ()  # our address on the session, per family
    local_asn: int | None = None  # the AS this session uses (BGPPeer localASNumber); None: the node's
    next_hop_mode: str = ""  # BGPPeer nextHopMode: "Self" or "Keep" on every route; "" (Auto): BGP's rules
    filters: FamilyChains | None = None  # BGPFilter export rules

    @classmethod
    def of(cls, peer: PeerInfo) -> ExportTarget:
        filters = peer.export_filters
        return cls(peer.ebgp, peer.mesh, peer.rr_client, peer.keep_next_hop,
                   tuple(sorted(peer.next_hop_self.items())), peer.local_asn, peer.next_hop_mode,
                   filters if isinstance(filters, FamilyChains) else None)

    @property
    def ibgp(self) -> bool:
        return not self.ebgp

    def self_hop(self, family: AfiSafi) -> NextHop | None:
        for f, hop in self.next_hop_self:
            if f == family:
                return hop
        return None


class ExportPolicy:
    """Export for every target: BGP's rules (`advert_for`), then the target's BGPFilter export rules,
    then the default policy: learned routes only inside `pools` (the pools with BGP export on, and a
    reflector's service ranges), and the prefix advertisements' communities (`taggers`)."""

    def __init__(self, identity: Identity, pools: dict[AfiSafi, PoolSet],
                 routes: ClusterRoutes | None = None, taggers: dict[AfiSafi, Tagger] | None = None) -> None:
        self.identity = identity
        self.pools = pools
        self.routes = routes if routes is not None else ClusterRoutes()
        self.taggers = taggers or {}
        self.interface_of: InterfaceOf | None = None  # next hop -> interface, for BGPFilter `interface`

    def advert(self, best: Path, target: PeerInfo, family: AfiSafi) -> Advert | None:
        """What the peer `target` gets for a prefix whose best path is `best` (prefix filters aside):
        never its own routes back, nor a reflected route it originated (RFC 4456)."""
        src = best.source
        if src is target:
            return None
        originator = best.attrs.originator_id
        if originator is not None and originator == target.router_id and src.ibgp and target.ibgp:
            return None
        return self.advert_for(best, ExportTarget.of(target), family)

    def advert_for(self, best: Path, target: ExportTarget, family: AfiSafi,
                   attrs: PathAttributes | None = None) -> Advert | None:
        """What a peer like `target` gets for `best`, whoever the peer is, by BGP's rules; `attrs` is the
        route's attribute set after export rules changed it (default: the path's). Which member of an
        update group must not get it (the route's source, its originator) is the group's business."""
        src = best.source
        ident = self.identity
        base = best.attrs if attrs is None else attrs
        # passed on: unknown transitive attributes get the Partial bit, non-transitive ones go
        attrs = base if src.local or not base.unknown else readvertised(base)
        self_hop = target.self_hop(family)
        mode = target.next_hop_mode
        if target.mesh and not src.local:
            return None  # the mesh only carries each node's own blocks
        if src.ibgp:
            if target.ibgp and not reflects(src, target, ident.cluster_id):
                return None
            if target.ibgp:
                assert ident.cluster_id is not None
                out = reflected_attributes(attrs, src, ident.cluster_id)
                if mode == "Self" and self_hop:
                    return advert(_with_next_hop(out, self_hop, family), self_hop)
                return advert(out, best.next_hop)
        if target.ebgp:
            if (target.keep_next_hop or mode == "Keep") and best.next_hop:
                next_hop = best.next_hop
            elif self_hop:
                next_hop = self_hop
            else:
                return None
            out = replace(
                attrs,
                as_path=prepend_as(attrs.as_path, target.local_asn or ident.asn),
                next_hop=next_hop[0] if family == IPV4_UNICAST and "." in next_hop[0] else None,
                local_pref=None,
                med=attrs.med if src.local else None,
                originator_id=None,
                cluster_list=None,
            )
            return advert(out, next_hop)
        # iBGP target: our own routes with next hop self, eBGP-learned ones unchanged (RFC 4271 5.1.3)
        # unless the peer wants next hop self on everything
        if src.local or mode == "Self":
            if not self_hop:
                return None
            next_hop = self_hop
        else:
            next_hop = best.next_hop
        out = replace(
            attrs,
            next_hop=next_hop[0] if family == IPV4_UNICAST and "." in next_hop[0] else None,
            local_pref=attrs.local_pref if attrs.local_pref is not None else best.local_pref,
        )
        return advert(out, next_hop)

    # ------------------------------------------------------------ export rules and the default policy

    def decide(self, prefix: bytes, best: Path, target: ExportTarget, family: AfiSafi,
               chain: RuleChain | None = None, tagger: Tagger | None = None) -> tuple[Advert | None, str]:
        """The advert for one prefix and the reason when an export rule or the default policy
        decided it ("" when BGP's rules alone did). Uncached: `exporter` caches the same work per
        (path, prefix class); `tortiectl bgp rib --out` asks this per prefix."""
        if chain is None and target.filters is not None:
            chain = target.filters.get(family)
        if tagger is None:
            tagger = self.taggers.get(family)
        pools = self.pools.get(family)
        inside = best.source.local or (pools is not None and pools.covers(prefix))
        return self._decide(best, target, family, chain, chain.prefix_class(prefix) if chain else 0,
                            inside, tagger, tagger.prefix_class(prefix) if tagger else 0)

    def _decide(self, best: Path, target: ExportTarget, family: AfiSafi, chain: RuleChain | None, cls: int,
                inside: bool, tagger: Tagger | None, tag: int) -> tuple[Advert | None, str]:
        if self.advert_for(best, target, family) is None:
            return None, ""  # BGP's rules: not to peers like this one, whatever the filters say
        if chain is not None:
            local = best.source.local
            if local:
                local_pref = local_pref_of_priority(self.routes.priority(family))
            else:
                local_pref = best.attrs.local_pref if best.attrs.local_pref is not None else DEFAULT_LOCAL_PREF
            interface = None
            if chain.uses_interface and not local and best.next_hop and self.interface_of is not None:
                interface = self.interface_of(best.next_hop[0])
            verdict = chain.decide(cls, best.attrs, local_pref, not local, interface)
            if verdict is not None:
                if verdict.attrs is None:
                    return None, verdict.reason
                return self.advert_for(best, target, family, verdict.attrs), verdict.reason
        if not inside:
            return None, "default policy: learned routes leave only inside pools with BGP export"
        attrs = tagger.apply(best.attrs, tag) if tagger is not None and tag else None
        return self.advert_for(best, target, family, attrs), "prefix advertisement" if attrs is not None else ""

    def exporter(self, target: ExportTarget, family: AfiSafi) -> Exporter:
        """A per-prefix export function for peers like `target`, doing the per-path work once: per
        (path, prefix class) when the target has export rules or the node prefix advertisements."""
        pools = self.pools.get(family)
        covers = pools.covers if pools is not None else (lambda _p: False)
        chain = target.filters.get(family) if target.filters is not None else None
        tagger = self.taggers.get(family)
        advert_for = self.advert_for
        if chain is None and tagger is None:
            cache: dict[Path, Advert | None] = {}

            def export(prefix: bytes, best: Path) -> Advert | None:
                a = cache.get(best, _NOT_CACHED)
                if a is _NOT_CACHED:
                    if len(cache) > 4096:
                        cache.clear()
                    a = cache[best] = advert_for(best, target, family)
                if a is not None and not best.source.local and not covers(prefix):
                    return None
                return a  # type: ignore[return-value]

            return export

        decide = self._decide
        classed: dict[tuple[Path, int, bool, int], Advert | None] = {}
        rule_class = chain.prefix_class if chain is not None else (lambda _p: 0)
        tag_class = tagger.prefix_class if tagger is not None else (lambda _p: 0)

        def export_by_class(prefix: bytes, best: Path) -> Advert | None:
            inside = best.source.local or covers(prefix)
            key = (best, rule_class(prefix), inside, tag_class(prefix))
            a = classed.get(key, _NOT_CACHED)
            if a is _NOT_CACHED:
                if len(classed) > 4096:
                    classed.clear()
                a = classed[key] = decide(best, target, family, chain, key[1], inside, tagger, key[3])[0]
            return a  # type: ignore[return-value]

        return export_by_class


def _with_next_hop(attrs: PathAttributes, hop: NextHop, family: AfiSafi) -> PathAttributes:
    return replace(attrs, next_hop=hop[0] if family == IPV4_UNICAST and "." in hop[0] else None)
