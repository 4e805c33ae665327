"""What one BGP connection has yet to write: control messages (OPEN, KEEPALIVE, NOTIFICATION,
ROUTE-REFRESH) and UPDATE units, handed to the transport in the order the protocol needs.

Control messages go first. UPDATE units are chunks of whole encoded messages, usually slices of a
buffer shared by every member of an update group; a unit is handed out whole while it fits the
caller's budget. A unit larger than the budget by itself (a joining peer's whole table is one) is
handed out in pieces of that size, so a transport never holds more than that of it: asyncio's write
buffer is a copy per connection, and with a thousand slow peers copies of the shared table would be
a reflector's largest memory. While a unit is cut, control messages that arrive wait for the end of
the UPDATE in flight, found by walking the unit's message headers (only then).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


def message_end(data: bytes | memoryview, start: int, pos: int) -> int:
    """The first message boundary at or after `pos` in `data`, whole BGP messages from `start` (a
    boundary): each header's length field (octets 16-17) gives the next."""
    end = start
    while end < pos:
        length = int.from_bytes(data[end + 16:end + 18], "big")
        if length < 19:
            raise ValueError(f"no BGP message header at octet {end} of a queued unit")
        end += length
    return end


class SendQueue:
    __slots__ = ("_control", "_cut", "_mark", "_update_bytes", "_updates")

    def __init__(self) -> None:
        self._control = bytearray()
        self._updates: deque[bytes | memoryview] = deque()
        self._update_bytes = 0
        # a unit handed out in part: where its rest starts, and a message boundary at or before that
        self._cut = 0
        self._mark = 0

    @property
    def update_bytes(self) -> int:
        return self._update_bytes

    def __bool__(self) -> bool:
        return bool(self._control or self._updates)

    # ------------------------------------------------------------ queueing

    def control(self, message: bytes) -> None:
        self._control += message

    def final(self, message: bytes) -> None:
        """The last message of the connection (a NOTIFICATION): after the UPDATE whose first part is
        already out, and after the control messages queued before it (the UPDATEs queued after that
        UPDATE are dropped with the connection)."""
        if self._cut:
            self._control[:0] = self._finish_message()
        self._control += message

    def restart(self, first: bytes) -> None:
        """A new connection: nothing queued for an earlier one may precede its first message."""
        self._control = bytearray(first)

    def updates(self, units: Iterable[bytes | memoryview]) -> None:
        for data in units:
            if data:
                self._updates.append(data)
                self._update_bytes += len(data)

    def drop_control(self) -> None:
        self._control.clear()

    def drop_updates(self) -> None:
        self._updates.clear()
        self._update_bytes = 0
        self._cut = self._mark = 0

    # ------------------------------------------------------------ handing out

    def take(self, max_bytes: int | None = None) -> tuple[bytes, bool]:
        """Control messages, then UPDATE bytes up to `max_bytes` (0: control messages only, for a
        transport whose buffer is full); some bytes whenever there are any. Also says whether UPDATE
        bytes were handed out."""
        parts: list[bytes | memoryview] = []
        if self._control:
            if self._cut:
                parts.append(self._finish_message())
            parts.append(bytes(self._control))
            self._control.clear()
        budget = None if max_bytes is None else max_bytes - sum(map(len, parts))
        taken = False
        if self._updates and max_bytes != 0 and (budget is None or budget > 0 or not parts):
            while self._updates:
                unit = self._updates[0]
                cut = self._cut
                rest = len(unit) - cut
                if budget is not None and rest > budget:
                    if taken:
                        break
                    if max_bytes is not None and rest > max_bytes:
                        # too big for any one call: a piece of it, the rest stays at the front
                        take = max(budget, 1)
                        parts.append(memoryview(unit)[cut:cut + take])
                        self._cut = cut + take
                        self._update_bytes -= take
                        taken = True
                        break
                self._updates.popleft()
                self._update_bytes -= rest
                parts.append(unit if not cut else memoryview(unit)[cut:])
                self._cut = self._mark = 0
                taken = True
                if budget is not None:
                    budget -= rest
                    if budget <= 0:
                        break
        if not parts:
            return b"", False
        return (parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)), taken

    def _finish_message(self) -> memoryview:
        """The rest of the UPDATE message a cut unit is in the middle of (handed out now)."""
        unit = self._updates[0]
        end = message_end(unit, self._mark, self._cut)
        piece = memoryview(unit)[self._cut:end]
        self._update_bytes -= end - self._cut
        if end >= len(unit):
            self._updates.popleft()
            self._cut = self._mark = 0
        else:
            self._cut = self._mark = end
        return piece
