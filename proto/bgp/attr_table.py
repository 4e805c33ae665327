"""The path attribute table, BIRD's `bgp_attr_table` way: one row per attribute code with everything
the codec knows about it.

A row (`AttributeDef`) holds the attribute's name, the `PathAttributes` field it decodes into, the
Optional/Transitive flags RFC 4271 gives it, what a malformed one costs (RFC 7606 section 7,
RFC 6793 section 6, RFC 8092; MP_REACH_NLRI / MP_UNREACH_NLRI per RFC 7606 section 5.3 and 7.11),
the construct specification of its value (with the conversions to and from model values and the
semantic rule checked after parsing), the hand-written decoder and encoder (per AS number width),
and a formatter. Every other module reads attributes through this table: the block decoder
(`proto.bgp.attr_block`), the encoder (`proto.bgp.attributes`) and the tests.

MP_REACH_NLRI and MP_UNREACH_NLRI have rows too (name, flags, action, spec) but no value codec
here: what they carry depends on the address family, so `proto.bgp.update` decodes them per
message with the family table.

A row names its specification and the conversions by their names in `proto.bgp.attr_spec`, and
`spec`, `from_spec` and `to_spec` look them up there: that module (and construct) is imported the
first time one of them is read, by the spec path and the tests, never by a running speaker.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import proto.bgp.attr_text as T
import proto.bgp.attr_values as V
from proto.bgp.attr_values import Malformed
from proto.bgp.constants import AttrCode, AttrFlag, ErrorAction, UpdateError
from proto.bgp.model import PATH_ATTRIBUTE_FIELDS
from proto.record import record

OPTIONAL = AttrFlag.OPTIONAL
TRANSITIVE = AttrFlag.TRANSITIVE
PARTIAL = AttrFlag.PARTIAL
EXTENDED = AttrFlag.EXTENDED_LENGTH
OT_MASK = OPTIONAL | TRANSITIVE
WELL_KNOWN = TRANSITIVE
OPT_NON_TRANSITIVE = OPTIONAL
OPT_TRANSITIVE = OPTIONAL | TRANSITIVE

WITHDRAW = ErrorAction.TREAT_AS_WITHDRAW
DISCARD = ErrorAction.ATTRIBUTE_DISCARD
RESET = ErrorAction.SESSION_RESET

Decoder = Callable[[bytes], Any]
Encoder = Callable[[Any], bytes]


def _spec_module() -> ModuleType:
    import proto.bgp.attr_spec as spec

    return spec


@record(frozen=True, slots=True)
class AttributeDef:
    """One row of the attribute table."""

    code: int
    name: str
    field: str | None  # PathAttributes field; None for the MP attributes (they live in Update)
    flags: int  # the Optional and Transitive bits it must carry
    action: ErrorAction  # RFC 7606: what a malformed one costs
    error_subcode: int  # UPDATE error subcode of a value that breaks its specification
    # in proto.bgp.attr_spec: the value specification (2-octet AS session, 4-octet AS session), the
    # conversion of what it parses to the model value, and of the model value to what it builds
    spec_names: tuple[str, str]
    from_spec_name: str | None = None
    to_spec_name: str | None = None
    check: Callable[[Any], None] | None = None  # semantic rule after parsing (raises Malformed)
    decode: tuple[Decoder, Decoder] | None = None  # hand-written, per AS width; raises Malformed
    encode: tuple[Encoder, Encoder] | None = None  # hand-written, per AS width
    text: Callable[[Any], str] | None = None  # for logs and tortiectl
    is_list: bool = False  # a list attribute: an empty list is sent as absent (empty is malformed)

    @property
    def spec(self) -> tuple[Any, Any]:
        """The construct value specification (2-octet AS session, 4-octet AS session)."""
        module = _spec_module()
        return (getattr(module, self.spec_names[0]), getattr(module, self.spec_names[1]))

    @property
    def from_spec(self) -> Callable[[Any], Any] | None:
        """Parsed construct container -> model value."""
        return None if self.from_spec_name is None else getattr(_spec_module(), self.from_spec_name)

    @property
    def to_spec(self) -> Callable[[Any], Any] | None:
        """Model value -> what the specification builds from."""
        return None if self.to_spec_name is None else getattr(_spec_module(), self.to_spec_name)


# ---------------------------------------------------------------- semantic rules of the spec path


def check_origin(origin: int) -> None:
    if origin > 2:
        raise Malformed(UpdateError.INVALID_ORIGIN_ATTRIBUTE, f"ORIGIN value {origin}")


def check_next_hop(address: str) -> None:
    first = int(address.split(".", 1)[0])
    if address == "0.0.0.0" or address == "255.255.255.255" or 224 <= first <= 239:
        raise Malformed(UpdateError.INVALID_NEXT_HOP_ATTRIBUTE, f"NEXT_HOP {address} is not a unicast address")


# ---------------------------------------------------------------- the table

LENGTH = UpdateError.ATTRIBUTE_LENGTH_ERROR
OPTIONAL_ERROR = UpdateError.OPTIONAL_ATTRIBUTE_ERROR


def _both(name: str) -> tuple[str, str]:
    """(2-octet AS session, 4-octet AS session): most attributes read the same under both."""
    return (name, name)


def _same(fn: Callable[..., Any]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    return (fn, fn)


_ROWS = (
    AttributeDef(
        AttrCode.ORIGIN, "ORIGIN", "origin", WELL_KNOWN, WITHDRAW, LENGTH, _both("OriginSpec"),
        "origin_from", "origin_to", check_origin,
        _same(V.decode_origin), _same(V.encode_origin), T.origin_text,
    ),
    AttributeDef(
        AttrCode.AS_PATH, "AS_PATH", "as_path", WELL_KNOWN, WITHDRAW, UpdateError.MALFORMED_AS_PATH,
        ("AsPath2Spec", "AsPath4Spec"), "segments_from", "segments_to", None,
        (V.decode_as_path2, V.decode_as_path4), (V.encode_as_path2, V.encode_as_path4), T.as_path_text,
    ),
    AttributeDef(
        AttrCode.NEXT_HOP, "NEXT_HOP", "next_hop", WELL_KNOWN, WITHDRAW, LENGTH, _both("Ipv4Spec"),
        "address_from", "address_to", check_next_hop,
        _same(V.decode_next_hop), _same(V.encode_ipv4), T.plain_text,
    ),
    AttributeDef(
        AttrCode.MULTI_EXIT_DISC, "MULTI_EXIT_DISC", "med", OPT_NON_TRANSITIVE, WITHDRAW, LENGTH,
        _both("U32Spec"), "number_from", "number_to", None,
        _same(V.decode_med), _same(V.encode_u32), T.plain_text,
    ),
    AttributeDef(
        AttrCode.LOCAL_PREF, "LOCAL_PREF", "local_pref", WELL_KNOWN, WITHDRAW, LENGTH, _both("U32Spec"),
        "number_from", "number_to", None,
        _same(V.decode_local_pref), _same(V.encode_u32), T.plain_text,
    ),
    AttributeDef(
        AttrCode.ATOMIC_AGGREGATE, "ATOMIC_AGGREGATE", "atomic_aggregate", WELL_KNOWN, DISCARD, LENGTH,
        _both("EmptySpec"), "present_from", "present_to", None,
        _same(V.decode_atomic_aggregate), _same(V.encode_atomic_aggregate), T.flag_text,
    ),
    AttributeDef(
        AttrCode.AGGREGATOR, "AGGREGATOR", "aggregator", OPT_TRANSITIVE, DISCARD, LENGTH,
        ("Aggregator2Spec", "Aggregator4Spec"), "aggregator_from", "aggregator_to", None,
        (V.decode_aggregator2, V.decode_aggregator4), (V.encode_aggregator2, V.encode_aggregator4),
        T.aggregator_text,
    ),
    AttributeDef(
        AttrCode.COMMUNITIES, "COMMUNITIES", "communities", OPT_TRANSITIVE, WITHDRAW, OPTIONAL_ERROR,
        _both("CommunitiesSpec"), "entries_from", "entries_to", None,
        _same(V.decode_communities), _same(V.encode_communities), T.communities_text, is_list=True,
    ),
    AttributeDef(
        AttrCode.ORIGINATOR_ID, "ORIGINATOR_ID", "originator_id", OPT_NON_TRANSITIVE, WITHDRAW, LENGTH,
        _both("Ipv4Spec"), "address_from", "address_to", None,
        _same(V.decode_originator_id), _same(V.encode_ipv4), T.plain_text,
    ),
    AttributeDef(
        AttrCode.CLUSTER_LIST, "CLUSTER_LIST", "cluster_list", OPT_NON_TRANSITIVE, WITHDRAW,
        OPTIONAL_ERROR, _both("ClusterListSpec"), "addresses_from", "addresses_to", None,
        _same(V.decode_cluster_list), _same(V.encode_cluster_list), T.addresses_text, is_list=True,
    ),
    # RFC 4760 section 7, RFC 7606 sections 5.3 and 7.11: a malformed MP attribute resets the
    # session (3/9), except a next hop of the wrong length (treat-as-withdraw, in update.py)
    AttributeDef(
        AttrCode.MP_REACH_NLRI, "MP_REACH_NLRI", None, OPT_NON_TRANSITIVE, RESET, OPTIONAL_ERROR,
        _both("MpReachSpec"),
    ),
    AttributeDef(
        AttrCode.MP_UNREACH_NLRI, "MP_UNREACH_NLRI", None, OPT_NON_TRANSITIVE, RESET, OPTIONAL_ERROR,
        _both("MpUnreachSpec"),
    ),
    AttributeDef(
        AttrCode.EXTENDED_COMMUNITIES, "EXTENDED_COMMUNITIES", "extended_communities", OPT_TRANSITIVE,
        WITHDRAW, OPTIONAL_ERROR, _both("ExtendedCommunitiesSpec"), "entries_from", "entries_to", None,
        _same(V.decode_extended_communities), _same(V.encode_extended_communities),
        T.extended_communities_text, is_list=True,
    ),
    # RFC 6793 section 6: a malformed AS4_PATH or AS4_AGGREGATOR is discarded
    AttributeDef(
        AttrCode.AS4_PATH, "AS4_PATH", "as4_path", OPT_TRANSITIVE, DISCARD, OPTIONAL_ERROR,
        _both("AsPath4Spec"), "segments_from", "segments_to", None,
        _same(V.decode_as4_path), _same(V.encode_as_path4), T.as_path_text,
    ),
    AttributeDef(
        AttrCode.AS4_AGGREGATOR, "AS4_AGGREGATOR", "as4_aggregator", OPT_TRANSITIVE, DISCARD, LENGTH,
        _both("Aggregator4Spec"), "aggregator_from", "aggregator_to", None,
        _same(V.decode_as4_aggregator), _same(V.encode_aggregator4), T.aggregator_text,
    ),
    # RFC 8092 section 5: a malformed LARGE_COMMUNITIES is treat-as-withdraw
    AttributeDef(
        AttrCode.LARGE_COMMUNITIES, "LARGE_COMMUNITIES", "large_communities", OPT_TRANSITIVE, WITHDRAW,
        OPTIONAL_ERROR, _both("LargeCommunitiesSpec"), "large_from", "large_to", None,
        _same(V.decode_large_communities), _same(V.encode_large_communities), T.large_communities_text,
        is_list=True,
    ),
)  # fmt: skip

ATTRIBUTES: dict[int, AttributeDef] = {row.code: row for row in _ROWS}
# the rows with a PathAttributes field, in field order (which is ascending code order)
VALUE_ROWS: tuple[AttributeDef, ...] = tuple(row for row in _ROWS if row.field is not None)
MP_CODES = (AttrCode.MP_REACH_NLRI, AttrCode.MP_UNREACH_NLRI)
MP_FLAGS = ATTRIBUTES[AttrCode.MP_REACH_NLRI].flags
# by code, for the hot loops: a list index is cheaper than a dict lookup
BY_CODE: tuple[AttributeDef | None, ...] = tuple(ATTRIBUTES.get(code) for code in range(256))

if tuple(row.field for row in VALUE_ROWS) != PATH_ATTRIBUTE_FIELDS[: len(VALUE_ROWS)]:
    raise ImportError("the attribute table and PathAttributes disagree on the fields or their order")


def name_of(code: int) -> str:
    row = BY_CODE[code]
    return row.name if row is not None else f"attribute {code}"


# ---------------------------------------------------------------- one value, either path


def decode_value(code: int, value: bytes, four: bool) -> Any:
    """The model value of a recognised attribute's value octets, hand-written (raises Malformed)."""
    return ATTRIBUTES[code].decode[four](value)  # type: ignore[index]


