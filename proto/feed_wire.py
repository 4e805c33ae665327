"""The route feed read in the prefix form: frame bodies straight to `proto.prefix` bytes.

`proto.feed` holds the feed's specification (construct), its encoders and a decoder to text values
(`FeedRoute`, for tests and tools). felixd reads the feed here instead: a route frame's prefix is
sliced out of the frame as a `Prefix` and its next hop as an `Address`, with no text and no
`ipaddress` on the way, and those bytes key felixd's tables down to the netlink encoder.

Every bgpd path shares one frame tail (next hop, local preference, AS-path length, node name) among
all its prefixes, so the tail is parsed once per distinct tail octets (a small cache, as bgpd's
attribute cache does for UPDATEs) and its next hop `Address` is one shared object.

Every well-formed frame is decoded by hand; anything else goes through `proto.feed`'s construct
specification, which says what is wrong (so construct is loaded only when a bad frame arrives). The
unit tests check with Hypothesis that this decoder and the specification agree on every body, valid
or not.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from proto.feed import (
    _KNOWN_FLAGS,
    FLAG_NODE,
    FLAG_STALE,
    MAX_FRAME_LEN,
    EndOfSnapshot,
    FeedError,
    Frame,
    FrameType,
    Heartbeat,
    SnapshotBegin,
    decode_body_spec,
)
from proto.prefix import Address, Prefix

__all__ = ["WireRoute", "WireWithdraw", "WireFrame", "decode_wire_body", "WireDecoder", "SequenceChecker",
           "SequenceError", "FLAG_STALE", "FLAG_NODE"]

_TAIL = struct.Struct(">IHB")  # local_pref, as_path_len, node name length
_ROUTE_HEAD = struct.Struct(">IBQBBB")  # length, type, seq, then a route's flags, family, prefix length
_ROUTE = int(FrameType.ROUTE)
_WITHDRAW = int(FrameType.WITHDRAW)
_BEGIN, _END, _HEARTBEAT = int(FrameType.SNAPSHOT_BEGIN), int(FrameType.END_OF_SNAPSHOT), int(FrameType.HEARTBEAT)
# address octets by family octet, and the mask of host bits per (family, length): checked per prefix
_SIZE = {4: 4, 6: 16}
_HOST_BITS = {(f, n): (1 << (s * 8 - n)) - 1 for f, s in _SIZE.items() for n in range(s * 8 + 1)}
_TAIL_CACHE_MAX = 4096


class WireRoute(NamedTuple):
    """A ROUTE frame in the prefix form."""

    seq: int
    prefix: Prefix
    next_hop: Address
    flags: int
    local_pref: int
    as_path_len: int
    node: str | None

    @property
    def stale(self) -> bool:
        return bool(self.flags & FLAG_STALE)


class WireWithdraw(NamedTuple):
    seq: int
    prefix: Prefix


WireFrame = WireRoute | WireWithdraw | SnapshotBegin | EndOfSnapshot | Heartbeat

# the parsed tail: (next hop, local_pref, as_path_len, node); keyed by the octets after the prefix
_Tail = tuple[Address, int, int, "str | None"]


def _spec_error(body: bytes) -> FeedError:
    """The specification's verdict on a body the fast path refused (it raises, as the fast path did)."""
    try:
        decode_body_spec(body)
    except FeedError as exc:
        return exc
    # the fast path and the specification disagree: a bug, reported as such rather than hidden
    return FeedError("feed frame refused by the fast decoder but accepted by the specification")


def _prefix_end(body: bytes, pos: int, end: int) -> int:
    """Where the prefix starting at `pos` ends, or -1 when it is not valid."""
    if pos + 2 > end:
        return -1
    size = _SIZE.get(body[pos])
    if size is None:
        return -1
    stop = pos + 2 + size
    mask = _HOST_BITS.get((body[pos], body[pos + 1]))
    if stop > end or mask is None or int.from_bytes(body[pos + 2:stop], "big") & mask:
        return -1
    return stop


def _parse_tail(tail: bytes) -> _Tail | None:
    size = _SIZE.get(tail[0]) if tail else None
    if size is None or len(tail) < 1 + size + 7:
        return None
    local_pref, as_path_len, name_len = _TAIL.unpack_from(tail, 1 + size)
    if 1 + size + 7 + name_len != len(tail):
        return None
    node = None
    if name_len:
        try:
            node = tail[1 + size + 7:].decode()
        except UnicodeError:
            return None
    return tail[:1 + size], local_pref, as_path_len, node


class _Tails:
    """Parsed tails by their octets; bounded (a sender has a handful of distinct paths)."""

    def __init__(self) -> None:
        self.cache: dict[bytes, _Tail] = {}

    def get(self, tail: bytes) -> _Tail | None:
        hit = self.cache.get(tail)
        if hit is None:
            hit = _parse_tail(tail)
            if hit is not None:
                if len(self.cache) >= _TAIL_CACHE_MAX:
                    self.cache.clear()
                self.cache[tail] = hit
        return hit


_shared_tails = _Tails()


