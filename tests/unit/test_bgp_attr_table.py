"""The attribute table and the fast paths built on it: one row per code, the one-pass block decoder
equal to the general path (and taken for every clean block), the fast constructors equal to the
dataclasses', the block encoder equal to encoding attribute by attribute in the order to send."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import proto.bgp.attr_block as B
import proto.bgp.attr_cache as C
import proto.bgp.attr_table as T
import proto.bgp.attributes as E
from proto.bgp.attr_values import decode_next_hop
from proto.bgp.constants import AttrCode, ErrorAction
from proto.bgp.model import (
    PATH_ATTRIBUTE_FIELDS,
    AsPathSegment,
    MessageError,
    PathAttributes,
    as_path_segment,
    path_attributes_from,
)
from tests.unit.test_bgp_attributes import blocks, path_attributes

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- the table


def test_one_row_per_attribute_code() -> None:
    assert sorted(T.ATTRIBUTES) == sorted(AttrCode)
    for code, row in T.ATTRIBUTES.items():
        assert row.code == code and row.name == AttrCode(code).name
        assert isinstance(row.action, ErrorAction)
        assert T.BY_CODE[code] is row
    # the rows with a field are the PathAttributes fields, in the same order
    assert tuple(r.field for r in T.VALUE_ROWS) == PATH_ATTRIBUTE_FIELDS[:-1]
    assert PATH_ATTRIBUTE_FIELDS[-1] == "unknown"
    for code in T.MP_CODES:
        row = T.ATTRIBUTES[code]
        assert row.field is None and row.action == ErrorAction.SESSION_RESET and row.flags == T.OPTIONAL


def test_actions_follow_rfc_7606_and_6793() -> None:
    discard = {AttrCode.ATOMIC_AGGREGATE, AttrCode.AGGREGATOR, AttrCode.AS4_PATH, AttrCode.AS4_AGGREGATOR}
    for row in T.VALUE_ROWS:
        expected = ErrorAction.ATTRIBUTE_DISCARD if row.code in discard else ErrorAction.TREAT_AS_WITHDRAW
        assert row.action == expected, row.name
    # the actions are the words the decoded problems have always carried
    assert ErrorAction.TREAT_AS_WITHDRAW == "treat-as-withdraw"
    assert ErrorAction.ATTRIBUTE_DISCARD == "attribute-discard"


def test_value_text() -> None:
    path = (AsPathSegment(2, (65001, 65002)), AsPathSegment(1, (1, 2)), AsPathSegment(3, (7,)))
    assert T.value_text(AttrCode.AS_PATH, path) == "65001 65002 {1 2} (7)"
    assert T.value_text(AttrCode.ORIGIN, 2) == "INCOMPLETE"
    assert T.value_text(AttrCode.COMMUNITIES, ((65001 << 16) | 100,)) == "65001:100"
    assert T.value_text(AttrCode.LARGE_COMMUNITIES, ((1, 2, 3),)) == "1:2:3"
    assert T.value_text(AttrCode.AGGREGATOR, (65001, "10.0.0.1")) == "65001 10.0.0.1"
    assert T.value_text(200, b"\x01\x02") == "0102"


# ---------------------------------------------------------------- fast constructors


@SETTINGS
@given(attrs=path_attributes())
def test_fast_constructors_equal_the_dataclasses(attrs: PathAttributes) -> None:
    values = [getattr(attrs, name) for name in PATH_ATTRIBUTE_FIELDS]
    built = path_attributes_from(values)
    assert built == attrs and hash(built) == hash(attrs) and repr(built) == repr(attrs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.med = 1  # type: ignore[misc]
    for segment in attrs.as_path or ():
        fast = as_path_segment(segment.type, segment.asns)
        assert fast == segment and hash(fast) == hash(segment)


def test_fast_constructors_rely_on_nothing_the_classes_lack() -> None:
    for cls in (PathAttributes, AsPathSegment):
        assert not hasattr(cls, "__post_init__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(object.__new__(cls), dataclasses.fields(cls)[0].name, None)
        assert "__slots__" in cls.__dict__


# ---------------------------------------------------------------- the one-pass block decoder


@SETTINGS
@given(case=blocks())
def test_fast_block_equals_general_path(case: tuple[bytes, bool]) -> None:
    block, four = case
    fast = B.fast_block(block, four)
    if fast is None:
        return
    decoded, mp, at = fast
    entries, overrun = B.walk(block)
    general, general_mp = B.decode_block(entries, overrun, four)
    assert decoded == general
    assert decoded.layout is general.layout  # interned
    assert ([mp] if mp is not None else []) == general_mp
    if mp is not None:
        assert block[at : at + len(mp.raw)] == mp.raw


@st.composite
def clean_blocks(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Well-formed blocks of known attributes in any order, with at most one MP attribute."""
    four = draw(st.booleans())
    attrs = dataclasses.replace(draw(path_attributes(four)), unknown=())
    parts = list(E.encode_attributes(attrs, four).values())
    if draw(st.booleans()):
        parts.append(bytes((0x90, draw(st.sampled_from(T.MP_CODES)), 0, 3, 0, 2, 1)))
    return b"".join(draw(st.permutations(parts))), four


