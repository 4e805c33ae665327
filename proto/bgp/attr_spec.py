"""The construct specification of path attributes: the attribute header, the attribute block, the
value of each attribute, MP_REACH_NLRI / MP_UNREACH_NLRI, and the conversions between what
construct parses or builds and the model values of `proto.bgp.model`.

This is the reference the hand-written codecs (`proto.bgp.attr_values`, the block walk in
`proto.bgp.attr_block`) are tested against, and the path `decode_update_spec` takes. The
attribute table (`proto.bgp.attr_table`) names each value spec in its attribute's row and imports
this module when a row's spec is first read: a running speaker never does.
"""

from __future__ import annotations

import socket
from typing import Any

from construct import (
    Array,
    Bytes,
    Check,
    FlagsEnum,
    GreedyBytes,
    GreedyRange,
    IfThenElse,
    Int8ub,
    Int16ub,
    Int32ub,
    Prefixed,
    RawCopy,
    Struct,
    Terminated,
    len_,
    this,
)

from proto.bgp.model import AsPathSegment

Flags = FlagsEnum(Int8ub, optional=0x80, transitive=0x40, partial=0x20, extended_length=0x10)
FLAG_BITS = (("optional", 0x80), ("transitive", 0x40), ("partial", 0x20), ("extended_length", 0x10))

Attribute = Struct(
    "flags" / Flags,
    "type" / Int8ub,
    "length" / IfThenElse(this.flags.extended_length, Int16ub, Int8ub),
    "value" / Bytes(this.length),
)

# the block: attributes until the end; what is left over is an attribute that overruns the block
AttributeBlock = Struct("attributes" / GreedyRange(RawCopy(Attribute)), "overrun" / GreedyBytes)

MpReachSpec = Struct(
    "afi" / Int16ub,
    "safi" / Int8ub,
    "next_hop" / Prefixed(Int8ub, GreedyBytes),
    "reserved" / Int8ub,  # RFC 4760: formerly the SNPA count, ignored on receipt
    "nlri" / GreedyBytes,
)
MpUnreachSpec = Struct("afi" / Int16ub, "safi" / Int8ub, "withdrawn" / GreedyBytes)


def walk_spec(block: bytes) -> tuple[list[tuple[int, int, bytes, bytes]], int | None]:
    """(flags, code, value, raw) of each attribute, and the offset of an overrun (or None)."""
    parsed = AttributeBlock.parse(block)
    entries = []
    for item in parsed.attributes:
        flags = sum(bit for name, bit in FLAG_BITS if item.value.flags[name])
        entries.append((flags, item.value.type, item.value.value, item.data))
    overrun = len(block) - len(parsed.overrun) if parsed.overrun else None
    return entries, overrun


# ---------------------------------------------------------------- value specifications


def segment_spec(asn: Any) -> Struct:
    return Struct(
        "type" / Int8ub,
        Check(lambda ctx: ctx.type in (1, 2, 3, 4)),
        "count" / Int8ub,
        Check(this.count >= 1),  # RFC 7606 section 7.2: a zero-length segment is malformed
        "asns" / Array(this.count, asn),
    )


def as_path_spec(asn: Any) -> Struct:
    return Struct("segments" / GreedyRange(segment_spec(asn)), Terminated)


def list_spec(item: Any) -> Struct:
    """A non-empty list of fixed-size items filling the value exactly (RFC 7606 7.8, 7.10, 7.14)."""
    return Struct("entries" / GreedyRange(item), Terminated, Check(len_(this.entries) > 0))


IPv4Bytes = Bytes(4)

OriginSpec = Struct("origin" / Int8ub, Terminated)
AsPath2Spec = as_path_spec(Int16ub)
AsPath4Spec = as_path_spec(Int32ub)
Ipv4Spec = Struct("address" / IPv4Bytes, Terminated)  # NEXT_HOP, ORIGINATOR_ID
U32Spec = Struct("value" / Int32ub, Terminated)  # MULTI_EXIT_DISC, LOCAL_PREF
EmptySpec = Struct(Terminated)  # ATOMIC_AGGREGATE
Aggregator2Spec = Struct("asn" / Int16ub, "address" / IPv4Bytes, Terminated)
Aggregator4Spec = Struct("asn" / Int32ub, "address" / IPv4Bytes, Terminated)
CommunitiesSpec = list_spec(Int32ub)
ClusterListSpec = list_spec(IPv4Bytes)
ExtendedCommunitiesSpec = list_spec(Bytes(8))
LargeCommunitiesSpec = list_spec(Struct("g" / Int32ub, "l1" / Int32ub, "l2" / Int32ub))


# ---------------------------------------------------------------- parsed <-> model values


def _ntoa(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def segments_from(parsed: Any) -> tuple[AsPathSegment, ...]:
    return tuple(AsPathSegment(s.type, tuple(s.asns)) for s in parsed.segments)


def segments_to(value: tuple[AsPathSegment, ...]) -> dict[str, Any]:
    return {"segments": [{"type": s.type, "count": len(s.asns), "asns": list(s.asns)} for s in value]}


def origin_from(parsed: Any) -> int:
    return int(parsed.origin)


def origin_to(value: int) -> dict[str, Any]:
    return {"origin": value}


def address_from(parsed: Any) -> str:
    return _ntoa(parsed.address)


def address_to(value: str) -> dict[str, Any]:
    return {"address": socket.inet_aton(value)}


def number_from(parsed: Any) -> int:
    return int(parsed.value)


def number_to(value: int) -> dict[str, Any]:
    return {"value": value}


def present_from(parsed: Any) -> bool:
    return True


def present_to(value: bool) -> dict[str, Any]:
    return {}


def aggregator_from(parsed: Any) -> tuple[int, str]:
    return (int(parsed.asn), _ntoa(parsed.address))


def aggregator_to(value: tuple[int, str]) -> dict[str, Any]:
    return {"asn": value[0], "address": socket.inet_aton(value[1])}


def entries_from(parsed: Any) -> tuple[Any, ...]:
    return tuple(parsed.entries)


def entries_to(value: tuple[Any, ...]) -> dict[str, Any]:
    return {"entries": list(value)}


def addresses_from(parsed: Any) -> tuple[str, ...]:
    return tuple(_ntoa(a) for a in parsed.entries)


def addresses_to(value: tuple[str, ...]) -> dict[str, Any]:
    return {"entries": [socket.inet_aton(a) for a in value]}


def large_from(parsed: Any) -> tuple[tuple[int, int, int], ...]:
    return tuple((c.g, c.l1, c.l2) for c in parsed.entries)


def large_to(value: tuple[tuple[int, int, int], ...]) -> dict[str, Any]:
    return {"entries": [{"g": g, "l1": a, "l2": b} for g, a, b in value]}
