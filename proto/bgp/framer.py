"""Split a BGP byte stream into whole messages.

The loop is the hot path of every session, so the header check is written out inline (the same
test as `header.fast_check`, property-tested against the construct specification) and only a header
the fast check refuses goes to `header.parse_header`, which raises the NOTIFICATION to send.
A header is judged as soon as its 19 octets are in, before the rest of the message arrives.
"""

from __future__ import annotations

from proto.bgp.constants import HEADER_LEN, MARKER, MAX_MESSAGE_LEN
from proto.bgp.header import length_table, parse_header
from proto.bgp.model import MessageError, Negotiated


class Framer:
    """Feed bytes, get (message type, body) pairs; the body excludes the 19-octet header.

    A bad header raises MessageError from the `feed` that brings it in, and whole messages that
    came before it in the same call are not returned: the session is ending with that NOTIFICATION
    anyway. Once broken the framer stays broken: every later `feed` raises the same error, because
    nothing after a bad header can be trusted."""

    __slots__ = ("_error", "_have", "_need", "_parts", "_table")

    def __init__(self, max_len: int = MAX_MESSAGE_LEN) -> None:
        # Octets of an incomplete message wait in `_parts` and are joined only once `_need` of them
        # are in, so a large message arriving in many small reads is copied once, not once a read.
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 0
        self._error: MessageError | None = None
        self._table = length_table(max_len)

    @property
    def max_len(self) -> int:
        return self._table.max_len

    @max_len.setter
    def max_len(self, value: int) -> None:
        self._table = length_table(value)

    def negotiated(self, negotiated: Negotiated) -> None:
        """Apply the message size agreed in the OPENs (RFC 8654) to everything fed from now on."""
        self.max_len = negotiated.max_message_len

    @property
    def pending(self) -> int:
        """Octets held back waiting for the rest of a message."""
        return self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        if self._error is not None:
            raise self._error
        if self._parts:
            self._parts.append(bytes(data))
            self._have += len(data)
            if self._have < self._need:
                return []
            buf = b"".join(self._parts)
        else:
            buf = bytes(data)
        end = len(buf)
        table = self._table
        low = table.low
        high = table.high
        startswith = buf.startswith
        out: list[tuple[int, bytes]] = []
        append = out.append
        pos = 0
        need = HEADER_LEN
        while end - pos >= HEADER_LEN:
            length = (buf[pos + 16] << 8) | buf[pos + 17]
            msg_type = buf[pos + 18]
            if not (startswith(MARKER, pos) and low[msg_type] <= length <= high[msg_type]):
                try:
                    parse_header(buf[pos : pos + HEADER_LEN], table.max_len)
                except MessageError as error:
                    self._error = error
                    self._parts = []
                    self._have = 0
                    raise
                raise AssertionError("fast header check and specification disagree")
            stop = pos + length
            if stop > end:
                need = length
                break
            append((msg_type, buf[pos + HEADER_LEN : stop]))
            pos = stop
        if pos < end:
            self._parts = [buf[pos:] if pos else buf]
            self._have = end - pos
            self._need = need
        else:
            self._parts = []
            self._have = 0
        return out
