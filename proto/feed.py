"""The bgpd -> felixd route feed: frames on a Unix stream socket.

On connect bgpd sends `SnapshotBegin`, one `RouteUpdate` per best route, `EndOfSnapshot`, and then
deltas (`RouteUpdate` adds or replaces a prefix, `Withdraw` removes it) and a `Heartbeat` when idle.
Every frame carries a sequence number one higher than the frame before it on the same connection, so
felixd can tell a lost or duplicated frame from a protocol bug.

Wire form, all integers big-endian:

    frame    = length:u32 (octets after this field) type:u8 seq:u64 body
    prefix   = family:u8 (4 | 6) length:u8 address:4|16 octets (host bits zero)
    address  = family:u8 (4 | 6) address:4|16 octets
    ROUTE    = flags:u8 (0x01 stale, 0x02 originated by a cluster Node) prefix next_hop:address
               local_pref:u32 as_path_len:u16 node:u8-length-prefixed UTF-8 (empty unless from a Node)
    WITHDRAW = prefix
    BEGIN    = epoch:u64 (bgpd's start time or any per-process value: a new epoch is a new bgpd)
    END      = count:u32 (routes in the snapshot)
    HEARTBEAT = (empty)

The construct definitions below are the specification. Route and withdraw frames are what a snapshot
is made of, so they also have hand-written `struct` encoders and decoders beside the spec; the unit
tests check with Hypothesis that both agree on every value and every error.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections.abc import Iterable
from enum import IntEnum
from types import SimpleNamespace
from typing import Any

from proto.record import record

MAX_FRAME_LEN = 1024  # a route frame is at most 305 octets; anything larger is garbage on the socket


class FeedError(ValueError):
    """The byte stream is not a valid feed (the reader should drop the connection)."""


class FrameType(IntEnum):
    SNAPSHOT_BEGIN = 1
    ROUTE = 2
    WITHDRAW = 3
    END_OF_SNAPSHOT = 4
    HEARTBEAT = 5


FLAG_STALE = 0x01
FLAG_NODE = 0x02
_KNOWN_FLAGS = FLAG_STALE | FLAG_NODE


# ---------------------------------------------------------------- values


@record(frozen=True, slots=True)
class FeedRoute:
    """A best route as felixd needs it. Addresses are `ipaddress` canonical strings, as in felixd.state."""

    prefix: str  # "192.168.226.64/26"
    next_hop: str  # the node (or external peer) address the traffic goes to
    node: str | None = None  # the cluster Node that originated it; None when learned from a non-Node peer
    stale: bool = False  # kept across a bgpd graceful restart, not yet refreshed
    local_pref: int = 100
    as_path_len: int = 0

    @property
    def from_node(self) -> bool:
        return self.node is not None


@record(frozen=True, slots=True)
class SnapshotBegin:
    seq: int
    epoch: int


@record(frozen=True, slots=True)
class RouteUpdate:
    seq: int
    route: FeedRoute


@record(frozen=True, slots=True)
class Withdraw:
    seq: int
    prefix: str


@record(frozen=True, slots=True)
class EndOfSnapshot:
    seq: int
    count: int


@record(frozen=True, slots=True)
class Heartbeat:
    seq: int


Frame = SnapshotBegin | RouteUpdate | Withdraw | EndOfSnapshot | Heartbeat


# ---------------------------------------------------------------- construct specification


@functools.cache
def spec() -> SimpleNamespace:
    """The construct specification (PrefixSpec, AddressSpec, RouteBody, FrameBody, FrameSpec), built on
    first use: construct is the reference and serves the rare frames and errors, and a reader that
    only ever sees well-formed route frames (felixd) never loads it."""
    import construct as c

    class _PrefixAdapter(c.Adapter):  # type: ignore[misc]
        def _decode(self, obj: c.Container, context: object, path: str) -> str:
            addr = obj.address
            limit = 32 if obj.family == 4 else 128
            if obj.length > limit:
                raise c.ValidationError(f"prefix length {obj.length} > {limit}", path=path)
            try:
                net = ipaddress.ip_network((addr, obj.length))
            except ValueError as exc:  # host bits set
                raise c.ValidationError(str(exc), path=path) from exc
            return str(net)

        def _encode(self, obj: str, context: object, path: str) -> dict[str, object]:
            net = ipaddress.ip_network(obj)
            return {"family": net.version, "length": net.prefixlen, "address": net.network_address.packed}

    class _AddressAdapter(c.Adapter):  # type: ignore[misc]
        def _decode(self, obj: c.Container, context: object, path: str) -> str:
            return str(ipaddress.ip_address(obj.address))

        def _encode(self, obj: str, context: object, path: str) -> dict[str, object]:
            addr = ipaddress.ip_address(obj)
            return {"family": addr.version, "address": addr.packed}

    _AddressBytes = c.Switch(c.this.family, {4: c.Bytes(4), 6: c.Bytes(16)},
                             default=c.Error)

    PrefixSpec = _PrefixAdapter(c.Struct("family" / c.Int8ub, "length" / c.Int8ub, "address" / _AddressBytes))
    AddressSpec = _AddressAdapter(c.Struct("family" / c.Int8ub, "address" / _AddressBytes))

    RouteBody = c.Struct(
        "flags" / c.Int8ub,
        c.Check(lambda ctx: ctx.flags & ~_KNOWN_FLAGS == 0),
        "prefix" / PrefixSpec,
        "next_hop" / AddressSpec,
        "local_pref" / c.Int32ub,
        "as_path_len" / c.Int16ub,
        "node" / c.PascalString(c.Int8ub, "utf8"),
        # a Node route names its Node; an external route names none
        c.Check(lambda ctx: bool(ctx.flags & FLAG_NODE) == (len(ctx.node) > 0)),
    )

    FrameBody = c.Struct(
        "type" / c.Int8ub,
        "seq" / c.Int64ub,
        "body" / c.Switch(c.this.type, {
            FrameType.SNAPSHOT_BEGIN: c.Struct("epoch" / c.Int64ub),
            FrameType.ROUTE: RouteBody,
            FrameType.WITHDRAW: c.Struct("prefix" / PrefixSpec),
            FrameType.END_OF_SNAPSHOT: c.Struct("count" / c.Int32ub),
            FrameType.HEARTBEAT: c.Struct(),
        }, default=c.Error),
        c.Terminated,
    )

    FrameSpec = c.Prefixed(c.Int32ub, FrameBody)

    return SimpleNamespace(c=c, PrefixSpec=PrefixSpec, AddressSpec=AddressSpec, RouteBody=RouteBody,
                           FrameBody=FrameBody, FrameSpec=FrameSpec)


def _to_container(frame: Frame) -> dict[str, object]:
    match frame:
        case SnapshotBegin(seq, epoch):
            return {"type": FrameType.SNAPSHOT_BEGIN, "seq": seq, "body": {"epoch": epoch}}
        case RouteUpdate(seq, r):
            flags = (FLAG_STALE if r.stale else 0) | (FLAG_NODE if r.node is not None else 0)
            return {"type": FrameType.ROUTE, "seq": seq, "body": {
                "flags": flags, "prefix": r.prefix, "next_hop": r.next_hop, "local_pref": r.local_pref,
                "as_path_len": r.as_path_len, "node": r.node or ""}}
        case Withdraw(seq, prefix):
            return {"type": FrameType.WITHDRAW, "seq": seq, "body": {"prefix": prefix}}
        case EndOfSnapshot(seq, count):
            return {"type": FrameType.END_OF_SNAPSHOT, "seq": seq, "body": {"count": count}}
        case Heartbeat(seq):
            return {"type": FrameType.HEARTBEAT, "seq": seq, "body": {}}
    raise TypeError(f"not a feed frame: {frame!r}")


def _from_container(obj: Any) -> Frame:
    body = obj.body
    match obj.type:
        case FrameType.SNAPSHOT_BEGIN:
            return SnapshotBegin(obj.seq, body.epoch)
        case FrameType.ROUTE:
            return RouteUpdate(obj.seq, FeedRoute(
                prefix=body.prefix, next_hop=body.next_hop, node=body.node or None,
                stale=bool(body.flags & FLAG_STALE), local_pref=body.local_pref,
                as_path_len=body.as_path_len))
        case FrameType.WITHDRAW:
            return Withdraw(obj.seq, body.prefix)
        case FrameType.END_OF_SNAPSHOT:
            return EndOfSnapshot(obj.seq, body.count)
        case _:
            return Heartbeat(obj.seq)


def encode_frame_spec(frame: Frame) -> bytes:
    """Encode through the construct specification (the reference for `encode_frame`)."""
    s = spec()
    try:
        data: bytes = s.FrameSpec.build(_to_container(frame))
    except (s.c.ConstructError, ValueError, UnicodeError) as exc:
        raise FeedError(f"cannot encode {frame!r}: {exc}") from exc
    if len(data) - 4 > MAX_FRAME_LEN:
        raise FeedError(f"frame of {len(data) - 4} octets exceeds {MAX_FRAME_LEN}")
    return data


def decode_body_spec(body: bytes) -> Frame:
    """Decode one frame body (after its length field) through the construct specification."""
    if len(body) > MAX_FRAME_LEN:
        raise FeedError(f"frame of {len(body)} octets exceeds {MAX_FRAME_LEN}")
    s = spec()
    try:
        return _from_container(s.FrameBody.parse(body))
    except (s.c.ConstructError, UnicodeError) as exc:
        raise FeedError(f"bad feed frame: {exc}") from exc


# ---------------------------------------------------------------- fast paths (route and withdraw)

_HDR = struct.Struct(">IBQ")  # length, type, seq
_TYPE_SEQ = struct.Struct(">BQ")
_TAIL = struct.Struct(">IHB")  # local_pref, as_path_len, node name length
_FAMILY_LEN = {4: 4, 6: 16}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def _prefix_wire(prefix: str) -> bytes:
    addr, _, plen = prefix.partition("/")
    if ":" not in addr and plen:
        # IPv4 without ipaddress: a few times faster, and strictness is kept by checking host bits
        try:
            packed = socket.inet_aton(addr)
        except OSError:
            packed = b""
        # inet_aton also takes "10.1", octal and trailing junk: keep only what it prints back the same
        if packed and socket.inet_ntoa(packed) == addr and plen.isascii() and plen.isdigit() and int(plen) <= 32:
            length = int(plen)
            value = int.from_bytes(packed, "big")
            if value & ((1 << (32 - length)) - 1) == 0:
                return bytes((4, length)) + packed
    net = ipaddress.ip_network(prefix)
    return bytes((net.version, net.prefixlen)) + net.network_address.packed


def _address_wire(address: str) -> bytes:
    if ":" not in address:
        try:
            packed = socket.inet_aton(address)
        except OSError:
            packed = b""
        if packed and socket.inet_ntoa(packed) == address:
            return b"\x04" + packed
    addr = ipaddress.ip_address(address)
    return bytes((addr.version,)) + addr.packed


def _route_frame(seq: int, r: FeedRoute) -> bytes:
    node = r.node.encode() if r.node is not None else b""
    if (r.node is not None and not node) or len(node) > 255:
        raise FeedError(f"node name must be 1..255 octets: {r.node!r}")
    flags = (FLAG_STALE if r.stale else 0) | (FLAG_NODE if r.node is not None else 0)
    body = b"".join((
        _TYPE_SEQ.pack(FrameType.ROUTE, seq), bytes((flags,)), _prefix_wire(r.prefix),
        _address_wire(r.next_hop), _TAIL.pack(r.local_pref, r.as_path_len, len(node)), node))
    return len(body).to_bytes(4, "big") + body


def route_tail(next_hop: str, node: str | None = None, stale: bool = False, local_pref: int = 100,
               as_path_len: int = 0) -> tuple[int, bytes]:
    """The flags and the octets after the prefix of a route frame. They are the same for every prefix
    that shares a best path, so a sender computes them once per path, not once per prefix."""
    node_b = node.encode() if node is not None else b""
    if (node is not None and not node_b) or len(node_b) > 255:
        raise FeedError(f"node name must be 1..255 octets: {node!r}")
    flags = (FLAG_STALE if stale else 0) | (FLAG_NODE if node is not None else 0)
    return flags, _address_wire(next_hop) + _TAIL.pack(local_pref, as_path_len, len(node_b)) + node_b


def prefix_wire_from_bgp(version: int, key: bytes) -> bytes:
    """The feed's prefix form from a BGP wire-form prefix (length octet, then the fewest address
    octets, unused bits zero): no text on the way."""
    size = 4 if version == 4 else 16
    return bytes((version, key[0])) + key[1:].ljust(size, b"\0")


def route_frame_wire(seq: int, flags: int, prefix_wire: bytes, tail: bytes) -> bytes:
    body = _TYPE_SEQ.pack(FrameType.ROUTE, seq) + bytes((flags,)) + prefix_wire + tail
    return len(body).to_bytes(4, "big") + body


def withdraw_frame_wire(seq: int, prefix_wire: bytes) -> bytes:
    body = _TYPE_SEQ.pack(FrameType.WITHDRAW, seq) + prefix_wire
    return len(body).to_bytes(4, "big") + body


def encode_frame(frame: Frame) -> bytes:
    """Encode one frame with its length field; the hand-written path, equal to `encode_frame_spec`."""
    try:
        if type(frame) is RouteUpdate:
            return _route_frame(frame.seq, frame.route)
        if type(frame) is Withdraw:
            body = _TYPE_SEQ.pack(FrameType.WITHDRAW, frame.seq) + _prefix_wire(frame.prefix)
            return len(body).to_bytes(4, "big") + body
    except (struct.error, ValueError, TypeError, AttributeError, UnicodeError) as exc:
        if isinstance(exc, FeedError):
            raise
        raise FeedError(f"cannot encode {frame!r}: {exc}") from exc
    return encode_frame_spec(frame)


def encode_snapshot(routes: Iterable[FeedRoute], first_seq: int, epoch: int) -> tuple[bytes, int]:
    """A whole snapshot (begin, routes, end) in one buffer; returns it and the next sequence number."""
    seq = first_seq
    parts = [encode_frame(SnapshotBegin(seq, epoch))]
    seq += 1
    count = 0
    for route in routes:
        parts.append(_route_frame(seq, route))
        seq += 1
        count += 1
    parts.append(encode_frame(EndOfSnapshot(seq, count)))
    return b"".join(parts), seq + 1


def _decode_prefix(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    if pos + 2 > end:
        raise FeedError("truncated prefix")
    family, length = buf[pos], buf[pos + 1]
    size = _FAMILY_LEN.get(family)
    if size is None:
        raise FeedError(f"unknown address family {family}")
    pos += 2
    if pos + size > end:
        raise FeedError("truncated prefix")
    raw = buf[pos:pos + size]
    if length > size * 8:
        raise FeedError(f"prefix length {length} > {size * 8}")
    value = int.from_bytes(raw, "big")
    if value & ((1 << (size * 8 - length)) - 1):
        raise FeedError("prefix has host bits set")
    if family == 4:
        text = f"{socket.inet_ntop(socket.AF_INET, raw)}/{length}"
    else:
        text = str(ipaddress.IPv6Network((raw, length)))
    return text, pos + size


def _decode_address(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    if pos + 1 > end:
        raise FeedError("truncated address")
    family = buf[pos]
    size = _FAMILY_LEN.get(family)
    if size is None:
        raise FeedError(f"unknown address family {family}")
    pos += 1
    if pos + size > end:
        raise FeedError("truncated address")
    raw = buf[pos:pos + size]
    text = socket.inet_ntop(socket.AF_INET, raw) if family == 4 else str(ipaddress.IPv6Address(raw))
    return text, pos + size


def decode_feed_body(body: bytes) -> Frame:
    """Decode one frame body (after its length field); hand-written for routes and withdraws."""
    end = len(body)
    if end > MAX_FRAME_LEN:
        raise FeedError(f"frame of {end} octets exceeds {MAX_FRAME_LEN}")
    if end < 9:
        return decode_body_spec(body)
    ftype = body[0]
    if ftype == FrameType.ROUTE:
        seq = int.from_bytes(body[1:9], "big")
        if end < 10:
            raise FeedError("truncated route")
        flags = body[9]
        if flags & ~_KNOWN_FLAGS:
            raise FeedError(f"unknown route flags {flags:#x}")
        prefix, pos = _decode_prefix(body, 10, end)
        next_hop, pos = _decode_address(body, pos, end)
        if pos + 7 > end:
            raise FeedError("truncated route")
        local_pref, as_path_len, name_len = _TAIL.unpack_from(body, pos)
        pos += 7
        if pos + name_len != end:
            raise FeedError("route frame length does not match its node name")
        try:
            node = body[pos:end].decode()
        except UnicodeError as exc:
            raise FeedError(f"bad node name: {exc}") from exc
        if bool(flags & FLAG_NODE) != (name_len > 0):
            raise FeedError("node flag and node name disagree")
        return RouteUpdate(seq, FeedRoute(prefix, next_hop, node or None, bool(flags & FLAG_STALE),
                                          local_pref, as_path_len))
    if ftype == FrameType.WITHDRAW:
        seq = int.from_bytes(body[1:9], "big")
        prefix, pos = _decode_prefix(body, 9, end)
        if pos != end:
            raise FeedError("trailing octets after withdraw")
        return Withdraw(seq, prefix)
    return decode_body_spec(body)


# ---------------------------------------------------------------- stream framing


class FeedEncoder:
    """The writing side (bgpd): numbers frames consecutively per connection and returns their bytes."""

    def __init__(self, epoch: int, first_seq: int = 1) -> None:
        self.epoch = epoch
        self.next_seq = first_seq

    def _frame(self, frame: Frame) -> bytes:
        data = encode_frame(frame)
        self.next_seq += 1  # only once the frame exists: a refused route does not leave a gap
        return data

    def snapshot(self, routes: Iterable[FeedRoute]) -> bytes:
        data, self.next_seq = encode_snapshot(routes, self.next_seq, self.epoch)
        return data

    def update(self, route: FeedRoute) -> bytes:
        return self._frame(RouteUpdate(self.next_seq, route))

    def withdraw(self, prefix: str) -> bytes:
        return self._frame(Withdraw(self.next_seq, prefix))

    def heartbeat(self) -> bytes:
        return self._frame(Heartbeat(self.next_seq))


class FeedDecoder:
    """Splits a byte stream into frames (sans-I/O): `receive_data(bytes)` then `frames()`.

    Bytes are kept in one buffer consumed by offset, so a 100k-route snapshot read in 64 KiB chunks
    is sliced once per frame rather than copied once per frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def receive_data(self, data: bytes) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def frames(self) -> list[Frame]:
        """Every whole frame received so far; raises FeedError on the first bad one."""
        buf, pos, end = self._buf, self._pos, len(self._buf)
        out: list[Frame] = []
        try:
            while pos + 4 <= end:
                length = int.from_bytes(buf[pos:pos + 4], "big")
                if length > MAX_FRAME_LEN:
                    raise FeedError(f"frame of {length} octets exceeds {MAX_FRAME_LEN}")
                if pos + 4 + length > end:
                    break
                out.append(decode_feed_body(bytes(buf[pos + 4:pos + 4 + length])))
                pos += 4 + length
        finally:
            self._pos = pos
        return out

    @property
    def pending(self) -> int:
        """Octets of an incomplete frame still buffered."""
        return len(self._buf) - self._pos
