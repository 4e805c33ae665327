"""NOTIFICATION: round trips, descriptions of every code and subcode, RFC 9003 shutdown
communication, length errors, the size limit on what we send, and the hand-written codec against
the construct specification."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.bgp import (
    CeaseSubcode,
    ErrorCode,
    MessageError,
    Negotiated,
    Notification,
    decode_message,
    describe,
    encode_message,
    hard_reset,
    hard_reset_inner,
    notification_with_shutdown,
    shutdown_message,
)
from proto.bgp import notification as notification_mod
from proto.bgp.message_spec import NotificationSpec
from proto.bgp.notification import (
    CODE_NAMES,
    SUBCODE_NAMES,
    decode_notification,
    decode_notification_spec,
    encode_notification,
    encode_notification_spec,
    is_known,
)
from tests.unit.codec_paths import decoded, encoded, spec_refused

notifications = st.builds(Notification, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=200))


@settings(max_examples=300, deadline=None)
@given(notifications)
def test_round_trip(notification: Notification) -> None:
    wire = encode_message(notification, Negotiated())
    assert wire[18] == 3 and int.from_bytes(wire[16:18], "big") == len(wire) == 21 + len(notification.data)
    assert decode_message(wire, Negotiated()) == notification
    assert NotificationSpec.parse(wire[19:]).data == notification.data


def test_canonical_bytes() -> None:
    wire = bytes.fromhex("ff" * 16 + "0015" + "03" + "0602")
    decoded = decode_message(wire, Negotiated())
    assert decoded == Notification(6, 2)
    assert encode_message(decoded, Negotiated()) == wire


@pytest.mark.parametrize("length", [19, 20])
def test_too_short(length: int) -> None:
    wire = b"\xff" * 16 + length.to_bytes(2, "big") + b"\x03" + b"\x06"[: length - 19]
    with pytest.raises(MessageError) as caught:
        decode_message(wire, Negotiated())
    assert (caught.value.code, caught.value.subcode, caught.value.data) == (1, 2, length.to_bytes(2, "big"))


def test_every_code_and_subcode_has_a_name() -> None:
    expected = {1: 3, 2: 11, 3: 11, 4: 0, 5: 3, 6: 10, 7: 1}  # highest subcode of each code
    for code, highest in expected.items():
        assert set(range(highest + 1)) <= set(SUBCODE_NAMES[code]), code
        for subcode in range(highest + 1):
            text = describe(Notification(code, subcode))
            assert CODE_NAMES[code] in text and SUBCODE_NAMES[code][subcode] in text
            assert f"({code}/{subcode})" in text
            assert is_known(code, subcode)
    assert not is_known(1, 4) and not is_known(8, 0)


@pytest.mark.parametrize(
    ("notification", "text"),
    [
        (Notification(1, 2, b"\x10\x01"), "Message Header Error / Bad Message Length (1/2), data 1001"),
        (Notification(2, 6), "OPEN Message Error / Unacceptable Hold Time (2/6)"),
        (Notification(3, 11), "UPDATE Message Error / Malformed AS_PATH (3/11)"),
        (Notification(4, 0), "Hold Timer Expired / Unspecific (4/0)"),
        (
            Notification(5, 3),
            "Finite State Machine Error / Receive Unexpected Message in Established State (5/3)",
        ),
        (Notification(6, 7), "Cease / Connection Collision Resolution (6/7)"),
        (
            Notification(6, 1, b"\x00\x01\x01\x00\x00\x00\x03\xe8"),
            "Cease / Maximum Number of Prefixes Reached (6/1), data 00010100000003e8",
        ),
        (Notification(7, 1), "ROUTE-REFRESH Message Error / Invalid Message Length (7/1)"),
        (Notification(9, 9), "Unknown error code 9 / unknown subcode 9 (9/9)"),
        (Notification(2, 200), "OPEN Message Error / unknown subcode 200 (2/200)"),
        (Notification(6, 2, b"\x05maint"), 'Cease / Administrative Shutdown (6/2): "maint"'),
        (Notification(6, 4, b"\x03a\nb"), 'Cease / Administrative Reset (6/4): "a\\x0ab"'),
    ],
)
def test_describe(notification: Notification, text: str) -> None:
    assert describe(notification) == text
    assert notification.describe() == text


@pytest.mark.parametrize(
    ("notification", "message"),
    [
        (Notification(6, 2, b"\x0bmaintenance"), "maintenance"),
        (Notification(6, 4, b"\x0bmaintenance"), "maintenance"),
        (Notification(6, 2, b"\x06gr\xc3\xbc\xc3\x9f"), "grüß"),
        (Notification(6, 2, b"\x02ok trailing"), "ok"),  # octets after the communication are ignored
        (Notification(6, 2, b""), None),  # no communication at all
        (Notification(6, 2, b"\x00"), None),  # empty communication
        (Notification(6, 2, b"\x0cmaintenance"), None),  # length beyond the data
        (Notification(6, 2, b"\x02\xc3\x28"), None),  # not UTF-8
        (Notification(6, 3, b"\x02ok"), None),  # Peer De-configured carries none
        (Notification(2, 2, b"\x02ok"), None),
    ],
)
def test_shutdown_message(notification: Notification, message: str | None) -> None:
    assert shutdown_message(notification) == message
    assert notification.shutdown_message == message


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([2, 4]), st.text(max_size=300))
def test_shutdown_round_trip(subcode: int, text: str) -> None:
    notification = notification_with_shutdown(subcode, text)
    assert (notification.code, notification.subcode) == (6, subcode)
    assert len(notification.data) <= 256
    decoded = decode_message(encode_message(notification, Negotiated()), Negotiated())
    got = decoded.shutdown_message  # type: ignore[union-attr]
    if len(text.encode()) <= 255:
        assert got == (text or None)
    else:
        # cut at the last whole character that fits
        assert got is not None and text.startswith(got)
        assert len(got.encode()) <= 255 < len(text[: len(got) + 1].encode())


def test_shutdown_only_for_subcodes_2_and_4() -> None:
    with pytest.raises(ValueError):
        notification_with_shutdown(3, "bye")


def test_long_data_is_cut_to_the_message_limit() -> None:
    notification = Notification(7, 1, b"\xaa" * 5000)
    wire = encode_message(notification, Negotiated())
    assert len(wire) == 4096 and int.from_bytes(wire[16:18], "big") == 4096
    assert decode_message(wire, Negotiated()) == Notification(7, 1, b"\xaa" * (4096 - 21))
    extended = encode_message(notification, Negotiated(extended_message=True))
    assert decode_message(extended, Negotiated(extended_message=True)) == notification


def test_message_error_carries_its_notification() -> None:
    error = MessageError(2, 1, b"\x00\x04")
    assert error.notification() == Notification(2, 1, b"\x00\x04")


@pytest.mark.parametrize("body", [b"", b"\x06"])
def test_decode_notification_alone_guards_its_length(body: bytes) -> None:
    with pytest.raises(MessageError) as caught:
        decode_notification(body)
    assert (caught.value.code, caught.value.subcode) == (1, 2)


# ---------------------------------------------------------------- hand-written against the spec

# what NOTIFICATIONs carry in practice: RFC 9003 shutdown communications, RFC 8538 Hard Resets
# (around any of these), and anything at all
shutdowns = st.builds(notification_with_shutdown, st.sampled_from([2, 4]), st.text(max_size=300))
carried = st.one_of(notifications, shutdowns)
kinds = st.one_of(notifications, shutdowns, st.builds(hard_reset, carried))


@settings(max_examples=300, deadline=None)
@given(st.one_of(kinds.map(encode_notification_spec), st.binary(max_size=40)))
def test_decode_equals_spec(body: bytes) -> None:
    result = decoded(decode_notification, body)
    assert result == decoded(decode_notification_spec, body)
    if result[0] == "ok":
        notification = result[1]
        assert encode_notification(notification) == body
        inner = hard_reset_inner(notification)
        if notification.code == ErrorCode.CEASE and notification.subcode == CeaseSubcode.HARD_RESET:
            assert inner == (decoded(decode_notification, notification.data)[1] if len(body) >= 4 else None)


wide = st.one_of(st.integers(-2, 300), st.sampled_from([True, 1.5, None]))


@settings(max_examples=200, deadline=None)
@given(st.one_of(kinds, st.builds(Notification, wide, wide, st.one_of(st.binary(max_size=8), st.just(bytearray(b"x"))))))
def test_encode_equals_spec(notification: Notification) -> None:
    assert encoded(encode_notification, notification) == encoded(encode_notification_spec, notification)


@settings(max_examples=100, deadline=None)
@given(kinds)
def test_encode_in_range_never_asks_the_spec(notification: Notification) -> None:
    expected = encode_notification_spec(notification)
    with spec_refused((notification_mod, "encode_notification_spec")):
        assert encode_notification(notification) == expected
