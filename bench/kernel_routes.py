"""The routes in one namespace's kernel table, per protocol number, followed from netlink events.

A netlink socket is opened inside the namespace (the calling thread enters it with setns(2) just
long enough to create the socket), subscribed to IPv4 route events, and seeded with one dump. From
then on every RTM_NEWROUTE / RTM_DELROUTE updates a per-protocol map of destinations, so a benchmark
learns the moment a table is complete without spawning a process or dumping 100,000 routes per
poll. If the socket overflows (ENOBUFS: events were dropped), the queue is drained and the table is
dumped again, which gives the right state because every event after the dump is applied in order.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import struct
from collections.abc import Iterable, Sequence

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
RTMGRP_IPV4_ROUTE = 0x40
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTA_DST, RTA_TABLE = 1, 15
RT_TABLE_MAIN = 254
RTN_UNICAST, RTN_BLACKHOLE = 1, 6
SO_RCVBUFFORCE = 33
RCVBUF = 256 << 20  # a ceiling, not an allocation: room for bursts of a million events

_libc = ctypes.CDLL(None, use_errno=True)
_HDR = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in_netns(netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside the named namespace (`/run/netns/NAME`); the thread returns home."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(family, kind, proto)
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)


class KernelRoutes:
    """Destinations per route protocol in one table of one namespace (IPv4)."""

    def __init__(self, netns: str, protocols: Iterable[int], table: int = RT_TABLE_MAIN) -> None:
        self.netns = netns
        self.table = table
        self.routes: dict[int, dict[bytes, int]] = {p: {} for p in protocols}
        self.counts: dict[int, dict[int, int]] = {p: {} for p in self.routes}
        self.resyncs = 0
        self.events = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.events.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        self.events.bind((0, RTMGRP_IPV4_ROUTE))
        self.events.setblocking(False)
        self._buf = bytearray(1 << 16)
        self._dump()

    def fileno(self) -> int:
        return self.events.fileno()

    def count(self, protocol: int, rtype: int = RTN_UNICAST) -> int:
        return self.counts[protocol].get(rtype, 0)

    def has(self, protocol: int, key: bytes) -> bool:
        return key in self.routes[protocol]

    # ------------------------------------------------------------ reading

    def pump(self) -> int:
        """Apply every event queued now (non-blocking); returns how many messages were read."""
        n = 0
        view = memoryview(self._buf)
        while True:
            try:
                got = self.events.recv_into(view)
            except BlockingIOError:
                return n
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._overflowed()
                continue
            self._apply(self._buf, got)
            n += 1

    def _overflowed(self) -> None:
        # Events were dropped. Drain what is still queued (older than the loss), then dump afresh.
        while True:
            try:
                self.events.recv_into(self._buf)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
        self.resyncs += 1
        self._dump()

    def _dump(self) -> None:
        for p in self.routes:
            self.routes[p].clear()
            self.counts[p].clear()
        with socket_in_netns(self.netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as s:
            s.bind((0, 0))
            rtmsg = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
            s.send(_HDR.pack(_HDR.size + len(rtmsg), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + rtmsg)
            buf = bytearray(1 << 20)
            while True:
                got = s.recv_into(buf)
                if self._apply(buf, got):
                    return

    def _apply(self, data: bytearray, size: int) -> bool:
        """Apply the route messages in data[:size]; True at the end of a dump."""
        off = 0
        done = False
        routes, counts, want_table = self.routes, self.counts, self.table
        while off + 16 <= size:
            length, mtype = _HDR.unpack_from(data, off)[:2]
            if length < 16:
                break
            if mtype in (RTM_NEWROUTE, RTM_DELROUTE):
                body = off + 16
                proto = data[body + 5]
                mine = routes.get(proto)
                if mine is not None:
                    family, dst_len, table, rtype = data[body], data[body + 1], data[body + 4], data[body + 7]
                    dst = b""
                    a, end = body + 12, off + length
                    while a + 4 <= end:
                        alen, atype = _ATTR.unpack_from(data, a)
                        if alen < 4:
                            break
                        if atype == RTA_DST:
                            dst = bytes(data[a + 4:a + alen])
                        elif atype == RTA_TABLE:
                            table = _U32.unpack_from(data, a + 4)[0]
                        a += (alen + 3) & ~3
                    if table == want_table:
                        key = bytes((family, dst_len)) + dst
                        tally = counts[proto]
                        old = mine.get(key)
                        if mtype == RTM_NEWROUTE:
                            if old != rtype:
                                mine[key] = rtype
                                tally[rtype] = tally.get(rtype, 0) + 1
                                if old is not None:
                                    tally[old] -= 1
                        elif old is not None:
                            del mine[key]
                            tally[old] -= 1
            elif mtype == NLMSG_DONE:
                done = True
            elif mtype == NLMSG_ERROR:
                code = -struct.unpack_from("=i", data, off + 16)[0]
                if code:
                    raise OSError(code, f"netlink route dump in {self.netns}: {os.strerror(code)}")
            off += (length + 3) & ~3
        return done

    def close(self) -> None:
        self.events.close()


def route_key(prefix: str) -> bytes:
    """The key KernelRoutes uses for an IPv4 prefix in text form: family, length, address octets."""
    addr, _, length = prefix.partition("/")
    return bytes((socket.AF_INET, int(length))) + socket.inet_aton(addr)


def pump_all(tables: Sequence[KernelRoutes], timeout: float) -> int:
    """Wait up to `timeout` for events on any of the tables, then apply what is queued on each."""
    if timeout > 0:
        poller = select.poll()
        for t in tables:
            poller.register(t.fileno(), select.POLLIN)
        poller.poll(timeout * 1000)
    return sum(t.pump() for t in tables)
