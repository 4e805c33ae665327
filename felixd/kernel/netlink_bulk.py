"""The bulk netlink path: route messages encoded with `struct`, many per sendmsg, errors by sequence.

pyroute2 programs a few thousand routes a second one call at a time; start-up, resync and a mode
switch change up to every route at once. Here RTM_NEWROUTE / RTM_DELROUTE messages are packed back
to back into one buffer per sendmsg. The kernel handles a netlink write synchronously, in the
sender's context, so when sendmsg returns every message of the buffer has been processed and its
error (if any) queued. Only the last message of each buffer asks for an ACK: errors come back
without being asked for, tagged with the failing message's sequence number, and the final ACK says
that nothing more is coming for that buffer.

The same socket dumps routes (filtered by protocol in the kernel where strict checking allows) and
links, parsed by hand into `felixd.state.Route` so that reading 100k routes costs well under a second.
"""

from __future__ import annotations

import errno
import ipaddress
import operator
import os
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from felixd.kernel.netns import NetnsWorker
from felixd.state import Route, RouteKind

# linux/netlink.h, linux/rtnetlink.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15
RTA_MULTIPATH = 9
IFLA_IFNAME = 3
RTN_UNICAST = 1
RTN_BLACKHOLE = 6
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
RTNH_F_ONLINK = 4
SOL_NETLINK = 270
SO_SNDBUFFORCE = 32  # not exported by the socket module
SO_RCVBUFFORCE = 33
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
NLMSGERR_ATTR_MSG = 1
NLM_F_ACK_TLVS = 0x200

IPV6_DEFAULT_METRIC = 1024  # the kernel turns an IPv6 route's metric 0 into 1024

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")
_U32_ATTR = struct.Struct("=HHI")
_ERR = struct.Struct("=i")

# Messages per sendmsg: the buffer (~100 octets a route) stays far below the forced socket buffer.
CHUNK = 4096
_BUF_SIZE = 32 << 20


class Op(Enum):
    REPLACE = "replace"
    DELETE = "delete"


class RouteOp(NamedTuple):
    op: Op
    route: Route
    protocol: int  # ours for writes; a delete on one of our devices may name another protocol


@dataclass(frozen=True, slots=True)
class RouteError:
    op: Op
    route: Route
    errno: int
    message: str = ""

    def __str__(self) -> str:
        detail = f" ({self.message})" if self.message else ""
        return f"{self.op.value} {self.route.dst} table {self.route.table}: {os.strerror(self.errno)}{detail}"


def _family(dst: str) -> int:
    return socket.AF_INET6 if ":" in dst else socket.AF_INET


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _RTA.pack(length, kind) + payload + b"\0" * (-length & 3)


def kernel_metric(route: Route) -> int:
    return IPV6_DEFAULT_METRIC if route.metric == 0 and ":" in route.dst else route.metric


_STRUCTS: dict[tuple[int, bool, bool, bool, bool], struct.Struct] = {}


def _message_struct(alen: int, dst: bool, metric: bool, gw: bool, oif: bool) -> struct.Struct:
    """One struct per message shape (family x optional attributes): a route is then a single pack()."""
    key = (alen, dst, metric, gw, oif)
    st = _STRUCTS.get(key)
    if st is None:
        fmt = "=IHHIIBBBBBBBBI"
        if dst:
            fmt += f"HH{alen}s"
        fmt += "HHI"  # RTA_TABLE
        if metric:
            fmt += "HHI"
        if gw:
            fmt += f"HH{alen}s"
        if oif:
            fmt += "HHI"
        st = _STRUCTS[key] = struct.Struct(fmt)
    return st


