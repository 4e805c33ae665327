"""Attribute sets on the way out: a `PathAttributes` encoded to an attribute block, in the order to
send, and the set as passed on to another peer.

`encode_block` writes the whole block with each row's hand-written encoder (the attribute table,
`proto.bgp.attr_table`); `encode_attributes` gives each attribute's encoding by code, for callers
that place MP_REACH_NLRI / MP_UNREACH_NLRI among them. `encoded_block` / `encoded_parts` remember
the result per attribute-set object, so a set shared by many routes is encoded once.

Order: a received layout (the (code, flags) of each attribute as it arrived) is followed first, so
that a received message re-encodes to its exact bytes; then ascending type code with the MP
attributes at the front (RFC 7606 section 5.1). The layout may only add the Extended Length bit;
the flags are always the RFC's for the code.
"""

from __future__ import annotations

import operator
from dataclasses import replace
from itertools import pairwise

from proto.bgp.attr_table import EXTENDED, MP_CODES, PARTIAL, TRANSITIVE, VALUE_ROWS
from proto.bgp.model import PathAttributes

Layout = tuple[tuple[int, int], ...]

_values_of = operator.attrgetter(*(row.field for row in VALUE_ROWS))  # type: ignore[misc]
# per AS width: (code, bit, flags and code octets, encoder, is_list) in field order (ascending code)
_ENCODERS = tuple(
    tuple(
        (row.code, 1 << row.code, bytes((row.flags, row.code)), row.encode[four], row.is_list)  # type: ignore[index]
        for row in VALUE_ROWS
    )
    for four in (False, True)
)
_OCTET = tuple(bytes((n,)) for n in range(256))


def attribute_header(flags: int, code: int, length: int) -> bytes:
    if length > 255 or flags & EXTENDED:
        return bytes((flags | EXTENDED, code, length >> 8, length & 0xFF))
    return bytes((flags, code, length))


def encode_attribute(flags: int, code: int, value: bytes) -> bytes:
    return attribute_header(flags, code, len(value)) + value


# ---------------------------------------------------------------- what a layout asks for

# per layout object (layouts are interned): the codes it sends with Extended Length, and the bits
# of its codes when they are in ascending order (None otherwise)
_layout_info: dict[int, tuple[Layout, frozenset[int], int | None]] = {}
_NO_LAYOUT: tuple[Layout, frozenset[int], int | None] = ((), frozenset(), None)


def _info(layout: Layout) -> tuple[Layout, frozenset[int], int | None]:
    if not layout:
        return _NO_LAYOUT
    info = _layout_info.get(id(layout))
    if info is not None and info[0] is layout:
        return info
    extended = frozenset(code for code, flags in layout if flags & EXTENDED)
    codes = [code for code, _ in layout if code not in MP_CODES]
    mask: int | None = None
    if all(a < b for a, b in pairwise(codes)):
        mask = 0
        for code in codes:
            mask |= 1 << code
    if len(_layout_info) >= 4096:
        _layout_info.clear()
    info = _layout_info[id(layout)] = (layout, extended, mask)  # holding it keeps the id unique
    return info


# ---------------------------------------------------------------- encoding


def encode_attributes(attrs: PathAttributes, four: bool, layout: Layout = ()) -> dict[int, bytes]:
    """Each present attribute's full encoding (header and value), keyed by type code."""
    extended = _info(layout)[1]
    out: dict[int, bytes] = {}
    for (code, _bit, head, encode, is_list), value in zip(_ENCODERS[four], _values_of(attrs)):
        if value is None or value is False or (is_list and not value):
            continue  # an empty list attribute would be malformed: it is sent as absent
        octets = encode(value)
        if len(octets) > 255 or code in extended:
            out[code] = attribute_header(head[0] | EXTENDED, code, len(octets)) + octets
        else:
            out[code] = head + _OCTET[len(octets)] + octets
    for item in attrs.unknown:
        flags = item.flags | (EXTENDED if item.code in extended else 0)
        out[item.code] = encode_attribute(flags, item.code, item.value)
    return out


