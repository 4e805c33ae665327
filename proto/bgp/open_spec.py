"""The construct specification of OPEN (RFC 4271 section 4.2, RFC 9072 extended optional
parameters) and the spec path through it.

The hand-written codec in `proto.bgp.open` is what a running speaker uses; it comes here only for an
OPEN whose optional parameters it does not accept as well formed (to raise the error the
specification finds) or one it cannot encode. The checks of the fixed fields and the 4-octet AS,
and the layout of capabilities in parameters, are shared with it (`proto.bgp.open_rules`).
tests/unit/test_bgp_open.py holds both paths equal with Hypothesis, on valid and mutated input.
"""

from __future__ import annotations

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

from proto.bgp.capability_spec import decode_capabilities_spec, encode_capability_spec
from proto.bgp.constants import OpenError
from proto.bgp.model import Open
from proto.bgp.open_rules import (
    CAPABILITIES_PARAMETER,
    EXTENDED_PARAMETERS,
    FIXED_LEN,
    check_fixed,
    finish_open,
    open_error,
    parameters_to_send,
    router_id_octets,
)

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

if OpenFixed.sizeof() != FIXED_LEN:
    raise ImportError("the OPEN specification and the hand-written codec disagree on the fixed part")


def decode_open_spec(body: bytes) -> Open:
    """The OPEN body through the specification (same result and errors as `open.decode_open`)."""
    if len(body) < OpenFixed.sizeof():
        # Only reachable when called without the header check (which demands 29 octets in all).
        raise open_error(0, "OPEN shorter than its fixed part")
    fixed = OpenFixed.parse(body)
    check_fixed(fixed.version, fixed.asn, fixed.hold_time, fixed.router_id)
    try:
        parsed = OpenSpec.parse(body)
    except ConstructError as error:
        raise open_error(0, f"malformed optional parameters: {error}") from None
    capabilities: list[Any] = []
    groups: list[int] = []
    for parameter in parsed.parameters:
        if parameter.type != CAPABILITIES_PARAMETER:
            raise open_error(
                OpenError.UNSUPPORTED_OPTIONAL_PARAMETER, f"optional parameter type {parameter.type}"
            )
        group = decode_capabilities_spec(parameter.value)
        capabilities.extend(group)
        groups.append(len(group))
    return finish_open(fixed.asn, fixed.hold_time, fixed.router_id, capabilities, groups, parsed.extended)


def encode_open_spec(open_: Open) -> bytes:
    """The OPEN body built with the specification (same octets and errors as `open.encode_open`)."""
    router_id = router_id_octets(open_)
    fixed = {"version": open_.version, "asn": open_.asn, "hold_time": open_.hold_time, "router_id": router_id}
    parameters, extended = parameters_to_send(open_, encode_capability_spec)
    try:
        return OpenSpec.build(
            {
                "fixed": fixed,
                "non_ext_len": EXTENDED_PARAMETERS if extended else sum(2 + len(p.value) for p in parameters),
                "non_ext_type": EXTENDED_PARAMETERS if extended else None,
                "parameters": [{"type": p.type, "value": p.value} for p in parameters],
            }
        )
    except ConstructError as error:
        raise ValueError(f"cannot encode OPEN: {error}") from None
