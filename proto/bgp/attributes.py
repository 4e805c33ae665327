"""Path attributes: the construct specification of every attribute, the hand-written walk and value
decoders beside it, the RFC 7606 rules that say what a malformation costs, and the interning cache.

One table row per attribute code (BIRD's way): expected Optional/Transitive flags, what to do when
the attribute is malformed (RFC 7606 section 7, RFC 6793, RFC 8092), a fast decoder, an encoder and
the construct spec. `decode_block` turns the attribute block (minus MP_REACH/MP_UNREACH, which
`proto.bgp.update` handles per message) into an immutable `PathAttributes` plus the problems found;
`cached_block` does it once per distinct raw byte string.

Error-handling choices, all from RFC 7606 unless noted:
- An Optional/Transitive flag conflict makes the attribute malformed (section 3.c); the malformed
  attribute then gets its own attribute's treatment (attribute-discard for ATOMIC_AGGREGATE,
  AGGREGATOR, AS4_AGGREGATOR, AS4_PATH; treat-as-withdraw for the rest). Partial and Extended
  Length bits are not checked; the four low flag bits are ignored on receipt and dropped.
- A duplicate of any attribute other than MP_REACH/MP_UNREACH is discarded, the first kept (3.g),
  and reported as attribute-discard. Duplicate MP attributes reset the session (3/1, in update.py).
- An attribute whose header or value runs past the end of the block (section 4, "overrun" and
  "underrun") makes the UPDATE treat-as-withdraw; what was decoded before it is kept.
- An unrecognised well-known attribute resets the session with 3/2 (RFC 4271 section 6.3).
- Unknown optional attributes are kept opaque with the flags they came with; `readvertised` sets
  Partial on the transitive ones and drops the non-transitive ones for re-advertisement.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, NamedTuple

from construct import (
    Array,
    Bytes,
    Check,
    ConstructError,
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

from proto.bgp.constants import AS_TRANS, AttrCode, AttrFlag, ErrorCode, SegmentType, UpdateError
from proto.bgp.model import AsPathSegment, AttributeProblem, MessageError, PathAttributes, UnknownAttribute

OPTIONAL = AttrFlag.OPTIONAL
TRANSITIVE = AttrFlag.TRANSITIVE
PARTIAL = AttrFlag.PARTIAL
EXTENDED = AttrFlag.EXTENDED_LENGTH
OT_MASK = OPTIONAL | TRANSITIVE

WITHDRAW = "treat-as-withdraw"
DISCARD = "attribute-discard"

MP_CODES = (AttrCode.MP_REACH_NLRI, AttrCode.MP_UNREACH_NLRI)


class Malformed(ValueError):
    """An attribute value that breaks its definition; the rule table says what that costs."""

    def __init__(self, subcode: int, reason: str) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason


# ---------------------------------------------------------------- construct specification

Flags = FlagsEnum(Int8ub, optional=0x80, transitive=0x40, partial=0x20, extended_length=0x10)

Attribute = Struct(
    "flags" / Flags,
    "type" / Int8ub,
    "length" / IfThenElse(this.flags.extended_length, Int16ub, Int8ub),
    "value" / Bytes(this.length),
)

# the block: attributes until the end; what is left over is an attribute that overruns the block
AttributeBlock = Struct("attributes" / GreedyRange(RawCopy(Attribute)), "overrun" / GreedyBytes)


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


def _list_spec(item: Any) -> Struct:
    """A non-empty list of fixed-size items filling the value exactly (RFC 7606 7.8, 7.10, 7.14)."""
    return Struct("entries" / GreedyRange(item), Terminated, Check(len_(this.entries) > 0))


IPv4Bytes = Bytes(4)

SPECS: dict[int, Callable[[bool], Struct]] = {
    AttrCode.ORIGIN: lambda four: Struct("origin" / Int8ub, Terminated),
    AttrCode.AS_PATH: lambda four: as_path_spec(Int32ub if four else Int16ub),
    AttrCode.NEXT_HOP: lambda four: Struct("address" / IPv4Bytes, Terminated),
    AttrCode.MULTI_EXIT_DISC: lambda four: Struct("value" / Int32ub, Terminated),
    AttrCode.LOCAL_PREF: lambda four: Struct("value" / Int32ub, Terminated),
    AttrCode.ATOMIC_AGGREGATE: lambda four: Struct(Terminated),
    AttrCode.AGGREGATOR: lambda four: Struct(
        "asn" / (Int32ub if four else Int16ub), "address" / IPv4Bytes, Terminated
    ),
    AttrCode.COMMUNITIES: lambda four: _list_spec(Int32ub),
    AttrCode.ORIGINATOR_ID: lambda four: Struct("address" / IPv4Bytes, Terminated),
    AttrCode.CLUSTER_LIST: lambda four: _list_spec(IPv4Bytes),
    AttrCode.EXTENDED_COMMUNITIES: lambda four: _list_spec(Bytes(8)),
    AttrCode.AS4_PATH: lambda four: as_path_spec(Int32ub),
    AttrCode.AS4_AGGREGATOR: lambda four: Struct("asn" / Int32ub, "address" / IPv4Bytes, Terminated),
    AttrCode.LARGE_COMMUNITIES: lambda four: _list_spec(
        Struct("g" / Int32ub, "l1" / Int32ub, "l2" / Int32ub)
    ),
}
_BUILT_SPECS = {(code, four): make(four) for code, make in SPECS.items() for four in (False, True)}

MpReachSpec = Struct(
    "afi" / Int16ub,
    "safi" / Int8ub,
    "next_hop" / Prefixed(Int8ub, GreedyBytes),
    "reserved" / Int8ub,  # RFC 4760: formerly the SNPA count, ignored on receipt
    "nlri" / GreedyBytes,
)
MpUnreachSpec = Struct("afi" / Int16ub, "safi" / Int8ub, "withdrawn" / GreedyBytes)


def _ntoa(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def _from_spec(code: int, parsed: Any) -> Any:
    """The model value of a construct-parsed attribute (the spec path's counterpart of FAST)."""
    if code in (AttrCode.AS_PATH, AttrCode.AS4_PATH):
        return tuple(AsPathSegment(s.type, tuple(s.asns)) for s in parsed.segments)
    if code == AttrCode.ORIGIN:
        return parsed.origin
    if code in (AttrCode.NEXT_HOP, AttrCode.ORIGINATOR_ID):
        return _ntoa(parsed.address)
    if code in (AttrCode.MULTI_EXIT_DISC, AttrCode.LOCAL_PREF):
        return parsed.value
    if code == AttrCode.ATOMIC_AGGREGATE:
        return True
    if code in (AttrCode.AGGREGATOR, AttrCode.AS4_AGGREGATOR):
        return (parsed.asn, _ntoa(parsed.address))
    if code == AttrCode.CLUSTER_LIST:
        return tuple(_ntoa(a) for a in parsed.entries)
    if code == AttrCode.LARGE_COMMUNITIES:
        return tuple((c.g, c.l1, c.l2) for c in parsed.entries)
    return tuple(parsed.entries)  # COMMUNITIES, EXTENDED_COMMUNITIES


def decode_value_spec(code: int, value: bytes, four: bool) -> Any:
    try:
        parsed = _BUILT_SPECS[(code, four)].parse(value)
    except ConstructError as exc:
        raise Malformed(RULES[code].length_subcode, f"malformed {RULES[code].name}") from exc
    result = _from_spec(code, parsed)
    check = RULES[code].check
    if check is not None:
        check(result)
    return result


def walk_spec(block: bytes) -> tuple[list[tuple[int, int, bytes, bytes]], int | None]:
    """(flags, code, value, raw) of each attribute, and the offset of an overrun (or None)."""
    parsed = AttributeBlock.parse(block)
    entries = []
    for item in parsed.attributes:
        flags = sum(bit for name, bit in _FLAG_BITS if item.value.flags[name])
        entries.append((flags, item.value.type, item.value.value, item.data))
    overrun = len(block) - len(parsed.overrun) if parsed.overrun else None
    return entries, overrun


_FLAG_BITS = (("optional", 0x80), ("transitive", 0x40), ("partial", 0x20), ("extended_length", 0x10))


# ---------------------------------------------------------------- fast path: walk and values


def walk(block: bytes) -> tuple[list[tuple[int, int, bytes, bytes]], int | None]:
    """The hand-written walk, equal to `walk_spec`."""
    entries = []
    append = entries.append
    size = len(block)
    i = 0
    while i < size:
        if i + 3 > size:
            return entries, i
        flags = block[i]
        if flags & EXTENDED:
            if i + 4 > size:
                return entries, i
            start = i + 4
            end = start + ((block[i + 2] << 8) | block[i + 3])
        else:
            start = i + 3
            end = start + block[i + 2]
        if end > size:
            return entries, i
        append((flags & 0xF0, block[i + 1], block[start:end], block[i:end]))
        i = end
    return entries, None


_U32 = struct.Struct("!I")


def _as_path_fast(value: bytes, width: int, subcode: int) -> tuple[AsPathSegment, ...]:
    segments = []
    size = len(value)
    fmt = "!%dH" if width == 2 else "!%dI"
    i = 0
    while i < size:
        if i + 2 > size:
            raise Malformed(subcode, "AS_PATH ends inside a segment header")
        kind = value[i]
        count = value[i + 1]
        if kind < 1 or kind > 4:
            raise Malformed(subcode, f"AS_PATH segment type {kind}")
        if not count:
            raise Malformed(subcode, "AS_PATH segment of length zero")
        end = i + 2 + count * width
        if end > size:
            raise Malformed(subcode, "AS_PATH segment overruns the attribute")
        segments.append(AsPathSegment(kind, struct.unpack(fmt % count, value[i + 2 : end])))
        i = end
    return tuple(segments)


def _fast(code: int, value: bytes, four: bool) -> Any:
    n = len(value)
    if code == AttrCode.ORIGIN:
        if n != 1:
            raise Malformed(UpdateError.ATTRIBUTE_LENGTH_ERROR, f"ORIGIN length {n}")
        return value[0]
    if code == AttrCode.AS_PATH:
        return _as_path_fast(value, 4 if four else 2, UpdateError.MALFORMED_AS_PATH)
    if code in (AttrCode.NEXT_HOP, AttrCode.ORIGINATOR_ID):
        if n != 4:
            raise Malformed(UpdateError.ATTRIBUTE_LENGTH_ERROR, f"{RULES[code].name} length {n}")
        return socket.inet_ntoa(value)
    if code in (AttrCode.MULTI_EXIT_DISC, AttrCode.LOCAL_PREF):
        if n != 4:
            raise Malformed(UpdateError.ATTRIBUTE_LENGTH_ERROR, f"{RULES[code].name} length {n}")
        return _U32.unpack(value)[0]
    if code == AttrCode.ATOMIC_AGGREGATE:
        if n:
            raise Malformed(UpdateError.ATTRIBUTE_LENGTH_ERROR, f"ATOMIC_AGGREGATE length {n}")
        return True
    if code in (AttrCode.AGGREGATOR, AttrCode.AS4_AGGREGATOR):
        width = 4 if (four or code == AttrCode.AS4_AGGREGATOR) else 2
        if n != width + 4:
            raise Malformed(UpdateError.ATTRIBUTE_LENGTH_ERROR, f"{RULES[code].name} length {n}")
        return (int.from_bytes(value[:width], "big"), socket.inet_ntoa(value[width:]))
    if code == AttrCode.AS4_PATH:
        return _as_path_fast(value, 4, UpdateError.OPTIONAL_ATTRIBUTE_ERROR)
    size = RULES[code].item_size
    if not n or n % size:
        raise Malformed(RULES[code].length_subcode, f"{RULES[code].name} length {n}")
    if code == AttrCode.COMMUNITIES:
        return struct.unpack(f"!{n // 4}I", value)
    if code == AttrCode.CLUSTER_LIST:
        return tuple(socket.inet_ntoa(value[k : k + 4]) for k in range(0, n, 4))
    if code == AttrCode.EXTENDED_COMMUNITIES:
        return tuple(value[k : k + 8] for k in range(0, n, 8))
    # LARGE_COMMUNITIES
    flat = struct.unpack(f"!{n // 4}I", value)
    return tuple(zip(flat[0::3], flat[1::3], flat[2::3]))


def decode_value(code: int, value: bytes, four: bool) -> Any:
    """The model value of a recognised attribute's value octets (raises Malformed)."""
    result = _fast(code, value, four)
    check = RULES[code].check
    if check is not None:
        check(result)
    return result


# ---------------------------------------------------------------- semantic checks shared by both


def _check_origin(origin: int) -> None:
    if origin > 2:
        raise Malformed(UpdateError.INVALID_ORIGIN_ATTRIBUTE, f"ORIGIN value {origin}")


def _check_next_hop(address: str) -> None:
    first = int(address.split(".", 1)[0])
    if address == "0.0.0.0" or address == "255.255.255.255" or 224 <= first <= 239:
        raise Malformed(
            UpdateError.INVALID_NEXT_HOP_ATTRIBUTE, f"NEXT_HOP {address} is not a unicast address"
        )


# ---------------------------------------------------------------- encoders


def _encode_as_path(segments: tuple[AsPathSegment, ...], width: int) -> bytes:
    fmt = "!%dH" if width == 2 else "!%dI"
    limit = 0xFFFF if width == 2 else 0xFFFFFFFF
    out = bytearray()
    for segment in segments:
        asns = segment.asns
        if any(a > limit or a < 0 for a in asns):
            raise ValueError(f"AS number does not fit {width} octets in {segment}")
        if not asns:
            raise ValueError("cannot encode an empty AS_PATH segment")
        for k in range(0, len(asns), 255):  # long segments continue in a segment of the same type
            chunk = asns[k : k + 255]
            out += bytes((segment.type, len(chunk))) + struct.pack(fmt % len(chunk), *chunk)
    return bytes(out)


def encode_value(code: int, value: Any, four: bool) -> bytes:
    """The value octets of a recognised attribute (hand-written; equal to the construct build)."""
    if code == AttrCode.ORIGIN:
        return bytes((value,))
    if code == AttrCode.AS_PATH:
        return _encode_as_path(value, 4 if four else 2)
    if code == AttrCode.AS4_PATH:
        return _encode_as_path(value, 4)
    if code in (AttrCode.NEXT_HOP, AttrCode.ORIGINATOR_ID):
        return socket.inet_aton(value)
    if code in (AttrCode.MULTI_EXIT_DISC, AttrCode.LOCAL_PREF):
        return _U32.pack(value)
    if code == AttrCode.ATOMIC_AGGREGATE:
        return b""
    if code in (AttrCode.AGGREGATOR, AttrCode.AS4_AGGREGATOR):
        width = 4 if (four or code == AttrCode.AS4_AGGREGATOR) else 2
        return value[0].to_bytes(width, "big") + socket.inet_aton(value[1])
    if code == AttrCode.COMMUNITIES:
        return struct.pack(f"!{len(value)}I", *value)
    if code == AttrCode.CLUSTER_LIST:
        return b"".join(socket.inet_aton(a) for a in value)
    if code == AttrCode.EXTENDED_COMMUNITIES:
        if any(len(c) != 8 for c in value):
            raise ValueError("extended communities are 8 octets each")
        return b"".join(value)
    if code == AttrCode.LARGE_COMMUNITIES:
        return b"".join(struct.pack("!III", *c) for c in value)
    raise ValueError(f"no encoder for attribute {code}")


def encode_value_spec(code: int, value: Any, four: bool) -> bytes:
    """The same octets built with the construct specification (the reference for tests)."""
    spec = _BUILT_SPECS[(code, four)]
    if code in (AttrCode.AS_PATH, AttrCode.AS4_PATH):
        segs = [dict(type=s.type, count=len(s.asns), asns=list(s.asns)) for s in value]
        return spec.build(dict(segments=segs))
    if code == AttrCode.ORIGIN:
        return spec.build(dict(origin=value))
    if code in (AttrCode.NEXT_HOP, AttrCode.ORIGINATOR_ID):
        return spec.build(dict(address=socket.inet_aton(value)))
    if code in (AttrCode.MULTI_EXIT_DISC, AttrCode.LOCAL_PREF):
        return spec.build(dict(value=value))
    if code == AttrCode.ATOMIC_AGGREGATE:
        return spec.build({})
    if code in (AttrCode.AGGREGATOR, AttrCode.AS4_AGGREGATOR):
        return spec.build(dict(asn=value[0], address=socket.inet_aton(value[1])))
    if code == AttrCode.CLUSTER_LIST:
        return spec.build(dict(entries=[socket.inet_aton(a) for a in value]))
    if code == AttrCode.LARGE_COMMUNITIES:
        return spec.build(dict(entries=[dict(g=g, l1=a, l2=b) for g, a, b in value]))
    return spec.build(dict(entries=list(value)))


def attribute_header(flags: int, code: int, length: int) -> bytes:
    if length > 255 or flags & EXTENDED:
        return bytes((flags | EXTENDED, code, length >> 8, length & 0xFF))
    return bytes((flags, code, length))


def encode_attribute(flags: int, code: int, value: bytes) -> bytes:
    return attribute_header(flags, code, len(value)) + value


# ---------------------------------------------------------------- the rule table


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    field: str  # PathAttributes field
    flags: int  # expected Optional/Transitive bits
    on_error: str  # RFC 7606 action when malformed
    length_subcode: int = UpdateError.ATTRIBUTE_LENGTH_ERROR
    item_size: int = 0  # for list attributes
    check: Callable[[Any], None] | None = None


WELL_KNOWN = TRANSITIVE
OPT_NON_TRANSITIVE = OPTIONAL
OPT_TRANSITIVE = OPTIONAL | TRANSITIVE

RULES: dict[int, Rule] = {
    AttrCode.ORIGIN: Rule("ORIGIN", "origin", WELL_KNOWN, WITHDRAW, check=_check_origin),
    AttrCode.AS_PATH: Rule(
        "AS_PATH", "as_path", WELL_KNOWN, WITHDRAW, length_subcode=UpdateError.MALFORMED_AS_PATH
    ),
    AttrCode.NEXT_HOP: Rule("NEXT_HOP", "next_hop", WELL_KNOWN, WITHDRAW, check=_check_next_hop),
    AttrCode.MULTI_EXIT_DISC: Rule("MULTI_EXIT_DISC", "med", OPT_NON_TRANSITIVE, WITHDRAW),
    AttrCode.LOCAL_PREF: Rule("LOCAL_PREF", "local_pref", WELL_KNOWN, WITHDRAW),
    AttrCode.ATOMIC_AGGREGATE: Rule("ATOMIC_AGGREGATE", "atomic_aggregate", WELL_KNOWN, DISCARD),
    AttrCode.AGGREGATOR: Rule("AGGREGATOR", "aggregator", OPT_TRANSITIVE, DISCARD),
    AttrCode.COMMUNITIES: Rule(
        "COMMUNITIES", "communities", OPT_TRANSITIVE, WITHDRAW, UpdateError.OPTIONAL_ATTRIBUTE_ERROR, 4
    ),
    AttrCode.ORIGINATOR_ID: Rule("ORIGINATOR_ID", "originator_id", OPT_NON_TRANSITIVE, WITHDRAW),
    AttrCode.CLUSTER_LIST: Rule(
        "CLUSTER_LIST", "cluster_list", OPT_NON_TRANSITIVE, WITHDRAW, UpdateError.OPTIONAL_ATTRIBUTE_ERROR, 4
    ),
    AttrCode.EXTENDED_COMMUNITIES: Rule(
        "EXTENDED_COMMUNITIES",
        "extended_communities",
        OPT_TRANSITIVE,
        WITHDRAW,
        UpdateError.OPTIONAL_ATTRIBUTE_ERROR,
        8,
    ),
    # RFC 6793 section 6: a malformed AS4_PATH or AS4_AGGREGATOR is discarded
    AttrCode.AS4_PATH: Rule(
        "AS4_PATH", "as4_path", OPT_TRANSITIVE, DISCARD, length_subcode=UpdateError.OPTIONAL_ATTRIBUTE_ERROR
    ),
    AttrCode.AS4_AGGREGATOR: Rule("AS4_AGGREGATOR", "as4_aggregator", OPT_TRANSITIVE, DISCARD),
    AttrCode.LARGE_COMMUNITIES: Rule(
        "LARGE_COMMUNITIES",
        "large_communities",
        OPT_TRANSITIVE,
        WITHDRAW,
        UpdateError.OPTIONAL_ATTRIBUTE_ERROR,
        12,
    ),
}
# the order fields are encoded in when no received layout says otherwise: ascending type code
FIELD_ORDER = tuple(sorted(RULES.items()))
MP_FLAGS = OPTIONAL  # MP_REACH_NLRI / MP_UNREACH_NLRI: optional non-transitive


# ---------------------------------------------------------------- the decoded block


class Decoded(NamedTuple):
    """What one attribute block (without MP attributes) decodes to; shared through the cache."""

    attributes: PathAttributes
    problems: tuple[AttributeProblem, ...]  # found in the block itself
    present: frozenset[int]  # codes that appeared, well-formed or not
    layout: tuple[tuple[int, int], ...]  # (code, flags) in received order, MP attributes included


def decode_block(
    entries: list[tuple[int, int, bytes, bytes]],
    overrun: int | None,
    four: bool,
    value_decoder: Callable[[int, bytes, bool], Any] = decode_value,
) -> tuple[Decoded, list[tuple[int, int, bytes, bytes]]]:
    """Assemble walked attributes into a `Decoded` and the MP attributes found.

    Raises MessageError for what resets the session (3/2 unknown well-known, 3/1 duplicate MP).
    The MP list is (code, flags, value, raw) in order; update.py decodes them per message.
    """
    fields: dict[str, Any] = {}
    unknown: list[UnknownAttribute] = []
    problems: list[AttributeProblem] = []
    present: set[int] = set()
    layout: list[tuple[int, int]] = []
    mp: list[Any] = []
    for flags, code, value, raw in entries:
        layout.append((code, flags))
        if code in MP_CODES:
            if code in present:
                raise MessageError(
                    ErrorCode.UPDATE_MESSAGE,
                    UpdateError.MALFORMED_ATTRIBUTE_LIST,
                    reason=f"{AttrCode(code).name} appears more than once",
                )
            present.add(code)
            if flags & OT_MASK != MP_FLAGS:
                problems.append(_mp_flags_problem(code, flags))
            mp.append((code, flags, value, raw))
            continue
        if code in present:
            problems.append(
                AttributeProblem(
                    DISCARD, code, UpdateError.MALFORMED_ATTRIBUTE_LIST, f"attribute {code} repeated"
                )
            )
            continue
        present.add(code)
        rule = RULES.get(code)
        if rule is None:
            if not flags & OPTIONAL:
                raise MessageError(
                    ErrorCode.UPDATE_MESSAGE,
                    UpdateError.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    raw,
                    f"unrecognised well-known attribute {code}",
                )
            unknown.append(UnknownAttribute(flags & ~EXTENDED, code, value))
            continue
        if flags & OT_MASK != rule.flags:
            problems.append(
                AttributeProblem(
                    rule.on_error,
                    code,
                    UpdateError.ATTRIBUTE_FLAGS_ERROR,
                    f"{rule.name} flags 0x{flags:02x}, expected 0x{rule.flags:02x}",
                )
            )
            continue
        try:
            fields[rule.field] = value_decoder(code, value, four)
        except Malformed as exc:
            problems.append(AttributeProblem(rule.on_error, code, exc.subcode, exc.reason))
    if overrun is not None:
        problems.append(
            AttributeProblem(
                WITHDRAW,
                0,
                UpdateError.MALFORMED_ATTRIBUTE_LIST,
                f"attribute at offset {overrun} runs past the end of the attribute block",
            )
        )
    if unknown:
        # in code order: the same attributes received in another order are the same set (the
        # layout keeps the received order for re-encoding)
        fields["unknown"] = tuple(sorted(unknown, key=lambda u: u.code))
    # problems of the MP attributes go last so that the cached path and the specification agree
    ordered_problems = [p for p in problems if p.code not in MP_CODES]
    ordered_problems += [p for p in problems if p.code in MP_CODES]
    decoded = Decoded(
        PathAttributes(**fields),
        tuple(ordered_problems),
        frozenset(present.difference(MP_CODES)),
        tuple(layout),
    )
    return decoded, mp


# ---------------------------------------------------------------- interning cache

CACHE_SIZE = 16384
# one cache per AS number width: the same bytes mean different AS_PATHs with and without 4-octet AS
_caches: tuple[dict[bytes, Decoded], dict[bytes, Decoded]] = ({}, {})


def _store(cache: dict[bytes, Decoded], key: bytes, decoded: Decoded) -> Decoded:
    if len(cache) >= CACHE_SIZE:
        # insertion order approximates age; dropping the oldest eighth at once keeps it amortised
        for old in list(islice(cache, CACHE_SIZE // 8)):
            del cache[old]
    cache[key] = decoded
    return decoded


def cached_block(block: bytes, four: bool) -> tuple[Decoded, list[tuple[int, int, bytes, bytes]]]:
    """Decode an attribute block once per distinct raw bytes; MP attributes come back separately.

    A block without MP attributes is cached under its own bytes, so a repeat costs one dict lookup.
    A block with MP_REACH/MP_UNREACH differs per message (their NLRI), so it is never cached whole:
    the other attributes are cached under the concatenation of their raw bytes, which a block that
    starts with its MP attribute finds with one slice and one lookup (otherwise it is walked).
    The MP next hop is interned separately (update.py), so IPv6 routes share the attribute set and
    the next-hop tuple. The layout of an MP block is rebuilt per message: the MP attributes'
    position is part of it. Bounded at CACHE_SIZE entries per AS width; the oldest eighth goes
    when full (insertion order: cheap, and a set that is still in use comes straight back).
    """
    cache = _caches[four]
    hit = cache.get(block)
    if hit is not None:
        return hit, []
    if len(block) > 3 and block[1] in MP_CODES:
        # MP attribute first (RFC 7606 section 5.1, and what most speakers send): when the rest is a
        # cached block, no walk is needed. Cached blocks never hold MP attributes or overruns, so
        # this block has exactly one MP attribute and the same outcome as the full walk.
        flags = block[0] & 0xF0
        if flags & EXTENDED:
            start = 4
            end = 4 + ((block[2] << 8) | block[3])
        else:
            start = 3
            end = 3 + block[2]
        base = cache.get(block[end:]) if end <= len(block) else None
        if base is not None:
            code = block[1]
            problems = base.problems
            if flags & OT_MASK != MP_FLAGS:
                problems += (_mp_flags_problem(code, flags),)
            layout = ((code, flags), *base.layout)
            # the constructor, not _replace: this runs once per IPv6 UPDATE
            decoded = Decoded(base.attributes, problems, base.present, layout)
            return decoded, [(code, flags, block[start:end], block[:end])]
    entries, overrun = walk(block)
    mp = [e for e in entries if e[1] in MP_CODES]
    if overrun is None and not mp:
        decoded, _ = decode_block(entries, None, four)
        return _store(cache, block, decoded), []
    if len(mp) > 2 or (len(mp) == 2 and mp[0][1] == mp[1][1]):
        # a repeated MP attribute resets the session, unless an unrecognised well-known attribute
        # comes first: let the full pass raise whichever the specification meets first
        decode_block(entries, overrun, four, _no_values)
    rest = [e for e in entries if e[1] not in MP_CODES]
    if overrun is None:
        key = b"".join(e[3] for e in rest)
        base = cache.get(key)
        if base is None:
            base = _store(cache, key, decode_block(rest, None, four)[0])
    else:
        base = decode_block(rest, overrun, four)[0]
    problems = base.problems
    found = []
    for flags, code, value, raw in mp:
        if flags & OT_MASK != MP_FLAGS:
            problems += (_mp_flags_problem(code, flags),)
        found.append((code, flags, value, raw))
    layout = tuple((e[1], e[0]) for e in entries)
    return base._replace(problems=problems, layout=layout), found


def _mp_flags_problem(code: int, flags: int) -> AttributeProblem:
    # RFC 7606 section 3.c: an Optional/Transitive conflict makes the attribute malformed; the
    # NLRI it carries can still be located, so treat-as-withdraw applies
    return AttributeProblem(
        WITHDRAW, code, UpdateError.ATTRIBUTE_FLAGS_ERROR, f"{AttrCode(code).name} flags 0x{flags:02x}"
    )


def _no_values(code: int, value: bytes, four: bool) -> Any:
    # used when only the layout and the MP attributes of a block are wanted; the rest is cached
    raise Malformed(0, "")


def clear_cache() -> None:
    for cache in _caches:
        cache.clear()


def spec_block(block: bytes, four: bool) -> tuple[Decoded, list[tuple[int, int, bytes, bytes]]]:
    """The whole block through the construct specification, uncached (the reference for tests)."""
    entries, overrun = walk_spec(block)
    return decode_block(entries, overrun, four, decode_value_spec)


# ---------------------------------------------------------------- encoding a PathAttributes


def encode_attributes(
    attrs: PathAttributes,
    four: bool,
    layout: tuple[tuple[int, int], ...] = (),
    encoder: Callable[[int, Any, bool], bytes] = encode_value,
) -> dict[int, bytes]:
    """Each present attribute's full encoding (header and value), keyed by type code.

    Flags are the RFC's for the code; the received layout may only add the Extended Length bit, so
    that a re-encoded capture gives back its exact bytes.
    """
    extended = {code for code, flags in layout if flags & EXTENDED}
    out: dict[int, bytes] = {}
    for code, rule in FIELD_ORDER:
        value = getattr(attrs, rule.field)
        if value is None or value is False or (rule.item_size and not value):
            continue  # an empty list attribute would be malformed: it is sent as absent
        flags = rule.flags | (EXTENDED if code in extended else 0)
        out[code] = encode_attribute(flags, code, encoder(code, value, four))
    for item in attrs.unknown:
        flags = item.flags | (EXTENDED if item.code in extended else 0)
        out[item.code] = encode_attribute(flags, item.code, item.value)
    return out


def ordered(encoded: dict[int, bytes], layout: tuple[tuple[int, int], ...] = ()) -> list[int]:
    """Type codes in the order to send: the received layout first, then ascending code with the
    MP attributes at the front (RFC 7606 section 5.1)."""
    order: list[int] = []
    seen: set[int] = set()
    for code, _ in layout:
        if code in encoded and code not in seen:
            order.append(code)
            seen.add(code)
    rest = sorted(c for c in encoded if c not in seen)
    rest.sort(key=lambda c: c not in MP_CODES)
    return order + rest


def readvertised(attrs: PathAttributes) -> PathAttributes:
    """The attribute set as passed on to another peer: unknown optional transitive attributes get
    the Partial bit (RFC 4271 section 5), unknown optional non-transitive ones are dropped."""
    kept = tuple(
        replace(item, flags=item.flags | PARTIAL) for item in attrs.unknown if item.flags & TRANSITIVE
    )
    if kept == attrs.unknown:
        return attrs
    return replace(attrs, unknown=kept)


# ---------------------------------------------------------------- 2-octet AS peers (RFC 6793)

_CONFED = (SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET)


def path_length(segments: tuple[AsPathSegment, ...]) -> int:
    """AS_PATH length as route selection counts it: an AS_SET is one, confederation segments zero
    (RFC 4271 section 9.1.2.2, RFC 5065 section 5.3)."""
    total = 0
    for segment in segments:
        if segment.type == SegmentType.AS_SEQUENCE:
            total += len(segment.asns)
        elif segment.type == SegmentType.AS_SET:
            total += 1
    return total


def merge_as4(attrs: PathAttributes) -> PathAttributes:
    """The real AS_PATH and AGGREGATOR of a route received from a 2-octet AS speaker (RFC 6793
    section 4.2.3), with AS4_PATH / AS4_AGGREGATOR folded in and removed. Only for sessions
    without 4-octet AS: a 4-octet speaker's AS4 attributes are to be ignored (section 4.1)."""
    if attrs.as4_path is None and attrs.as4_aggregator is None:
        return attrs
    aggregator = attrs.aggregator
    as4_path = attrs.as4_path
    if attrs.as4_aggregator is not None and aggregator is not None:
        if aggregator[0] != AS_TRANS:
            # the aggregating speaker was itself a 2-octet one: both AS4 attributes are stale
            return replace(attrs, as4_path=None, as4_aggregator=None)
        aggregator = attrs.as4_aggregator
    as_path = attrs.as_path
    if as4_path is not None and as_path is not None:
        as4_path = tuple(s for s in as4_path if s.type not in _CONFED)
        need = path_length(as_path) - path_length(as4_path)
        if need >= 0:  # otherwise AS4_PATH is longer and is ignored
            lead: list[AsPathSegment] = []
            for segment in as_path:
                if need <= 0:
                    break
                if segment.type == SegmentType.AS_SEQUENCE:
                    lead.append(AsPathSegment(segment.type, segment.asns[:need]))
                    need -= len(lead[-1].asns)
                else:
                    lead.append(segment)
                    need -= segment.type == SegmentType.AS_SET
            as_path = (*lead, *as4_path)
    return replace(attrs, as_path=as_path, aggregator=aggregator, as4_path=None, as4_aggregator=None)


def for_two_octet_peer(attrs: PathAttributes) -> PathAttributes:
    """The attribute set to send to a speaker without 4-octet AS (RFC 6793 section 4.2.2): AS
    numbers above 65535 become AS_TRANS, and the real ones travel in AS4_PATH / AS4_AGGREGATOR."""
    fields: dict[str, Any] = {}
    path = attrs.as_path or ()
    if any(a > 0xFFFF for s in path for a in s.asns):
        fields["as_path"] = tuple(
            AsPathSegment(s.type, tuple(a if a <= 0xFFFF else AS_TRANS for a in s.asns)) for s in path
        )
        fields["as4_path"] = tuple(s for s in path if s.type not in _CONFED)
    if attrs.aggregator is not None and attrs.aggregator[0] > 0xFFFF:
        fields["aggregator"] = (AS_TRANS, attrs.aggregator[1])
        fields["as4_aggregator"] = attrs.aggregator
    return replace(attrs, **fields) if fields else attrs
