"""Import and export policy: what bgpd accepts from a peer, and what it sends to one.

Import (per peer): loop and sanity checks per attribute set (own AS in an eBGP AS_PATH, our router id
as ORIGINATOR_ID, our cluster id in CLUSTER_LIST, a NEXT_HOP that is ours or a martian), then a
per-prefix filter: only prefixes inside an IPPool, no shorter than the pool, unless the peer opts in
to routes outside the pools. Every rejection is counted per reason. Over `max_prefixes` the decision
is Cease/1 with the RFC 4486 data; the session layer sends it and holds the peer down.

Export (per target peer): routes this node originates go to everyone; nothing learned ever goes to a
node-to-node mesh peer (every node announces its own blocks there); routes learned from eBGP go to
every other peer but their source; routes learned from iBGP go to other iBGP peers only by the
reflection rules (`bgpd.reflection`); to eBGP, learned routes are exported only inside
the pools. Towards eBGP the own AS is prepended, the next hop is ours unless `keep_next_hop`,
LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST are removed, and MED only leaves the AS when it is ours
(RFC 4271 5.1.4).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field, replace

from bgpd.advertise import ClusterRoutes, Tagger
from bgpd.filters import FamilyChains, RuleChain, Verdict
from bgpd.reflection import reflected_attributes, reflection_loop, reflects
from bgpd.rib.path import DEFAULT_LOCAL_PREF, Advert, NextHop, Path, PeerInfo, advert
from bgpd.route_match import local_pref_of_priority
from proto.bgp.as4 import merge_as4
from proto.bgp.attributes import readvertised
from proto.bgp.constants import (
    AFI,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AfiSafi,
    CeaseSubcode,
    ErrorCode,
    Origin,
    SegmentType,
)
from proto.bgp.model import AsPathSegment, MessageError, PathAttributes
from proto.record import record

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@record(frozen=True)
class Identity:
    """This node as the policy sees it."""

    asn: int
    router_id: str
    cluster_id: str | None = None  # set on route reflectors
    addresses: frozenset[str] = frozenset()  # every address of this node (next-hop sanity check)


# ---------------------------------------------------------------- prefixes against pools


def family_of(network: Network) -> AfiSafi:
    return IPV4_UNICAST if network.version == 4 else IPV6_UNICAST


class PoolSet:
    """Fast "is this prefix (a `proto.prefix` value) inside one of the pools, and no shorter?" for
    one family."""

    def __init__(self, networks: Iterable[Network | str], family: AfiSafi) -> None:
        self.family = family
        self.max_len = 32 if family[0] == AFI.IPV4 else 128
        self.networks: list[Network] = []
        # (pool length, whole octets, mask of the partly used octet, its masked value)
        self._tests: list[tuple[int, bytes, int, int]] = []
        for n in networks:
            net = ipaddress.ip_network(n) if isinstance(n, str) else n
            if family_of(net) != family:
                continue
            self.networks.append(net)
            plen = net.prefixlen
            raw = net.network_address.packed
            whole, bits = divmod(plen, 8)
            mask = (0xFF << (8 - bits)) & 0xFF if bits else 0
            last = raw[whole] & mask if bits else 0
            self._tests.append((plen, raw[:whole], mask, last))

    def select(self, prefixes: Sequence[bytes], offset: int = 0) -> list[bytes]:
        """The prefixes `covers` accepts; `offset` skips an ADD-PATH identifier. One pool on an
        octet boundary (the usual case) is tested inline, without a call per prefix."""
        if offset == 0 and len(self._tests) == 1 and not self._tests[0][2]:
            plen, head, _mask, _last = self._tests[0]
            n = len(head)
            if n == 0:
                return [p for p in prefixes if plen <= p[1]]
            return [p for p in prefixes if plen <= p[1] and p[2 : 2 + n] == head]
        covers = self.covers
        if offset:
            return [p for p in prefixes if covers(p[offset:])]
        return [p for p in prefixes if covers(p)]

    def covers(self, prefix: bytes) -> bool:
        length = prefix[1]
        for plen, head, mask, last in self._tests:
            if length < plen:
                continue
            n = len(head)
            if prefix[2 : 2 + n] != head:
                continue
            if mask and (prefix[2 + n] & mask) != last:
                continue
            return True
        return False


# ---------------------------------------------------------------- import


_MARTIANS_V4 = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")]
_MARTIANS_V6 = [ipaddress.ip_network(n) for n in ("::/128", "::1/128", "ff00::/8", "::ffff:0:0/96")]
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")


@functools.lru_cache(maxsize=4096)
def martian_next_hop(next_hop: NextHop) -> str | None:
    """Why this next hop cannot be used, or None. IPv4 link-local (169.254/16) is allowed: it is a
    valid on-link address between a host and its router. An IPv6 link-local address is only valid as
    the second next hop of MP_REACH_NLRI."""
    if not next_hop:
        return "missing-next-hop"
    try:
        ip = ipaddress.ip_address(next_hop[0])
    except ValueError:
        return "martian-next-hop"
    if ip.version == 4:
        return "martian-next-hop" if any(ip in n for n in _MARTIANS_V4) else None
    if any(ip in n for n in _MARTIANS_V6) or ip in _LINK_LOCAL_V6:
        return "martian-next-hop"
    return None


def max_prefix_data(family: AfiSafi, limit: int) -> bytes:
    """RFC 4486 section 4: AFI, SAFI, upper bound."""
    return struct.pack("!HBI", family[0], family[1], limit)


@record
class ImportOptions:
    accept_outside_pools: bool = False
    max_prefixes: int | None = None  # paths per family, ADD-PATH paths counted one by one
    allow_local_as: int = 0  # BGPPeer numAllowedLocalASNumbers (BIRD `allow local as`)
    filters: FamilyChains | None = None  # BGPFilter import rules (bgpd.filters), tried before the pools


InterfaceOf = Callable[[str], "str | None"]


@record
class ImportPolicy:
    """One peer's import policy, with its reject counters."""

    identity: Identity
    peer: PeerInfo
    pools: dict[AfiSafi, PoolSet]
    options: ImportOptions = field(default_factory=ImportOptions)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> prefixes rejected
    # the session in use: with a 2-octet AS speaker, AS4_PATH carries the real path (RFC 6793)
    four_octet_as: bool = True
    interface_of: InterfaceOf | None = None  # next hop -> interface, for BGPFilter `interface` rules
    _checked: dict[tuple[PathAttributes, NextHop], PathAttributes | str] = field(default_factory=dict)
    _decided: dict[tuple[PathAttributes, NextHop, int], Verdict | None] = field(default_factory=dict)

    def set_four_octet_as(self, on: bool) -> None:
        if on != self.four_octet_as:
            self.four_octet_as = on
            self._checked.clear()

    def check(self, attrs: PathAttributes, next_hop: NextHop) -> PathAttributes | str:
        """The attribute set to store (rewritten for eBGP), or the reason the routes are rejected.
        Done once per distinct (attribute set, next hop), not per prefix."""
        key = (attrs, next_hop)
        out = self._checked.get(key)
        if out is None:
            out = self._check(attrs, next_hop)
            if len(self._checked) > 4096:
                self._checked.clear()
            self._checked[key] = out
        return out

    def _check(self, attrs: PathAttributes, next_hop: NextHop) -> PathAttributes | str:
        sp = self.identity
        peer = self.peer
        if attrs.as4_path is not None or attrs.as4_aggregator is not None:
            # RFC 6793: from a 2-octet AS speaker they hold the real path and aggregator; from a
            # 4-octet one they are to be ignored. Either way they are not kept.
            attrs = merge_as4(attrs) if not self.four_octet_as else replace(attrs, as4_path=None,
                                                                            as4_aggregator=None)
        if peer.ebgp:
            # our AS on this session (BGPPeer localASNumber, else the node's) more often than allowed
            seen = sum(seg.asns.count(peer.local_asn) for seg in attrs.as_path or ())
            if seen > self.options.allow_local_as:
                return "as-path-loop"
        loop = reflection_loop(attrs, sp.router_id, sp.cluster_id)
        if loop:
            return loop
        bad = martian_next_hop(next_hop)
        if bad:
            return bad
        if next_hop[0] in sp.addresses:
            return "next-hop-is-ours"
        # RFC 4271 5.1.5: LOCAL_PREF from another AS is ignored; RFC 4456 attributes never
        # legitimately cross an AS border
        if peer.ebgp and (
            (attrs.local_pref is not None and attrs.local_pref != DEFAULT_LOCAL_PREF)
            or attrs.originator_id or attrs.cluster_list
        ):
            attrs = replace(attrs, local_pref=DEFAULT_LOCAL_PREF, originator_id=None, cluster_list=None)
        return attrs

    def filter(self, prefixes: Sequence[bytes], family: AfiSafi, add_path: bool = False) -> Sequence[bytes]:
        """The prefixes this peer may send us; the rest are counted as rejected."""
        if self.options.accept_outside_pools:
            return prefixes
        pools = self.pools.get(family)
        if pools is None:
            self.rejected["outside-pools"] += len(prefixes)
            return []
        ok = pools.select(prefixes, 4 if add_path else 0)
        if len(ok) != len(prefixes):
            self.rejected["outside-pools"] += len(prefixes) - len(ok)
        return ok

    def chain(self, family: AfiSafi) -> RuleChain | None:
        """The peer's BGPFilter import rules for `family`, if it has any."""
        filters = self.options.filters
        return filters.get(family) if filters is not None else None

    def by_rules(self, chain: RuleChain, prefixes: Sequence[bytes], family: AfiSafi, add_path: bool,
                 attrs: PathAttributes, next_hop: NextHop) -> list[tuple[PathAttributes | str, list[bytes]]]:
        """Import through the peer's BGPFilter rules: the prefixes by outcome, each an attribute set
        to store (the accepting rule's operations applied) or the reason they are rejected. Prefixes no
        rule decides go to the pool filter. Per prefix only the rules' CIDR conditions are tested;
        the rest is decided once per (attribute set, next hop, class of prefix)."""
        offset = 4 if add_path else 0
        classes: dict[int, list[bytes]] = {}
        prefix_class = chain.prefix_class
        for p in prefixes:
            classes.setdefault(prefix_class(p[offset:] if offset else p), []).append(p)
        out: list[tuple[PathAttributes | str, list[bytes]]] = []
        for cls, group in classes.items():
            key = (attrs, next_hop, cls)
            if key in self._decided:
                verdict = self._decided[key]
            else:
                interface = self.interface_of(next_hop[0]) \
                    if chain.uses_interface and next_hop and self.interface_of is not None else None
                local_pref = attrs.local_pref if attrs.local_pref is not None else DEFAULT_LOCAL_PREF
                verdict = chain.decide(cls, attrs, local_pref, True, interface)
                if len(self._decided) > 4096:
                    self._decided.clear()
                self._decided[key] = verdict
            if verdict is None:
                ok = self.filter(group, family, add_path)
                if ok:
                    out.append((attrs, list(ok)))
                if len(ok) != len(group):
                    kept = set(ok)
                    out.append(("outside-pools", [p for p in group if p not in kept]))
            elif verdict.attrs is not None:
                out.append((verdict.attrs, group))
            else:
                self.rejected["bgp-filter"] += len(group)
                out.append((verdict.reason, group))
        return out

    def reject(self, reason: str, count: int) -> None:
        self.rejected[reason] += count

    def over_limit(self, family: AfiSafi, count: int) -> MessageError | None:
        """Cease/1 with the RFC 4486 data when `count` paths exceed the limit."""
        limit = self.options.max_prefixes
        if limit is None or count <= limit:
            return None
        return MessageError(
            ErrorCode.CEASE,
            CeaseSubcode.MAX_PREFIXES_REACHED,
            max_prefix_data(family, limit),
            f"{self.peer.name}: {count} prefixes for {family}, limit {limit}",
        )


# ---------------------------------------------------------------- export


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