def decode_wire_body(body: bytes, tails: _Tails = _shared_tails) -> WireFrame:
    """One frame body (after its length field) in the prefix form; raises FeedError as the spec does."""
    end = len(body)
    if end > MAX_FRAME_LEN:
        raise FeedError(f"frame of {end} octets exceeds {MAX_FRAME_LEN}")
    if end >= 10 and body[0] == _ROUTE:
        flags = body[9]
        stop = _prefix_end(body, 10, end)
        if stop > 0 and not flags & ~_KNOWN_FLAGS:
            tail = tails.get(body[stop:])
            if tail is not None and bool(flags & FLAG_NODE) == (tail[3] is not None):
                return WireRoute(int.from_bytes(body[1:9], "big"), body[10:stop], tail[0], flags, tail[1],
                                 tail[2], tail[3])
        raise _spec_error(body)
    if end >= 9 and body[0] == _WITHDRAW:
        if _prefix_end(body, 9, end) == end:
            return WireWithdraw(int.from_bytes(body[1:9], "big"), body[9:])
        raise _spec_error(body)
    # the frames around routes, whole and well formed; anything else (and every error) by the spec
    if end == 17 and body[0] == _BEGIN:
        return SnapshotBegin(int.from_bytes(body[1:9], "big"), int.from_bytes(body[9:17], "big"))
    if end == 13 and body[0] == _END:
        return EndOfSnapshot(int.from_bytes(body[1:9], "big"), int.from_bytes(body[9:13], "big"))
    if end == 9 and body[0] == _HEARTBEAT:
        return Heartbeat(int.from_bytes(body[1:9], "big"))
    return decode_body_spec(body)  # type: ignore[return-value]  # never a route or withdraw here


class WireDecoder:
    """Splits the feed's byte stream into prefix-form frames (sans-I/O): `receive_data`, `frames()`.

    Route frames, nearly all of a stream, are decoded inline here (the same checks as
    `decode_wire_body`, which decodes everything else): 100k frames cost well under a second.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._tails = _Tails()

    def receive_data(self, data: bytes) -> None:
        self._buf = self._buf[self._pos:] + data if self._pos < len(self._buf) else bytes(data)
        self._pos = 0

    def frames(self) -> list[WireFrame]:
        """Every whole frame received so far; raises FeedError on the first bad one."""
        buf, pos, end = self._buf, self._pos, len(self._buf)
        tails, cache = self._tails, self._tails.cache
        out: list[WireFrame] = []
        append = out.append
        from_bytes, new, unpack, size_of, host_bits = (int.from_bytes, tuple.__new__, _ROUTE_HEAD.unpack_from,
                                                       _SIZE.get, _HOST_BITS.get)
        try:
            while pos + 4 <= end:
                if pos + 16 <= end:
                    length, ftype, seq, flags, family, plen = unpack(buf, pos)
                else:
                    length, ftype, seq, flags, family, plen = from_bytes(buf[pos:pos + 4], "big"), -1, 0, 0, 0, 0
                if length > MAX_FRAME_LEN:
                    raise FeedError(f"frame of {length} octets exceeds {MAX_FRAME_LEN}")
                stop = pos + 4 + length
                if stop > end:
                    break
                # a route frame: type, seq, flags, then the prefix (family, length, address) at pos + 14
                if ftype == _ROUTE and length >= 12 and not flags & ~_KNOWN_FLAGS:
                    size = size_of(family)
                    mask = host_bits((family, plen))
                    p_end = pos + 16 + (size or 0)
                    if size is not None and mask is not None and p_end <= stop \
                            and not from_bytes(buf[pos + 16:p_end], "big") & mask:
                        tail = cache.get(buf[p_end:stop]) or tails.get(buf[p_end:stop])
                        if tail is not None and bool(flags & FLAG_NODE) == (tail[3] is not None):
                            append(new(WireRoute, (seq, buf[pos + 14:p_end], tail[0], flags, tail[1], tail[2],
                                                   tail[3])))
                            pos = stop
                            continue
                append(decode_wire_body(buf[pos + 4:stop], tails))
                pos = stop
        finally:
            self._pos = pos
        return out

    @property
    def pending(self) -> int:
        """Octets of an incomplete frame still buffered."""
        return len(self._buf) - self._pos


class SequenceError(FeedError):
    """A frame arrived out of order: the reader should drop the connection and resync."""


class SequenceChecker:
    """Checks that sequence numbers on one connection go up by one, starting anywhere."""

    def __init__(self) -> None:
        self.last: int | None = None

    def check(self, frame: WireFrame | Frame) -> None:
        if self.last is not None and frame.seq != self.last + 1:
            raise SequenceError(f"expected sequence {self.last + 1}, got {frame.seq}")
        self.last = frame.seq

    def check_run(self, frames: Sequence[WireFrame] | Sequence[Frame]) -> None:
        """`check` for each of `frames` (any frames with a `seq`, text or prefix form)."""
        expected = None if self.last is None else self.last + 1
        for frame in frames:
            seq = frame.seq
            if expected is not None and seq != expected:
                self.last = expected - 1
                raise SequenceError(f"expected sequence {expected}, got {seq}")
            expected = seq + 1
        if expected is not None:
            self.last = expected - 1
