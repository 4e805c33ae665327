"""The construct specification of capabilities (RFC 5492) and the spec path through it.

The hand-written codec in `proto.bgp.capabilities` is what a running speaker uses; it comes here
only for a capability list it does not accept as well formed (to raise the error the specification
finds) or a capability it cannot encode. Nothing imports this module at start-up, so construct is
loaded by a malformed OPEN, not by a session. tests/unit/test_bgp_open_hand.py holds the two equal.
"""

from __future__ import annotations

from typing import Any

from construct import (
    BitsInteger,
    BitStruct,
    ConstructError,
    Flag,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int32ub,
    PascalString,
    Prefixed,
    Struct,
    Switch,
    Terminated,
    this,
)

from proto.bgp.constants import CapCode, ErrorCode
from proto.bgp.model import (
    AddPathCap,
    AnyCapability,
    Capability,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    ExtendedNextHopCap,
    FourOctetAsCap,
    FqdnCap,
    GracefulRestartCap,
    MessageError,
    MultiprotocolCap,
    RouteRefreshCap,
)


def _entries(entry: Any) -> Any:
    # GreedyRange stops quietly at a truncated entry: Terminated turns that into an error.
    return FocusedSeq("entries", "entries" / GreedyRange(entry), Terminated)


Empty = Terminated

MultiprotocolValue = Struct("afi" / Int16ub, "reserved" / Int8ub, "safi" / Int8ub, Terminated)

ExtendedNextHopValue = _entries(Struct("afi" / Int16ub, "safi" / Int16ub, "nexthop_afi" / Int16ub))

GracefulRestartValue = Struct(
    "header"
    / BitStruct(
        "restarting" / Flag,
        "notification" / Flag,
        "reserved" / BitsInteger(2),
        "restart_time" / BitsInteger(12),
    ),
    "families"
    / GreedyRange(
        Struct(
            "afi" / Int16ub,
            "safi" / Int8ub,
            "flags" / BitStruct("forwarding" / Flag, "reserved" / BitsInteger(7)),
        )
    ),
    Terminated,
)

FourOctetAsValue = Struct("asn" / Int32ub, Terminated)

AddPathValue = _entries(Struct("afi" / Int16ub, "safi" / Int8ub, "mode" / Int8ub))

# Names are kept as octets here and decoded in Python, so a name that is not UTF-8 survives a round
# trip (surrogateescape) instead of ending the session over a cosmetic field.
FqdnValue = Struct(
    "hostname" / PascalString(Int8ub, "latin-1"),
    "domain" / PascalString(Int8ub, "latin-1"),
    Terminated,
)

VALUE_SPECS: dict[int, Any] = {
    CapCode.MULTIPROTOCOL: MultiprotocolValue,
    CapCode.ROUTE_REFRESH: Empty,
    CapCode.EXTENDED_NEXT_HOP: ExtendedNextHopValue,
    CapCode.EXTENDED_MESSAGE: Empty,
    CapCode.GRACEFUL_RESTART: GracefulRestartValue,
    CapCode.FOUR_OCTET_AS: FourOctetAsValue,
    CapCode.ADD_PATH: AddPathValue,
    CapCode.ENHANCED_ROUTE_REFRESH: Empty,
    CapCode.FQDN: FqdnValue,
}

CapabilitySpec = Struct(
    "code" / Int8ub,
    "value" / Prefixed(Int8ub, Switch(this.code, VALUE_SPECS, default=GreedyBytes)),
)

RawCapability = Struct("code" / Int8ub, "value" / Prefixed(Int8ub, GreedyBytes))

CapabilityList = _entries(CapabilitySpec)


def _name(raw: str) -> str:
    return raw.encode("latin-1").decode("utf-8", errors="surrogateescape")


