"""Netlink notifications that should make felixd resync: someone touched what it owns.

A raw NETLINK_ROUTE socket, opened in felixd's namespace, subscribed to link, address, neighbour
and route groups, read from the event loop. Only a few kinds matter: any change to a route of
felixd's protocol (deleted or rewritten by someone else), links and addresses other than link-local
ones (a device went down or came back, an uplink address changed), and deletions of permanent
neighbour entries. Our own writes are announced
too; a reconcile that changes nothing announces nothing, so a resync triggered by our own writes
finds no difference and the loop settles.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from felixd.kernel.netns import NetnsWorker

RTMGRP_LINK = 0x1
RTMGRP_NEIGH = 0x4
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR
          | RTMGRP_IPV6_ROUTE)

RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_DELNEIGH = 29
_NLMSGHDR = struct.Struct("=IHHII")
_RTM_PROTOCOL_OFFSET = 16 + 5  # nlmsghdr, then rtmsg: family, dst_len, src_len, tos, table, protocol
_IFA_SCOPE_OFFSET = 16 + 3  # ifaddrmsg: family, prefixlen, flags, scope
_NDM_STATE_OFFSET = 16 + 8  # ndmsg: family, pad, pad16, ifindex, state (u16)
RT_SCOPE_LINK = 253
NUD_PERMANENT = 0x80


def interesting(data: bytes, protocol: int) -> int:
    """How many messages in one datagram should trigger a resync."""
    count = 0
    pos = 0
    while pos + 16 <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < 16:
            break
        if mtype in (RTM_NEWROUTE, RTM_DELROUTE):
            if pos + _RTM_PROTOCOL_OFFSET < len(data) and data[pos + _RTM_PROTOCOL_OFFSET] == protocol:
                count += 1
        elif mtype in (RTM_NEWADDR, RTM_DELADDR):
            # IPv6 link-local addresses come and go with every device (and DAD): not felixd's business
            if pos + _IFA_SCOPE_OFFSET < len(data) and data[pos + _IFA_SCOPE_OFFSET] != RT_SCOPE_LINK:
                count += 1
        elif mtype == RTM_DELNEIGH:
            # only permanent entries are felixd's; ordinary ARP/ND entries expire all the time
            if pos + _NDM_STATE_OFFSET + 2 <= len(data) and \
                    int.from_bytes(data[pos + _NDM_STATE_OFFSET:pos + _NDM_STATE_OFFSET + 2], "little") & NUD_PERMANENT:
                count += 1
        elif mtype in (RTM_NEWLINK, RTM_DELLINK):
            count += 1
        pos += (length + 3) & ~3
    return count


class KernelEvents:
    """Sets `changed` when the kernel announces something felixd should look at."""

    def __init__(self, netns: str | None, protocol: int) -> None:
        self.protocol = protocol
        self.changed = asyncio.Event()
        self.seen = 0
        self.overflows = 0
        worker = NetnsWorker(netns)
        try:
            self.sock = worker.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        finally:
            worker.close()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
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
                self.changed.set()
                continue
            n = interesting(data, self.protocol)
            if n:
                self.seen += n
                self.changed.set()

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
