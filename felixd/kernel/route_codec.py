"""Route messages to and from the kernel in the prefix form: no text, no `ipaddress`, per route.

Encoding: a route is a key (`felixd.state.RouteKey`) and a shared `RouteShape`. Everything in an
RTM_NEWROUTE / RTM_DELROUTE but the sequence number, the prefix length and the destination octets
depends only on the shape, the table, the metric, the device index and the protocol, so it is built
once per such template (`RouteTemplate`) and a message is then a few concatenations: the
destination octets are the `Prefix`'s own, the gateway's the `Address`'s.

Parsing: a dump of 100k routes holds a handful of message shapes. The first message of each shape is
walked attribute by attribute to build a struct for the whole message; every later message of the
same length is unpacked by that struct in one call and accepted only if all its attribute headers
(length and type) are the ones of the shape, else it is walked too. `parse_slow` walks every
message (the reference for the fast path; a kernel test checks both read the same).
"""

from __future__ import annotations

import operator
import socket
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from felixd.kernel.rtnl import (
    NLMSGHDR,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RTA,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTM_DELROUTE,
    RTMSG,
    RTN_BLACKHOLE,
    RTN_UNICAST,
    RTNH_F_ONLINK,
    attrs,
)
from felixd.state import IPV6_DEFAULT_METRIC, MAIN_TABLE, RouteKey, RouteKind, RouteShape
from proto.prefix import Address, Prefix

_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_VERSION = {socket.AF_INET: 4, socket.AF_INET6: 6}
_ALEN = {4: 4, 6: 16}
_U32 = struct.Struct("=I")
_U32_ATTR = struct.Struct("=HHI")
_HEAD = {(v, n): bytes((v, n)) for v in (4, 6) for n in range(_ALEN[v] * 8 + 1)}
_ZERO = {4: bytes(4), 6: bytes(16)}

# ---------------------------------------------------------------- encoding


class RouteTemplate:
    """The fixed parts of one kind of route message; `message(seq, prefix)` builds one."""

    __slots__ = ("_rtmsg", "alen", "head", "mids", "tail")

    def __init__(self, msg_type: int, flags: int, version: int, table: int, metric: int, protocol: int,
                 shape: RouteShape | None, oif: int | None) -> None:
        alen = self.alen = _ALEN[version]
        family = _FAMILY[version]
        gw: bytes | None = None
        if msg_type == RTM_DELROUTE or shape is None:
            # Match on prefix, table, protocol and metric only: the kernel then deletes exactly our route
            # whatever its next hop, and never one of another protocol.
            rtm_type, scope, rtm_flags, oif = 0, RT_SCOPE_NOWHERE, 0, None
        else:
            blackhole = shape.kind == RouteKind.BLACKHOLE
            rtm_type = RTN_BLACKHOLE if blackhole else RTN_UNICAST
            scope = RT_SCOPE_LINK if shape.scope_link else RT_SCOPE_UNIVERSE
            rtm_flags = RTNH_F_ONLINK if shape.onlink else 0
            if blackhole:
                oif = None
            elif shape.gateway is not None:
                if shape.gateway[0] != version:
                    raise ValueError(f"a next hop of IPv{shape.gateway[0]} on an IPv{version} route is not supported")
                gw = shape.gateway[1:]
        tail = _U32_ATTR.pack(8, RTA_TABLE, table)
        if metric:
            tail += _U32_ATTR.pack(8, RTA_PRIORITY, metric)
        if gw is not None:
            tail += RTA.pack(4 + alen, RTA_GATEWAY) + gw
        if oif is not None:
            tail += _U32_ATTR.pack(8, RTA_OIF, oif)
        self.tail = tail
        self._rtmsg = (family, 0, 0, table if table < 256 else 0, protocol, scope, rtm_type, rtm_flags)
        # message length, type and flags: the same for every prefix length but 0 (no RTA_DST then)
        size = NLMSGHDR.size + RTMSG.size + 4 + alen + len(tail)
        self.head = (struct.pack("=IHH", size, msg_type, flags), struct.pack("=IHH", size - 4 - alen, msg_type, flags))
        self.mids: list[bytes | None] = [None] * (alen * 8 + 1)

    def _mid(self, dst_len: int) -> bytes:
        """pid, rtmsg and the RTA_DST header for one prefix length."""
        fam, src, tos, table, proto, scope, rtype, rflags = self._rtmsg
        mid = _U32.pack(0) + RTMSG.pack(fam, dst_len, src, tos, table, proto, scope, rtype, rflags)
        if dst_len:
            mid += RTA.pack(4 + self.alen, RTA_DST)
        self.mids[dst_len] = mid
        return mid

    def message(self, seq: int, prefix: Prefix) -> bytes:
        dst_len = prefix[1]
        mid = self.mids[dst_len] or self._mid(dst_len)
        if dst_len:
            return self.head[0] + _U32.pack(seq) + mid + prefix[2:] + self.tail
        return self.head[1] + _U32.pack(seq) + mid + self.tail


