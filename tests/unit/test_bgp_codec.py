"""The public codec API: decode_message / encode_message dispatch, decode_message_body behind the
framer, whole-message length errors, and what proto.bgp exports."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proto.bgp as bgp
from proto.bgp import (
    Framer,
    Keepalive,
    Message,
    MessageError,
    MultiprotocolCap,
    Negotiated,
    Notification,
    Open,
    RouteRefresh,
    decode_message,
    decode_message_body,
    encode_message,
    encode_message_body,
)
from proto.bgp.header import parse_header
from proto.bgp.message_spec import Header

KEEPALIVE_WIRE = b"\xff" * 16 + b"\x00\x13\x04"


def error_of(data: bytes, negotiated: Negotiated | None = None) -> tuple[int, int, bytes]:
    with pytest.raises(MessageError) as caught:
        decode_message(data, negotiated or Negotiated())
    return caught.value.code, caught.value.subcode, caught.value.data


def test_keepalive_exact_bytes() -> None:
    assert decode_message(KEEPALIVE_WIRE, Negotiated()) == Keepalive()
    assert encode_message(Keepalive(), Negotiated()) == KEEPALIVE_WIRE
    assert bgp.KEEPALIVE_BYTES == KEEPALIVE_WIRE


@pytest.mark.parametrize("extra", [1, 2, 100])
def test_keepalive_with_body(extra: int) -> None:
    length = 19 + extra
    data = b"\xff" * 16 + length.to_bytes(2, "big") + b"\x04" + b"\x00" * extra
    assert error_of(data) == (1, 2, length.to_bytes(2, "big"))
    with pytest.raises(MessageError) as caught:
        Framer().feed(data)
    assert caught.value.data == length.to_bytes(2, "big")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=70), st.sampled_from([4096, 65535]))
def test_keepalive_body_equals_header_spec(body: bytes, max_len: int) -> None:
    """A KEEPALIVE has no body to decode: its whole check is the header's length rule, which the
    specification gives (RFC 4271 section 6.1: exactly 19 octets)."""
    length = 19 + len(body)
    negotiated = Negotiated(extended_message=max_len == 65535)
    try:
        parse_header(KEEPALIVE_WIRE[:16] + length.to_bytes(2, "big") + b"\x04", max_len)
        spec: object = "ok"
    except MessageError as error:
        spec = (error.code, error.subcode, error.data)
    try:
        decode_message_body(4, body, negotiated)
        hand: object = "ok"
    except MessageError as error:
        hand = (error.code, error.subcode, error.data)
    assert hand == spec


def test_truncated_and_padded_messages() -> None:
    wire = encode_message(RouteRefresh(1, 1), Negotiated())
    assert error_of(wire[:-1]) == (1, 2, b"\x00\x17")  # the header's length, which is wrong
    assert error_of(wire + b"\x00") == (1, 2, b"\x00\x17")
    assert error_of(KEEPALIVE_WIRE + KEEPALIVE_WIRE) == (1, 2, b"\x00\x13")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", (1, 2, b"\x00\x00")),
        (b"\xff" * 10, (1, 2, b"\x00\x0a")),
        (b"\xff" * 15 + b"\x00\x00\x13", (1, 1, b"")),
        (b"\xff" * 16 + b"\x00", (1, 2, b"\x00\x11")),
        (b"\xff" * 16 + b"\x00\x13", (1, 2, b"\x00\x13")),  # header cut before its type
    ],
)
def test_shorter_than_a_header(data: bytes, error: tuple[int, int, bytes]) -> None:
    assert error_of(data) == error


def test_any_buffer_type() -> None:
    assert decode_message(bytearray(KEEPALIVE_WIRE), Negotiated()) == Keepalive()
    assert decode_message(memoryview(KEEPALIVE_WIRE), Negotiated()) == Keepalive()


def test_decode_body_checks_what_the_framer_checks() -> None:
    with pytest.raises(MessageError) as caught:
        decode_message_body(9, b"", Negotiated())
    assert (caught.value.code, caught.value.subcode, caught.value.data) == (1, 3, b"\x09")
    with pytest.raises(MessageError) as caught:
        decode_message_body(1, b"\x04\x00", Negotiated())
    assert (caught.value.code, caught.value.subcode) == (1, 2)
    with pytest.raises(MessageError) as caught:
        decode_message_body(3, b"\x06", Negotiated())
    assert (caught.value.code, caught.value.subcode) == (1, 2)
    with pytest.raises(MessageError) as caught:
        decode_message_body(2, b"\x00\x00", Negotiated())
    assert (caught.value.code, caught.value.subcode) == (1, 2)


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(TypeError):
        encode_message("keepalive", Negotiated())  # type: ignore[arg-type]


def test_public_api() -> None:
    for name in ("decode_message", "encode_message", "Framer", "Negotiated", "MessageError", "negotiate"):
        assert hasattr(bgp, name)
    for name in bgp.__all__:
        assert getattr(bgp, name) is not None
    error = MessageError(1, 2, b"\x00\x12")
    assert (error.code, error.subcode, error.data) == (1, 2, b"\x00\x12")


messages = st.one_of(
    st.just(Keepalive()),
    st.builds(Notification, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=50)),
    st.builds(RouteRefresh, st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255)),
    st.builds(
        Open,
        asn=st.integers(1, 65535),
        hold_time=st.sampled_from([0, 3, 90, 65535]),
        router_id=st.just("192.0.2.1"),
        capabilities=st.lists(
            st.builds(MultiprotocolCap, st.integers(0, 65535), st.integers(0, 255)), max_size=4
        ).map(tuple),
    ),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, max_size=10), st.integers(1, 64))
def test_stream_through_framer_and_decode_body(batch: list[Message], chunk: int) -> None:
    stream = b"".join(encode_message(m, Negotiated()) for m in batch)
    framer = Framer()
    decoded: list[Message] = []
    for i in range(0, len(stream), chunk):
        decoded.extend(decode_message_body(t, body, Negotiated()) for t, body in framer.feed(stream[i : i + chunk]))
    assert decoded == batch


@settings(max_examples=100, deadline=None)
@given(messages)
def test_hand_built_header_is_the_spec(message: Message) -> None:
    wire = encode_message(message, Negotiated())
    msg_type, body = encode_message_body(message, Negotiated())
    parsed = Header.parse(wire)
    assert (parsed.length, parsed.type) == (len(wire), msg_type) == parse_header(wire, 4096)
    assert wire[19:] == body


def test_update_dispatch_end_of_rib() -> None:
    eor = b"\xff" * 16 + b"\x00\x17\x02" + b"\x00\x00\x00\x00"
    decoded = decode_message(eor, Negotiated())
    assert isinstance(decoded, bgp.Update)
    assert decoded.end_of_rib() == bgp.IPV4_UNICAST
    assert encode_message(decoded, Negotiated()) == eor
    assert [decode_message_body(t, b, Negotiated()) for t, b in Framer().feed(eor)] == [decoded]


def test_update_dispatch_with_routes() -> None:
    # ORIGIN IGP, AS_PATH [65001] (4-octet), NEXT_HOP 192.0.2.1; NLRI 10.0.0.0/26 and 10.0.0.64/26
    attrs = bytes.fromhex("40010100" + "400206" + "0201" + "0000fde9" + "400304c0000201")
    nlri = bytes.fromhex("1a0a000000" + "1a0a000040")
    body = b"\x00\x00" + len(attrs).to_bytes(2, "big") + attrs + nlri
    wire = b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body
    decoded = decode_message(wire, Negotiated())
    assert isinstance(decoded, bgp.Update)
    assert decoded.nlri == [b"\x04\x1a\x0a\x00\x00\x00", b"\x04\x1a\x0a\x00\x00\x40"]
    assert decoded.attributes is not None and decoded.attributes.next_hop == "192.0.2.1"
    assert encode_message(decoded, Negotiated()) == wire
