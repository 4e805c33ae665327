"""OPEN (RFC 4271 section 4.2) with optional parameters in both the classic form and the RFC 9072
extended form (Non-Ext OP Len 255, Non-Ext OP Type 255, a 2-octet length, 2-octet parameter lengths):
the hand-written codec a running speaker uses.

Checks, in this order (RFC 4271 section 6.2; the version first, since a different version may mean
a different layout): version 4, else 2/1 with the 2-octet largest supported version; My AS not 0
(RFC 7607), else 2/2; hold time 0 or >= 3, else 2/6; BGP identifier not 0.0.0.0 (RFC 6286), else
2/3; then the optional parameters, whose lengths must add up exactly to the message (else 2/0,
Unspecific), of type 2 only (else 2/4), and whose capabilities must be well formed (else 2/0); a
4-octet AS capability carrying AS 0 is 2/2 (RFC 7607). Checks against configuration (peer AS,
identifier equal to ours) belong to the session.

The construct specification is `proto.bgp.open_spec`; the checks and the parameter layout both
paths share are in `proto.bgp.open_rules`. The fixed fields, and optional parameters that are well
formed, all of type 2 and carry well-formed capabilities, are decoded here; any other OPEN goes to
the specification, which raises the error and says precisely what is wrong. Encoding a field that
is out of range goes to the specification to raise too. So a speaker whose peers send well-formed
OPENs never loads construct. tests/unit/test_bgp_open.py holds both paths equal with Hypothesis on
valid and mutated input.

Encoding puts all capabilities in one parameter, as BIRD and GoBGP do (several when the classic form
runs out of room). FRR sends one capability per parameter instead; to give back a received OPEN's
exact bytes the decoder records the grouping in `Open.capability_groups` (capabilities per
parameter) and the encoder follows it.
"""

from __future__ import annotations

import struct

from proto.bgp.capabilities import encode_capability, fast_capabilities
from proto.bgp.model import AnyCapability, Open, OptionalParameter
from proto.bgp.open_rules import (
    BGP_VERSION,
    CAPABILITIES_PARAMETER,
    EXTENDED_PARAMETERS,
    FIXED_LEN,
    GROUPS_FIELD,
    check_fixed,
    finish_open,
    open_error,
    parameters_to_send,
    router_id_octets,
)

__all__ = ["BGP_VERSION", "GROUPS_FIELD", "decode_open", "encode_open", "fast_open"]

_FIXED = struct.Struct(">BHH")  # version, My AS, hold time (the BGP identifier follows)


# ---------------------------------------------------------------- decoding


def _parameter_values(body: bytes) -> tuple[list[bytes], bool] | None:
    """The values of the optional parameters and whether the RFC 9072 form was used, or None when
    they do not fill the message exactly or one is not of type 2."""
    size = len(body)
    if size <= FIXED_LEN:
        return None
    values: list[bytes] = []
    if body[FIXED_LEN] == EXTENDED_PARAMETERS and size > FIXED_LEN + 1 and body[FIXED_LEN + 1] == EXTENDED_PARAMETERS:
        if size < FIXED_LEN + 4 or FIXED_LEN + 4 + ((body[FIXED_LEN + 2] << 8) | body[FIXED_LEN + 3]) != size:
            return None
        i = FIXED_LEN + 4
        while i < size:
            start = i + 3
            if start > size:
                return None
            stop = start + ((body[i + 1] << 8) | body[i + 2])
            if stop > size or body[i] != CAPABILITIES_PARAMETER:
                return None
            values.append(body[start:stop])
            i = stop
        return values, True
    if FIXED_LEN + 1 + body[FIXED_LEN] != size:
        return None
    i = FIXED_LEN + 1
    while i < size:
        start = i + 2
        if start > size:
            return None
        stop = start + body[i + 1]
        if stop > size or body[i] != CAPABILITIES_PARAMETER:
            return None
        values.append(body[start:stop])
        i = stop
    return values, False


def fast_open(body: bytes) -> Open | None:
    """The OPEN when its fixed fields pass their checks (else MessageError) and its optional
    parameters are well formed, of type 2, with well-formed capabilities; None for any other."""
    if len(body) < FIXED_LEN:
        return None
    version, asn, hold_time = _FIXED.unpack_from(body)
    router_id = body[5:FIXED_LEN]
    check_fixed(version, asn, hold_time, router_id)
    found = _parameter_values(body)
    if found is None:
        return None
    values, extended = found
    capabilities: list[AnyCapability] = []
    groups: list[int] = []
    for value in values:
        group = fast_capabilities(value)
        if group is None:
            return None
        capabilities.extend(group)
        groups.append(len(group))
    return finish_open(asn, hold_time, router_id, capabilities, groups, extended)


def decode_open(body: bytes) -> Open:
    """The OPEN body (without the header). Raises MessageError with the NOTIFICATION to send."""
    if len(body) < FIXED_LEN:
        # Only reachable when called without the header check (which demands 29 octets in all).
        raise open_error(0, "OPEN shorter than its fixed part")
    opened = fast_open(body)
    if opened is not None:
        return opened
    from proto.bgp.open_spec import decode_open_spec

    return decode_open_spec(body)


# ---------------------------------------------------------------- encoding


def _parameters_wire(parameters: list[OptionalParameter], extended: bool) -> bytes | None:
    """The octets after the fixed fields, or None when something does not fit."""
    width, limit = (2, 65535) if extended else (1, 255)
    parts = []
    for p in parameters:
        if type(p.value) is not bytes or len(p.value) > limit or type(p.type) is not int or not 0 <= p.type <= 255:
            return None
        parts.append(bytes((p.type,)) + len(p.value).to_bytes(width, "big") + p.value)
    block = b"".join(parts)
    if len(block) > limit:
        return None
    if extended:
        return bytes((EXTENDED_PARAMETERS, EXTENDED_PARAMETERS)) + len(block).to_bytes(2, "big") + block
    return bytes((len(block),)) + block


def encode_open(open_: Open) -> bytes:
    """The OPEN body. The RFC 9072 form is used when `extended_params` asks for it or when the
    parameters do not fit the classic 255 octets. Raises ValueError for values that do not fit."""
    router_id = router_id_octets(open_)
    parameters, extended = parameters_to_send(open_, encode_capability)
    wire = _parameters_wire(parameters, extended)
    if wire is not None:
        try:
            return _FIXED.pack(open_.version, open_.asn, open_.hold_time) + router_id + wire
        except struct.error:
            pass
    from proto.bgp.open_spec import encode_open_spec

    return encode_open_spec(open_)