def split_key(key: RouteKey) -> tuple[Prefix, int, int]:
    if type(key) is bytes:
        return key, MAIN_TABLE, IPV6_DEFAULT_METRIC if key[0] == 6 else 0
    return key  # type: ignore[return-value]


def encode_route(msg_type: int, flags: int, seq: int, key: RouteKey, shape: RouteShape | None, oif: int | None,
                 protocol: int) -> bytes:
    """One RTM_NEWROUTE / RTM_DELROUTE message (`oif`: the ifindex of `shape.dev`)."""
    prefix, table, metric = split_key(key)
    return RouteTemplate(msg_type, flags, prefix[0], table, metric, protocol, shape, oif).message(seq, prefix)


# ---------------------------------------------------------------- parsing

# (key, kind, gateway, dev, onlink, scope_link, protocol, oif): a dumped route. `[1:6]` compares with
# `RouteShape.signature(version)`.
KernelRoute = tuple[RouteKey, RouteKind, Address | None, str | None, bool, bool, int, int]


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


class RouteParser:
    """RTM_NEWROUTE / RTM_DELROUTE -> KernelRoute (None for kinds felixd never writes)."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names
        self.layouts: dict[int, list[_Layout]] = {}
        self.gateways: dict[bytes, Address] = {}  # one Address object per distinct gateway

    def _gateway(self, version: int, raw: bytes) -> Address:
        gw = self.gateways.get(raw)
        if gw is None:
            gw = self.gateways[raw] = bytes((version,)) + raw
        return gw

    def _route(self, fam: int, dst_len: int, table: int, proto: int, scope: int, rtype: int, rflags: int,
               dst: bytes | None, gateway: bytes | None, oif: int, metric: int, multipath: bool) -> KernelRoute:
        version = _VERSION[fam]
        prefix = _HEAD[version, dst_len] + (dst if dst is not None else _ZERO[version])
        default = IPV6_DEFAULT_METRIC if version == 6 else 0
        key: RouteKey = prefix if table == MAIN_TABLE and metric == default else (prefix, table, metric)
        onlink, scope_link = bool(rflags & RTNH_F_ONLINK), scope == RT_SCOPE_LINK
        if rtype == RTN_BLACKHOLE:
            # IPv6 blackholes report dev lo; a blackhole shape has no device
            return (key, RouteKind.BLACKHOLE, None, None, onlink, scope_link, proto, oif)
        dev = None if multipath or not oif else self.names.get(oif, str(oif))
        gw = self._gateway(version, gateway) if gateway is not None else None
        return (key, RouteKind.UNICAST, gw, dev, onlink, scope_link, proto, oif)

    def parse_slow(self, data: bytes | memoryview, pos: int, end: int) -> KernelRoute | None:
        fam, dst_len, _src, _tos, table, proto, scope, rtype, rflags = RTMSG.unpack_from(data, pos + 16)
        if (rtype != RTN_UNICAST and rtype != RTN_BLACKHOLE) or fam not in _VERSION:
            return None
        dst = gateway = None
        oif = metric = 0
        multipath = False
        for kind, a, b in attrs(data, pos + 28, end):
            if kind == RTA_DST:
                dst = bytes(data[a:b])
            elif kind == RTA_GATEWAY:
                gateway = bytes(data[a:b])
            elif kind == RTA_OIF:
                oif = int.from_bytes(data[a:b], "little")
            elif kind == RTA_PRIORITY:
                metric = int.from_bytes(data[a:b], "little")
            elif kind == RTA_TABLE:
                table = int.from_bytes(data[a:b], "little")
            elif kind == RTA_MULTIPATH:
                multipath = True
        return self._route(fam, dst_len, table, proto, scope, rtype, rflags, dst, gateway, oif, metric, multipath)

    @staticmethod
    def _build(data: bytes | memoryview, pos: int, end: int) -> _Layout | None:
        fmt = "=IHHIIBBBBBBBBI"  # nlmsghdr (5 fields) and rtmsg (9): tuple indexes 0..13
        idx = 14
        checks: list[int] = []
        expected: list[int] = []
        where = {RTA_DST: -1, RTA_GATEWAY: -1, RTA_OIF: -1, RTA_PRIORITY: -1, RTA_TABLE: -1}
        multipath = False
        a = pos + 28
        while a + 4 <= end:
            alen, kind_raw = RTA.unpack_from(data, a)
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

    def parse(self, data: bytes | memoryview, pos: int, end: int) -> KernelRoute | None:
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
                cands.append(built)  # type: ignore[union-attr]
            lay = built
            t = lay.st.unpack_from(data, pos)
        assert t is not None
        rtype = t[12]
        if (rtype != RTN_UNICAST and rtype != RTN_BLACKHOLE) or t[5] not in _VERSION:
            return None
        return self._route(t[5], t[6], t[lay.i_table] if lay.i_table >= 0 else t[9], t[10], t[11], rtype, t[13],
                           t[lay.i_dst] if lay.i_dst >= 0 else None, t[lay.i_gw] if lay.i_gw >= 0 else None,
                           t[lay.i_oif] if lay.i_oif >= 0 else 0, t[lay.i_prio] if lay.i_prio >= 0 else 0,
                           lay.multipath)
