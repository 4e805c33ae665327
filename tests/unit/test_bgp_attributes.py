"""Path attributes: every attribute round-trips, the hand-written decoders equal the construct
specification on valid and invalid input, RFC 7606 outcomes, interning."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import proto.bgp.as4 as AS4
import proto.bgp.attr_block as B
import proto.bgp.attr_cache as C
import proto.bgp.attr_spec as S
import proto.bgp.attr_table as T
import proto.bgp.attr_values as V
import proto.bgp.attributes as E
import proto.bgp.constants as K
from proto.bgp.constants import AttrCode, UpdateError
from proto.bgp.model import AsPathSegment, MessageError, PathAttributes, UnknownAttribute

RULES = {row.code: row for row in T.VALUE_ROWS}  # the attributes with a PathAttributes field
SETTINGS = settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
ipv4 = st.builds(lambda n: socket.inet_ntoa(n.to_bytes(4, "big")), u32)
unicast_ipv4 = st.builds(
    lambda a, rest: f"{a}.{rest >> 16 & 255}.{rest >> 8 & 255}.{rest & 255}", st.integers(1, 223), u32
)


def segments(asn: st.SearchStrategy[int]) -> st.SearchStrategy[tuple[AsPathSegment, ...]]:
    segment = st.builds(AsPathSegment, st.integers(1, 4), st.lists(asn, min_size=1, max_size=12).map(tuple))
    return st.lists(segment, max_size=4).map(tuple)


def _values(code: int, four: bool) -> st.SearchStrategy[Any]:
    asn = u32 if four else u16
    return {
        AttrCode.ORIGIN: st.integers(0, 2),
        AttrCode.AS_PATH: segments(asn),
        AttrCode.NEXT_HOP: unicast_ipv4,
        AttrCode.MULTI_EXIT_DISC: u32,
        AttrCode.LOCAL_PREF: u32,
        AttrCode.ATOMIC_AGGREGATE: st.just(True),
        AttrCode.AGGREGATOR: st.tuples(asn, ipv4),
        AttrCode.COMMUNITIES: st.lists(u32, min_size=1, max_size=8).map(tuple),
        AttrCode.ORIGINATOR_ID: ipv4,
        AttrCode.CLUSTER_LIST: st.lists(ipv4, min_size=1, max_size=5).map(tuple),
        AttrCode.EXTENDED_COMMUNITIES: st.lists(
            st.binary(min_size=8, max_size=8), min_size=1, max_size=4
        ).map(tuple),
        AttrCode.AS4_PATH: segments(u32),
        AttrCode.AS4_AGGREGATOR: st.tuples(u32, ipv4),
        AttrCode.LARGE_COMMUNITIES: st.lists(st.tuples(u32, u32, u32), min_size=1, max_size=4).map(tuple),
    }[code]


_VALUES = {(code, four): _values(code, four) for code in RULES for four in (False, True)}


def values(code: int, four: bool) -> st.SearchStrategy[Any]:
    """Valid model values of one attribute (strategies built once: building them is slow)."""
    return _VALUES[(code, four)]


unknown_codes = st.integers(19, 255).filter(lambda c: c not in RULES and c not in T.MP_CODES)
unknown_attributes = st.lists(
    st.builds(
        UnknownAttribute,
        st.sampled_from([0x80, 0xC0, 0xE0]),
        unknown_codes,
        st.binary(max_size=300),
    ),
    max_size=2,
    unique_by=lambda u: u.code,
).map(lambda items: tuple(sorted(items, key=lambda u: u.code)))


@st.composite
def path_attributes(draw: st.DrawFn, four: bool = True, next_hop: bool = True) -> PathAttributes:
    """A valid attribute set (what a well-behaved peer sends)."""
    fields: dict[str, Any] = {}
    for code, rule in RULES.items():
        if code == AttrCode.NEXT_HOP and not next_hop:
            continue
        mandatory = code in (AttrCode.ORIGIN, AttrCode.AS_PATH, AttrCode.NEXT_HOP)
        if mandatory or draw(st.booleans()):
            fields[rule.field] = draw(values(code, four))
    fields["unknown"] = draw(unknown_attributes)
    return PathAttributes(**fields)


def block_of(attrs: PathAttributes, four: bool) -> bytes:
    encoded = E.encode_attributes(attrs, four)
    return b"".join(encoded[c] for c in E.ordered(encoded))


def comparable(result: Any) -> Any:
    """Results with problem reasons left out: the two paths word them differently."""
    if isinstance(result, tuple) and result and isinstance(result[0], B.Decoded):
        decoded = result[0]
        problems = tuple((p.action, p.code, p.subcode) for p in decoded.problems)
        return (decoded._replace(problems=problems), *result[1:])
    return result


def outcome(fn: Any, *args: Any) -> Any:
    """A comparable result: the value, or the error's identity (kind, code, subcode, data)."""
    try:
        return ("ok", comparable(fn(*args)))
    except V.Malformed as exc:
        return ("malformed", exc.subcode)
    except MessageError as exc:
        return ("error", exc.code, exc.subcode, exc.data)


