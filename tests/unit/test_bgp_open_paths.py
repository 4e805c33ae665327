"""The hand-written OPEN and capability codec (proto.bgp.open, proto.bgp.capabilities) against the
construct specification (proto.bgp.open_spec, proto.bgp.capability_spec).

The fast path must decode every OPEN the specification decodes, to the same value (capability
grouping and parameter form included), and hand every OPEN the specification refuses to it, so the
error is the specification's; encoding must give the specification's octets, or its error. Checked
on OPENs the specification builds, on those mutated, on random octets and on real daemons' OPENs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.bgp import (
    AddPathCap,
    Capability,
    ExtendedNextHopCap,
    FourOctetAsCap,
    FqdnCap,
    GracefulRestartCap,
    MessageError,
    MultiprotocolCap,
    Open,
    OptionalParameter,
    capability_spec,
    open_spec,
)
from proto.bgp.capabilities import decode_capabilities, encode_capability, fast_capabilities
from proto.bgp.capability_spec import decode_capabilities_spec, encode_capability_spec
from proto.bgp.open import decode_open, encode_open, fast_open
from proto.bgp.open_spec import decode_open_spec, encode_open_spec
from tests.unit.codec_paths import decoded, spec_refused
from tests.unit.test_bgp_open import (
    BIRD_OPEN,
    FRR_OPEN,
    GOBGP_OPEN,
    KNOWN,
    capabilities,
    hold_times,
    opens,
    router_ids,
    u8,
)

# ---------------------------------------------------------------- decoding

def grouped(draw: st.DrawFn, open_: Open) -> Open:
    """The OPEN with its capabilities split into parameters at random (FRR's one per parameter, or
    anything between), as a received OPEN records them."""
    count = len(open_.capabilities)
    groups: list[int] = []
    left = count
    while left:
        size = draw(st.integers(0 if left < count else 1, left))
        groups.append(size)
        left -= size
    return replace(open_, capability_groups=tuple(groups)) if draw(st.booleans()) else open_


@st.composite
def open_bodies(draw: st.DrawFn, others: bool = False) -> bytes:
    """OPEN bodies as the specification builds them: both parameter forms, any grouping, and with
    `others` parameters of other types too (which make it an error, 2/4)."""
    open_ = grouped(draw, draw(opens))
    if others:
        extra = draw(st.lists(st.builds(OptionalParameter, u8, st.binary(max_size=8)), max_size=2))
        open_ = replace(open_, other_parameters=tuple(extra))
    return encode_open_spec(open_)


def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    body = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "junk", "length", "type"]))
        if action == "flip" and body:
            # mostly in the optional parameters: the fixed fields have few ways to be wrong
            low = min(9, len(body) - 1) if draw(st.integers(0, 7)) else 0
            body[draw(st.integers(low, len(body) - 1))] = draw(st.integers(0, 255))
        elif action == "cut":
            body = body[: draw(st.integers(0, len(body)))]
        elif action == "junk":
            at = draw(st.integers(0, len(body)))
            body[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif action == "length" and len(body) > 9:
            # the octets where parameter and capability lengths live (the parameters' own length
            # often), nudged by a little
            where = 9 if draw(st.booleans()) else draw(st.integers(9, len(body) - 1))
            body[where] = (body[where] + draw(st.integers(-3, 3))) & 0xFF
        elif action == "type" and len(body) > 10:
            body[draw(st.integers(10, len(body) - 1))] = draw(st.sampled_from([1, 2, 3, 255, *KNOWN]))
    return bytes(body)


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    body = draw(open_bodies(others=True))
    return mutate(draw, body) if draw(st.integers(0, 5)) else body


def open_outcome(decode: Any, body: bytes) -> Any:
    try:
        opened = decode(body)
    except MessageError as error:
        return ("error", error.code, error.subcode, error.data)
    if opened is None:
        return None
    # capability_groups takes no part in equality: compare it explicitly
    return ("ok", opened, opened.capability_groups, opened.extended_params)


def check_open_paths(body: bytes) -> Any:
    spec = open_outcome(decode_open_spec, body)
    fast = open_outcome(fast_open, body)
    if spec[0] == "ok":
        assert fast == spec  # every OPEN the specification accepts, the fast path decodes
    else:
        assert fast in (None, spec)  # the rest it refuses, or raises the same fixed-field error
    assert open_outcome(decode_open, body) == spec
    return spec


@settings(max_examples=150, deadline=None)
@given(open_bodies())
def test_fast_open_decodes_what_the_spec_builds(body: bytes) -> None:
    assert check_open_paths(body)[0] == "ok"


@settings(max_examples=300, deadline=None)
@given(mutated_bodies())
def test_fast_open_equals_spec_on_mutated_opens(body: bytes) -> None:
    result = check_open_paths(body)
    assert result[0] == "ok" or result[1] == 2  # an OPEN body's errors are OPEN Message Errors


@settings(max_examples=150, deadline=None)
@given(open_bodies(), st.integers(-3, 3).filter(bool), st.binary(max_size=4))
def test_parameters_length_off_or_octets_after(body: bytes, delta: int, after: bytes) -> None:
    """The parameters' length a little off, or octets after the parameters: the specification
    refuses, and so must the fast path (it must not walk on past the length it was given)."""
    extended = body[9] == body[10] == 255 if len(body) > 10 else False
    at, width = (11, 2) if extended else (9, 1)
    length = (int.from_bytes(body[at : at + width], "big") + delta) % (1 << 8 * width)
    for wrong in (body[:at] + length.to_bytes(width, "big") + body[at + width :], body + after):
        if wrong != body:
            assert check_open_paths(wrong)[:3] == ("error", 2, 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=9, max_size=60).map(lambda b: b"\x04\xfd\xe8\x00\x5a\x01\x02\x03\x04" + b[9:]))
def test_fast_open_equals_spec_on_random_parameters(body: bytes) -> None:
    check_open_paths(body)


@pytest.mark.parametrize("hex_open", [BIRD_OPEN, GOBGP_OPEN, FRR_OPEN], ids=["bird2", "gobgp", "frr"])
def test_real_opens_take_the_fast_path(hex_open: str) -> None:
    body = bytes.fromhex(hex_open)[19:]
    assert check_open_paths(body)[0] == "ok"
    assert fast_open(body) is not None


def capability_list(draw: st.DrawFn) -> bytes:
    return b"".join(encode_capability_spec(c) for c in draw(st.lists(capabilities, max_size=6)))


@st.composite
def capability_values(draw: st.DrawFn) -> bytes:
    value = capability_list(draw)
    return mutate(draw, b"\x00" * 10 + value)[10:] if draw(st.booleans()) else value


@settings(max_examples=300, deadline=None)
@given(st.one_of(capability_values(), st.binary(max_size=40)))
def test_fast_capabilities_equal_spec(value: bytes) -> None:
    spec = decoded(decode_capabilities_spec, value)
    fast = fast_capabilities(value)
    if spec[0] == "ok":
        assert fast == spec[1]
    else:
        assert spec[:3] == ("error", 2, 0) and fast is None
    assert decoded(decode_capabilities, value) == spec


# ---------------------------------------------------------------- encoding
# Values in range and out of it (every field one past its limit, negative, wrong type).
wide = st.one_of(st.integers(-2, 70000), st.integers(0, 2**33), st.sampled_from([True, 1.5, None]))
wild_capabilities = st.one_of(
    capabilities,
    st.builds(MultiprotocolCap, wide, wide),
    st.builds(ExtendedNextHopCap, st.lists(st.tuples(wide, wide, wide), max_size=3).map(tuple)),
    st.builds(GracefulRestartCap, wide, st.booleans(), st.integers(0, 3),
              st.lists(st.tuples(wide, wide, wide), max_size=3).map(tuple)),
    st.builds(FourOctetAsCap, wide),
    st.builds(AddPathCap, st.lists(st.tuples(wide, wide, wide), max_size=3).map(tuple)),
    st.builds(FqdnCap, st.text(max_size=300), st.text(max_size=300)),
    st.builds(Capability, wide, st.one_of(st.binary(max_size=300), st.just(bytearray(b"ab")))),
)


def encode_outcome(encode: Any, value: Any) -> Any:
    try:
        return ("ok", encode(value))
    except (ValueError, TypeError) as error:
        return ("error", type(error), str(error))
    except Exception as error:  # construct's own errors (NOTIFICATION and ROUTE-REFRESH encoders)
        return ("raised", type(error))


@settings(max_examples=300, deadline=None)
@given(wild_capabilities)
def test_encode_capability_equals_spec(cap: Any) -> None:
    assert encode_outcome(encode_capability, cap) == encode_outcome(encode_capability_spec, cap)


wild_opens = st.builds(
    Open,
    asn=st.one_of(st.integers(1, 65535), wide),
    hold_time=st.one_of(hold_times, wide),
    router_id=st.one_of(router_ids, st.sampled_from(["1.2.3", "256.1.1.1", "::1", "01.2.3.4"])),
    capabilities=st.lists(st.one_of(capabilities, wild_capabilities), max_size=8).map(tuple),
    other_parameters=st.lists(
        st.builds(OptionalParameter, st.one_of(u8, wide), st.binary(max_size=300)), max_size=2
    ).map(tuple),
    version=st.one_of(st.just(4), wide),
    extended_params=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_encode_open_equals_spec(data: st.DataObject) -> None:
    open_ = grouped(data.draw, data.draw(wild_opens))
    assert encode_outcome(encode_open, open_) == encode_outcome(encode_open_spec, open_)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_encode_open_in_range_never_asks_the_spec(data: st.DataObject) -> None:
    open_ = grouped(data.draw, data.draw(opens))
    expected = encode_open_spec(open_)
    with spec_refused((open_spec, "encode_open_spec"), (capability_spec, "encode_capability_spec")):
        assert encode_open(open_) == expected