def _to_model(code: int, value: Any) -> AnyCapability:
    if code == CapCode.MULTIPROTOCOL:
        return MultiprotocolCap(value.afi, value.safi)
    if code == CapCode.ROUTE_REFRESH:
        return RouteRefreshCap()
    if code == CapCode.EXTENDED_NEXT_HOP:
        return ExtendedNextHopCap(tuple((e.afi, e.safi, e.nexthop_afi) for e in value))
    if code == CapCode.EXTENDED_MESSAGE:
        return ExtendedMessageCap()
    if code == CapCode.GRACEFUL_RESTART:
        return GracefulRestartCap(
            restart_time=value.header.restart_time,
            restarting=value.header.restarting,
            notification=value.header.notification,
            families=tuple((f.afi, f.safi, f.flags.forwarding) for f in value.families),
        )
    if code == CapCode.FOUR_OCTET_AS:
        return FourOctetAsCap(value.asn)
    if code == CapCode.ADD_PATH:
        return AddPathCap(tuple((e.afi, e.safi, e.mode) for e in value))
    if code == CapCode.ENHANCED_ROUTE_REFRESH:
        return EnhancedRouteRefreshCap()
    if code == CapCode.FQDN:
        return FqdnCap(_name(value.hostname), _name(value.domain))
    return Capability(code, value)


def decode_capabilities_spec(value: bytes) -> tuple[AnyCapability, ...]:
    """The capabilities in the value of one optional parameter of type 2."""
    try:
        parsed = CapabilityList.parse(value)
    except ConstructError as error:
        raise MessageError(ErrorCode.OPEN_MESSAGE, 0, reason=f"malformed capability: {error}") from None
    return tuple(_to_model(cap.code, cap.value) for cap in parsed)


def _octets(name: str) -> str:
    return name.encode("utf-8", errors="surrogateescape").decode("latin-1")


def _to_wire(cap: AnyCapability) -> tuple[int, Any]:
    if isinstance(cap, MultiprotocolCap):
        return CapCode.MULTIPROTOCOL, {"afi": cap.afi, "reserved": 0, "safi": cap.safi}
    if isinstance(cap, RouteRefreshCap):
        return CapCode.ROUTE_REFRESH, None
    if isinstance(cap, ExtendedNextHopCap):
        return CapCode.EXTENDED_NEXT_HOP, [{"afi": a, "safi": s, "nexthop_afi": n} for a, s, n in cap.entries]
    if isinstance(cap, ExtendedMessageCap):
        return CapCode.EXTENDED_MESSAGE, None
    if isinstance(cap, GracefulRestartCap):
        return CapCode.GRACEFUL_RESTART, {
            "header": {
                "restarting": cap.restarting,
                "notification": cap.notification,
                "reserved": 0,
                "restart_time": cap.restart_time,
            },
            "families": [
                {"afi": a, "safi": s, "flags": {"forwarding": f, "reserved": 0}} for a, s, f in cap.families
            ],
        }
    if isinstance(cap, FourOctetAsCap):
        return CapCode.FOUR_OCTET_AS, {"asn": cap.asn}
    if isinstance(cap, AddPathCap):
        return CapCode.ADD_PATH, [{"afi": a, "safi": s, "mode": m} for a, s, m in cap.families]
    if isinstance(cap, EnhancedRouteRefreshCap):
        return CapCode.ENHANCED_ROUTE_REFRESH, None
    if isinstance(cap, FqdnCap):
        return CapCode.FQDN, {"hostname": _octets(cap.hostname), "domain": _octets(cap.domain)}
    if isinstance(cap, Capability):
        return cap.code, cap.value
    raise TypeError(f"not a capability: {cap!r}")


def encode_capability_spec(cap: AnyCapability) -> bytes:
    """One capability TLV. Raises ValueError when it does not fit its fields."""
    code, value = _to_wire(cap)
    try:
        raw = value if isinstance(cap, Capability) else VALUE_SPECS[code].build(value)
        return RawCapability.build({"code": code, "value": raw})
    except ConstructError as error:
        raise ValueError(f"cannot encode {cap!r}: {error}") from None
