"""Where a route came from (`PeerInfo`) and what it says (`Path`, `Advert`).

A route in the RIBs is a dict entry: wire-form prefix -> `Path`. A `Path` is interned: every prefix
that arrived from the same peer with the same attribute set and next hop shares one object, so a
million routes cost a million dict entries and a handful of `Path`s. Interned objects compare and hash
by identity, which keeps the hot dict operations (grouping, "did it change?") free of attribute-set
hashing. What the decision process needs from an attribute set is computed once, when its `Path` is
made, and kept in slots.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import weakref
from collections.abc import Sequence

from proto.bgp.constants import AfiSafi, Origin, SegmentType
from proto.bgp.model import AsPathSegment, PathAttributes

DEFAULT_LOCAL_PREF = 100
NO_PATH_ID = b""

NextHop = tuple[str, ...]  # one address, or an IPv6 global address and its link-local; () = ourselves


def address_key(address: str | None) -> tuple[int, int]:
    """Orders addresses numerically, IPv4 before IPv6; a missing address sorts last."""
    if not address:
        return (99, 0)
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


class PeerInfo:
    """One source or target of routes: a BGP neighbour, or this node itself (`local`).

    The session layer makes one per configured peer and keeps it for the peer's lifetime, updating
    `router_id` and `next_hop_self` when a session is established. Identity is the peer: two
    `PeerInfo`s are never equal, so paths from different sessions never merge.
    """

    __slots__ = (
        "__weakref__",
        "address",
        "address_key",
        "asn",
        "ebgp",
        "export_filters",
        "keep_next_hop",
        "local",
        "local_asn",
        "mesh",
        "name",
        "next_hop_mode",
        "next_hop_self",
        "node",
        "router_id",
        "router_id_key",
        "rr_client",
    )

    def __init__(
        self,
        name: str,
        address: str | None,
        asn: int,
        local_asn: int,
        router_id: str = "0.0.0.0",
        *,
        mesh: bool = False,
        rr_client: bool = False,
        local: bool = False,
        node: str | None = None,
        keep_next_hop: bool = False,
        next_hop_self: dict[AfiSafi, NextHop] | None = None,
        next_hop_mode: str = "",
        export_filters: object | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self.asn = asn
        self.local_asn = local_asn
        self.ebgp = asn != local_asn and not local
        self.mesh = mesh  # a node-to-node mesh peer: iBGP-learned routes never go to it
        self.rr_client = rr_client  # this peer is our route-reflector client
        self.local = local
        self.node = node  # the cluster Node behind this peer, if any (for the feed)
        self.keep_next_hop = keep_next_hop  # eBGP: BGPPeer keepOriginalNextHop
        self.next_hop_mode = next_hop_mode  # BGPPeer nextHopMode Self or Keep ("" for Auto)
        self.export_filters = export_filters  # its BGPFilter export rules (bgpd.filters.FamilyChains)
        # our own address on this session per family, for next-hop-self
        self.next_hop_self: dict[AfiSafi, NextHop] = dict(next_hop_self or {})
        self.address_key = address_key(address)
        self.router_id = router_id
        self.router_id_key = int(ipaddress.IPv4Address(router_id))

    @classmethod
    def local_source(cls, asn: int, router_id: str, node: str | None = None) -> PeerInfo:
        """The source of the routes this node originates."""
        return cls("local", None, asn, asn, router_id, local=True, node=node)

    def set_router_id(self, router_id: str) -> None:
        self.router_id = router_id
        self.router_id_key = int(ipaddress.IPv4Address(router_id))

    @property
    def ibgp(self) -> bool:
        return not self.ebgp and not self.local

    def __repr__(self) -> str:
        kind = "local" if self.local else "eBGP" if self.ebgp else "iBGP"
        return f"PeerInfo({self.name!r}, {self.address}, AS{self.asn}, {kind})"


def as_path_length(segments: Sequence[AsPathSegment] | None) -> int:
    """RFC 4271 9.1.2.2 a: an AS_SET counts 1; RFC 5065: confederation segments count 0."""
    n = 0
    for seg in segments or ():
        if seg.type == SegmentType.AS_SEQUENCE:
            n += len(seg.asns)
        elif seg.type == SegmentType.AS_SET:
            n += 1
    return n


def neighbour_as(segments: Sequence[AsPathSegment] | None) -> int:
    """The AS a route entered ours from (first AS of the AS_PATH, confederation segments skipped);
    0 for a route that never left our AS."""
    for seg in segments or ():
        if seg.type in (SegmentType.AS_SEQUENCE, SegmentType.AS_SET) and seg.asns:
            return seg.asns[0] if seg.type == SegmentType.AS_SEQUENCE else 0
    return 0


@functools.lru_cache(maxsize=8192)
def _router_id_key(router_id: str) -> int:
    """A dotted-quad identifier as a number (reflected routes make a Path per originator)."""
    return int.from_bytes(socket.inet_aton(router_id), "big")


class Path:
    """One (source, attribute set, next hop, ADD-PATH id, stale) combination; make them with `path()`."""

    __slots__ = (
        "__weakref__",
        "as_path_len",
        "attrs",
        "cluster_len",
        # decision-process values, computed once
        "local_pref",
        "med",
        "neighbour_as",
        "next_hop",
        "origin",
        "path_id",
        "rank",
        "rank_without_med",
        "source",
        "stale",
        "tie_id",
    )

    def __init__(
        self, source: PeerInfo, attrs: PathAttributes, next_hop: NextHop, path_id: bytes, stale: bool
    ) -> None:
        self.source = source
        self.attrs = attrs
        self.next_hop = next_hop
        self.path_id = path_id
        self.stale = stale
        lp = attrs.local_pref
        self.local_pref = DEFAULT_LOCAL_PREF if lp is None else lp
        self.as_path_len = as_path_length(attrs.as_path)
        self.origin = Origin.INCOMPLETE if attrs.origin is None else attrs.origin
        # RFC 4271 9.1.2.2 c: a missing MED is the lowest possible value
        self.med = attrs.med or 0
        self.neighbour_as = neighbour_as(attrs.as_path) or (0 if source.ebgp else -1)
        # RFC 4456 section 9: ORIGINATOR_ID stands in for the router id
        self.tie_id = _router_id_key(attrs.originator_id) if attrs.originator_id else source.router_id_key
        self.cluster_len = len(attrs.cluster_list or ())
        # the decision steps as one sort key (lowest wins), for the common cases where the MED step
        # is a plain comparison (see decision.best_path)
        self.rank = (
            not source.local,
            -self.local_pref,
            self.as_path_len,
            self.origin,
            self.med,
            not source.ebgp,
            self.tie_id,
            self.cluster_len,
            source.address_key,
            path_id,
        )
        self.rank_without_med = self.rank[:4] + self.rank[5:]

    def with_stale(self, stale: bool) -> Path:
        return path(self.source, self.attrs, self.next_hop, self.path_id, stale)

    @property
    def first_hop(self) -> str | None:
        return self.next_hop[0] if self.next_hop else None

    def __repr__(self) -> str:
        flags = " stale" if self.stale else ""
        pid = f" id={self.path_id.hex()}" if self.path_id else ""
        return f"Path({self.source.name} via {self.first_hop}{pid}{flags})"


class Advert:
    """What an Adj-RIB-Out holds for a prefix: the attribute set and next hop sent. Interned."""

    __slots__ = ("__weakref__", "attrs", "next_hop")

    def __init__(self, attrs: PathAttributes, next_hop: NextHop) -> None:
        self.attrs = attrs
        self.next_hop = next_hop

    def __repr__(self) -> str:
        return f"Advert({self.next_hop}, {self.attrs})"


_paths: weakref.WeakValueDictionary[tuple, Path] = weakref.WeakValueDictionary()
_adverts: weakref.WeakValueDictionary[tuple, Advert] = weakref.WeakValueDictionary()


def path(
    source: PeerInfo,
    attrs: PathAttributes,
    next_hop: NextHop,
    path_id: bytes = NO_PATH_ID,
    stale: bool = False,
) -> Path:
    """The one `Path` for these values (called per UPDATE, not per prefix)."""
    # the router id is part of the key: a peer that comes back with a new one gets new paths
    key = (source, source.router_id_key, attrs, next_hop, path_id, stale)
    p = _paths.get(key)
    if p is None:
        p = Path(source, attrs, next_hop, path_id, stale)
        _paths[key] = p
    return p


def advert(attrs: PathAttributes, next_hop: NextHop) -> Advert:
    key = (attrs, next_hop)
    a = _adverts.get(key)
    if a is None:
        a = Advert(attrs, next_hop)
        _adverts[key] = a
    return a


def effective_next_hop(attrs: PathAttributes | None, mp_next_hop: NextHop | None) -> NextHop:
    """The next hop of a route: MP_REACH_NLRI's when present, else the NEXT_HOP attribute's."""
    if mp_next_hop:
        return tuple(mp_next_hop)
    if attrs is not None and attrs.next_hop:
        return (attrs.next_hop,)
    return ()
