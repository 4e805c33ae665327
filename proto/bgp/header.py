"""The 19-octet message header (RFC 4271 section 4.1) and its checks (section 6.1).

The construct specification is `proto.bgp.message_spec.Header`; `check_header` turns a parsed
header into the NOTIFICATION RFC 4271 prescribes. The hot path is `fast_check` (a `LengthTable`
lookup), written out inline in the framer and in `decode_message`; they call `parse_header` only
when it refuses a header, so every header error comes from the specification, and construct is
loaded by the first bad header, not before. tests/unit/test_bgp_header.py keeps all three in
agreement with the specification.
"""

from __future__ import annotations

from proto.bgp.constants import (
    HEADER_LEN,
    MARKER,
    MAX_MESSAGE_LEN,
    ErrorCode,
    HeaderError,
    MsgType,
)
from proto.bgp.model import MessageError

# Smallest legal total length per type (RFC 4271 section 4, RFC 2918). ROUTE-REFRESH is only held to
# the header size here: RFC 7313 wants its own error (7/1 with the whole message) for a BoRR/EoRR of
# the wrong length, which needs the subtype octet, so refresh.py judges its length.
MIN_LENGTH: dict[int, int] = {
    MsgType.OPEN: 29,
    MsgType.UPDATE: 23,
    MsgType.NOTIFICATION: 21,
    MsgType.KEEPALIVE: HEADER_LEN,
    MsgType.ROUTE_REFRESH: HEADER_LEN,
}

# Largest legal total length for types that RFC 8654 section 4 leaves out of the extended size.
FIXED_MAX_LENGTH: dict[int, int] = {
    MsgType.OPEN: MAX_MESSAGE_LEN,
    MsgType.KEEPALIVE: HEADER_LEN,
}


def _bad_length(length: int) -> MessageError:
    return MessageError(
        ErrorCode.MESSAGE_HEADER,
        HeaderError.BAD_MESSAGE_LENGTH,
        length.to_bytes(2, "big"),
        f"bad message length {length}",
    )


def check_header(marker: bytes, length: int, msg_type: int, max_len: int) -> None:
    """Raise the MessageError RFC 4271 section 6.1 prescribes, in the order marker, length, type,
    then the length rules of the type."""
    if marker != MARKER:
        raise MessageError(
            ErrorCode.MESSAGE_HEADER,
            HeaderError.CONNECTION_NOT_SYNCHRONIZED,
            reason="marker is not all ones",
        )
    if length < HEADER_LEN or length > max_len:
        raise _bad_length(length)
    if msg_type not in MIN_LENGTH:
        raise MessageError(
            ErrorCode.MESSAGE_HEADER,
            HeaderError.BAD_MESSAGE_TYPE,
            bytes((msg_type,)),
            f"bad message type {msg_type}",
        )
    if length < MIN_LENGTH[msg_type] or length > FIXED_MAX_LENGTH.get(msg_type, max_len):
        raise _bad_length(length)


def parse_header(data: bytes, max_len: int) -> tuple[int, int]:
    """The specification: parse 19 octets with construct, check them, return (length, type)."""
    if len(data) < HEADER_LEN:
        raise ValueError("a header needs 19 octets")
    from proto.bgp.message_spec import Header

    parsed = Header.parse(data[:HEADER_LEN])
    check_header(parsed.marker, parsed.length, parsed.type, max_len)
    return parsed.length, parsed.type


def build_header(length: int, msg_type: int) -> bytes:
    from proto.bgp.message_spec import Header

    return Header.build({"marker": MARKER, "length": length, "type": msg_type})


class LengthTable:
    """Per-type [low, high] total-length bounds for one maximum message size, as two 256-entry
    lists: the fast path checks a header with two index operations and one chained comparison.
    Unknown types get an empty range, so every bad header falls through to `parse_header`."""

    __slots__ = ("high", "low", "max_len")

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.low = [1 << 20] * 256
        self.high = [0] * 256
        for msg_type, low in MIN_LENGTH.items():
            self.low[msg_type] = low
            self.high[msg_type] = min(max_len, FIXED_MAX_LENGTH.get(msg_type, max_len))


_TABLES: dict[int, LengthTable] = {}


def length_table(max_len: int) -> LengthTable:
    table = _TABLES.get(max_len)
    if table is None:
        table = _TABLES[max_len] = LengthTable(max_len)
    return table


def fast_check(buf: bytes, pos: int, table: LengthTable) -> tuple[int, int] | None:
    """The hand-written check: (length, type) of a good header at buf[pos:pos+19], else None."""
    length = (buf[pos + 16] << 8) | buf[pos + 17]
    msg_type = buf[pos + 18]
    if buf.startswith(MARKER, pos) and table.low[msg_type] <= length <= table.high[msg_type]:
        return length, msg_type
    return None
