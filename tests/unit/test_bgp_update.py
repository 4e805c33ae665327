"""Whole UPDATE bodies: round trips (IPv4, IPv6 MP, ADD-PATH, RFC 8950), exact bytes, the fast
path equal to the construct specification on valid and mutated input, every RFC 7606 path."""

from __future__ import annotations

import socket
import struct
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import proto.bgp.attr_block as B
import proto.bgp.attr_cache as C
import proto.bgp.attr_table as T
from proto import prefix as pf
from proto.bgp import nlri as nlri_mod
from proto.bgp.attr_spec import MpReachSpec, MpUnreachSpec
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, UpdateError
from proto.bgp.message_spec import UpdateBody
from proto.bgp.model import (
    AsPathSegment,
    MessageError,
    MpReach,
    MpUnreach,
    Negotiated,
    PathAttributes,
    Update,
)
from proto.bgp.prefix import prefix_from_network
from proto.bgp.update import (
    address_bytes,
    decode_update,
    decode_update_spec,
    encode_update,
    mp_reach_value,
    mp_unreach_value,
)
from tests.unit.test_bgp_attributes import path_attributes
from tests.unit.test_bgp_nlri import values as entries

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ipv6_text = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))
ipv6_hops = st.one_of(st.tuples(ipv6_text), st.tuples(ipv6_text, ipv6_text))
families = st.frozensets(st.sampled_from([IPV4_UNICAST, IPV6_UNICAST]))


@st.composite
def updates(draw: st.DrawFn) -> tuple[Update, Negotiated]:
    four = draw(st.booleans())
    add_path = draw(families)
    negotiated = Negotiated(
        four_octet_as=four,
        extended_message=True,
        add_path_receive=add_path,
        add_path_send=add_path,
        extended_next_hop=draw(st.sampled_from([frozenset(), frozenset({IPV4_UNICAST})])),
    )
    v4 = entries(1, IPV4_UNICAST in add_path)
    v6 = entries(2, IPV6_UNICAST in add_path)
    kind = draw(st.sampled_from(["ipv4", "ipv6", "rfc8950", "withdraw", "ipv6-withdraw", "empty"]))
    if kind == "rfc8950" and not negotiated.extended_next_hop:
        kind = "ipv4"
    withdrawn = draw(st.lists(v4, max_size=5))
    nlri: list[bytes] = []
    attributes: PathAttributes | None = None
    mp_reach = mp_unreach = None
    if kind == "ipv4":
        attributes = draw(path_attributes(four))
        nlri = draw(st.lists(v4, min_size=1, max_size=10))
    elif kind == "ipv6":
        attributes = draw(path_attributes(four, next_hop=False))
        mp_reach = MpReach(2, 1, draw(ipv6_hops), draw(st.lists(v6, max_size=10)))
    elif kind == "rfc8950":
        attributes = draw(path_attributes(four, next_hop=False))
        mp_reach = MpReach(1, 1, draw(ipv6_hops), draw(st.lists(v4, min_size=1, max_size=10)))
    elif kind == "ipv6-withdraw":
        attributes = PathAttributes()
    if kind in ("ipv6", "ipv6-withdraw") and draw(st.booleans()):
        mp_unreach = MpUnreach(2, 1, draw(st.lists(v6, max_size=10)))
        attributes = attributes or PathAttributes()
    if kind == "ipv6-withdraw" and mp_unreach is None:
        mp_unreach = MpUnreach(2, 1, [])
    return Update(withdrawn, attributes, nlri, mp_reach, mp_unreach), negotiated


def problems(update: Update) -> list[tuple[str, int, int]]:
    return [(p.action, p.code, p.subcode) for p in update.problems]


def outcome(decode: Any, body: bytes, negotiated: Negotiated) -> Any:
    try:
        update = decode(body, negotiated)
    except MessageError as exc:
        return ("error", exc.code, exc.subcode, exc.data)
    # reasons are worded differently by the two paths: compare the problems without them
    return ("ok", replace(update, problems=()), problems(update))


def both(body: bytes, negotiated: Negotiated) -> Any:
    """Decode with the fast path (twice: cold and cached) and the spec; all three must agree."""
    C.clear_cache()
    cold = outcome(decode_update, body, negotiated)
    warm = outcome(decode_update, body, negotiated)
    spec = outcome(decode_update_spec, body, negotiated)
    assert cold == spec
    assert warm == spec
    return cold


# ---------------------------------------------------------------- round trips


