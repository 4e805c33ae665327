"""The decoded forms of BGP messages: the contract between the codec and everything that uses it.

Prefixes are `proto.prefix` values (`bytes`: IP version, length, the whole address, host bits zero),
made once by the NLRI fast path and used as they are by the RIBs, the route feed and felixd. Where
ADD-PATH is negotiated for a family in the receiving direction, each entry is the 4-octet path
identifier followed by that value. `proto.bgp.nlri.join` turns entries back into the wire form;
`proto.prefix` converts to and from text for everything that is not hot.

Path attributes other than MP_REACH_NLRI / MP_UNREACH_NLRI are an interned, immutable
`PathAttributes`, decoded once per distinct raw byte string and shared by every prefix that carries
it. The next hop of MP_REACH_NLRI lives in `MpReach` with its NLRI.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, AfiSafi, ErrorCode
from proto.bgp.error_names import describe_error, shutdown_text
from proto.record import record

Prefix = bytes  # a proto.prefix value, optionally preceded by a 4-octet ADD-PATH path identifier


class MessageError(Exception):
    """The peer sent something that ends the session: carries the NOTIFICATION to send back."""

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = "") -> None:
        super().__init__(reason or f"BGP error {code}/{subcode}")
        self.code = code
        self.subcode = subcode
        self.data = data
        self.reason = reason

    def notification(self) -> Notification:
        return Notification(self.code, self.subcode, self.data)


@record(frozen=True, slots=True)
class Negotiated:
    """What both sides agreed in their OPENs; the codec needs it to frame and parse."""

    four_octet_as: bool = True
    extended_message: bool = False
    # families for which ADD-PATH path identifiers are present in what we receive / what we send
    add_path_receive: frozenset[AfiSafi] = frozenset()
    add_path_send: frozenset[AfiSafi] = frozenset()
    # RFC 8950: families whose NLRI may carry an IPv6 next hop (for IPv4 unicast)
    extended_next_hop: frozenset[AfiSafi] = frozenset()

    @property
    def max_message_len(self) -> int:
        return 65535 if self.extended_message else 4096


# ---------------------------------------------------------------- capabilities (OPEN parameters)


@record(frozen=True, slots=True)
class Capability:
    """An unknown capability, kept opaque."""

    code: int
    value: bytes = b""


@record(frozen=True, slots=True)
class MultiprotocolCap:
    afi: int
    safi: int


@record(frozen=True, slots=True)
class RouteRefreshCap:
    pass


@record(frozen=True, slots=True)
class EnhancedRouteRefreshCap:
    pass


@record(frozen=True, slots=True)
class ExtendedMessageCap:
    pass


@record(frozen=True, slots=True)
class ExtendedNextHopCap:
    entries: tuple[tuple[int, int, int], ...]  # (NLRI AFI, NLRI SAFI, next-hop AFI)


@record(frozen=True, slots=True)
class GracefulRestartCap:
    restart_time: int  # seconds, 12 bits
    restarting: bool = False  # R bit
    notification: bool = False  # N bit (RFC 8538)
    families: tuple[tuple[int, int, bool], ...] = ()  # (AFI, SAFI, forwarding state preserved)


@record(frozen=True, slots=True)
class FourOctetAsCap:
    asn: int


@record(frozen=True, slots=True)
class AddPathCap:
    families: tuple[tuple[int, int, int], ...]  # (AFI, SAFI, AddPathMode)


@record(frozen=True, slots=True)
class FqdnCap:
    hostname: str
    domain: str = ""


AnyCapability = (
    Capability
    | MultiprotocolCap
    | RouteRefreshCap
    | EnhancedRouteRefreshCap
    | ExtendedMessageCap
    | ExtendedNextHopCap
    | GracefulRestartCap
    | FourOctetAsCap
    | AddPathCap
    | FqdnCap
)


@record(frozen=True, slots=True)
class OptionalParameter:
    """An OPEN optional parameter other than capabilities (type 2), kept opaque."""

    type: int
    value: bytes


# ---------------------------------------------------------------- messages


@record(frozen=True, slots=True)
class Open:
    asn: int  # the 2-octet My Autonomous System field (AS_TRANS when the real AS needs 4 octets)
    hold_time: int
    router_id: str  # dotted quad
    capabilities: tuple[AnyCapability, ...] = ()
    other_parameters: tuple[OptionalParameter, ...] = ()
    version: int = 4
    # RFC 9072: encode with the extended optional parameters length (decode records what was seen)
    extended_params: bool = False
    # how many capabilities each optional parameter carried (FRR sends one per parameter); only the
    # exact re-encoding of a received OPEN needs it, so it takes no part in equality
    capability_groups: tuple[int, ...] = field(default=(), compare=False)

    def capability(self, kind: type) -> object | None:
        for cap in self.capabilities:
            if isinstance(cap, kind):
                return cap
        return None

    @property
    def real_asn(self) -> int:
        cap = self.capability(FourOctetAsCap)
        return cap.asn if isinstance(cap, FourOctetAsCap) else self.asn


@record(frozen=True, slots=True)
class Keepalive:
    pass


@record(frozen=True, slots=True)
class Notification:
    code: int
    subcode: int
    data: bytes = b""

    @property
    def shutdown_message(self) -> str | None:
        """RFC 9003 shutdown communication of Cease/2 and Cease/4, if present and valid UTF-8."""
        return shutdown_text(self.code, self.subcode, self.data)

    def describe(self) -> str:
        """One line for logs and tortiectl (see `proto.bgp.error_names.describe_error`)."""
        return describe_error(self.code, self.subcode, self.data)


@record(frozen=True, slots=True)
class RouteRefresh:
    afi: int
    safi: int
    subtype: int = 0  # RefreshSubtype: 0 normal, 1 BoRR, 2 EoRR


@record(frozen=True, slots=True)
class AsPathSegment:
    type: int  # SegmentType
    asns: tuple[int, ...]


# The decoder builds the two classes below for every new attribute set. A frozen dataclass's
# __init__ sets each field through object.__setattr__, which costs more than decoding the attribute;
# these constructors set the slots directly instead (same object, same equality and hash). They
# assume what the classes promise: slots, no defaults computed in __post_init__ (the unit tests check).
_new = object.__new__
_set_segment_type = AsPathSegment.type.__set__  # type: ignore[attr-defined]
_set_segment_asns = AsPathSegment.asns.__set__  # type: ignore[attr-defined]


def as_path_segment(kind: int, asns: tuple[int, ...]) -> AsPathSegment:
    """`AsPathSegment(kind, asns)`, for the decoder's hot path."""
    segment = _new(AsPathSegment)
    _set_segment_type(segment, kind)
    _set_segment_asns(segment, asns)
    return segment