def encode_block(attrs: PathAttributes, four: bool, layout: Layout = ()) -> bytes:
    """The attribute block of `attrs` (no MP attributes), in the order to send."""
    info = _info(layout)
    extended = info[1]
    ascending = info[2]
    if attrs.unknown or (layout and ascending is None):
        encoded = encode_attributes(attrs, four, layout)
        return b"".join(encoded[code] for code in ordered(encoded, layout))
    parts = []
    append = parts.append
    mask = 0
    for row, value in zip(_ENCODERS[four], _values_of(attrs)):
        if value is None or value is False:
            continue  # most rows: unpack only the present ones
        code, bit, head, encode, is_list = row
        if is_list and not value:
            continue
        octets = encode(value)
        if len(octets) > 255 or code in extended:
            append(attribute_header(head[0] | EXTENDED, code, len(octets)))
        else:
            append(head)
            append(_OCTET[len(octets)])
        append(octets)
        mask |= bit
    if layout and mask & ~ascending:  # type: ignore[operator]
        # attributes the received layout did not have go after it: not plain ascending order
        encoded = encode_attributes(attrs, four, layout)
        return b"".join(encoded[code] for code in ordered(encoded, layout))
    return b"".join(parts)


def ordered(encoded: dict[int, bytes], layout: Layout = ()) -> list[int]:
    """Type codes in the order to send: the received layout first, then ascending code with the
    MP attributes at the front (RFC 7606 section 5.1)."""
    order: list[int] = []
    seen: set[int] = set()
    for code, _ in layout:
        if code in encoded and code not in seen:
            order.append(code)
            seen.add(code)
    rest = sorted(c for c in encoded if c not in seen)
    rest.sort(key=lambda c: c not in MP_CODES)
    return order + rest


# Encodings by the identity of the (usually interned) PathAttributes: a set shared by many routes
# costs a dict lookup and two checks instead of encoding every attribute again.
_blocks: dict[int, tuple[PathAttributes, bool, Layout, bytes]] = {}
_parts: dict[int, tuple[PathAttributes, bool, Layout, dict[int, bytes]]] = {}
_ENCODED_CACHE_SIZE = 4096


def encoded_block(attrs: PathAttributes, four: bool, layout: Layout = ()) -> bytes:
    """`encode_block`, remembered per attribute-set object."""
    hit = _blocks.get(id(attrs))
    if hit is not None and hit[0] is attrs and hit[1] == four and hit[2] is layout:
        return hit[3]
    block = encode_block(attrs, four, layout)
    if len(_blocks) >= _ENCODED_CACHE_SIZE:
        _blocks.clear()
    _blocks[id(attrs)] = (attrs, four, layout, block)  # holding the object keeps its id unique
    return block


def encoded_parts(attrs: PathAttributes, four: bool, layout: Layout = ()) -> dict[int, bytes]:
    """`encode_attributes`, remembered per attribute-set object (do not change the dict)."""
    hit = _parts.get(id(attrs))
    if hit is not None and hit[0] is attrs and hit[1] == four and hit[2] is layout:
        return hit[3]
    parts = encode_attributes(attrs, four, layout)
    if len(_parts) >= _ENCODED_CACHE_SIZE:
        _parts.clear()
    _parts[id(attrs)] = (attrs, four, layout, parts)
    return parts


def clear_encoded() -> None:
    _blocks.clear()
    _parts.clear()
    _layout_info.clear()


# ---------------------------------------------------------------- passing a set on


def readvertised(attrs: PathAttributes) -> PathAttributes:
    """The attribute set as passed on to another peer: unknown optional transitive attributes get
    the Partial bit (RFC 4271 section 5), unknown optional non-transitive ones are dropped."""
    kept = tuple(
        replace(item, flags=item.flags | PARTIAL) for item in attrs.unknown if item.flags & TRANSITIVE
    )
    if kept == attrs.unknown:
        return attrs
    return replace(attrs, unknown=kept)
