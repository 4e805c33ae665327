"""The attribute block of an UPDATE: walking it, and turning it into an immutable `PathAttributes`
plus what RFC 7606 says about it.

Three ways through a block, all ending in the same `Decoded`:
- `fast_block`: one pass that walks and decodes a clean block (every attribute known, flags right,
  values well-formed, no duplicate, at most one MP attribute) and gives up (returns None) on
  anything else. This is what a new attribute set costs on the hot path.
- `decode_block` over `walk`: the general path for everything else: unknown optional attributes,
  malformed ones, duplicates, overruns, with the problems RFC 7606 asks to report.
- `spec_block`: the same over the construct specification (`walk_spec`, `decode_value_spec`), the
  reference the tests hold the other two equal to.

Error-handling choices, all from RFC 7606 unless noted (the actions per attribute are in the
attribute table, `proto.bgp.attr_table`):
- An Optional/Transitive flag conflict makes the attribute malformed (section 3.c); the malformed
  attribute then gets its own attribute's action. Partial and Extended Length bits are not checked;
  the four low flag bits are ignored on receipt and dropped.
- A duplicate of any attribute other than MP_REACH/MP_UNREACH is discarded, the first kept (3.g),
  and reported as attribute-discard. Duplicate MP attributes reset the session (3/1).
- An attribute whose header or value runs past the end of the block (section 4, "overrun" and
  "underrun") makes the UPDATE treat-as-withdraw; what was decoded before it is kept.
- An unrecognised well-known attribute resets the session with 3/2 (RFC 4271 section 6.3).
- Unknown optional attributes are kept opaque with the flags they came with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from proto.bgp.attr_table import (
    ATTRIBUTES,
    BY_CODE,
    DISCARD,
    EXTENDED,
    MP_CODES,
    MP_FLAGS,
    OPTIONAL,
    OT_MASK,
    WITHDRAW,
    decode_value,
    decode_value_spec,
    name_of,
)
from proto.bgp.attr_values import Malformed
from proto.bgp.constants import ErrorCode, UpdateError
from proto.bgp.model import (
    PATH_ATTRIBUTE_FIELDS,
    AttributeProblem,
    MessageError,
    PathAttributes,
    UnknownAttribute,
    path_attributes_from,
)

Layout = tuple[tuple[int, int], ...]  # (type code, flags) of each attribute in received order


class RawAttribute(NamedTuple):
    """One attribute as walked from the block."""

    flags: int  # the four high bits as received
    code: int
    value: bytes
    raw: bytes  # header and value as received


class Decoded(NamedTuple):
    """What one attribute block (without MP attributes) decodes to; shared through the cache."""

    attributes: PathAttributes
    problems: tuple[AttributeProblem, ...]  # found in the block itself
    present: int  # bit 1 << code of each non-MP attribute that appeared, well-formed or not
    layout: Layout  # MP attributes included

    def has(self, code: int) -> bool:
        return bool(self.present >> code & 1)


def bits(codes: tuple[int, ...]) -> int:
    mask = 0
    for code in codes:
        mask |= 1 << code
    return mask


MP_BITS = bits(MP_CODES)


# ---------------------------------------------------------------- layouts, interned

# Layouts repeat across attribute sets (every route of a peer has the same attribute order), so
# each distinct one is kept once and shared by every Decoded and Update that has it.
_layouts: dict[tuple[int, ...], Layout] = {}
_LAYOUTS_SIZE = 4096


def _layout(key: tuple[int, ...]) -> Layout:
    """The layout whose attributes are `code << 8 | flags` in `key`."""
    layout = _layouts.get(key)
    if layout is None:
        if len(_layouts) >= _LAYOUTS_SIZE:
            _layouts.clear()
        layout = _layouts[key] = tuple((k >> 8, k & 0xFF) for k in key)
    return layout


def intern_layout(layout: Layout) -> Layout:
    return _layout(tuple(code << 8 | flags for code, flags in layout))


def clear_layouts() -> None:
    _layouts.clear()


# ---------------------------------------------------------------- walking


def walk(block: bytes) -> tuple[list[RawAttribute], int | None]:
    """The hand-written walk, equal to `walk_spec`: each attribute, and the offset of an overrun."""
    entries = []
    append = entries.append
    size = len(block)
    i = 0
    while i < size:
        if i + 3 > size:
            return entries, i
        flags = block[i]
        if flags & EXTENDED:
            if i + 4 > size:
                return entries, i
            start = i + 4
            end = start + ((block[i + 2] << 8) | block[i + 3])
        else:
            start = i + 3
            end = start + block[i + 2]
        if end > size:
            return entries, i
        append(RawAttribute(flags & 0xF0, block[i + 1], block[start:end], block[i:end]))
        i = end
    return entries, None


def walk_spec(block: bytes) -> tuple[list[RawAttribute], int | None]:
    """The walk through the construct specification of the block."""
    from proto.bgp.attr_spec import FLAG_BITS, AttributeBlock

    parsed = AttributeBlock.parse(block)
    entries = []
    for item in parsed.attributes:
        flags = sum(bit for name, bit in FLAG_BITS if item.value.flags[name])
        entries.append(RawAttribute(flags, item.value.type, item.value.value, item.data))
    overrun = len(block) - len(parsed.overrun) if parsed.overrun else None
    return entries, overrun


# ---------------------------------------------------------------- the fast path

# per AS width, per code: (PathAttributes slot or -1 for an MP attribute, expected flags, decoder,
# bit); None for codes without a row (unknown attributes take the general path)
_MP_SLOT = -1
_FAST: tuple[tuple[Any, ...], tuple[Any, ...]] = tuple(  # type: ignore[assignment]
    tuple(
        None
        if row is None
        else (
            PATH_ATTRIBUTE_FIELDS.index(row.field) if row.field else _MP_SLOT,
            row.flags,
            row.decode[four] if row.decode else None,
            1 << row.code,
        )
        for row in BY_CODE
    )
    for four in (False, True)
)
_EMPTY = [PathAttributes.__dataclass_fields__[name].default for name in PATH_ATTRIBUTE_FIELDS]  # type: ignore[attr-defined]


def fast_block(block: bytes, four: bool) -> tuple[Decoded, RawAttribute | None, int] | None:
    """Decode a clean block in one pass: (Decoded, its MP attribute or None, the MP attribute's
    offset). None when the block needs the general path (`decode_block`); for a clean block the
    two give equal results (tests/unit/test_bgp_attributes.py)."""
    rows = _FAST[four]
    values = _EMPTY.copy()
    keys = []
    seen = 0
    mp = None
    mp_at = 0
    size = len(block)
    i = 0
    while i < size:
        if i + 3 > size:
            return None
        flags = block[i] & 0xF0
        code = block[i + 1]
        if flags & 0x10:
            if i + 4 > size:
                return None
            start = i + 4
            end = start + ((block[i + 2] << 8) | block[i + 3])
        else:
            start = i + 3
            end = start + block[i + 2]
        row = rows[code]
        if end > size or row is None:
            return None
        slot, expected, decode, bit = row
        if seen & bit or flags & 0xC0 != expected:
            return None
        seen |= bit
        if slot >= 0:
            try:
                values[slot] = decode(block[start:end])
            except Malformed:
                return None
        elif mp is None:
            mp = RawAttribute(flags, code, block[start:end], block[i:end])
            mp_at = i
        else:
            return None  # MP_REACH and MP_UNREACH together: rare, the general path sorts them
        keys.append(code << 8 | flags)
        i = end
    layout = _layouts.get(tuple(keys)) or _layout(tuple(keys))
    return Decoded(path_attributes_from(values), (), seen & ~MP_BITS, layout), mp, mp_at


# ---------------------------------------------------------------- the general path


def decode_block(
    entries: list[RawAttribute],
    overrun: int | None,
    four: bool,
    value_decoder: Callable[[int, bytes, bool], Any] = decode_value,
) -> tuple[Decoded, list[RawAttribute]]:
    """Assemble walked attributes into a `Decoded` and the MP attributes found (in block order;
    update.py decodes them per message).

    Raises MessageError for what resets the session (3/2 unknown well-known, 3/1 duplicate MP).
    """
    fields: dict[str, Any] = {}
    unknown: list[UnknownAttribute] = []
    problems: list[AttributeProblem] = []
    present = 0
    layout: list[tuple[int, int]] = []
    mp: list[RawAttribute] = []
    for entry in entries:
        flags, code, value, raw = entry
        layout.append((code, flags))
        if code in MP_CODES:
            if present >> code & 1:
                raise MessageError(
                    ErrorCode.UPDATE_MESSAGE,
                    UpdateError.MALFORMED_ATTRIBUTE_LIST,
                    reason=f"{name_of(code)} appears more than once",
                )
            present |= 1 << code
            if flags & OT_MASK != MP_FLAGS:
                problems.append(mp_flags_problem(code, flags))
            mp.append(entry)
            continue
        if present >> code & 1:
            problems.append(
                AttributeProblem(
                    DISCARD, code, UpdateError.MALFORMED_ATTRIBUTE_LIST, f"attribute {code} repeated"
                )
            )
            continue
        present |= 1 << code
        row = ATTRIBUTES.get(code)
        if row is None:
            if not flags & OPTIONAL:
                raise MessageError(
                    ErrorCode.UPDATE_MESSAGE,
                    UpdateError.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    raw,
                    f"unrecognised well-known attribute {code}",
                )
            unknown.append(UnknownAttribute(flags & ~EXTENDED, code, value))
            continue
        if flags & OT_MASK != row.flags:
            problems.append(
                AttributeProblem(
                    row.action,
                    code,
                    UpdateError.ATTRIBUTE_FLAGS_ERROR,
                    f"{row.name} flags 0x{flags:02x}, expected 0x{row.flags:02x}",
                )
            )
            continue
        try:
            fields[row.field] = value_decoder(code, value, four)  # type: ignore[index]
        except Malformed as exc:
            problems.append(AttributeProblem(row.action, code, exc.subcode, exc.reason))
    if overrun is not None:
        problems.append(
            AttributeProblem(
                WITHDRAW,
                0,
                UpdateError.MALFORMED_ATTRIBUTE_LIST,
                f"attribute at offset {overrun} runs past the end of the attribute block",
            )
        )
    if unknown:
        # in code order: the same attributes received in another order are the same set (the
        # layout keeps the received order for re-encoding)
        fields["unknown"] = tuple(sorted(unknown, key=lambda u: u.code))
    # problems of the MP attributes go last so that the cached path and the specification agree
    ordered_problems = [p for p in problems if p.code not in MP_CODES]
    ordered_problems += [p for p in problems if p.code in MP_CODES]
    decoded = Decoded(
        PathAttributes(**fields), tuple(ordered_problems), present & ~MP_BITS, intern_layout(tuple(layout))
    )
    return decoded, mp


def mp_flags_problem(code: int, flags: int) -> AttributeProblem:
    # RFC 7606 section 3.c: an Optional/Transitive conflict makes the attribute malformed; the
    # NLRI it carries can still be located, so treat-as-withdraw applies
    return AttributeProblem(
        WITHDRAW, code, UpdateError.ATTRIBUTE_FLAGS_ERROR, f"{name_of(code)} flags 0x{flags:02x}"
    )


def spec_block(block: bytes, four: bool) -> tuple[Decoded, list[RawAttribute]]:
    """The whole block through the construct specification, uncached (the reference for tests)."""
    entries, overrun = walk_spec(block)
    return decode_block(entries, overrun, four, decode_value_spec)

