"""Hostile input: random bytes and mutated valid messages of every type, fed to decode_message and
through the framer. The outcome is always a message or a MessageError whose code is 1..7 with a
subcode that exists for that code: never an IndexError, struct.error, construct error or
UnicodeDecodeError leaking out of the codec."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proto.bgp import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPathCap,
    Capability,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    ExtendedNextHopCap,
    FourOctetAsCap,
    FqdnCap,
    Framer,
    GracefulRestartCap,
    Keepalive,
    MessageError,
    MultiprotocolCap,
    Negotiated,
    Notification,
    Open,
    RouteRefresh,
    RouteRefreshCap,
    Update,
    decode_message,
    decode_message_body,
    encode_message,
    notification_with_shutdown,
)
from proto.bgp.notification import is_known
from tests.unit.test_bgp_open import BIRD_OPEN, FRR_OPEN, GOBGP_OPEN

MESSAGE_TYPES = (Open, Update, Notification, Keepalive, RouteRefresh)

NEGOTIATED = [
    Negotiated(),
    Negotiated(four_octet_as=False),
    Negotiated(extended_message=True),
    Negotiated(extended_next_hop=frozenset({IPV4_UNICAST})),
    Negotiated(
        add_path_receive=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
        add_path_send=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
        extended_next_hop=frozenset({IPV4_UNICAST}),
    ),
]


def whole(msg_type: int, body: bytes) -> bytes:
    return b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + bytes((msg_type,)) + body


def attribute(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        return bytes((flags | 0x10, code)) + len(value).to_bytes(2, "big") + value
    return bytes((flags, code, len(value))) + value


def update(withdrawn: bytes, attrs: bytes, nlri: bytes) -> bytes:
    body = len(withdrawn).to_bytes(2, "big") + withdrawn + len(attrs).to_bytes(2, "big") + attrs + nlri
    return whole(2, body)


def valid_updates() -> list[bytes]:
    """UPDATEs written out by hand, so they do not depend on the encoder under test."""
    origin = attribute(0x40, 1, b"\x00")
    as_path4 = attribute(0x40, 2, b"\x02\x02" + (65001).to_bytes(4, "big") + (4200000000).to_bytes(4, "big"))
    as_path2 = attribute(0x40, 2, b"\x02\x02\xfd\xe9\xfd\xea" + b"\x01\x01\xfd\xeb")
    next_hop = attribute(0x40, 3, bytes((192, 0, 2, 1)))
    med = attribute(0x80, 4, (100).to_bytes(4, "big"))
    local_pref = attribute(0x40, 5, (200).to_bytes(4, "big"))
    atomic = attribute(0x40, 6, b"")
    aggregator4 = attribute(0xC0, 7, (65001).to_bytes(4, "big") + bytes((192, 0, 2, 9)))
    communities = attribute(0xC0, 8, bytes.fromhex("fde90064fde900c8ffffff01"))
    originator = attribute(0x80, 9, bytes((10, 0, 0, 1)))
    clusters = attribute(0x80, 10, bytes((10, 0, 0, 2, 10, 0, 0, 3)))
    ext_comms = attribute(0xC0, 16, bytes.fromhex("0002fde900000064010300000000000a"))
    large = attribute(0xC0, 32, bytes.fromhex("0000fde90000000100000002"))
    unknown = attribute(0xC0, 99, b"opaque")
    v4_nlri = bytes.fromhex("1a0a0000001a0a000040180a0001200a00020300")
    common = origin + as_path4 + next_hop + med + local_pref + atomic + aggregator4 + communities
    v6_next_hops = bytes.fromhex("20010db8000000000000000000000001fe800000000000000000000000000001")
    v6_nlri = bytes.fromhex("4020010db8000000013020010db80002")
    mp_reach = attribute(0x80, 14, b"\x00\x02\x01\x20" + v6_next_hops + b"\x00" + v6_nlri)
    mp_unreach = attribute(0x80, 15, b"\x00\x02\x01" + bytes.fromhex("4020010db800000009"))
    v4_over_v6 = attribute(
        0x80, 14, b"\x00\x01\x01\x10" + v6_next_hops[:16] + b"\x00" + bytes.fromhex("1a0a000080")
    )
    add_path_nlri = bytes.fromhex("000000011a0a000000000000021a0a000000")
    return [
        update(b"", b"", b""),  # End-of-RIB IPv4
        update(b"", attribute(0x80, 15, b"\x00\x02\x01"), b""),  # End-of-RIB IPv6
        update(bytes.fromhex("1a0a0000c0100a01"), b"", b""),
        update(b"", common + originator + clusters + ext_comms + large + unknown, v4_nlri),
        update(b"", origin + as_path2 + next_hop + attribute(0xC0, 7, b"\xfd\xe9\xc0\x00\x02\x09"), v4_nlri),
        update(b"", origin + as_path4 + mp_reach + local_pref, b""),
        update(b"", mp_unreach, b""),
        update(b"", origin + as_path4 + v4_over_v6, b""),
        update(b"", common, add_path_nlri),
    ]


def valid_messages() -> list[bytes]:
    caps = (
        MultiprotocolCap(1, 1),
        MultiprotocolCap(2, 1),
        RouteRefreshCap(),
        EnhancedRouteRefreshCap(),
        ExtendedMessageCap(),
        ExtendedNextHopCap(((1, 1, 2),)),
        GracefulRestartCap(120, True, False, ((1, 1, True), (2, 1, False))),
        FourOctetAsCap(4200000000),
        AddPathCap(((1, 1, 3), (2, 1, 1))),
        FqdnCap("node-1", "cluster.local"),
        Capability(128, b""),
    )
    messages = [
        encode_message(Open(23456, 90, "10.0.0.1", caps), Negotiated()),
        encode_message(Open(65000, 0, "10.0.0.2", caps, extended_params=True), Negotiated()),
        *(bytes.fromhex(h) for h in (BIRD_OPEN, GOBGP_OPEN, FRR_OPEN)),
        encode_message(Keepalive(), Negotiated()),
        encode_message(notification_with_shutdown(2, "maintenance ✓"), Negotiated()),
        encode_message(Notification(3, 1, b"\x00\x01"), Negotiated()),
        encode_message(RouteRefresh(1, 1), Negotiated()),
        encode_message(RouteRefresh(2, 1, 1), Negotiated()),
    ]
    return messages + valid_updates()


VALID = valid_messages()


def check_outcome(call: object, *args: object) -> object:
    """Run the call; only a message or a well-formed MessageError may come out."""
    try:
        result = call(*args)  # type: ignore[operator]
    except MessageError as error:
        assert 1 <= error.code <= 7, error
        assert is_known(error.code, error.subcode), (error.code, error.subcode, error)
        assert isinstance(error.data, bytes)
        return error
    if isinstance(result, list):
        return result
    assert isinstance(result, MESSAGE_TYPES), result
    if isinstance(result, Update):
        for problem in result.problems:
            assert problem.action in ("treat-as-withdraw", "attribute-discard"), problem
    return result


def test_valid_messages_decode() -> None:
    """The seeds are valid, each under at least one negotiation (ADD-PATH and IPv4 over an IPv6
    next hop need theirs), so the mutations start from real messages."""
    for wire in VALID:
        decoded = []
        for negotiated in NEGOTIATED:
            try:
                decoded.append(decode_message(wire, negotiated))
            except MessageError:
                pass
        assert decoded and all(isinstance(m, MESSAGE_TYPES) for m in decoded), wire.hex()
        assert any(not getattr(m, "problems", ()) for m in decoded), wire.hex()


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        if not buf:
            break
        at = draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            buf[at] = draw(st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF]))
        elif kind == "truncate":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del buf[at : at + draw(st.integers(1, 8))]
    if draw(st.booleans()) and len(buf) >= 18:
        # keep the header consistent so the mutation reaches the body decoder
        buf[16:18] = min(len(buf), 65535).to_bytes(2, "big")
    return bytes(buf)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    return mutate(draw(st.sampled_from(VALID)), draw)


@st.composite
def random_body(draw: st.DrawFn) -> bytes:
    msg_type = draw(st.one_of(st.integers(1, 5), st.integers(0, 255)))
    return whole(msg_type, draw(st.binary(max_size=120)))


hostile = st.one_of(st.binary(max_size=120), random_body(), mutated())
negotiations = st.sampled_from(NEGOTIATED)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile, negotiations)
def test_decode_message_never_leaks(data: bytes, negotiated: Negotiated) -> None:
    check_outcome(decode_message, data, negotiated)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(mutated(), st.sampled_from(VALID)), min_size=1, max_size=6),
    st.integers(1, 200),
    negotiations,
)
def test_framer_and_decode_body_never_leak(pieces: list[bytes], chunk: int, negotiated: Negotiated) -> None:
    stream = b"".join(pieces)
    framer = Framer(negotiated.max_message_len)
    for i in range(0, len(stream), chunk):
        outcome = check_outcome(framer.feed, stream[i : i + chunk])
        if isinstance(outcome, MessageError):
            assert outcome.code == 1  # the framer only judges headers
            return
        for msg_type, body in outcome:  # type: ignore[attr-defined]
            check_outcome(decode_message_body, msg_type, body, negotiated)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.integers(1, 64))
def test_framer_on_random_stream(stream: bytes, chunk: int) -> None:
    framer = Framer()
    for i in range(0, len(stream), chunk):
        outcome = check_outcome(framer.feed, stream[i : i + chunk])
        if isinstance(outcome, MessageError):
            return