def encode_route(msg_type: int, flags: int, seq: int, route: Route, oif: int | None, protocol: int) -> bytes:
    """One RTM_NEWROUTE / RTM_DELROUTE message for `route` (`oif`: the ifindex of `route.dev`)."""
    addr, _, plen = route.dst.partition("/")
    v6 = ":" in addr
    family, alen = (socket.AF_INET6, 16) if v6 else (socket.AF_INET, 4)
    dst_len = int(plen) if plen else alen * 8
    table = route.table
    metric = route.metric or (IPV6_DEFAULT_METRIC if v6 else 0)
    gw = None
    if msg_type == RTM_DELROUTE:
        # Match on prefix, table, protocol and metric only: the kernel then deletes exactly our route
        # whatever its next hop, and never one of another protocol.
        rtm_type, scope, rtm_flags = 0, RT_SCOPE_NOWHERE, 0
        oif = None
    else:
        blackhole = route.kind == RouteKind.BLACKHOLE
        rtm_type = RTN_BLACKHOLE if blackhole else RTN_UNICAST
        scope = RT_SCOPE_LINK if route.scope_link else RT_SCOPE_UNIVERSE
        rtm_flags = RTNH_F_ONLINK if route.onlink else 0
        if blackhole:
            oif = None
        elif route.gateway is not None:
            if (":" in route.gateway) != v6:
                raise ValueError(f"{route.dst}: next hop {route.gateway} of another family is not supported")
            gw = socket.inet_pton(family, route.gateway)
    st = _message_struct(alen, dst_len > 0, metric > 0, gw is not None, oif is not None)
    args: list[object] = [st.size, msg_type, flags, seq, 0, family, dst_len, 0, 0, table if table < 256 else 0,
                          protocol, scope, rtm_type, rtm_flags]
    if dst_len:
        args += (4 + alen, RTA_DST, socket.inet_pton(family, addr))
    args += (8, RTA_TABLE, table)
    if metric:
        args += (8, RTA_PRIORITY, metric)
    if gw is not None:
        args += (4 + alen, RTA_GATEWAY, gw)
    if oif is not None:
        args += (8, RTA_OIF, oif)
    return st.pack(*args)


