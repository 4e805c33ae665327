"""Packing routes into UPDATE messages: every message fits, every prefix is sent exactly once, the
number of messages is close to the minimum, and the messages decode to what was packed."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import prefix as pf
from proto.bgp.constants import HEADER_LEN, IPV4_UNICAST, IPV6_UNICAST, MARKER
from proto.bgp.model import AsPathSegment, MpReach, Negotiated, PathAttributes, Update
from proto.bgp.nlri import entry_wire
from proto.bgp.packing import end_of_rib, pack_announcements, pack_withdrawals
from proto.bgp.update import decode_update
from tests.unit.test_bgp_attributes import path_attributes

SETTINGS = settings(max_examples=40, deadline=None)


def prefixes_for(afi: int, count: int, seed: int, add_path: bool) -> list[bytes]:
    """Prefixes of mixed lengths (repeats allowed: packing keeps them all), cheap in bulk."""
    out = []
    for i in range(count):
        if afi == 1:
            length = (16, 24, 26, 32)[(i + seed) % 4]
            address = struct.pack("!I", (10 << 24) | (i << 8) | (seed & 0xFF))
        else:
            length = (48, 64, 128)[(i + seed) % 3]
            address = struct.pack("!IIQ", 0x20010DB8, i, seed)
        value = pf.make(4 if afi == 1 else 6, length, address[: (length + 7) // 8])
        out.append(struct.pack("!I", i) + value if add_path else value)
    return out


def wire_size(prefixes: list[bytes]) -> int:
    return sum(len(entry_wire(p)) for p in prefixes)


def split(message: bytes, negotiated: Negotiated) -> Update:
    assert message[:16] == MARKER
    assert struct.unpack("!H", message[16:18])[0] == len(message)
    assert message[18] == 2
    assert len(message) <= negotiated.max_message_len
    return decode_update(message[HEADER_LEN:], negotiated)


def assert_near_minimal(messages: list[bytes], payload: int, space: int) -> None:
    # next-fit leaves at most one prefix's worth (<= 21 octets) unused per message
    assert len(messages) <= math.ceil(payload / (space - 21)) + 1
    assert len(messages) >= math.ceil(payload / space)


CASES = st.sampled_from(["ipv4", "ipv6", "rfc8950"])


@SETTINGS
@given(
    kind=CASES,
    count=st.integers(1, 1500),
    seed=st.integers(0, 255),
    extended=st.booleans(),
    add_path=st.booleans(),
    attrs=path_attributes(True, next_hop=False),
)
def test_announcements(
    kind: str, count: int, seed: int, extended: bool, add_path: bool, attrs: PathAttributes
) -> None:
    family = IPV6_UNICAST if kind == "ipv6" else IPV4_UNICAST
    afi = family[0]
    negotiated = Negotiated(
        extended_message=extended,
        add_path_receive=frozenset({family}) if add_path else frozenset(),
        add_path_send=frozenset({family}) if add_path else frozenset(),
        extended_next_hop=frozenset({IPV4_UNICAST}),
    )
    prefixes = prefixes_for(afi, count, seed, add_path)
    next_hop: str | tuple[str, ...] = "192.0.2.1" if kind == "ipv4" else ("2001:db8::1", "fe80::1")
    messages = pack_announcements(family, attrs, next_hop, prefixes, negotiated)
    sent: list[bytes] = []
    for message in messages:
        update = split(message, negotiated)
        assert update.problems == ()
        if kind == "ipv4":
            assert update.attributes == PathAttributes(**{**_fields(attrs), "next_hop": "192.0.2.1"})
            sent += update.nlri
        else:
            assert update.attributes == attrs
            assert isinstance(update.mp_reach, MpReach)
            assert update.mp_reach.next_hop == next_hop
            assert block_starts_with_mp_reach(message)
            sent += update.mp_reach.nlri
    assert sent == prefixes  # every prefix exactly once, in order
    overhead = len(messages[0]) - wire_size(_payload(messages[0], negotiated, kind))
    assert_near_minimal(messages, wire_size(prefixes), negotiated.max_message_len - overhead)


def _fields(attrs: PathAttributes) -> dict[str, object]:
    return {name: getattr(attrs, name) for name in PathAttributes.__dataclass_fields__}


def _payload(message: bytes, negotiated: Negotiated, kind: str) -> list[bytes]:
    update = decode_update(message[HEADER_LEN:], negotiated)
    if kind == "ipv4":
        return update.nlri or update.withdrawn
    if update.mp_reach is not None:
        return update.mp_reach.nlri
    assert update.mp_unreach is not None
    return update.mp_unreach.withdrawn


def block_starts_with_mp_reach(message: bytes) -> bool:
    body = message[HEADER_LEN:]
    withdrawn = struct.unpack("!H", body[:2])[0]
    return body[4 + withdrawn + 1] == 14


@SETTINGS
@given(
    family=st.sampled_from([IPV4_UNICAST, IPV6_UNICAST]),
    count=st.integers(1, 2000),
    seed=st.integers(0, 255),
    extended=st.booleans(),
    add_path=st.booleans(),
)
def test_withdrawals(family: tuple[int, int], count: int, seed: int, extended: bool, add_path: bool) -> None:
    negotiated = Negotiated(
        extended_message=extended,
        add_path_receive=frozenset({family}) if add_path else frozenset(),
        add_path_send=frozenset({family}) if add_path else frozenset(),
    )
    prefixes = prefixes_for(family[0], count, seed, add_path)
    messages = pack_withdrawals(family, prefixes, negotiated)
    sent: list[bytes] = []
    kind = "ipv4" if family == IPV4_UNICAST else "ipv6"
    for message in messages:
        update = split(message, negotiated)
        assert update.nlri == [] and update.mp_reach is None
        sent += update.withdrawn if kind == "ipv4" else update.mp_unreach.withdrawn
        assert update.end_of_rib() is None
    assert sent == prefixes
    overhead = len(messages[0]) - wire_size(_payload(messages[0], negotiated, kind))
    assert_near_minimal(messages, wire_size(prefixes), negotiated.max_message_len - overhead)


def test_full_messages_are_really_full() -> None:
    negotiated = Negotiated()
    attrs = PathAttributes(origin=0, as_path=(AsPathSegment(2, (65001,)),))
    prefixes = prefixes_for(1, 5000, 3, False)
    messages = pack_announcements(IPV4_UNICAST, attrs, "192.0.2.1", prefixes, negotiated)
    for message in messages[:-1]:
        assert len(message) > 4096 - 5  # less than one prefix of room left
    assert len(messages) == 6
    extended = pack_announcements(
        IPV4_UNICAST, attrs, "192.0.2.1", prefixes, Negotiated(extended_message=True)
    )
    assert len(extended) == 1


def test_end_of_rib_markers() -> None:
    negotiated = Negotiated()
    assert end_of_rib(IPV4_UNICAST) == MARKER + bytes((0, 23, 2, 0, 0, 0, 0))
    assert split(end_of_rib(IPV4_UNICAST), negotiated).end_of_rib() == IPV4_UNICAST
    assert split(end_of_rib(IPV6_UNICAST), negotiated).end_of_rib() == IPV6_UNICAST


def test_nothing_to_pack() -> None:
    assert pack_announcements(IPV4_UNICAST, PathAttributes(), "192.0.2.1", [], Negotiated()) == []
    assert pack_withdrawals(IPV6_UNICAST, [], Negotiated()) == []


def test_refusals() -> None:
    attrs = PathAttributes(origin=0, as_path=())
    one = prefixes_for(1, 1, 0, False)
    with pytest.raises(ValueError):  # IPv6 next hop for IPv4 without RFC 8950
        pack_announcements(IPV4_UNICAST, attrs, "2001:db8::1", one, Negotiated())
    huge = PathAttributes(origin=0, as_path=(), communities=tuple(range(1100)))
    with pytest.raises(ValueError):  # the attribute set leaves no room for a prefix
        pack_announcements(IPV4_UNICAST, huge, "192.0.2.1", one, Negotiated())
