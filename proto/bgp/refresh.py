"""ROUTE-REFRESH (RFC 2918) with the RFC 7313 message subtypes BoRR and EoRR.

Length errors, our reading of RFC 7313 section 5: a message whose subtype octet says BoRR or EoRR
(which exist only with enhanced route refresh) and whose body is not 4 octets gets ROUTE-REFRESH
Message Error / Invalid Message Length with the complete message as data. Any other body that is not
4 octets (a plain RFC 2918 refresh, an unknown subtype, or a body too short to hold the subtype)
gets Message Header Error / Bad Message Length with the length, as RFC 4271 section 6.1 does for
the fixed-size KEEPALIVE. A 4-octet message with an unknown subtype is decoded as is: RFC 7313 says
to ignore it, which is the session's business.
"""

from __future__ import annotations

from construct import Int8ub, Int16ub, Struct

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

RouteRefreshSpec = Struct(
    "afi" / Int16ub,
    "subtype" / Int8ub,  # "Reserved" in RFC 2918
    "safi" / Int8ub,
)

BODY_LEN = 4


def decode_refresh(body: bytes) -> RouteRefresh:
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
    parsed = RouteRefreshSpec.parse(body)
    return RouteRefresh(parsed.afi, parsed.safi, parsed.subtype)


def encode_refresh(refresh: RouteRefresh) -> bytes:
    return RouteRefreshSpec.build({"afi": refresh.afi, "subtype": refresh.subtype, "safi": refresh.safi})