# ---------------------------------------------------------------- per attribute

CODES = sorted(RULES)
ALL = settings(max_examples=200, deadline=None)  # one test over every code, not one per code


@ALL
@given(code=st.sampled_from(CODES), four=st.booleans(), data=st.data())
def test_attribute_round_trip_and_spec_agree(code: int, four: bool, data: st.DataObject) -> None:
    value = data.draw(values(code, four))
    wire = T.encode_value(code, value, four)
    assert wire == T.encode_value_spec(code, value, four)
    assert T.decode_value(code, wire, four) == value
    assert T.decode_value_spec(code, wire, four) == value


@ALL
@given(code=st.sampled_from(CODES), four=st.booleans(), raw=st.binary(max_size=40))
def test_fast_value_decoder_equals_spec_on_any_bytes(code: int, four: bool, raw: bytes) -> None:
    assert outcome(T.decode_value, code, raw, four) == outcome(T.decode_value_spec, code, raw, four)


@pytest.mark.parametrize("code", CODES, ids=[AttrCode(c).name for c in CODES])
def test_every_attribute_has_a_row_with_spec_and_codecs(code: int) -> None:
    row = RULES[code]
    assert row.code == code and row.name == AttrCode(code).name
    assert (row.flags & ~T.OT_MASK) == 0
    assert row.spec and row.decode and row.encode and row.from_spec and row.to_spec and row.text


@SETTINGS
@given(data=st.data())
def test_as_path_mutations_agree(data: st.DataObject) -> None:
    four = data.draw(st.booleans())
    wire = bytearray(T.encode_value(AttrCode.AS_PATH, data.draw(values(AttrCode.AS_PATH, four)), four))
    if wire:
        for _ in range(data.draw(st.integers(1, 3))):
            wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    wire = wire[: data.draw(st.integers(0, len(wire)))] if data.draw(st.booleans()) else wire
    code = AttrCode.AS_PATH
    assert outcome(T.decode_value, code, bytes(wire), four) == outcome(
        T.decode_value_spec, code, bytes(wire), four
    )


def test_long_as_path_segment_splits_at_255() -> None:
    path = (AsPathSegment(2, tuple(range(1, 301))),)
    wire = T.encode_value(AttrCode.AS_PATH, path, True)
    assert T.decode_value(AttrCode.AS_PATH, wire, True) == (
        AsPathSegment(2, tuple(range(1, 256))),
        AsPathSegment(2, tuple(range(256, 301))),
    )


def test_two_octet_as_path_refuses_large_asn() -> None:
    with pytest.raises(ValueError):
        T.encode_value(AttrCode.AS_PATH, (AsPathSegment(2, (70000,)),), False)


# ---------------------------------------------------------------- walk and block