@SETTINGS
@given(case=updates())
def test_update_round_trip_exact_bytes_and_spec(case: tuple[Update, Negotiated]) -> None:
    update, negotiated = case
    body = encode_update(update, negotiated)
    result = both(body, negotiated)
    assert result[0] == "ok"
    decoded = result[1]
    assert decoded == update
    assert result[2] == []
    assert encode_update(decoded, negotiated) == body


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, Negotiated]:
    update, negotiated = draw(updates())
    body = bytearray(encode_update(update, negotiated))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "junk", "length"]))
        if action == "flip" and body:
            body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
        elif action == "cut":
            body = body[: draw(st.integers(0, len(body)))]
        elif action == "junk":
            body += draw(st.binary(min_size=1, max_size=6))
        elif action == "length" and len(body) >= 2:
            where = draw(st.integers(0, len(body) - 2))
            body[where : where + 2] = struct.pack("!H", draw(st.integers(0, 80)))
    return bytes(body), negotiated


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_fast_path_equals_spec_on_mutated_updates(case: tuple[bytes, Negotiated]) -> None:
    body, negotiated = case
    result = both(body, negotiated)
    if result[0] == "error":
        assert result[1] == 3  # every UPDATE error is an UPDATE Message Error


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=80), four=st.booleans(), add_path=families)
def test_random_bytes_agree_and_only_raise_message_error(
    body: bytes, four: bool, add_path: frozenset
) -> None:
    both(body, Negotiated(four_octet_as=four, add_path_receive=add_path))


# ---------------------------------------------------------------- fixtures for RFC paths

N = Negotiated()
ORIGIN = bytes((0x40, 1, 1, 0))
AS_PATH = bytes((0x40, 2, 6, 2, 1, 0, 0, 0xFD, 0xE9))
NEXT_HOP = bytes((0x40, 3, 4, 10, 0, 0, 1))
MANDATORY = ORIGIN + AS_PATH + NEXT_HOP
PREFIX = bytes((24, 10, 1, 2))  # on the wire
PREFIX_V = pf.parse("10.1.2.0/24")  # decoded


def body(withdrawn: bytes = b"", attributes: bytes = MANDATORY, nlri: bytes = PREFIX) -> bytes:
    return (
        struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attributes)) + attributes + nlri
    )


def mp_reach(afi: int, safi: int, hop: bytes, nlri: bytes, flags: int = 0x90) -> bytes:
    value = struct.pack("!HBB", afi, safi, len(hop)) + hop + b"\0" + nlri
    return bytes((flags, 14)) + struct.pack("!H", len(value)) + value


def mp_unreach(afi: int, safi: int, withdrawn: bytes) -> bytes:
    value = struct.pack("!HB", afi, safi) + withdrawn
    return bytes((0x90, 15)) + struct.pack("!H", len(value)) + value


HOP6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
LL6 = socket.inet_pton(socket.AF_INET6, "fe80::1")
PREFIX6_V = prefix_from_network("2001:db8:1::/48")
PREFIX6 = nlri_mod.join([PREFIX6_V])


def reset(data: bytes, negotiated: Negotiated = N) -> MessageError:
    result = both(data, negotiated)
    assert result[0] == "error", result
    return MessageError(result[1], result[2], result[3])


def accepted(data: bytes, negotiated: Negotiated = N) -> Update:
    result = both(data, negotiated)
    assert result[0] == "ok", result
    return result[1]


# ---------------------------------------------------------------- RFC 4271 6.3 / 7606: session reset


@pytest.mark.parametrize(
    "data",
    [
        b"\0\0\0",
        struct.pack("!H", 40) + PREFIX + b"\0\0",
        body(attributes=b"")[:2] + struct.pack("!H", 200) + MANDATORY,
        b"\xff\xff\0\0",
    ],
    ids=["shorter than the length fields", "withdrawn length", "attribute length", "withdrawn 65535"],
)
def test_inconsistent_lengths_are_malformed_attribute_list(data: bytes) -> None:
    error = reset(data)
    assert (error.code, error.subcode) == (3, UpdateError.MALFORMED_ATTRIBUTE_LIST)