def decode_value_spec(code: int, value: bytes, four: bool) -> Any:
    """The same through the construct specification and the row's semantic rule."""
    from construct import ConstructError

    row = ATTRIBUTES[code]
    try:
        parsed = row.spec[four].parse(value)
    except ConstructError as exc:
        raise Malformed(row.error_subcode, f"malformed {row.name}") from exc
    result = row.from_spec(parsed)  # type: ignore[misc]
    if row.check is not None:
        row.check(result)
    return result


def encode_value(code: int, value: Any, four: bool) -> bytes:
    """The value octets of a recognised attribute, hand-written (equal to the construct build)."""
    row = ATTRIBUTES.get(code)
    if row is None or row.encode is None:
        raise ValueError(f"no encoder for attribute {code}")
    return row.encode[four](value)


def encode_value_spec(code: int, value: Any, four: bool) -> bytes:
    """The same octets built with the construct specification (the reference for tests)."""
    row = ATTRIBUTES[code]
    return row.spec[four].build(row.to_spec(value))  # type: ignore[misc]


def value_text(code: int, value: Any) -> str:
    """A decoded attribute value as text (logs, tortiectl)."""
    row = BY_CODE[code]
    if row is None or row.text is None:
        return value.hex() if isinstance(value, bytes) else str(value)
    return row.text(value)