@SETTINGS
@given(case=clean_blocks())
def test_fast_block_takes_every_clean_block(case: tuple[bytes, bool]) -> None:
    """Otherwise new attribute sets would silently take the slow path."""
    block, four = case
    assert B.fast_block(block, four) is not None


@pytest.mark.parametrize(
    "block",
    [
        bytes((0x40, 1, 1, 0, 0xC0, 99, 1, 0)),  # unknown optional attribute
        bytes((0x40, 1, 1, 0, 0x40, 1, 1, 0)),  # duplicate
        bytes((0x40, 1, 1, 3)),  # malformed value
        bytes((0xC0, 1, 1, 0)),  # wrong flags
        bytes((0x40, 1, 5, 0)),  # overrun
        bytes((0x80, 14, 3, 0, 2, 1, 0x80, 15, 3, 0, 2, 1)),  # both MP attributes
    ],
)
def test_fast_block_leaves_the_rest_to_the_general_path(block: bytes) -> None:
    assert B.fast_block(block, True) is None


def test_layouts_and_next_hop_text_are_shared() -> None:
    C.clear_cache()
    one = bytes((0x40, 1, 1, 0, 0x40, 3, 4, 10, 0, 0, 1, 0x80, 4, 4, 0, 0, 0, 1))
    two = one[:-1] + b"\x02"
    a, _ = C.cached_block(one, True)
    b, _ = C.cached_block(two, True)
    assert a.attributes is not b.attributes
    assert a.layout is b.layout
    assert a.attributes.next_hop is b.attributes.next_hop
    assert decode_next_hop(bytes((10, 0, 0, 1))) is a.attributes.next_hop


def test_mp_first_and_mp_later_share_the_cached_rest() -> None:
    C.clear_cache()
    rest = bytes((0x40, 1, 1, 0, 0x40, 2, 0))
    mp = bytes((0x80, 15, 3, 0, 2, 1))
    first, found = C.cached_block(rest[:4] + mp + rest[4:], True)  # MP in the middle: one pass
    assert [e.code for e in found] == [15]
    second, _ = C.cached_block(mp + rest, True)  # MP first: the cached rest, no walk
    third, _ = C.cached_block(rest, True)
    assert first.attributes is second.attributes is third.attributes
    assert first.layout == ((1, 0x40), (15, 0x80), (2, 0x40))
    assert second.layout == ((15, 0x80), (1, 0x40), (2, 0x40))
    assert third.layout == ((1, 0x40), (2, 0x40))


def test_repeated_mp_still_resets_the_session() -> None:
    block = bytes((0x80, 14, 3, 0, 2, 1, 0x40, 1, 1, 0, 0x80, 14, 3, 0, 2, 1))
    C.clear_cache()
    with pytest.raises(MessageError):
        C.cached_block(block, True)


# ---------------------------------------------------------------- the block encoder

ipv4 = st.builds(lambda n: socket.inet_ntoa(n.to_bytes(4, "big")), st.integers(0, 2**32 - 1))


@st.composite
def layouts(draw: st.DrawFn, attrs: PathAttributes) -> tuple[tuple[int, int], ...]:
    """Received layouts: some of the set's codes, maybe others, any order, maybe Extended Length."""
    codes = [r.code for r in T.VALUE_ROWS if getattr(attrs, r.field) not in (None, False, ())]
    codes += [u.code for u in attrs.unknown]
    chosen = draw(st.lists(st.sampled_from([*codes, *T.MP_CODES, 11, 40]), unique=True, max_size=12))
    if draw(st.booleans()):
        chosen.sort()
    return tuple((code, draw(st.sampled_from([0x40, 0x50, 0x80, 0x90]))) for code in chosen)


@SETTINGS
@given(data=st.data())
def test_encode_block_equals_parts_in_order(data: st.DataObject) -> None:
    four = data.draw(st.booleans())
    attrs = data.draw(path_attributes(four, next_hop=data.draw(st.booleans())))
    layout = data.draw(layouts(attrs)) if data.draw(st.booleans()) else ()
    parts = E.encode_attributes(attrs, four, layout)
    expected = b"".join(parts[code] for code in E.ordered(parts, layout))
    assert E.encode_block(attrs, four, layout) == expected
    assert E.encoded_block(attrs, four, layout) == expected
    assert E.encoded_block(attrs, four, layout) == expected  # remembered
    assert E.encoded_parts(attrs, four, layout) == parts
