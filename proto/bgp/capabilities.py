"""Capabilities (RFC 5492) carried in OPEN optional parameter 2: the hand-written codec.

Known codes: multiprotocol (RFC 4760), route refresh (RFC 2918), extended next hop (RFC 8950),
extended message (RFC 8654), graceful restart (RFC 4724, N bit RFC 8538), 4-octet AS (RFC 6793),
ADD-PATH (RFC 7911), enhanced route refresh (RFC 7313), FQDN (draft-walton-bgp-hostname-capability).
Any other code is kept opaque. A known capability whose value does not have its defined shape is a
malformed OPEN: OPEN Message Error / Unspecific (2/0), as RFC 5492 names no subcode for it.

The construct specification is `proto.bgp.capability_spec`. This module decodes and encodes what
is well formed without it; a list it does not accept, or a capability with a field out of range,
goes to the specification, which raises the error (and says precisely what is wrong). So a speaker
whose peers send well-formed OPENs never loads construct. tests/unit/test_bgp_open.py holds both
paths equal with Hypothesis, on valid and mutated input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from proto.bgp.constants import CapCode
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
    MultiprotocolCap,
    RouteRefreshCap,
)

_ENTRY_HHH = struct.Struct(">HHH")
_ENTRY_HBB = struct.Struct(">HBB")
_HB = struct.Struct(">HB")
_U32 = struct.Struct(">I")

# ---------------------------------------------------------------- decoding
# Each value decoder returns the model value, or None when the value does not have its shape.


def _multiprotocol(v: bytes) -> AnyCapability | None:
    if len(v) != 4:
        return None
    return MultiprotocolCap((v[0] << 8) | v[1], v[3])  # v[2] is reserved


def _empty(kind: type) -> Callable[[bytes], AnyCapability | None]:
    def decode(v: bytes) -> AnyCapability | None:
        return None if v else kind()

    return decode


def _extended_next_hop(v: bytes) -> AnyCapability | None:
    if len(v) % 6:
        return None
    return ExtendedNextHopCap(tuple(_ENTRY_HHH.iter_unpack(v)))


def _graceful_restart(v: bytes) -> AnyCapability | None:
    if len(v) < 2 or (len(v) - 2) % 4:
        return None
    return GracefulRestartCap(
        restart_time=((v[0] & 0x0F) << 8) | v[1],
        restarting=bool(v[0] & 0x80),
        notification=bool(v[0] & 0x40),
        families=tuple(
            ((v[i] << 8) | v[i + 1], v[i + 2], bool(v[i + 3] & 0x80)) for i in range(2, len(v), 4)
        ),
    )


def _four_octet_as(v: bytes) -> AnyCapability | None:
    if len(v) != 4:
        return None
    return FourOctetAsCap(int.from_bytes(v, "big"))


def _add_path(v: bytes) -> AnyCapability | None:
    if len(v) % 4:
        return None
    return AddPathCap(tuple(_ENTRY_HBB.iter_unpack(v)))


def _name(raw: bytes) -> str:
    # kept as octets on the wire: a name that is not UTF-8 survives a round trip (surrogateescape)
    return raw.decode("utf-8", errors="surrogateescape")


def _fqdn(v: bytes) -> AnyCapability | None:
    if not v:
        return None
    host_end = 1 + v[0]
    if host_end >= len(v) or host_end + 1 + v[host_end] != len(v):
        return None
    return FqdnCap(_name(v[1:host_end]), _name(v[host_end + 1 :]))


_DECODERS: dict[int, Callable[[bytes], AnyCapability | None]] = {
    CapCode.MULTIPROTOCOL: _multiprotocol,
    CapCode.ROUTE_REFRESH: _empty(RouteRefreshCap),
    CapCode.EXTENDED_NEXT_HOP: _extended_next_hop,
    CapCode.EXTENDED_MESSAGE: _empty(ExtendedMessageCap),
    CapCode.GRACEFUL_RESTART: _graceful_restart,
    CapCode.FOUR_OCTET_AS: _four_octet_as,
    CapCode.ADD_PATH: _add_path,
    CapCode.ENHANCED_ROUTE_REFRESH: _empty(EnhancedRouteRefreshCap),
    CapCode.FQDN: _fqdn,
}
_BY_CODE = tuple(_DECODERS.get(code) for code in range(256))


def fast_capabilities(value: bytes) -> tuple[AnyCapability, ...] | None:
    """The capabilities in one type-2 parameter's value, or None when the list is not well formed
    (the specification then says how)."""
    out: list[AnyCapability] = []
    end = len(value)
    i = 0
    while i < end:
        start = i + 2
        if start > end:
            return None
        stop = start + value[i + 1]
        if stop > end:
            return None
        decoder = _BY_CODE[value[i]]
        if decoder is None:
            out.append(Capability(value[i], value[start:stop]))
        else:
            cap = decoder(value[start:stop])
            if cap is None:
                return None
            out.append(cap)
        i = stop
    return tuple(out)


def decode_capabilities(value: bytes) -> tuple[AnyCapability, ...]:
    """The capabilities in the value of one optional parameter of type 2. Raises MessageError
    (2/0) for a malformed list."""
    found = fast_capabilities(value)
    if found is not None:
        return found
    from proto.bgp.capability_spec import decode_capabilities_spec

    return decode_capabilities_spec(value)


# ---------------------------------------------------------------- encoding


def _octets(name: str) -> bytes:
    return name.encode("utf-8", errors="surrogateescape")


def _value(cap: AnyCapability) -> tuple[int, bytes] | None:
    """(code, value octets), or None when a field does not fit (the specification then raises)."""
    try:
        if isinstance(cap, MultiprotocolCap):
            return CapCode.MULTIPROTOCOL, _ENTRY_HBB.pack(cap.afi, 0, cap.safi)
        if isinstance(cap, RouteRefreshCap):
            return CapCode.ROUTE_REFRESH, b""
        if isinstance(cap, ExtendedNextHopCap):
            return CapCode.EXTENDED_NEXT_HOP, b"".join(_ENTRY_HHH.pack(*entry) for entry in cap.entries)
        if isinstance(cap, ExtendedMessageCap):
            return CapCode.EXTENDED_MESSAGE, b""
        if isinstance(cap, GracefulRestartCap):
            if not 0 <= cap.restart_time <= 0x0FFF:
                return None
            head = (0x8000 if cap.restarting else 0) | (0x4000 if cap.notification else 0) | cap.restart_time
            families = b"".join(
                _HB.pack(afi, safi) + (b"\x80" if forwarding else b"\x00") for afi, safi, forwarding in cap.families
            )
            return CapCode.GRACEFUL_RESTART, head.to_bytes(2, "big") + families
        if isinstance(cap, FourOctetAsCap):
            return CapCode.FOUR_OCTET_AS, _U32.pack(cap.asn)
        if isinstance(cap, AddPathCap):
            return CapCode.ADD_PATH, b"".join(_ENTRY_HBB.pack(*entry) for entry in cap.families)
        if isinstance(cap, EnhancedRouteRefreshCap):
            return CapCode.ENHANCED_ROUTE_REFRESH, b""
        if isinstance(cap, FqdnCap):
            host, domain = _octets(cap.hostname), _octets(cap.domain)
            if len(host) > 255 or len(domain) > 255:
                return None
            return CapCode.FQDN, bytes((len(host),)) + host + bytes((len(domain),)) + domain
        if isinstance(cap, Capability):
            return (cap.code, cap.value) if type(cap.value) is bytes else None
    except (struct.error, TypeError, OverflowError):
        return None
    raise TypeError(f"not a capability: {cap!r}")


def encode_capability(cap: AnyCapability) -> bytes:
    """One capability TLV. Raises ValueError when it does not fit its fields."""
    found = _value(cap)
    if found is not None and len(found[1]) <= 255:
        try:
            return bytes((found[0], len(found[1]))) + found[1]
        except (ValueError, TypeError):  # a code that is not an octet
            pass
    from proto.bgp.capability_spec import encode_capability_spec

    return encode_capability_spec(cap)