@record(frozen=True, slots=True)
class UnknownAttribute:
    flags: int
    code: int
    value: bytes


@record(frozen=True, slots=True, eq=True)
class PathAttributes:
    """One attribute set, shared by every prefix that carries it. Absent attributes are None."""

    origin: int | None = None
    as_path: tuple[AsPathSegment, ...] | None = None
    next_hop: str | None = None  # NEXT_HOP attribute (IPv4), dotted quad
    med: int | None = None
    local_pref: int | None = None
    atomic_aggregate: bool = False
    aggregator: tuple[int, str] | None = None  # (AS, IPv4 address)
    communities: tuple[int, ...] | None = None
    originator_id: str | None = None
    cluster_list: tuple[str, ...] | None = None
    extended_communities: tuple[bytes, ...] | None = None  # 8 octets each
    as4_path: tuple[AsPathSegment, ...] | None = None
    as4_aggregator: tuple[int, str] | None = None
    large_communities: tuple[tuple[int, int, int], ...] | None = None
    unknown: tuple[UnknownAttribute, ...] = ()


PATH_ATTRIBUTE_FIELDS = tuple(PathAttributes.__dataclass_fields__)  # type: ignore[attr-defined]
(
    _set_origin,
    _set_as_path,
    _set_next_hop,
    _set_med,
    _set_local_pref,
    _set_atomic_aggregate,
    _set_aggregator,
    _set_communities,
    _set_originator_id,
    _set_cluster_list,
    _set_extended_communities,
    _set_as4_path,
    _set_as4_aggregator,
    _set_large_communities,
    _set_unknown,
) = (getattr(PathAttributes, name).__set__ for name in PATH_ATTRIBUTE_FIELDS)