@pytest.mark.parametrize(
    "data",
    [
        body(nlri=bytes((33, 10, 0, 0, 0, 0))),
        body(nlri=PREFIX + bytes((24, 10, 1))),
        body(withdrawn=bytes((25, 10, 0, 0))),
        body(withdrawn=bytes((40,)) + bytes(5)),
    ],
    ids=["nlri /33", "nlri truncated", "withdrawn truncated", "withdrawn /40"],
)
def test_bad_network_fields_reset(data: bytes) -> None:
    error = reset(data)
    assert (error.code, error.subcode) == (3, UpdateError.INVALID_NETWORK_FIELD)


def test_add_path_entries_need_path_ids() -> None:
    with_ids = Negotiated(add_path_receive=frozenset({IPV4_UNICAST}))
    assert accepted(body(nlri=b"\0\0\0\5" + PREFIX), with_ids).nlri == [b"\0\0\0\5" + PREFIX_V]
    error = reset(body(nlri=PREFIX), with_ids)  # a bare prefix where a path id is expected
    assert (error.code, error.subcode) == (3, UpdateError.INVALID_NETWORK_FIELD)


@pytest.mark.parametrize(
    ("attributes", "negotiated"),
    [
        (ORIGIN + AS_PATH + mp_reach(2, 1, HOP6, bytes((129,)) + bytes(16)), N),
        (ORIGIN + AS_PATH + mp_reach(2, 1, HOP6, PREFIX6 + bytes((48, 1))), N),
        (ORIGIN + AS_PATH + bytes((0x80, 14, 2, 0, 2)), N),
        (ORIGIN + AS_PATH + bytes((0x80, 14, 6, 0, 2, 1, 32, 0, 0)), N),
        (mp_unreach(2, 1, bytes((64, 0x20))), N),
        (bytes((0x80, 15, 2, 0, 2)), N),
    ],
    ids=[
        "ipv6 /129",
        "ipv6 nlri truncated",
        "mp_reach shorter than its header",
        "next hop length past the end",
        "mp_unreach truncated prefix",
        "mp_unreach shorter than afi/safi",
    ],
)
def test_malformed_mp_attributes_reset_with_optional_attribute_error(
    attributes: bytes, negotiated: Negotiated
) -> None:
    error = reset(body(attributes=attributes, nlri=b""), negotiated)
    assert (error.code, error.subcode) == (3, UpdateError.OPTIONAL_ATTRIBUTE_ERROR)
    assert error.data and error.data[1] in (14, 15)  # the attribute goes back in the NOTIFICATION


@pytest.mark.parametrize(
    "reach",
    [mp_reach(2, 1, HOP6[:4], PREFIX6), mp_reach(1, 1, HOP6, PREFIX), mp_reach(2, 1, HOP6 + b"\1", PREFIX6)],
    ids=["ipv6 next hop of 4", "ipv6 next hop for ipv4 without RFC 8950", "ipv6 next hop of 17"],
)
def test_next_hop_of_the_wrong_length_withdraws_the_nlri(reach: bytes) -> None:
    data = body(attributes=reach + ORIGIN + AS_PATH, nlri=b"")
    accepted(data)  # fast and spec agree
    update = decode_update(data, N)
    assert problems(update) == [(W, 14, UpdateError.OPTIONAL_ATTRIBUTE_ERROR)]
    assert update.treat_as_withdraw
    assert update.mp_reach is not None and update.mp_reach.nlri  # still there, to be withdrawn
    assert update.mp_reach.next_hop == ()


def test_repeated_mp_reach_resets() -> None:
    reach = mp_reach(2, 1, HOP6, PREFIX6)
    error = reset(body(attributes=reach + ORIGIN + AS_PATH + reach, nlri=b""))
    assert (error.code, error.subcode) == (3, UpdateError.MALFORMED_ATTRIBUTE_LIST)


def test_unknown_well_known_resets_with_the_attribute() -> None:
    strange = bytes((0x40, 77, 2, 1, 2))
    error = reset(body(attributes=MANDATORY + strange))
    assert (error.code, error.subcode, error.data) == (
        3,
        UpdateError.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
        strange,
    )


# ---------------------------------------------------------------- RFC 7606: session stays up

W, D = T.WITHDRAW, T.DISCARD


