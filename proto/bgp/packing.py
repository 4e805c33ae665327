"""Packing outgoing routes into whole UPDATE messages (header included), BIRD's way: the caller
buckets prefixes by attribute set, and each call encodes that set once and fills every message up
to the maximum length (4096 octets, or 65535 with RFC 8654 extended message).

What differs between families comes from the family table (`proto.bgp.family`): IPv4 unicast with
an IPv4 next hop travels in the NLRI field with a NEXT_HOP attribute; IPv6 unicast, and IPv4 unicast
with an IPv6 next hop (RFC 8950, only when negotiated), travel in MP_REACH_NLRI, placed first in the
attribute block (RFC 7606 section 5.1) and without NEXT_HOP.
Prefixes are `proto.prefix` values, as the RIBs hold them; with ADD-PATH send negotiated for the
family they must already carry their path identifier. They are turned into wire entries here. Messages are filled greedily in the given
order, so their number is ceil(total octets / space per message) or within one or two of it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import replace

from proto.bgp.attr_table import EXTENDED, MP_FLAGS
from proto.bgp.attributes import encode_block
from proto.bgp.constants import HEADER_LEN, MARKER, AfiSafi, AttrCode, MsgType
from proto.bgp.family import FAMILIES, Family
from proto.bgp.model import Negotiated, PathAttributes
from proto.bgp.nlri import entry_wire, uniform_wire
from proto.bgp.update import address_bytes

_MP_REACH = AttrCode.MP_REACH_NLRI
_MP_UNREACH = AttrCode.MP_UNREACH_NLRI
_UPDATE = bytes((MsgType.UPDATE,))


def _message(body: bytes) -> bytes:
    return MARKER + struct.pack("!H", HEADER_LEN + len(body)) + _UPDATE + body


def _chunks(prefixes: Sequence[bytes], space: int) -> list[bytes]:
    """Consecutive runs of prefixes in wire form, each at most `space` octets (next-fit, order kept)."""
    same = uniform_wire(prefixes if isinstance(prefixes, list) else list(prefixes))
    if same is not None:
        wire, size = same
        if size > space:
            raise ValueError(f"no room for a {size}-octet prefix: {space} octets left per message")
        step = space // size * size
        return [wire[k : k + step] for k in range(0, len(wire), step)]
    out: list[bytes] = []
    current: list[bytes] = []
    used = 0
    for prefix in map(entry_wire, prefixes):
        size = len(prefix)
        if used + size > space:
            if size > space:
                raise ValueError(f"no room for a {size}-octet prefix: {space} octets left per message")
            out.append(b"".join(current))
            current = []
            used = 0
        current.append(prefix)
        used += size
    if current:
        out.append(b"".join(current))
    return out


def _row(family: AfiSafi) -> Family:
    row = FAMILIES.get(family)
    if row is None:
        raise ValueError(f"unsupported AFI/SAFI {family[0]}/{family[1]}")
    return row


def _attribute_block(attrs: PathAttributes, negotiated: Negotiated) -> bytes:
    return encode_block(attrs, negotiated.four_octet_as)


def pack_announcements(
    family: AfiSafi,
    attrs: PathAttributes,
    next_hop: str | Sequence[str],
    prefixes: Sequence[bytes],
    negotiated: Negotiated,
) -> list[bytes]:
    """Whole UPDATE messages announcing `prefixes` with `attrs` and `next_hop` (one address, or an
    IPv6 global + link-local pair). The attribute set is encoded once."""
    if not prefixes:
        return []
    row = _row(family)
    hops = (next_hop,) if isinstance(next_hop, str) else tuple(next_hop)
    limit = negotiated.max_message_len
    afi, safi = row.afi, row.safi
    ipv6_hop = ":" in hops[0]
    if row.in_update_fields and not ipv6_hop:
        if len(hops) != 1:
            raise ValueError("an IPv4 next hop is one address")
        block = _attribute_block(replace(attrs, next_hop=hops[0]), negotiated)
        head = b"\0\0" + struct.pack("!H", len(block)) + block
        return [_message(head + chunk) for chunk in _chunks(prefixes, limit - HEADER_LEN - len(head))]
    hop = b"".join(address_bytes(a) for a in hops)
    if len(hop) not in row.next_hop_lengths_for(negotiated):
        if row.extended_next_hop_lengths and len(hop) in row.extended_next_hop_lengths:
            raise ValueError(f"{row.name} NLRI with an IPv6 next hop needs the extended next hop capability")
        raise ValueError(f"a next hop of {len(hop)} octets for {row.name}")
    block = _attribute_block(replace(attrs, next_hop=None), negotiated)
    reach_head = struct.pack("!HBB", afi, safi, len(hop)) + hop + b"\0"
    # MP_REACH_NLRI always with a 2-octet length: its size varies with the NLRI it carries
    fixed = HEADER_LEN + 4 + 4 + len(reach_head) + len(block)
    messages = []
    for chunk in _chunks(prefixes, limit - fixed):
        reach_len = len(reach_head) + len(chunk)
        attributes = (
            bytes((MP_FLAGS | EXTENDED, _MP_REACH))
            + struct.pack("!H", reach_len)
            + reach_head
            + chunk
            + block
        )
        messages.append(_message(b"\0\0" + struct.pack("!H", len(attributes)) + attributes))
    return messages


def pack_withdrawals(family: AfiSafi, prefixes: Sequence[bytes], negotiated: Negotiated) -> list[bytes]:
    """Whole UPDATE messages withdrawing `prefixes`: the Withdrawn Routes field for IPv4 unicast,
    MP_UNREACH_NLRI otherwise."""
    if not prefixes:
        return []
    limit = negotiated.max_message_len
    row = _row(family)
    if row.in_update_fields:
        return [
            _message(struct.pack("!H", len(chunk)) + chunk + b"\0\0")
            for chunk in _chunks(prefixes, limit - HEADER_LEN - 4)
        ]
    afi, safi = row.afi, row.safi
    messages = []
    for chunk in _chunks(prefixes, limit - HEADER_LEN - 4 - 4 - 3):
        attribute = (
            bytes((MP_FLAGS | EXTENDED, _MP_UNREACH)) + struct.pack("!HHB", 3 + len(chunk), afi, safi) + chunk
        )
        messages.append(_message(b"\0\0" + struct.pack("!H", len(attribute)) + attribute))
    return messages


def end_of_rib(family: AfiSafi) -> bytes:
    """The End-of-RIB marker of RFC 4724 section 2: an empty UPDATE for IPv4 unicast, an empty
    MP_UNREACH_NLRI for any other family."""
    row = _row(family)
    if row.in_update_fields:
        return _message(b"\0\0\0\0")
    afi, safi = row.afi, row.safi
    attribute = bytes((MP_FLAGS, _MP_UNREACH, 3)) + struct.pack("!HB", afi, safi)
    return _message(b"\0\0" + struct.pack("!H", len(attribute)) + attribute)
