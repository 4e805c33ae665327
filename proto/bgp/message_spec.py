"""The construct specification of the message header (RFC 4271 section 4.1) and of the bodies with
a fixed layout: NOTIFICATION (section 4.5), ROUTE-REFRESH (RFC 2918, RFC 7313) and the three fields
of an UPDATE (section 4.3; what the attribute field holds is `proto.bgp.attr_spec`).

A running speaker does not use these: the framer and `codec.decode_message` check headers by hand
and come here only for a header they refuse (so each header error comes from the specification),
and NOTIFICATION, ROUTE-REFRESH and UPDATE are decoded and encoded by hand. This module is imported
on first use; the tests hold the hand-written paths equal to it (tests/unit/test_bgp_header.py,
test_bgp_notification.py, test_bgp_refresh.py, test_bgp_update.py).
"""

from __future__ import annotations

from construct import Bytes, GreedyBytes, Int8ub, Int16ub, Prefixed, Struct

Header = Struct(
    "marker" / Bytes(16),
    "length" / Int16ub,
    "type" / Int8ub,
)

NotificationSpec = Struct(
    "code" / Int8ub,
    "subcode" / Int8ub,
    "data" / GreedyBytes,
)

RouteRefreshSpec = Struct(
    "afi" / Int16ub,
    "subtype" / Int8ub,  # "Reserved" in RFC 2918
    "safi" / Int8ub,
)

UpdateBody = Struct(
    "withdrawn" / Prefixed(Int16ub, GreedyBytes),
    "attributes" / Prefixed(Int16ub, GreedyBytes),
    "nlri" / GreedyBytes,
)
