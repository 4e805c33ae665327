"""ROUTE-REFRESH (RFC 2918) and the RFC 7313 BoRR / EoRR subtypes, with their length errors, and the
hand-written codec against the construct specification."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.bgp import MessageError, Negotiated, RouteRefresh, decode_message, encode_message
from proto.bgp import refresh as refresh_mod
from proto.bgp.message_spec import RouteRefreshSpec
from proto.bgp.refresh import decode_refresh, decode_refresh_spec, encode_refresh, encode_refresh_spec
from tests.unit.codec_paths import decoded, encoded, spec_refused

refreshes = st.builds(RouteRefresh, st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255))


@settings(max_examples=300, deadline=None)
@given(refreshes)
def test_round_trip(refresh: RouteRefresh) -> None:
    wire = encode_message(refresh, Negotiated())
    assert len(wire) == 23 and wire[18] == 5
    assert decode_message(wire, Negotiated()) == refresh
    parsed = RouteRefreshSpec.parse(wire[19:])
    assert (parsed.afi, parsed.safi, parsed.subtype) == (refresh.afi, refresh.safi, refresh.subtype)


@pytest.mark.parametrize(
    ("body", "refresh"),
    [
        ("00010001", RouteRefresh(1, 1)),
        ("00020001", RouteRefresh(2, 1)),
        ("00010101", RouteRefresh(1, 1, 1)),  # BoRR
        ("00020201", RouteRefresh(2, 1, 2)),  # EoRR
        ("00010701", RouteRefresh(1, 1, 7)),  # unknown subtype: decoded, for the session to ignore
    ],
)
def test_canonical_bytes(body: str, refresh: RouteRefresh) -> None:
    wire = bytes.fromhex("ff" * 16 + "0017" + "05" + body)
    assert decode_message(wire, Negotiated()) == refresh
    assert encode_message(refresh, Negotiated()) == wire


def whole(body: bytes) -> bytes:
    return b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x05" + body


def error_of(body: bytes) -> tuple[int, int, bytes]:
    with pytest.raises(MessageError) as caught:
        decode_message(whole(body), Negotiated())
    return caught.value.code, caught.value.subcode, caught.value.data


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x01\x01\x01\x00",
        b"\x00\x01\x02\x01\x00\x00\x00",
        b"\x00\x01\x01",
        b"\x00\x02\x02" + b"\x00" * 100,
    ],
)
def test_borr_eorr_wrong_length_is_route_refresh_error(body: bytes) -> None:
    assert error_of(body) == (7, 1, whole(body))


@pytest.mark.parametrize(
    "body", [b"", b"\x00", b"\x00\x01", b"\x00\x01\x00", b"\x00\x01\x00\x01\x00", b"\x00\x01\x09\x01\x00"]
)
def test_other_wrong_length_is_bad_message_length(body: bytes) -> None:
    assert error_of(body) == (1, 2, (19 + len(body)).to_bytes(2, "big"))


# ---------------------------------------------------------------- hand-written against the spec


@settings(max_examples=300, deadline=None)
@given(st.one_of(refreshes.map(encode_refresh_spec), st.binary(max_size=8)))
def test_decode_equals_spec(body: bytes) -> None:
    result = decoded(decode_refresh, body)
    assert result == decoded(decode_refresh_spec, body)
    if result[0] == "ok":
        assert encode_refresh(result[1]) == body


wide = st.one_of(st.integers(-2, 70000), st.sampled_from([True, 1.5, None]))


@settings(max_examples=200, deadline=None)
@given(st.one_of(refreshes, st.builds(RouteRefresh, wide, wide, wide)))
def test_encode_equals_spec(refresh: RouteRefresh) -> None:
    assert encoded(encode_refresh, refresh) == encoded(encode_refresh_spec, refresh)


@settings(max_examples=100, deadline=None)
@given(refreshes)
def test_encode_in_range_never_asks_the_spec(refresh: RouteRefresh) -> None:
    expected = encode_refresh_spec(refresh)
    with spec_refused((refresh_mod, "encode_refresh_spec")):
        assert encode_refresh(refresh) == expected
