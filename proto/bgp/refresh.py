"""ROUTE-REFRESH (RFC 2918) with the RFC 7313 message subtypes BoRR and EoRR.

Length errors, our reading of RFC 7313 section 5: a message whose subtype octet says BoRR or EoRR
(which exist only with enhanced route refresh) and whose body is not 4 octets gets ROUTE-REFRESH
Message Error / Invalid Message Length with the complete message as data. Any other body that is not
4 octets (a plain RFC 2918 refresh, an unknown subtype, or a body too short to hold the subtype)
gets Message Header Error / Bad Message Length with the length, as RFC 4271 section 6.1 does for
the fixed-size KEEPALIVE. A 4-octet message with an unknown subtype is decoded as is: RFC 7313 says
to ignore it, which is the session's business.

The codec is hand-written; the construct specification is `proto.bgp.message_spec.RouteRefreshSpec`
(`decode_refresh_spec`, `encode_refresh_spec`), and tests/unit/test_bgp_refresh.py holds both paths
equal. Encoding a field out of range goes to the specification to raise its error.
"""

from __future__ import annotations

import struct

from proto.bgp.constants import (
    HEADER_LEN,
    MARKER,
    ErrorCode,
    HeaderError,
    MsgType,
    RefreshSubtype,
    RouteRefreshError,
)
from proto.bgp.model import MessageError, RouteRefresh

BODY_LEN = 4
_BODY = struct.Struct(">HBB")  # AFI, subtype ("Reserved" in RFC 2918), SAFI


def _check_length(body: bytes) -> None:
    if len(body) != BODY_LEN:
        length = HEADER_LEN + len(body)
        if len(body) >= 3 and body[2] in (RefreshSubtype.BORR, RefreshSubtype.EORR):
            whole = MARKER + length.to_bytes(2, "big") + bytes((MsgType.ROUTE_REFRESH,)) + body
            raise MessageError(
                ErrorCode.ROUTE_REFRESH_MESSAGE,
                RouteRefreshError.INVALID_MESSAGE_LENGTH,
                whole,
                f"BoRR/EoRR of length {length}",
            )
        raise MessageError(
            ErrorCode.MESSAGE_HEADER,
            HeaderError.BAD_MESSAGE_LENGTH,
            length.to_bytes(2, "big"),
            f"ROUTE-REFRESH of length {length}",
        )


def decode_refresh(body: bytes) -> RouteRefresh:
    _check_length(body)
    afi, subtype, safi = _BODY.unpack(body)
    return RouteRefresh(afi, safi, subtype)


def encode_refresh(refresh: RouteRefresh) -> bytes:
    try:
        return _BODY.pack(refresh.afi, refresh.subtype, refresh.safi)
    except struct.error:
        return encode_refresh_spec(refresh)  # it raises the error


def decode_refresh_spec(body: bytes) -> RouteRefresh:
    """The same as `decode_refresh`, through the construct specification."""
    from proto.bgp.message_spec import RouteRefreshSpec

    _check_length(body)
    parsed = RouteRefreshSpec.parse(body)
    return RouteRefresh(parsed.afi, parsed.safi, parsed.subtype)


def encode_refresh_spec(refresh: RouteRefresh) -> bytes:
    """The same as `encode_refresh`, through the construct specification."""
    from proto.bgp.message_spec import RouteRefreshSpec

    return RouteRefreshSpec.build({"afi": refresh.afi, "subtype": refresh.subtype, "safi": refresh.safi})
