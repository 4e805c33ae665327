"""Whole messages in and out: header check, then dispatch on the message type.

KEEPALIVE and UPDATE are the hot cases and are tested first; OPEN, NOTIFICATION and ROUTE-REFRESH
go through their construct specifications. The UPDATE codec lives in `proto.bgp.update`.
"""

from __future__ import annotations

from proto.bgp.constants import (
    HEADER_LEN,
    MARKER,
    MAX_EXTENDED_MESSAGE_LEN,
    MAX_MESSAGE_LEN,
    ErrorCode,
    HeaderError,
    MsgType,
)
from proto.bgp.header import MIN_LENGTH, length_table, parse_header
from proto.bgp.model import (
    Keepalive,
    Message,
    MessageError,
    Negotiated,
    Notification,
    Open,
    RouteRefresh,
    Update,
)
from proto.bgp.notification import decode_notification, encode_notification
from proto.bgp.open import decode_open, encode_open
from proto.bgp.refresh import decode_refresh, encode_refresh
from proto.bgp.update import decode_update, encode_update

KEEPALIVE = Keepalive()
KEEPALIVE_BYTES = MARKER + HEADER_LEN.to_bytes(2, "big") + bytes((MsgType.KEEPALIVE,))

_TYPE_OCTET = [bytes((t,)) for t in range(256)]
_UPDATE_OCTET = _TYPE_OCTET[MsgType.UPDATE]
# plain ints: comparing against an IntEnum member costs an attribute lookup on every message
_UPDATE = int(MsgType.UPDATE)
_KEEPALIVE = int(MsgType.KEEPALIVE)

def _bad_length(length: int) -> MessageError:
    return MessageError(
        ErrorCode.MESSAGE_HEADER,
        HeaderError.BAD_MESSAGE_LENGTH,
        min(length, 0xFFFF).to_bytes(2, "big"),
        f"bad message length {length}",
    )


def decode_message_body(msg_type: int, body: bytes, negotiated: Negotiated) -> Message:
    """One message from its type and body, as the framer delivers them."""
    if msg_type == _UPDATE:
        if len(body) < 4:
            raise _bad_length(HEADER_LEN + len(body))
        return decode_update(body, negotiated)
    if msg_type == _KEEPALIVE:
        if body:
            raise _bad_length(HEADER_LEN + len(body))
        return KEEPALIVE
    low = MIN_LENGTH.get(msg_type)
    if low is None:
        raise MessageError(
            ErrorCode.MESSAGE_HEADER, HeaderError.BAD_MESSAGE_TYPE, bytes((msg_type & 0xFF,)), "bad type"
        )
    if HEADER_LEN + len(body) < low:
        raise _bad_length(HEADER_LEN + len(body))
    if msg_type == MsgType.OPEN:
        return decode_open(body)
    if msg_type == MsgType.NOTIFICATION:
        return decode_notification(body)
    return decode_refresh(body)


_TABLES = (length_table(MAX_MESSAGE_LEN), length_table(MAX_EXTENDED_MESSAGE_LEN))


def decode_message(data: bytes | bytearray | memoryview, negotiated: Negotiated) -> Message:
    """One whole message, header included. Raises MessageError carrying the NOTIFICATION to send."""
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size >= HEADER_LEN:
        # the fast header check of header.fast_check, inlined: this runs once per message
        table = _TABLES[negotiated.extended_message]
        length = (data[16] << 8) | data[17]
        msg_type = data[18]
        if (
            length == size
            and data.startswith(MARKER)
            and table.low[msg_type] <= length <= table.high[msg_type]
        ):
            return decode_message_body(msg_type, data[HEADER_LEN:], negotiated)
    return _decode_message_slow(data, negotiated)


def _decode_message_slow(data: bytes, negotiated: Negotiated) -> Message:
    """Anything the fast check refused: the specification finds the error (or, for a good header,
    decodes as usual)."""
    size = len(data)
    if size < HEADER_LEN:
        if size >= 16 and not data.startswith(MARKER):
            raise MessageError(
                ErrorCode.MESSAGE_HEADER, HeaderError.CONNECTION_NOT_SYNCHRONIZED, reason="bad marker"
            )
        raise _bad_length((data[16] << 8) | data[17] if size >= 18 else size)
    length, msg_type = parse_header(data[:HEADER_LEN], negotiated.max_message_len)
    if length != size:
        # the header claims a different size than we were given: truncated or trailing octets
        raise _bad_length(length)
    return decode_message_body(msg_type, data[HEADER_LEN:], negotiated)


def encode_message_body(message: Message, negotiated: Negotiated) -> tuple[int, bytes]:
    cls = type(message)
    if cls is Update:
        return MsgType.UPDATE, encode_update(message, negotiated)  # type: ignore[arg-type]
    if cls is Keepalive:
        return MsgType.KEEPALIVE, b""
    if cls is Open:
        return MsgType.OPEN, encode_open(message)  # type: ignore[arg-type]
    if cls is Notification:
        return MsgType.NOTIFICATION, encode_notification(message)  # type: ignore[arg-type]
    if cls is RouteRefresh:
        return MsgType.ROUTE_REFRESH, encode_refresh(message)  # type: ignore[arg-type]
    raise TypeError(f"not a BGP message: {message!r}")


def encode_message(message: Message, negotiated: Negotiated) -> bytes:
    """The whole message, header included. A NOTIFICATION whose data does not fit is cut to fit
    (RFC 8654 section 5 allows it); anything else too long raises ValueError."""
    cls = type(message)
    if cls is Update:
        # the hot case: encode_update has already held the body to the negotiated size
        body = encode_update(message, negotiated)  # type: ignore[arg-type]
        return MARKER + (HEADER_LEN + len(body)).to_bytes(2, "big") + _UPDATE_OCTET + body
    if cls is Keepalive:
        return KEEPALIVE_BYTES
    msg_type, body = encode_message_body(message, negotiated)
    limit = MAX_MESSAGE_LEN if msg_type == MsgType.OPEN else negotiated.max_message_len
    length = HEADER_LEN + len(body)
    if length > limit:
        if msg_type != MsgType.NOTIFICATION:
            raise ValueError(f"message of {length} octets exceeds the {limit}-octet limit")
        body = body[: limit - HEADER_LEN]
        length = limit
    return MARKER + length.to_bytes(2, "big") + _TYPE_OCTET[msg_type] + body
