"""What the two OPEN codecs share (the hand-written one in `proto.bgp.open`, the construct
specification in `proto.bgp.open_spec`): the numbers of the format, the checks RFC 4271 section 6.2
gives the fixed fields (and RFC 7607 the 4-octet AS), and how capabilities are laid out in optional
parameters when encoding. Both paths call these, so they can differ only in how they read and
write octets, which is what the tests compare.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

from proto.bgp.constants import ErrorCode, OpenError
from proto.bgp.model import AnyCapability, FourOctetAsCap, MessageError, Open, OptionalParameter

BGP_VERSION = 4
CAPABILITIES_PARAMETER = 2
EXTENDED_PARAMETERS = 255  # RFC 9072: Non-Ext OP Len and Non-Ext OP Type both 255
MAX_CLASSIC_PARAMETERS = 255
FIXED_LEN = 9  # version, My AS, hold time, BGP identifier

GROUPS_FIELD = "capability_groups"  # model.Open's record of capabilities per parameter


def open_error(subcode: int, reason: str, data: bytes = b"") -> MessageError:
    return MessageError(ErrorCode.OPEN_MESSAGE, subcode, data, reason)


def check_fixed(version: int, asn: int, hold_time: int, router_id: bytes) -> None:
    """The checks of the fixed fields, in RFC 4271's order (the version first, since a different
    version may mean a different layout)."""
    if version != BGP_VERSION:
        raise open_error(OpenError.UNSUPPORTED_VERSION_NUMBER, f"version {version}", BGP_VERSION.to_bytes(2, "big"))
    if asn == 0:
        raise open_error(OpenError.BAD_PEER_AS, "My Autonomous System is 0")
    if hold_time in (1, 2):
        raise open_error(OpenError.UNACCEPTABLE_HOLD_TIME, f"hold time {hold_time}")
    if router_id == b"\x00\x00\x00\x00":
        raise open_error(OpenError.BAD_BGP_IDENTIFIER, "BGP identifier 0.0.0.0")


def finish_open(
    asn: int,
    hold_time: int,
    router_id: bytes,
    capabilities: Sequence[AnyCapability],
    groups: Sequence[int],
    extended: bool,
) -> Open:
    """The decoded OPEN, after the one check that needs the capabilities."""
    opened = Open(
        asn=asn,
        hold_time=hold_time,
        router_id=socket.inet_ntoa(router_id),
        capabilities=tuple(capabilities),
        version=BGP_VERSION,
        extended_params=extended,
        capability_groups=tuple(groups),
    )
    four = opened.capability(FourOctetAsCap)
    if isinstance(four, FourOctetAsCap) and four.asn == 0:
        raise open_error(OpenError.BAD_PEER_AS, "4-octet AS capability carries AS 0")
    return opened


def capability_parameters(open_: Open, room: int, encode: Callable[[Any], bytes]) -> list[OptionalParameter]:
    """The capabilities as type-2 parameters: grouped as recorded when decoded (if the groups fit
    and still describe these capabilities), else in as few parameters as fit `room` octets each."""
    tlvs = [encode(cap) for cap in open_.capabilities]
    groups: tuple[int, ...] = open_.capability_groups
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


def parameters_to_send(open_: Open, encode: Callable[[Any], bytes]) -> tuple[list[OptionalParameter], bool]:
    """The optional parameters to encode and whether in the RFC 9072 form: that form when
    `extended_params` asks for it or when the parameters do not fit the classic 255 octets."""
    classic = [*capability_parameters(open_, 255, encode), *open_.other_parameters]
    classic_len = sum(2 + len(p.value) for p in classic)
    extended = (
        open_.extended_params
        or classic_len > MAX_CLASSIC_PARAMETERS
        or any(len(p.value) > 255 for p in open_.other_parameters)
        # a classic block of exactly 255 octets starting with type 255 would read as RFC 9072
        or (classic_len == MAX_CLASSIC_PARAMETERS and classic[0].type == EXTENDED_PARAMETERS)
    )
    if not extended:
        return classic, False
    return [*capability_parameters(open_, 65535, encode), *open_.other_parameters], True


def router_id_octets(open_: Open) -> bytes:
    """The BGP identifier to send, checked (ValueError when it is not a dotted quad)."""
    try:
        return ipaddress.IPv4Address(open_.router_id).packed
    except ValueError as error:
        raise ValueError(f"router id {open_.router_id!r}: {error}") from None
