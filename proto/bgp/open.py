"""OPEN (RFC 4271 section 4.2) with optional parameters in both the classic form and the RFC 9072
extended form (Non-Ext OP Len 255, Non-Ext OP Type 255, a 2-octet length, 2-octet parameter lengths).

Checks, in this order (RFC 4271 section 6.2; the version first, since a different version may mean
a different layout): version 4, else 2/1 with the 2-octet largest supported version; My AS not 0
(RFC 7607), else 2/2; hold time 0 or >= 3, else 2/6; BGP identifier not 0.0.0.0 (RFC 6286), else
2/3; then the optional parameters, whose lengths must add up exactly to the message (else 2/0,
Unspecific), of type 2 only (else 2/4), and whose capabilities must be well formed (else 2/0); a
4-octet AS capability carrying AS 0 is 2/2 (RFC 7607). Checks against configuration (peer AS,
identifier equal to ours) belong to the session.

Encoding puts all capabilities in one parameter, as BIRD and GoBGP do (several when the classic form
runs out of room). FRR sends one capability per parameter instead; to give back a received OPEN's
exact bytes the decoder records the grouping in `Open.capability_groups` (capabilities per
parameter) and the encoder follows it, when the model has that field (see GROUPS_FIELD).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from construct import (
    Bytes,
    Computed,
    Const,
    ConstructError,
    FixedSized,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    IfThenElse,
    Int8ub,
    Int16ub,
    Peek,
    Prefixed,
    Struct,
    Terminated,
    this,
)

from proto.bgp.capabilities import decode_capabilities, encode_capability
from proto.bgp.constants import ErrorCode, OpenError
from proto.bgp.model import FourOctetAsCap, MessageError, Open, OptionalParameter

BGP_VERSION = 4
CAPABILITIES_PARAMETER = 2
EXTENDED_PARAMETERS = 255  # RFC 9072: Non-Ext OP Len and Non-Ext OP Type both 255
MAX_CLASSIC_PARAMETERS = 255

# `capability_groups: tuple[int, ...] = field(default=(), compare=False)` on model.Open. Read this
# way so the codec works with and without it while the shared model is being settled.
GROUPS_FIELD = "capability_groups"
_HAS_GROUPS = GROUPS_FIELD in getattr(Open, "__dataclass_fields__", {})

OpenFixed = Struct(
    "version" / Int8ub,
    "asn" / Int16ub,
    "hold_time" / Int16ub,
    "router_id" / Bytes(4),
)

Parameter = Struct("type" / Int8ub, "value" / Prefixed(Int8ub, GreedyBytes))
ExtendedParameter = Struct("type" / Int8ub, "value" / Prefixed(Int16ub, GreedyBytes))


def _list(entry: Any) -> Any:
    return FocusedSeq("entries", "entries" / GreedyRange(entry), Terminated)


OpenSpec = Struct(
    "fixed" / OpenFixed,
    "non_ext_len" / Int8ub,
    "non_ext_type" / Peek(Int8ub),
    "extended"
    / Computed(
        lambda ctx: ctx.non_ext_len == EXTENDED_PARAMETERS and ctx.non_ext_type == EXTENDED_PARAMETERS
    ),
    "parameters"
    / IfThenElse(
        this.extended,
        FocusedSeq(
            "parameters",
            Const(bytes((EXTENDED_PARAMETERS,))),
            "parameters" / Prefixed(Int16ub, _list(ExtendedParameter)),
        ),
        FixedSized(this.non_ext_len, _list(Parameter)),
    ),
    Terminated,
)


def _open_error(subcode: int, reason: str, data: bytes = b"") -> MessageError:
    return MessageError(ErrorCode.OPEN_MESSAGE, subcode, data, reason)


def decode_open(body: bytes) -> Open:
    if len(body) < OpenFixed.sizeof():
        # Only reachable when called without the header check (which demands 29 octets in all).
        raise _open_error(0, "OPEN shorter than its fixed part")
    fixed = OpenFixed.parse(body)
    if fixed.version != BGP_VERSION:
        raise _open_error(
            OpenError.UNSUPPORTED_VERSION_NUMBER,
            f"version {fixed.version}",
            BGP_VERSION.to_bytes(2, "big"),
        )
    if fixed.asn == 0:
        raise _open_error(OpenError.BAD_PEER_AS, "My Autonomous System is 0")
    if fixed.hold_time in (1, 2):
        raise _open_error(OpenError.UNACCEPTABLE_HOLD_TIME, f"hold time {fixed.hold_time}")
    if fixed.router_id == b"\x00\x00\x00\x00":
        raise _open_error(OpenError.BAD_BGP_IDENTIFIER, "BGP identifier 0.0.0.0")
    try:
        parsed = OpenSpec.parse(body)
    except ConstructError as error:
        raise _open_error(0, f"malformed optional parameters: {error}") from None
    capabilities: list[Any] = []
    groups: list[int] = []
    for parameter in parsed.parameters:
        if parameter.type != CAPABILITIES_PARAMETER:
            raise _open_error(
                OpenError.UNSUPPORTED_OPTIONAL_PARAMETER, f"optional parameter type {parameter.type}"
            )
        group = decode_capabilities(parameter.value)
        capabilities.extend(group)
        groups.append(len(group))
    extra: dict[str, Any] = {GROUPS_FIELD: tuple(groups)} if _HAS_GROUPS else {}
    opened = Open(
        asn=fixed.asn,
        hold_time=fixed.hold_time,
        router_id=str(ipaddress.IPv4Address(fixed.router_id)),
        capabilities=tuple(capabilities),
        version=fixed.version,
        extended_params=parsed.extended,
        **extra,
    )
    four = opened.capability(FourOctetAsCap)
    if isinstance(four, FourOctetAsCap) and four.asn == 0:
        raise _open_error(OpenError.BAD_PEER_AS, "4-octet AS capability carries AS 0")
    return opened


def _capability_parameters(open_: Open, room: int) -> list[OptionalParameter]:
    """The capabilities as type-2 parameters: grouped as recorded when decoded (if the groups fit
    and still describe these capabilities), else in as few parameters as fit `room` octets each."""
    tlvs = [encode_capability(cap) for cap in open_.capabilities]
    groups: tuple[int, ...] = getattr(open_, GROUPS_FIELD, ())
    if groups and sum(groups) == len(tlvs):
        parameters, start = [], 0
        for size in groups:
            parameters.append(OptionalParameter(CAPABILITIES_PARAMETER, b"".join(tlvs[start : start + size])))
            start += size
        if all(len(p.value) <= room for p in parameters):
            return parameters
    parameters = []
    current = b""
    for tlv in tlvs:
        if current and len(current) + len(tlv) > room:
            parameters.append(OptionalParameter(CAPABILITIES_PARAMETER, current))
            current = b""
        current += tlv
    if current:
        parameters.append(OptionalParameter(CAPABILITIES_PARAMETER, current))
    return parameters


def encode_open(open_: Open) -> bytes:
    """The OPEN body. The RFC 9072 form is used when `extended_params` asks for it or when the
    parameters do not fit the classic 255 octets. Raises ValueError for values that do not fit."""
    try:
        router_id = ipaddress.IPv4Address(open_.router_id).packed
    except ValueError as error:
        raise ValueError(f"router id {open_.router_id!r}: {error}") from None
    fixed = {"version": open_.version, "asn": open_.asn, "hold_time": open_.hold_time, "router_id": router_id}
    classic = [*_capability_parameters(open_, 255), *open_.other_parameters]
    classic_len = sum(2 + len(p.value) for p in classic)
    extended = (
        open_.extended_params
        or classic_len > MAX_CLASSIC_PARAMETERS
        or any(len(p.value) > 255 for p in open_.other_parameters)
        # a classic block of exactly 255 octets starting with type 255 would read as RFC 9072
        or (classic_len == MAX_CLASSIC_PARAMETERS and classic[0].type == EXTENDED_PARAMETERS)
    )
    try:
        if extended:
            parameters = [*_capability_parameters(open_, 65535), *open_.other_parameters]
            return OpenSpec.build(
                {
                    "fixed": fixed,
                    "non_ext_len": EXTENDED_PARAMETERS,
                    "non_ext_type": EXTENDED_PARAMETERS,
                    "parameters": [{"type": p.type, "value": p.value} for p in parameters],
                }
            )
        return OpenSpec.build(
            {
                "fixed": fixed,
                "non_ext_len": classic_len,
                "non_ext_type": None,
                "parameters": [{"type": p.type, "value": p.value} for p in classic],
            }
        )
    except ConstructError as error:
        raise ValueError(f"cannot encode OPEN: {error}") from None