@st.composite
def blocks(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Valid blocks, then mutated: flags, codes, lengths, truncation, duplicates, junk."""
    four = draw(st.booleans())
    attrs = draw(path_attributes(four))
    encoded = E.encode_attributes(attrs, four)
    parts = [encoded[c] for c in E.ordered(encoded)]
    if draw(st.booleans()):
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(parts)))  # duplicate
    if draw(st.booleans()):  # an MP attribute, maybe twice
        mp = bytes((0x80, draw(st.sampled_from(T.MP_CODES)), 3, 0, 2, 1))
        parts.insert(draw(st.integers(0, len(parts))), mp)
        if draw(st.booleans()):
            parts.append(mp)
    block = bytearray(b"".join(parts))
    for _ in range(draw(st.integers(0, 3))):
        if block:
            block[draw(st.integers(0, len(block) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        block = block[: draw(st.integers(0, len(block)))]
    return bytes(block), four


@SETTINGS
@given(case=blocks())
def test_walk_equals_spec(case: tuple[bytes, bool]) -> None:
    block, _ = case
    assert B.walk(block) == B.walk_spec(block)


@SETTINGS
@given(case=blocks())
def test_cached_block_equals_spec_on_valid_and_mutated_blocks(case: tuple[bytes, bool]) -> None:
    block, four = case
    C.clear_cache()
    first = outcome(C.cached_block, block, four)
    again = outcome(C.cached_block, block, four)  # served from the cache this time
    spec = outcome(B.spec_block, block, four)
    assert first == spec
    assert again == spec


@SETTINGS
@given(data=st.data())
def test_block_round_trip(data: st.DataObject) -> None:
    four = data.draw(st.booleans())
    attrs = data.draw(path_attributes(four))
    decoded, mp = C.cached_block(block_of(attrs, four), four)
    assert decoded.attributes == attrs
    assert decoded.problems == ()
    assert mp == []


def test_interning_shares_one_object_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    C.clear_cache()
    attrs = PathAttributes(origin=0, as_path=(), next_hop="10.0.0.1")
    block = block_of(attrs, True)
    one, _ = C.cached_block(bytes(block), True)
    two, _ = C.cached_block(bytes(bytearray(block)), True)
    assert one.attributes is two.attributes
    monkeypatch.setattr(C, "CACHE_SIZE", 64)
    for med in range(500):
        C.cached_block(block_of(PathAttributes(origin=0, med=med), True), True)
    assert len(C.caches[True]) <= 64


def test_extended_length_layout_is_recorded() -> None:
    block = bytes((0x50, 1, 0, 1, 0))  # ORIGIN with a needless Extended Length
    decoded, _ = C.cached_block(block, True)
    assert decoded.attributes.origin == 0
    assert decoded.layout == ((1, 0x50),)
    encoded = E.encode_attributes(decoded.attributes, True, decoded.layout)
    assert encoded[1] == block


# ---------------------------------------------------------------- RFC 7606 outcomes

ORIGIN = bytes((0x40, 1, 1, 0))
AS_PATH = bytes((0x40, 2, 0))
NEXT_HOP = bytes((0x40, 3, 4, 10, 0, 0, 1))


def problems_of(block: bytes, four: bool = True) -> list[tuple[str, int, int]]:
    decoded, _ = C.cached_block(block, four)
    assert comparable((decoded,)) == comparable((B.spec_block(block, four)[0],))
    return [(p.action, p.code, p.subcode) for p in decoded.problems]


W, D = T.WITHDRAW, T.DISCARD
U = UpdateError

CASES = [
    ("origin value 3", bytes((0x40, 1, 1, 3)), [(W, 1, U.INVALID_ORIGIN_ATTRIBUTE)]),
    ("origin length 2", bytes((0x40, 1, 2, 0, 0)), [(W, 1, U.ATTRIBUTE_LENGTH_ERROR)]),
    ("origin flagged optional", bytes((0xC0, 1, 1, 0)), [(W, 1, U.ATTRIBUTE_FLAGS_ERROR)]),
    ("as_path overrun", bytes((0x40, 2, 4, 2, 2, 0, 1)), [(W, 2, U.MALFORMED_AS_PATH)]),
    ("as_path bad segment type", bytes((0x40, 2, 4, 5, 1, 0, 1)), [(W, 2, U.MALFORMED_AS_PATH)]),
    ("as_path zero-length segment", bytes((0x40, 2, 2, 2, 0)), [(W, 2, U.MALFORMED_AS_PATH)]),
    ("as_path underrun", bytes((0x40, 2, 5, 2, 1, 0, 1, 2)), [(W, 2, U.MALFORMED_AS_PATH)]),
    ("next hop 0.0.0.0", bytes((0x40, 3, 4, 0, 0, 0, 0)), [(W, 3, U.INVALID_NEXT_HOP_ATTRIBUTE)]),
    ("next hop multicast", bytes((0x40, 3, 4, 224, 0, 0, 5)), [(W, 3, U.INVALID_NEXT_HOP_ATTRIBUTE)]),
    ("next hop broadcast", bytes((0x40, 3, 4, 255, 255, 255, 255)), [(W, 3, U.INVALID_NEXT_HOP_ATTRIBUTE)]),
    ("next hop length 5", bytes((0x40, 3, 5, 10, 0, 0, 1, 0)), [(W, 3, U.ATTRIBUTE_LENGTH_ERROR)]),
    ("med length 3", bytes((0x80, 4, 3, 0, 0, 1)), [(W, 4, U.ATTRIBUTE_LENGTH_ERROR)]),
    ("local_pref length 0", bytes((0x40, 5, 0)), [(W, 5, U.ATTRIBUTE_LENGTH_ERROR)]),
    ("atomic_aggregate length 1", bytes((0x40, 6, 1, 0)), [(D, 6, U.ATTRIBUTE_LENGTH_ERROR)]),
    ("aggregator length 7", bytes((0xC0, 7, 7)) + bytes(7), [(D, 7, U.ATTRIBUTE_LENGTH_ERROR)]),
    ("aggregator flags", bytes((0x40, 7, 8)) + bytes(8), [(D, 7, U.ATTRIBUTE_FLAGS_ERROR)]),
    ("communities length 5", bytes((0xC0, 8, 5)) + bytes(5), [(W, 8, U.OPTIONAL_ATTRIBUTE_ERROR)]),
    ("communities empty", bytes((0xC0, 8, 0)), [(W, 8, U.OPTIONAL_ATTRIBUTE_ERROR)]),
    ("originator_id length 3", bytes((0x80, 9, 3, 1, 2, 3)), [(W, 9, U.ATTRIBUTE_LENGTH_ERROR)]),
    ("cluster_list length 6", bytes((0x80, 10, 6)) + bytes(6), [(W, 10, U.OPTIONAL_ATTRIBUTE_ERROR)]),
    ("ext communities length 9", bytes((0xC0, 16, 9)) + bytes(9), [(W, 16, U.OPTIONAL_ATTRIBUTE_ERROR)]),
    ("as4_path malformed", bytes((0xC0, 17, 3, 2, 1, 0)), [(D, 17, U.OPTIONAL_ATTRIBUTE_ERROR)]),
    ("as4_aggregator length 6", bytes((0xC0, 18, 6)) + bytes(6), [(D, 18, U.ATTRIBUTE_LENGTH_ERROR)]),
    ("large communities length 8", bytes((0xC0, 32, 8)) + bytes(8), [(W, 32, U.OPTIONAL_ATTRIBUTE_ERROR)]),
    ("duplicate keeps the first", ORIGIN + bytes((0x40, 1, 1, 2)), [(D, 1, U.MALFORMED_ATTRIBUTE_LIST)]),
    ("attribute overruns the block", ORIGIN + bytes((0x40, 2, 9, 2)), [(W, 0, U.MALFORMED_ATTRIBUTE_LIST)]),
    ("two octets left", ORIGIN + bytes((0x40, 2)), [(W, 0, U.MALFORMED_ATTRIBUTE_LIST)]),
    ("extended length header cut", ORIGIN + bytes((0x50, 8, 0)), [(W, 0, U.MALFORMED_ATTRIBUTE_LIST)]),
    ("mp_reach flags", bytes((0xC0, 14, 3, 0, 2, 1)), [(W, 14, U.ATTRIBUTE_FLAGS_ERROR)]),
]


@pytest.mark.parametrize(("block", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rfc7606_outcome(block: bytes, expected: list[tuple[str, int, int]]) -> None:
    C.clear_cache()
    assert problems_of(block) == expected


def test_duplicate_keeps_first_value() -> None:
    decoded, _ = C.cached_block(ORIGIN + bytes((0x40, 1, 1, 2)), True)
    assert decoded.attributes.origin == 0


def test_malformed_attribute_is_absent_but_present_for_mandatory_check() -> None:
    decoded, _ = C.cached_block(bytes((0x40, 1, 1, 7)) + AS_PATH + NEXT_HOP, True)
    assert decoded.attributes.origin is None
    assert decoded.has(AttrCode.ORIGIN)


@pytest.mark.parametrize(
    ("block", "subcode"),
    [
        (bytes((0x40, 99, 1, 0)), UpdateError.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE),
        (bytes((0x80, 14, 3, 0, 2, 1, 0x80, 14, 3, 0, 2, 1)), UpdateError.MALFORMED_ATTRIBUTE_LIST),
        (
            bytes((0x80, 15, 3, 0, 2, 1)) + ORIGIN + bytes((0x80, 15, 3, 0, 2, 1)),
            UpdateError.MALFORMED_ATTRIBUTE_LIST,
        ),
    ],
    ids=["unknown well-known", "mp_reach twice", "mp_unreach twice"],
)
def test_session_reset_cases(block: bytes, subcode: int) -> None:
    for decode in (C.cached_block, B.spec_block):
        with pytest.raises(MessageError) as info:
            decode(block, True)
        assert (info.value.code, info.value.subcode) == (3, subcode)
    if subcode == UpdateError.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE:
        assert info.value.data == block  # the attribute itself goes back in the NOTIFICATION


def test_unknown_optional_attributes_and_readvertisement() -> None:
    block = ORIGIN + bytes((0xC0, 99, 2, 1, 2)) + bytes((0x80, 100, 1, 7))
    decoded, _ = C.cached_block(block, True)
    assert decoded.problems == ()
    assert decoded.attributes.unknown == (
        UnknownAttribute(0xC0, 99, b"\1\2"),
        UnknownAttribute(0x80, 100, b"\7"),
    )
    passed_on = E.readvertised(decoded.attributes)
    assert passed_on.unknown == (UnknownAttribute(0xE0, 99, b"\1\2"),)
    assert E.encode_attributes(passed_on, True)[99] == bytes((0xE0, 99, 2, 1, 2))


def test_aggregator_width_follows_four_octet_as() -> None:
    two = bytes((0xC0, 7, 6, 0xFD, 0xE9, 10, 0, 0, 1))
    four = bytes((0xC0, 7, 8, 0, 1, 0, 0, 10, 0, 0, 1))
    assert C.cached_block(two, False)[0].attributes.aggregator == (65001, "10.0.0.1")
    assert C.cached_block(four, True)[0].attributes.aggregator == (65536, "10.0.0.1")
    assert problems_of(two, True) == [(D, 7, U.ATTRIBUTE_LENGTH_ERROR)]


# ---------------------------------------------------------------- 2-octet AS peers (RFC 6793)

no_confed_paths = st.lists(
    st.builds(AsPathSegment, st.sampled_from([1, 2]), st.lists(u32, min_size=1, max_size=8).map(tuple)),
    max_size=4,
).map(tuple)


@SETTINGS
@given(path=no_confed_paths, aggregator=st.one_of(st.none(), st.tuples(u32, ipv4)))
def test_two_octet_peer_round_trip(
    path: tuple[AsPathSegment, ...], aggregator: tuple[int, str] | None
) -> None:
    """What a 2-octet peer receives, after its wire trip and the merge, is the original path."""
    attrs = PathAttributes(origin=0, as_path=path, next_hop="10.0.0.1", aggregator=aggregator)
    sent = AS4.for_two_octet_peer(attrs)
    assert all(a <= 0xFFFF for s in sent.as_path for a in s.asns)
    decoded, _ = C.cached_block(block_of(sent, False), False)
    assert decoded.problems == ()
    assert AS4.merge_as4(decoded.attributes) == attrs


def test_merge_takes_leading_ases_from_as_path() -> None:
    # a 2-octet speaker (65001) prepended itself in front of a path that held 4-octet ASes
    attrs = PathAttributes(
        as_path=(AsPathSegment(2, (65001, K.AS_TRANS, K.AS_TRANS)),),
        as4_path=(AsPathSegment(2, (4200000001, 4200000002)),),
    )
    assert AS4.merge_as4(attrs).as_path == (
        AsPathSegment(2, (65001,)),
        AsPathSegment(2, (4200000001, 4200000002)),
    )


def test_merge_ignores_longer_as4_path_and_stale_aggregator() -> None:
    longer = PathAttributes(as_path=(AsPathSegment(2, (1,)),), as4_path=(AsPathSegment(2, (5, 6)),))
    assert AS4.merge_as4(longer).as_path == (AsPathSegment(2, (1,)),)
    assert AS4.merge_as4(longer).as4_path is None
    stale = PathAttributes(
        as_path=(AsPathSegment(2, (K.AS_TRANS,)),),
        aggregator=(65001, "10.0.0.1"),
        as4_path=(AsPathSegment(2, (4200000001,)),),
        as4_aggregator=(4200000001, "10.0.0.2"),
    )
    merged = AS4.merge_as4(stale)
    assert merged.aggregator == (65001, "10.0.0.1")
    assert merged.as_path == (AsPathSegment(2, (K.AS_TRANS,)),)


def test_path_length_counts_sets_once_and_confederations_not() -> None:
    path = (AsPathSegment(2, (1, 2, 3)), AsPathSegment(1, (4, 5)), AsPathSegment(3, (6, 7)))
    assert AS4.path_length(path) == 4


@SETTINGS
@given(
    flags=st.sampled_from([0x40, 0x80, 0xC0, 0xE0, 0x50, 0xD0]),
    code=st.integers(0, 255),
    value=st.binary(max_size=300),
)
def test_attribute_header_encoding_equals_spec(flags: int, code: int, value: bytes) -> None:
    wire = E.encode_attribute(flags, code, value)
    extended = bool(flags & T.EXTENDED) or len(value) > 255
    named = {name: bool((flags | (T.EXTENDED if extended else 0)) & bit) for name, bit in S.FLAG_BITS}
    assert wire == S.Attribute.build(dict(flags=named, type=code, length=len(value), value=value))
    assert (
        B.walk(wire)
        == B.walk_spec(wire)
        == ([(flags | (T.EXTENDED if extended else 0), code, value, wire)], None)
    )
