"""The message header and the stream framer: the hand-written fast path against the construct
specification, every header error of RFC 4271 section 6.1, and the framer's speed."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.bgp import Framer, MessageError, Negotiated, decode_message
from proto.bgp.constants import HEADER_LEN, MARKER, MsgType
from proto.bgp.header import build_header, fast_check, length_table, parse_header
from proto.bgp.message_spec import Header

MAX_LENS = st.sampled_from([4096, 65535])

# Headers near every boundary: good and bad markers, lengths around each type's limits, all types.
markers = st.one_of(st.just(MARKER), st.binary(min_size=16, max_size=16))
lengths = st.one_of(
    st.sampled_from([0, 18, 19, 20, 21, 22, 23, 24, 28, 29, 30, 4095, 4096, 4097, 65535]),
    st.integers(0, 65535),
)
types = st.one_of(st.integers(0, 7), st.integers(0, 255))


def spec_result(raw: bytes, max_len: int) -> tuple[int, int] | tuple[int, int, bytes]:
    try:
        return parse_header(raw, max_len)
    except MessageError as error:
        return (error.code, error.subcode, error.data)


@settings(max_examples=300, deadline=None)
@given(markers, lengths, types, MAX_LENS)
def test_fast_check_agrees_with_spec(marker: bytes, length: int, msg_type: int, max_len: int) -> None:
    raw = marker + length.to_bytes(2, "big") + bytes((msg_type,))
    expected = spec_result(raw, max_len)
    found = fast_check(raw, 0, length_table(max_len))
    if len(expected) == 2:
        assert found == expected
    else:
        assert found is None
    # the same header at an offset inside a larger buffer
    assert fast_check(b"\x00" * 7 + raw, 7, length_table(max_len)) == found
    if len(expected) == 3:
        # decode_message has its own inlined copy of the check: it must refuse the same way
        whole = raw + bytes(max(0, length - HEADER_LEN))
        with pytest.raises(MessageError) as caught:
            decode_message(whole, Negotiated(extended_message=max_len == 65535))
        assert (caught.value.code, caught.value.subcode, caught.value.data) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(HEADER_LEN, 65535), st.integers(0, 255))
def test_hand_built_header_matches_construct(length: int, msg_type: int) -> None:
    hand = MARKER + length.to_bytes(2, "big") + bytes((msg_type,))
    assert hand == build_header(length, msg_type)
    assert Header.parse(hand).length == length


def header(length: int, msg_type: int, marker: bytes = MARKER) -> bytes:
    return marker + length.to_bytes(2, "big") + bytes((msg_type,))


@pytest.mark.parametrize(
    ("raw", "max_len", "error"),
    [
        (header(19, 4, b"\xff" * 15 + b"\xfe"), 4096, (1, 1, b"")),
        (header(19, 4, b"\x00" * 16), 4096, (1, 1, b"")),
        (header(18, 4), 4096, (1, 2, b"\x00\x12")),
        (header(0, 2), 4096, (1, 2, b"\x00\x00")),
        (header(4097, 2), 4096, (1, 2, b"\x10\x01")),
        (header(20, 4), 4096, (1, 2, b"\x00\x14")),  # KEEPALIVE is exactly 19
        (header(20, 3), 4096, (1, 2, b"\x00\x14")),  # NOTIFICATION needs 21
        (header(28, 1), 4096, (1, 2, b"\x00\x1c")),  # OPEN needs 29
        (header(22, 2), 4096, (1, 2, b"\x00\x16")),  # UPDATE needs 23
        (header(4097, 1), 65535, (1, 2, b"\x10\x01")),  # RFC 8654: OPEN stays within 4096
        (header(19, 0), 4096, (1, 3, b"\x00")),
        (header(19, 6), 4096, (1, 3, b"\x06")),
        (header(19, 255), 65535, (1, 3, b"\xff")),
        (header(5000, 9), 4096, (1, 2, b"\x13\x88")),  # length is judged before type
    ],
)
def test_header_errors(raw: bytes, max_len: int, error: tuple[int, int, bytes]) -> None:
    assert spec_result(raw, max_len) == error
    framer = Framer(max_len)
    with pytest.raises(MessageError) as caught:
        framer.feed(raw)
    assert (caught.value.code, caught.value.subcode, caught.value.data) == error
    with pytest.raises(MessageError) as caught:
        decode_message(raw, Negotiated(extended_message=max_len == 65535))
    assert (caught.value.code, caught.value.subcode, caught.value.data) == error


@pytest.mark.parametrize(
    ("length", "msg_type", "max_len"),
    [
        (19, 4, 4096),
        (29, 1, 4096),
        (4096, 1, 65535),
        (23, 2, 4096),
        (4096, 2, 4096),
        (65535, 2, 65535),
        (65535, 3, 65535),
        (21, 3, 4096),
        (19, 5, 4096),
        (23, 5, 4096),
    ],
)
def test_good_headers(length: int, msg_type: int, max_len: int) -> None:
    raw = header(length, msg_type)
    assert parse_header(raw, max_len) == (length, msg_type)
    assert fast_check(raw, 0, length_table(max_len)) == (length, msg_type)


# ---------------------------------------------------------------- framer

bodies = st.one_of(
    st.tuples(st.just(MsgType.KEEPALIVE), st.just(b"")),
    st.tuples(st.just(MsgType.UPDATE), st.binary(min_size=4, max_size=300)),
    st.tuples(st.just(MsgType.NOTIFICATION), st.binary(min_size=2, max_size=40)),
    st.tuples(st.just(MsgType.OPEN), st.binary(min_size=10, max_size=60)),
    st.tuples(st.just(MsgType.ROUTE_REFRESH), st.binary(min_size=0, max_size=8)),
)


def frame(msg_type: int, body: bytes) -> bytes:
    return header(HEADER_LEN + len(body), msg_type) + body


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(stream)]:
        pieces.append(stream[last:point])
        last = point
    return pieces


@settings(max_examples=200, deadline=None)
@given(st.lists(bodies, max_size=12), st.lists(st.integers(0, 10_000), max_size=10))
def test_framer_splits_any_chunking(messages: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(frame(t, b) for t, b in messages)
    framer = Framer()
    got: list[tuple[int, bytes]] = []
    for piece in chunked(stream, cuts):
        got.extend(framer.feed(piece))
    assert got == [(int(t), b) for t, b in messages]
    assert framer.pending == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(bodies, max_size=5),
    markers,
    lengths,
    types,
    MAX_LENS,
    st.lists(st.integers(0, 10_000), max_size=6),
)
def test_framer_agrees_with_spec_on_any_header(
    before: list[tuple[int, bytes]],
    marker: bytes,
    length: int,
    msg_type: int,
    max_len: int,
    cuts: list[int],
) -> None:
    """Good messages, then an arbitrary header: the framer delivers exactly what the spec accepts
    and raises the spec's error as soon as the header's 19 octets are in."""
    raw = marker + length.to_bytes(2, "big") + bytes((msg_type,))
    stream = b"".join(frame(t, b) for t, b in before) + raw
    expected = spec_result(raw, max_len)
    framer = Framer(max_len)
    got: list[tuple[int, bytes]] = []
    try:
        for piece in chunked(stream, cuts):
            got.extend(framer.feed(piece))
    except MessageError as error:
        assert len(expected) == 3
        assert (error.code, error.subcode, error.data) == expected
        # broken for good: the next feed raises the same error
        with pytest.raises(MessageError) as again:
            framer.feed(b"")
        assert again.value is error
    else:
        assert len(expected) == 2
        if length == HEADER_LEN:  # a complete message with an empty body
            assert got == [*((int(t), b) for t, b in before), (msg_type, b"")]
            assert framer.pending == 0
        else:
            assert got == [(int(t), b) for t, b in before]
            assert framer.pending == HEADER_LEN  # the header, waiting for its body


def test_error_is_raised_before_the_body_arrives() -> None:
    framer = Framer()
    with pytest.raises(MessageError) as caught:
        framer.feed(header(5000, 2))
    assert caught.value.subcode == 2


def test_framer_follows_negotiated_size() -> None:
    framer = Framer()
    big = frame(MsgType.UPDATE, b"\x00" * 10_000)
    framer.negotiated(Negotiated(extended_message=True))
    assert framer.max_len == 65535
    assert framer.feed(big) == [(2, b"\x00" * 10_000)]
    framer.negotiated(Negotiated())
    with pytest.raises(MessageError):
        framer.feed(big)


def test_framer_accepts_bytearray_and_memoryview() -> None:
    ka = frame(MsgType.KEEPALIVE, b"")
    framer = Framer()
    assert framer.feed(bytearray(ka[:10])) == []
    assert framer.feed(memoryview(ka[10:] + ka)) == [(4, b""), (4, b"")]


def test_framer_speed_on_large_updates() -> None:
    """100k /26 prefixes in UPDATEs of 500 (5 octets each on the wire): the split must run far
    above a million prefixes a second. The bound leaves a wide margin for a busy machine."""
    body = b"\x00\x00\x00\x1c" + b"\x40\x01\x01\x00" * 7 + b"\x1a\x0a\x00\x00\x40" * 500
    stream = frame(MsgType.UPDATE, body) * 200
    pieces = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    framer = Framer()
    start = time.perf_counter()
    count = sum(len(framer.feed(piece)) for piece in pieces)
    elapsed = time.perf_counter() - start
    assert count == 200
    assert 100_000 / elapsed > 5_000_000


def test_large_message_in_small_reads() -> None:
    body = bytes(range(256)) * 234  # 59,904 octets
    wire = frame(MsgType.UPDATE, body)
    framer = Framer(65535)
    got: list[tuple[int, bytes]] = []
    for i in range(0, len(wire), 100):
        got.extend(framer.feed(wire[i : i + 100]))
        assert framer.pending == (min(i + 100, len(wire)) if not got else 0)
    assert got == [(2, body)]