@pytest.mark.parametrize(
    ("attributes", "nlri", "expected"),
    [
        (AS_PATH + NEXT_HOP, PREFIX, [(W, 1, 3)]),
        (ORIGIN + NEXT_HOP, PREFIX, [(W, 2, 3)]),
        (ORIGIN + AS_PATH, PREFIX, [(W, 3, 3)]),
        (b"", PREFIX, [(W, 1, 3), (W, 2, 3), (W, 3, 3)]),
        (ORIGIN + AS_PATH, b"", []),  # no NLRI: nothing is mandatory
        (bytes((0x40, 1, 1, 9)) + AS_PATH + NEXT_HOP, PREFIX, [(W, 1, 6)]),
        (ORIGIN + bytes((0x40, 2, 2, 2, 0)) + NEXT_HOP, PREFIX, [(W, 2, 11)]),
        (ORIGIN + AS_PATH + bytes((0x40, 3, 4, 0, 0, 0, 0)), PREFIX, [(W, 3, 8)]),
        (MANDATORY + bytes((0xC0, 7, 3, 1, 2, 3)), PREFIX, [(D, 7, 5)]),
        (MANDATORY + bytes((0x40, 6, 1, 0)), PREFIX, [(D, 6, 5)]),
        (MANDATORY + bytes((0xC0, 8, 3, 1, 2, 3)), PREFIX, [(W, 8, 9)]),
        (MANDATORY + bytes((0x80, 9, 3, 1, 2, 3)), PREFIX, [(W, 9, 5)]),
        (MANDATORY + bytes((0x80, 10, 3, 1, 2, 3)), PREFIX, [(W, 10, 9)]),
        (MANDATORY + bytes((0x40, 4, 4, 0, 0, 0, 1)), PREFIX, [(W, 4, 4)]),  # MED flagged well-known
        (MANDATORY + ORIGIN, PREFIX, [(D, 1, 1)]),
        (MANDATORY + bytes((0x40, 5, 9, 0)), PREFIX, [(W, 0, 1)]),  # overruns the block
    ],
    ids=[
        "missing origin",
        "missing as_path",
        "missing next_hop",
        "no attributes at all",
        "withdraw-only needs none",
        "invalid origin",
        "zero-length as_path segment",
        "next hop 0.0.0.0",
        "aggregator length",
        "atomic_aggregate length",
        "communities length",
        "originator_id length",
        "cluster_list length",
        "flags conflict",
        "duplicate origin",
        "attribute overrun",
    ],
)
def test_rfc7606_outcomes(attributes: bytes, nlri: bytes, expected: list[tuple[str, int, int]]) -> None:
    accepted(body(attributes=attributes, nlri=nlri))
    full = decode_update(body(attributes=attributes, nlri=nlri), N)
    assert problems(full) == expected
    assert full.treat_as_withdraw == any(p[0] == W for p in expected)
    assert all(p.reason for p in full.problems)


def test_mp_only_update_needs_origin_and_as_path_not_next_hop() -> None:
    reach = mp_reach(2, 1, HOP6 + LL6, PREFIX6)
    update = decode_update(body(attributes=reach + ORIGIN + AS_PATH, nlri=b""), N)
    assert update.problems == ()
    assert update.mp_reach == MpReach(2, 1, ("2001:db8::1", "fe80::1"), [PREFIX6_V])
    assert problems(decode_update(body(attributes=reach + AS_PATH, nlri=b""), N)) == [(W, 1, 3)]


def test_unsupported_family_is_discarded() -> None:
    data = body(attributes=ORIGIN + AS_PATH + mp_reach(25, 70, b"\1\2\3\4", b"\1\2"), nlri=b"")
    accepted(data)  # fast and spec agree
    update = decode_update(data, N)
    assert update.mp_reach is None
    assert problems(update) == [(D, 14, 9)]


def test_rfc8950_ipv4_nlri_with_ipv6_next_hop() -> None:
    negotiated = Negotiated(extended_next_hop=frozenset({IPV4_UNICAST}))
    data = body(attributes=mp_reach(1, 1, HOP6, PREFIX) + ORIGIN + AS_PATH, nlri=b"")
    accepted(data, negotiated)
    update = decode_update(data, negotiated)
    assert update.mp_reach == MpReach(1, 1, ("2001:db8::1",), [PREFIX_V])
    assert update.problems == ()
    assert encode_update(update, negotiated) == data


# ---------------------------------------------------------------- End-of-RIB, interning, layout


def test_end_of_rib() -> None:
    assert accepted(b"\0\0\0\0").end_of_rib() == IPV4_UNICAST
    assert accepted(body(attributes=mp_unreach(2, 1, b""), nlri=b"")).end_of_rib() == IPV6_UNICAST
    assert accepted(body(attributes=mp_unreach(2, 1, PREFIX6), nlri=b"")).end_of_rib() is None
    assert accepted(body()).end_of_rib() is None


