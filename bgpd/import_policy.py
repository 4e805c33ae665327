"""Import policy: what bgpd accepts from a peer.

Per attribute set, loop and sanity checks (own AS in an eBGP AS_PATH, our router id as ORIGINATOR_ID,
our cluster id in CLUSTER_LIST, a NEXT_HOP that is ours or a martian); then, per prefix, the peer's
BGPFilter import rules (`bgpd.filters`) and the pool filter (`bgpd.pool_set`): only prefixes inside an
IPPool, no shorter than the pool, unless the peer opts in to routes outside the pools. Every rejection
is counted per reason. Over `max_prefixes` the decision is Cease/1 with the RFC 4486 data; the session
layer sends it and holds the peer down.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import field, replace

from bgpd.filters import FamilyChains, InterfaceOf, RuleChain, Verdict
from bgpd.identity import Identity
from bgpd.pool_set import PoolSet
from bgpd.reflection import reflection_loop
from bgpd.rib.path import DEFAULT_LOCAL_PREF, NextHop, PeerInfo
from proto.bgp.as4 import merge_as4
from proto.bgp.constants import AfiSafi, CeaseSubcode, ErrorCode
from proto.bgp.model import MessageError, PathAttributes
from proto.record import record

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