def _parse_attrs(data: bytes | memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute."""
    while pos + 4 <= end:
        length, kind = _RTA.unpack_from(data, pos)
        if length < 4:
            break
        yield kind & 0x3FFF, pos + 4, pos + length
        pos += (length + 3) & ~3


# (dst, kind, gateway, dev, onlink, scope_link, table, metric, protocol): a dumped route
KernelRoute = tuple[str, RouteKind, str | None, str | None, bool, bool, int, int, int]


def signature(route: Route) -> tuple[object, ...]:
    """What the kernel holds of a Route, comparable with a KernelRoute's first eight fields."""
    v6 = ":" in route.dst
    blackhole = route.kind == RouteKind.BLACKHOLE
    # IPv6 routes have no scope: the kernel takes `scope link` and reports `scope global`
    return (route.dst, route.kind, None if blackhole else route.gateway, None if blackhole else route.dev,
            route.onlink, route.scope_link and not v6, route.table, kernel_metric(route))


def to_route(kr: KernelRoute) -> Route:
    dst, kind, gateway, dev, onlink, scope_link, table, metric, _proto = kr
    return Route(dst=dst, kind=kind, gateway=gateway, dev=dev, onlink=onlink, scope_link=scope_link,
                 table=table, metric=metric)


def _v6_text(raw: bytes | memoryview) -> str:
    """ipaddress's canonical text: inet_ntop writes ::a.b.c.d forms that felixd.state never uses."""
    return str(ipaddress.IPv6Address(bytes(raw)))


class NetlinkError(OSError):
    pass


class BulkNetlink:
    """A raw NETLINK_ROUTE socket opened inside the worker's namespace."""

    def __init__(self, worker: NetnsWorker) -> None:
        self.worker = worker
        self.sock = worker.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        for opt in (SO_SNDBUFFORCE, SO_RCVBUFFORCE):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, _BUF_SIZE)
            except PermissionError:
                pass
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
        self.sock.bind((0, 0))
        self._seq = 1
        self._rbuf = bytearray(1 << 20)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BulkNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self, n: int = 1) -> int:
        seq = self._seq
        self._seq = (self._seq + n) & 0xFFFFFFFF or 1
        return seq

    def _recv(self) -> memoryview:
        n = self.sock.recv_into(self._rbuf)
        return memoryview(self._rbuf)[:n]

    @staticmethod
    def _ext_message(data: memoryview, pos: int, end: int, flags: int) -> str:
        # With NETLINK_CAP_ACK the original request is not echoed: attributes follow the 16-octet header.
        if not flags & NLM_F_ACK_TLVS:
            return ""
        for kind, a, b in _parse_attrs(data, pos + 20 + 16, end):
            if kind == NLMSGERR_ATTR_MSG:
                return bytes(data[a:b]).rstrip(b"\0").decode(errors="replace")
        return ""

    # ------------------------------------------------------------ writes

    def apply(self, ops: Sequence[RouteOp], ifindex: dict[str, int], chunk: int = CHUNK) -> list[RouteError]:
        """Replace or delete routes; returns one RouteError per route the kernel refused."""
        errors: list[RouteError] = []
        for start in range(0, len(ops), chunk):
            errors.extend(self._apply_chunk(ops[start:start + chunk], ifindex))
        return errors

    def _apply_chunk(self, ops: Sequence[RouteOp], ifindex: dict[str, int]) -> list[RouteError]:
        errors: list[RouteError] = []
        msgs: list[bytes] = []
        by_seq: dict[int, tuple[Op, Route]] = {}
        for op, route, protocol in ops:
            seq = self._next_seq()
            try:
                if op is Op.REPLACE:
                    oif = None
                    if route.dev is not None and route.kind != RouteKind.BLACKHOLE:
                        oif = ifindex.get(route.dev)
                        if oif is None:
                            errors.append(RouteError(op, route, errno.ENODEV, f"no device {route.dev}"))
                            continue
                    msgs.append(encode_route(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                                             seq, route, oif, protocol))
                else:
                    msgs.append(encode_route(RTM_DELROUTE, NLM_F_REQUEST, seq, route, None, protocol))
            except (ValueError, OSError) as exc:
                errors.append(RouteError(op, route, errno.EINVAL, str(exc)))
                continue
            by_seq[seq] = (op, route)
        if not msgs:
            return errors
        # Only the last message asks for an ACK: errors arrive unasked, and the ACK closes the buffer.
        tail = msgs[-1]
        msgs[-1] = tail[:6] + struct.pack("=H", _NLMSGHDR.unpack_from(tail)[2] | NLM_F_ACK) + tail[8:]
        last_seq = _NLMSGHDR.unpack_from(tail)[3]
        self.sock.sendall(b"".join(msgs))
        done = False
        while not done:
            data = self._recv()
            pos, end = 0, len(data)
            while pos + 16 <= end:
                length, mtype, mflags, seq, _pid = _NLMSGHDR.unpack_from(data, pos)
                if length < 16:
                    break
                if mtype == NLMSG_ERROR and seq in by_seq:
                    (code,) = _ERR.unpack_from(data, pos + 16)
                    if code:
                        op, route = by_seq[seq]
                        errors.append(RouteError(op, route, -code,
                                                 self._ext_message(data, pos, pos + length, mflags)))
                    if seq == last_seq:
                        done = True
                pos += (length + 3) & ~3
        return errors

    # ------------------------------------------------------------ dumps

    def _dump(self, msg_type: int, payload: bytes) -> Iterator[tuple[memoryview, int, int, int]]:
        """(buffer, message start, message end, message type) of every message of a dump."""
        seq = self._next_seq()
        self.sock.sendall(_NLMSGHDR.pack(16 + len(payload), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
                          + payload)
        while True:
            data = self._recv()
            pos, end = 0, len(data)
            while pos + 16 <= end:
                length, mtype, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, pos)
                if length < 16:
                    break
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return
                    if mtype == NLMSG_ERROR:
                        (code,) = _ERR.unpack_from(data, pos + 16)
                        if code:
                            raise NetlinkError(-code, f"dump failed: {os.strerror(-code)}")
                        return
                    yield data, pos, pos + length, mtype
                pos += (length + 3) & ~3

    def links(self) -> dict[str, int]:
        """Interface name -> ifindex."""
        out: dict[str, int] = {}
        for data, pos, end, mtype in self._dump(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            if mtype != RTM_NEWLINK:
                continue
            _fam, _type, index, _flags, _change = _IFINFOMSG.unpack_from(data, pos + 16)
            for kind, a, b in _parse_attrs(data, pos + 32, end):
                if kind == IFLA_IFNAME:
                    out[bytes(data[a:b]).rstrip(b"\0").decode()] = index
        return out

    def dump_routes(self, family: int, protocol: int | None = None, names: dict[int, str] | None = None,
                    oifs: Iterable[int] = (), fast: bool = True) -> list[KernelRoute]:
        """Routes of `family` in every table, of `protocol` (None: all) or through one of `oifs`.

        Only unicast and blackhole routes are returned: the kinds felixd writes. Routes come back as
        plain tuples (see `KernelRoute`): building 100k frozen dataclasses would cost more than the dump.
        `fast=False` parses every message attribute by attribute (the reference for the fast path).
        """
        names = names or {}
        oif_set = set(oifs)
        # With strict checking the kernel filters by protocol itself, unless routes through our own
        # devices are wanted too; the check below decides either way (older kernels ignore the filter).
        kfilter = protocol if protocol is not None and not oif_set else 0
        req = _RTMSG.pack(family, 0, 0, 0, 0, kfilter, 0, 0, 0)
        out: list[KernelRoute] = []
        parser = _RouteParser(names, "::" if family == socket.AF_INET6 else "0.0.0.0")
        parse = parser.parse if fast else parser.parse_slow
        for data, pos, end, mtype in self._dump(RTM_GETROUTE, req):
            if mtype != RTM_NEWROUTE:
                continue
            kr = parse(data, pos, end)
            if kr is None:
                continue
            if protocol is not None and kr[8] != protocol and kr[9] not in oif_set:
                continue
            out.append(kr[:9])  # type: ignore[arg-type]
        return out


class _Layout(NamedTuple):
    """One message shape: a struct that unpacks it whole, and where its attribute headers and values sit."""

    st: struct.Struct
    headers: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    expected: tuple[int, ...]
    i_dst: int
    i_gw: int
    i_oif: int
    i_prio: int
    i_table: int
    multipath: bool


_MAX_LAYOUTS_PER_LENGTH = 8


class _RouteParser:
    """RTM_NEWROUTE -> (KernelRoute fields..., oif).

    A dump of 100k routes holds a handful of message shapes. The first message of each shape is
    walked attribute by attribute to build a struct for the whole message; every later message of
    the same length is unpacked by that struct in one call and accepted only if all its attribute
    headers (length and type) are the ones of the shape, else it is walked too.
    """

    def __init__(self, names: dict[int, str], default_dst: str) -> None:
        self.names = names
        self.default_dst = default_dst
        self.layouts: dict[int, list[_Layout]] = {}
        self.gateways: dict[bytes, str] = {}

    @staticmethod
    def _text(fam: int, raw: bytes | memoryview) -> str:
        text = socket.inet_ntop(fam, raw)
        if fam == socket.AF_INET6 and "." in text:
            text = _v6_text(raw)
        return text

    def _route(self, fam: int, dst_len: int, table: int, proto: int, scope: int, rtype: int, rflags: int,
               dst: str, gateway: str | None, oif: int, metric: int,
               multipath: bool) -> tuple[Any, ...]:
        if rtype == RTN_BLACKHOLE:
            # IPv6 blackholes report dev lo; felixd.state has no device on a blackhole
            return (f"{dst}/{dst_len}", RouteKind.BLACKHOLE, None, None, bool(rflags & RTNH_F_ONLINK),
                    scope == RT_SCOPE_LINK, table, metric, proto, oif)
        dev = None if multipath or not oif else self.names.get(oif, str(oif))
        return (f"{dst}/{dst_len}", RouteKind.UNICAST, gateway, dev, bool(rflags & RTNH_F_ONLINK),
                scope == RT_SCOPE_LINK, table, metric, proto, oif)

    def parse_slow(self, data: memoryview, pos: int, end: int) -> tuple[Any, ...] | None:
        fam, dst_len, _src, _tos, table, proto, scope, rtype, rflags = _RTMSG.unpack_from(data, pos + 16)
        if rtype != RTN_UNICAST and rtype != RTN_BLACKHOLE:
            return None
        dst, gateway = self.default_dst, None
        oif = metric = 0
        multipath = False
        for kind, a, b in _parse_attrs(data, pos + 28, end):
            if kind == RTA_DST:
                dst = self._text(fam, data[a:b])
            elif kind == RTA_GATEWAY:
                gateway = self._text(fam, data[a:b])
            elif kind == RTA_OIF:
                oif = int.from_bytes(data[a:b], "little")
            elif kind == RTA_PRIORITY:
                metric = int.from_bytes(data[a:b], "little")
            elif kind == RTA_TABLE:
                table = int.from_bytes(data[a:b], "little")
            elif kind == RTA_MULTIPATH:
                multipath = True
        return self._route(fam, dst_len, table, proto, scope, rtype, rflags, dst, gateway, oif, metric,
                           multipath)

    @staticmethod
    def _build(data: memoryview, pos: int, end: int) -> _Layout | None:
        fmt = "=IHHIIBBBBBBBBI"  # nlmsghdr (5 fields) and rtmsg (9): tuple indexes 0..13
        idx = 14
        checks: list[int] = []
        expected: list[int] = []
        where = {RTA_DST: -1, RTA_GATEWAY: -1, RTA_OIF: -1, RTA_PRIORITY: -1, RTA_TABLE: -1}
        multipath = False
        a = pos + 28
        while a + 4 <= end:
            alen, kind_raw = _RTA.unpack_from(data, a)
            if alen < 4:
                return None
            kind, size = kind_raw & 0x3FFF, alen - 4
            step = (alen + 3) & ~3
            fmt += "HH"
            checks += [idx, idx + 1]
            expected += [alen, kind_raw]
            idx += 2
            if kind in (RTA_DST, RTA_GATEWAY) and size in (4, 16) and where[kind] < 0:
                fmt += f"{size}s"
                where[kind] = idx
                idx += 1
            elif kind in (RTA_OIF, RTA_PRIORITY, RTA_TABLE) and size == 4 and where[kind] < 0:
                fmt += "I"
                where[kind] = idx
                idx += 1
            else:
                multipath = multipath or kind == RTA_MULTIPATH
                if size:
                    fmt += f"{size}x"
            if step - alen:
                fmt += f"{step - alen}x"
            a += step
        st = struct.Struct(fmt)
        if a != end or st.size != end - pos or not checks:
            return None
        return _Layout(st, operator.itemgetter(*checks), tuple(expected), where[RTA_DST], where[RTA_GATEWAY],
                       where[RTA_OIF], where[RTA_PRIORITY], where[RTA_TABLE], multipath)

    def parse(self, data: memoryview, pos: int, end: int) -> tuple[Any, ...] | None:
        length = end - pos
        t = lay = None
        cands = self.layouts.get(length, ())
        for i, cand in enumerate(cands):
            t = cand.st.unpack_from(data, pos)
            if cand.headers(t) == cand.expected:
                lay = cand
                if i:  # most recently matched first: a dump is long runs of one shape
                    cands[0], cands[i] = cands[i], cands[0]  # type: ignore[index]
                break
        if lay is None:
            built = self._build(data, pos, end)
            if built is None:
                return self.parse_slow(data, pos, end)
            cands = self.layouts.setdefault(length, [])
            if len(cands) < _MAX_LAYOUTS_PER_LENGTH:
                cands.append(built)
            lay = built
            t = lay.st.unpack_from(data, pos)
        assert t is not None
        rtype = t[12]
        if rtype != RTN_UNICAST and rtype != RTN_BLACKHOLE:
            return None
        fam = t[5]
        dst = self._text(fam, t[lay.i_dst]) if lay.i_dst >= 0 else self.default_dst
        gateway = None
        if lay.i_gw >= 0:
            raw = t[lay.i_gw]
            gateway = self.gateways.get(raw)
            if gateway is None:
                gateway = self.gateways[raw] = self._text(fam, raw)
        return self._route(fam, t[6], t[lay.i_table] if lay.i_table >= 0 else t[9], t[10], t[11], rtype, t[13],
                           dst, gateway, t[lay.i_oif] if lay.i_oif >= 0 else 0,
                           t[lay.i_prio] if lay.i_prio >= 0 else 0, lay.multipath)
