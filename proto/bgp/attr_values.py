"""The hand-written decoders and encoders of each path attribute's value octets.

Each decoder takes the value octets and returns the model value, or raises `Malformed` with the
UPDATE error subcode RFC 4271 names for it; the attribute table (`proto.bgp.attr_table`) says what
that costs under RFC 7606. They check everything the construct specification
(`proto.bgp.attr_spec`) and the table's semantic checks do, in the same order, so the two paths give
the same values and the same errors (tests/unit/test_bgp_attributes.py holds them equal on valid
and on arbitrary bytes). Encoders return the value octets and raise ValueError for values the wire
cannot carry.

Decoders of attributes whose layout depends on the session's AS number width come in pairs, one
per width; the table picks the pair's member once per attribute set.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from proto.bgp.constants import UpdateError
from proto.bgp.model import AsPathSegment, as_path_segment

LENGTH = UpdateError.ATTRIBUTE_LENGTH_ERROR
OPTIONAL_ERROR = UpdateError.OPTIONAL_ATTRIBUTE_ERROR


class Malformed(ValueError):
    """An attribute value that breaks its definition; the attribute table says what that costs."""

    def __init__(self, subcode: int, reason: str) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason


# struct formats of n big-endian 16 / 32-bit numbers, built once: formatting "!%dI" per value costs
# more than the unpacking it describes
_U16S = tuple(struct.Struct(f"!{n}H") for n in range(256))
_U32S = tuple(struct.Struct(f"!{n}I") for n in range(256))
_U32 = _U32S[1]
_ntoa = socket.inet_ntoa
_aton = socket.inet_aton

# IPv4 addresses as text, interned: every route of one next hop (or originator, or cluster) shares
# one string instead of holding its own
_TEXT: dict[bytes, str] = {}
_TEXT_SIZE = 8192


def clear_texts() -> None:
    _TEXT.clear()


def ipv4_text(raw: bytes) -> str:
    text = _TEXT.get(raw)
    if text is None:
        if len(_TEXT) >= _TEXT_SIZE:
            _TEXT.clear()
        text = _TEXT[raw] = _ntoa(raw)
    return text


# ---------------------------------------------------------------- ORIGIN, NEXT_HOP, numbers


def decode_origin(value: bytes) -> int:
    if len(value) != 1:
        raise Malformed(LENGTH, f"ORIGIN length {len(value)}")
    origin = value[0]
    if origin > 2:
        raise Malformed(UpdateError.INVALID_ORIGIN_ATTRIBUTE, f"ORIGIN value {origin}")
    return origin


def decode_next_hop(value: bytes) -> str:
    if len(value) != 4:
        raise Malformed(LENGTH, f"NEXT_HOP length {len(value)}")
    # RFC 4271 section 6.3 and RFC 7606 section 7.3: the next hop must be a unicast address
    if 224 <= value[0] <= 239 or value == b"\0\0\0\0" or value == b"\xff\xff\xff\xff":
        raise Malformed(
            UpdateError.INVALID_NEXT_HOP_ATTRIBUTE, f"NEXT_HOP {_ntoa(value)} is not a unicast address"
        )
    return ipv4_text(value)


def _four_octets(name: str, convert: Any) -> Any:
    def decode(value: bytes) -> Any:
        if len(value) != 4:
            raise Malformed(LENGTH, f"{name} length {len(value)}")
        return convert(value)

    decode.__name__ = f"decode_{name.lower()}"
    return decode


decode_med = _four_octets("MULTI_EXIT_DISC", lambda v: _U32.unpack(v)[0])
decode_local_pref = _four_octets("LOCAL_PREF", lambda v: _U32.unpack(v)[0])
decode_originator_id = _four_octets("ORIGINATOR_ID", ipv4_text)


def decode_atomic_aggregate(value: bytes) -> bool:
    if value:
        raise Malformed(LENGTH, f"ATOMIC_AGGREGATE length {len(value)}")
    return True


def _aggregator(name: str, width: int) -> Any:
    def decode(value: bytes) -> tuple[int, str]:
        if len(value) != width + 4:
            raise Malformed(LENGTH, f"{name} length {len(value)}")
        return (int.from_bytes(value[:width], "big"), ipv4_text(value[width:]))

    return decode


decode_aggregator2 = _aggregator("AGGREGATOR", 2)
decode_aggregator4 = _aggregator("AGGREGATOR", 4)
decode_as4_aggregator = _aggregator("AS4_AGGREGATOR", 4)


# ---------------------------------------------------------------- AS_PATH, AS4_PATH


def _as_path(width: int, subcode: int, name: str) -> Any:
    numbers = _U16S if width == 2 else _U32S

    def decode(value: bytes) -> tuple[AsPathSegment, ...]:
        size = len(value)
        if size > 2 and size == 2 + value[1] * width and 1 <= value[0] <= 4:
            # one segment filling the attribute: what nearly every route carries
            return (as_path_segment(value[0], numbers[value[1]].unpack_from(value, 2)),)
        segments = []
        i = 0
        while i < size:
            if i + 2 > size:
                raise Malformed(subcode, f"{name} ends inside a segment header")
            kind = value[i]
            count = value[i + 1]
            if kind < 1 or kind > 4:
                raise Malformed(subcode, f"{name} segment type {kind}")
            if not count:  # RFC 7606 section 7.2
                raise Malformed(subcode, f"{name} segment of length zero")
            end = i + 2 + count * width
            if end > size:
                raise Malformed(subcode, f"{name} segment overruns the attribute")
            segments.append(as_path_segment(kind, numbers[count].unpack_from(value, i + 2)))
            i = end
        return tuple(segments)

    return decode


decode_as_path2 = _as_path(2, UpdateError.MALFORMED_AS_PATH, "AS_PATH")
decode_as_path4 = _as_path(4, UpdateError.MALFORMED_AS_PATH, "AS_PATH")
# RFC 6793 section 6: a malformed AS4_PATH is an optional attribute error (and is discarded)
decode_as4_path = _as_path(4, OPTIONAL_ERROR, "AS4_PATH")


# ---------------------------------------------------------------- lists (RFC 7606 7.8, 7.10, 7.14)


def _check_list(name: str, value: bytes, size: int) -> int:
    n = len(value)
    if not n or n % size:
        raise Malformed(OPTIONAL_ERROR, f"{name} length {n}")
    return n // size


def decode_communities(value: bytes) -> tuple[int, ...]:
    count = _check_list("COMMUNITIES", value, 4)
    if count < 256:
        return _U32S[count].unpack(value)
    return struct.unpack(f"!{count}I", value)


def decode_cluster_list(value: bytes) -> tuple[str, ...]:
    count = _check_list("CLUSTER_LIST", value, 4)
    return tuple(ipv4_text(value[k : k + 4]) for k in range(0, count * 4, 4))


def decode_extended_communities(value: bytes) -> tuple[bytes, ...]:
    count = _check_list("EXTENDED_COMMUNITIES", value, 8)
    return tuple(value[k : k + 8] for k in range(0, count * 8, 8))


def decode_large_communities(value: bytes) -> tuple[tuple[int, int, int], ...]:
    count = _check_list("LARGE_COMMUNITIES", value, 12)
    flat = struct.unpack(f"!{count * 3}I", value)
    return tuple(zip(flat[0::3], flat[1::3], flat[2::3]))


# ---------------------------------------------------------------- encoders


def encode_origin(value: int) -> bytes:
    return bytes((value,))


def _encode_as_path(width: int) -> Any:
    numbers = _U16S if width == 2 else _U32S

    def encode(segments: tuple[AsPathSegment, ...]) -> bytes:
        out = []
        try:
            for segment in segments:
                asns = segment.asns
                count = len(asns)
                if not count:
                    raise ValueError("cannot encode an empty AS_PATH segment")
                for k in range(0, count, 255):  # a long segment continues in one of the same type
                    chunk = asns[k : k + 255]
                    out.append(bytes((segment.type, len(chunk))) + numbers[len(chunk)].pack(*chunk))
        except struct.error as exc:
            raise ValueError(f"AS number does not fit {width} octets in {segments}") from exc
        return b"".join(out)

    return encode


encode_as_path2 = _encode_as_path(2)
encode_as_path4 = _encode_as_path(4)


def encode_ipv4(value: str) -> bytes:
    return _aton(value)


def encode_u32(value: int) -> bytes:
    return _U32.pack(value)


def encode_atomic_aggregate(value: bool) -> bytes:
    return b""


def encode_aggregator2(value: tuple[int, str]) -> bytes:
    return value[0].to_bytes(2, "big") + _aton(value[1])


def encode_aggregator4(value: tuple[int, str]) -> bytes:
    return value[0].to_bytes(4, "big") + _aton(value[1])


def encode_communities(value: tuple[int, ...]) -> bytes:
    return struct.pack(f"!{len(value)}I", *value)


def encode_cluster_list(value: tuple[str, ...]) -> bytes:
    return b"".join(_aton(a) for a in value)


def encode_extended_communities(value: tuple[bytes, ...]) -> bytes:
    if any(len(c) != 8 for c in value):
        raise ValueError("extended communities are 8 octets each")
    return b"".join(value)


def encode_large_communities(value: tuple[tuple[int, int, int], ...]) -> bytes:
    return b"".join(struct.pack("!III", *c) for c in value)
