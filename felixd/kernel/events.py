"""Netlink notifications felixd acts on: someone touched what it owns, or the host's network changed.

A raw NETLINK_ROUTE socket, opened in felixd's namespace, subscribed to link, address, neighbour
and route groups, read from the event loop. The kernel stamps each notification with the port id of
the socket whose request caused it; a socket filter (classic BPF, run by the kernel before queueing)
drops those of felixd's own route socket, so felixd's writes (100k of them while a table loads)
neither fill this socket's buffer nor wake felixd. What gets through is sorted into:

- `touched`: keys of routes felixd owns (its protocol) that someone else added, changed or deleted:
  the daemon rewrites just those (event-driven drift repair);
- `host`: links, addresses other than link-local ones and routes of other protocols in the main
  table changed: the daemon reads the host again and, if what the planner uses changed, rebuilds
  its indexes and resyncs;
- `neighbours`: a permanent neighbour entry was deleted (felixd's VXLAN entries are permanent);
- `overflow`: notifications were lost (ENOBUFS): only a full resync is safe.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct

from felixd.kernel.netns import NetnsWorker
from felixd.kernel.route_codec import RouteParser
from felixd.kernel.rtnl import (
    NUD_PERMANENT,
    RT_SCOPE_LINK,
    RT_TABLE_MAIN,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
    SO_ATTACH_FILTER,
    SO_RCVBUFFORCE,
    messages,
)
from felixd.state import RouteKey

GROUPS = (RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
          | RTMGRP_IPV6_ROUTE)
_RTM_TABLE_OFFSET = 16 + 4  # nlmsghdr, then rtmsg: family, dst_len, src_len, tos, table, protocol
_RTM_PROTOCOL_OFFSET = 16 + 5
_IFA_SCOPE_OFFSET = 16 + 3  # ifaddrmsg: family, prefixlen, flags, scope
_NDM_STATE_OFFSET = 16 + 8  # ndmsg: family, pad, pad16, ifindex, state (u16)
TOUCHED_LIMIT = 4096  # beyond this many touched keys at once, a full resync is cheaper than repairs

# classic BPF (linux/filter.h)
_BPF_LD_W_ABS, _BPF_LD_H_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x28, 0x15, 0x06
_SOCK_FILTER = struct.Struct("=HBBI")


def _be32(value: int) -> int:
    """What a BPF absolute load (network byte order) reads from a native little/big-endian u32."""
    return int.from_bytes(value.to_bytes(4, "little" if struct.pack("=H", 1) == b"\1\0" else "big"), "big")


def _be16(value: int) -> int:
    return int.from_bytes(value.to_bytes(2, "little" if struct.pack("=H", 1) == b"\1\0" else "big"), "big")


def drop_filter(portids: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """A socket filter dropping notifications caused by `portids`, and RTM_NEWNEIGH (ARP churn)."""
    prog: list[tuple[int, int, int, int]] = [(_BPF_LD_H_ABS, 0, 0, 4)]  # nlmsg_type
    rest = 1 + 1 + len(portids)  # the instructions after this jump, up to "accept"
    prog.append((_BPF_JEQ_K, rest, 0, _be16(RTM_NEWNEIGH)))  # -> drop
    prog.append((_BPF_LD_W_ABS, 0, 0, 12))  # nlmsg_pid
    for i, pid in enumerate(portids):
        prog.append((_BPF_JEQ_K, len(portids) - i, 0, _be32(pid)))  # -> drop
    prog.append((_BPF_RET_K, 0, 0, 0xFFFFFFFF))  # accept whole
    prog.append((_BPF_RET_K, 0, 0, 0))  # drop
    return prog


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    raw = b"".join(_SOCK_FILTER.pack(*ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class EventSorter:
    """Sorts notifications (sans-I/O: datagrams in, the four kinds above out)."""

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol
        self.parser = RouteParser({})
        self.touched: dict[RouteKey, tuple[int, bool]] = {}  # key -> (protocol, route there now)
        self.host = False
        self.neighbours = False
        self.overflow = False

    def pending(self) -> bool:
        return bool(self.touched) or self.host or self.neighbours or self.overflow

    def take(self) -> tuple[dict[RouteKey, tuple[int, bool]], bool, bool, bool]:
        out = (self.touched, self.host, self.neighbours, self.overflow)
        self.touched, self.host, self.neighbours, self.overflow = {}, False, False, False
        return out

    def feed(self, data: bytes) -> int:
        """Sort one datagram; returns how many of its messages matter."""
        count = 0
        for pos, end, mtype, _flags, _seq, _pid in messages(data):
            if mtype in (RTM_NEWROUTE, RTM_DELROUTE):
                if pos + _RTM_PROTOCOL_OFFSET >= end:
                    continue
                if data[pos + _RTM_PROTOCOL_OFFSET] == self.protocol:
                    kr = self.parser.parse_slow(data, pos, end)
                    if kr is not None:
                        if len(self.touched) < TOUCHED_LIMIT:
                            self.touched[kr[0]] = (kr[6], mtype == RTM_NEWROUTE)
                        else:
                            self.overflow = True
                        count += 1
                elif data[pos + _RTM_TABLE_OFFSET] == RT_TABLE_MAIN:
                    # a route of the host's own: next hops may resolve differently now
                    self.host = True
                    count += 1
            elif mtype in (RTM_NEWADDR, RTM_DELADDR):
                # IPv6 link-local addresses come and go with every device (and DAD): not felixd's business
                if pos + _IFA_SCOPE_OFFSET < end and data[pos + _IFA_SCOPE_OFFSET] != RT_SCOPE_LINK:
                    self.host = True
                    count += 1
            elif mtype == RTM_DELNEIGH:
                # only permanent entries are felixd's; ordinary ARP/ND entries expire all the time
                if pos + _NDM_STATE_OFFSET + 2 <= end and \
                        int.from_bytes(data[pos + _NDM_STATE_OFFSET:pos + _NDM_STATE_OFFSET + 2],
                                       "little") & NUD_PERMANENT:
                    self.neighbours = True
                    count += 1
            elif mtype in (RTM_NEWLINK, RTM_DELLINK):
                self.host = True
                count += 1
        return count


def interesting(data: bytes, protocol: int) -> int:
    """How many messages in one datagram felixd acts on."""
    return EventSorter(protocol).feed(data)


class KernelEvents:
    """Sets `changed` when the kernel announces something felixd should look at; `sorter` says what."""

    def __init__(self, netns: str | None, protocol: int, ignore_portids: tuple[int, ...] = ()) -> None:
        self.protocol = protocol
        self.changed = asyncio.Event()
        self.sorter = EventSorter(protocol)
        self.seen = 0
        self.overflows = 0
        worker = NetnsWorker(netns)
        try:
            self.sock = worker.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        finally:
            worker.close()
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        except PermissionError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        attach_filter(self.sock, drop_filter(ignore_portids))
        self.sock.bind((0, GROUPS))
        self.sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                # ENOBUFS: notifications were lost, so assume the worst and resync
                self.overflows += 1
                self.sorter.overflow = True
                self.changed.set()
                continue
            n = self.sorter.feed(data)
            if n:
                self.seen += n
                self.changed.set()

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