def path_attributes_from(values: list[Any]) -> PathAttributes:
    """`PathAttributes(*values)` (one value per field, in field order), for the decoder's hot path.
    Written out rather than looped: this runs once per new attribute set."""
    attrs = _new(PathAttributes)
    _set_origin(attrs, values[0])
    _set_as_path(attrs, values[1])
    _set_next_hop(attrs, values[2])
    _set_med(attrs, values[3])
    _set_local_pref(attrs, values[4])
    _set_atomic_aggregate(attrs, values[5])
    _set_aggregator(attrs, values[6])
    _set_communities(attrs, values[7])
    _set_originator_id(attrs, values[8])
    _set_cluster_list(attrs, values[9])
    _set_extended_communities(attrs, values[10])
    _set_as4_path(attrs, values[11])
    _set_as4_aggregator(attrs, values[12])
    _set_large_communities(attrs, values[13])
    _set_unknown(attrs, values[14])
    return attrs


@record(frozen=True, slots=True)
class MpReach:
    afi: int
    safi: int
    next_hop: tuple[str, ...]  # one address, or IPv6 global + link-local
    nlri: list[Prefix] = field(default_factory=list, compare=True, hash=False)


@record(frozen=True, slots=True)
class MpUnreach:
    afi: int
    safi: int
    withdrawn: list[Prefix] = field(default_factory=list, compare=True, hash=False)


@record(frozen=True, slots=True)
class AttributeProblem:
    """An RFC 7606 outcome that keeps the session up: what was wrong and what was done about it."""

    action: str  # "treat-as-withdraw" or "attribute-discard"
    code: int  # the attribute type concerned (0 when it is the attribute block as a whole)
    subcode: int  # the UPDATE error subcode RFC 4271 would have used
    reason: str


@record(slots=True)
class Update:
    withdrawn: list[Prefix] = field(default_factory=list)  # IPv4 unicast
    attributes: PathAttributes | None = None
    nlri: list[Prefix] = field(default_factory=list)  # IPv4 unicast
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    # RFC 7606: when non-empty with a treat-as-withdraw action, every NLRI in this UPDATE is to be
    # handled as withdrawn; attribute-discard problems are informational (the attribute is gone).
    problems: tuple[AttributeProblem, ...] = ()
    # (type code, flags) of each path attribute in the order received, MP attributes included.
    # Only the encoder reads it, to give back a received message's exact attribute order and
    # Extended Length bits; it never changes what is encoded and takes no part in equality.
    layout: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    @property
    def treat_as_withdraw(self) -> bool:
        return any(p.action == "treat-as-withdraw" for p in self.problems)

    def end_of_rib(self) -> AfiSafi | None:
        """The family this UPDATE marks End-of-RIB for (RFC 4724 section 2), or None."""
        if self.nlri or self.withdrawn or self.mp_reach is not None:
            return None
        if self.mp_unreach is None:
            return IPV4_UNICAST if self.attributes is None else None
        if not self.mp_unreach.withdrawn and self.attributes in (None, PathAttributes()):
            return (self.mp_unreach.afi, self.mp_unreach.safi)
        return None


Message = Open | Update | Notification | Keepalive | RouteRefresh

__all__ = [
    "IPV4_UNICAST",
    "IPV6_UNICAST",
    "ErrorCode",
]