def test_attribute_sets_and_next_hops_are_shared() -> None:
    C.clear_cache()
    one = decode_update(body(nlri=PREFIX), N)
    two = decode_update(body(nlri=bytes((24, 10, 9, 9))), N)
    assert one.attributes is two.attributes
    six = [
        decode_update(body(attributes=mp_reach(2, 1, HOP6, p) + ORIGIN + AS_PATH, nlri=b""), N)
        for p in (PREFIX6, nlri_mod.join([prefix_from_network("2001:db8:2::/48")]))
    ]
    assert six[0].attributes is six[1].attributes
    assert six[0].mp_reach.next_hop is six[1].mp_reach.next_hop


def test_received_order_and_extended_length_give_back_the_exact_bytes() -> None:
    # MP_REACH last, NEXT_HOP before ORIGIN, AS_PATH with a needless Extended Length, an unknown
    # transitive attribute in the middle: as some speakers send them
    as_path = bytes((0x50, 2, 0, 6, 2, 1, 0, 0, 0xFD, 0xE9))
    unknown = bytes((0xE0, 99, 1, 7))
    data = body(attributes=NEXT_HOP + ORIGIN + unknown + as_path + mp_reach(2, 1, HOP6, PREFIX6), nlri=b"")
    update = accepted(data)
    assert encode_update(update, N) == data


def test_canonical_encoding_order() -> None:
    attrs = PathAttributes(origin=0, as_path=(AsPathSegment(2, (65001,)),), med=5)
    update = Update([], attrs, [], MpReach(2, 1, ("2001:db8::1",), [PREFIX6_V]))
    data = encode_update(update, N)
    block = data[4:]
    assert block[1] == 14  # MP_REACH_NLRI first (RFC 7606 section 5.1), then ascending codes
    assert decode_update(data, N) == update


def test_encode_refuses_oversized_update() -> None:
    prefixes = [prefix_from_network(f"10.{i // 256}.{i % 256}.0/24") for i in range(1100)]
    update = Update([], PathAttributes(origin=0, as_path=(), next_hop="10.0.0.1"), prefixes)
    with pytest.raises(ValueError):
        encode_update(update, N)
    assert decode_update(encode_update(update, Negotiated(extended_message=True)), N).nlri == prefixes


@SETTINGS
@given(case=updates())
def test_mp_values_equal_the_construct_build(case: tuple[Update, Negotiated]) -> None:
    update, _ = case
    if update.mp_reach is not None:
        reach = update.mp_reach
        hop = b"".join(address_bytes(a) for a in reach.next_hop)
        spec = MpReachSpec.build(
            dict(afi=reach.afi, safi=reach.safi, next_hop=hop, reserved=0, nlri=nlri_mod.join(reach.nlri))
        )
        assert mp_reach_value(reach) == spec
    if update.mp_unreach is not None:
        unreach = update.mp_unreach
        spec = MpUnreachSpec.build(
            dict(afi=unreach.afi, safi=unreach.safi, withdrawn=nlri_mod.join(unreach.withdrawn))
        )
        assert mp_unreach_value(unreach) == spec
    body = encode_update(update, Negotiated(extended_message=True))
    parsed = UpdateBody.parse(body)
    assert parsed.withdrawn == nlri_mod.join(update.withdrawn)
    assert parsed.nlri == nlri_mod.join(update.nlri)


@SETTINGS
@given(case=updates(), data=st.data())
def test_any_attribute_order_decodes_alike_and_re_encodes_exactly(
    case: tuple[Update, Negotiated], data: st.DataObject
) -> None:
    update, negotiated = case
    plain = encode_update(update, negotiated)
    withdrawn_len = struct.unpack("!H", plain[:2])[0]
    start = 2 + withdrawn_len
    block_len = struct.unpack("!H", plain[start : start + 2])[0]
    entries, overrun = B.walk(plain[start + 2 : start + 2 + block_len])
    assert overrun is None
    shuffled = b"".join(e[3] for e in data.draw(st.permutations(entries)))
    reordered = plain[: start + 2] + shuffled + plain[start + 2 + block_len :]
    result = both(reordered, negotiated)
    assert result[0] == "ok" and result[2] == []
    assert result[1] == update
    C.clear_cache()
    assert encode_update(decode_update(reordered, negotiated), negotiated) == reordered
    assert encode_update(decode_update(reordered, negotiated), negotiated) == reordered  # cached
