"""rtnetlink numbers and the two framing helpers every raw netlink module here needs.

Values are from linux/netlink.h, linux/rtnetlink.h, linux/if_link.h and linux/if_addr.h. Messages
are built and read with `struct` in native byte order, as netlink defines them.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_DUMP = 0x300
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFA_ADDRESS = 1
IFA_LOCAL = 2

RTN_UNICAST = 1
RTN_BLACKHOLE = 6
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255
RTNH_F_ONLINK = 4
RTPROT_KERNEL = 2
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_LOWER_UP = 0x10000
NUD_PERMANENT = 0x80

RTMGRP_LINK = 0x1
RTMGRP_NEIGH = 0x4
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400

SOL_NETLINK = 270
SO_SNDBUFFORCE = 32  # not exported by the socket module
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTA = struct.Struct("=HH")
ERR = struct.Struct("=i")


def attrs(data: bytes | memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute between `pos` and `end`."""
    while pos + 4 <= end:
        length, kind = RTA.unpack_from(data, pos)
        if length < 4:
            break
        yield kind & 0x3FFF, pos + 4, pos + length
        pos += (length + 3) & ~3


def messages(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int, int, int]]:
    """(start, end, type, flags, seq, pid) of each netlink message in one datagram."""
    pos, end = 0, len(data)
    while pos + 16 <= end:
        length, mtype, flags, seq, pid = NLMSGHDR.unpack_from(data, pos)
        if length < 16:
            break
        yield pos, min(pos + length, end), mtype, flags, seq, pid
        pos += (length + 3) & ~3


class KernelRefused(OSError):
    """The kernel refused a change to one of felixd's own devices: which change, and its errno."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(code, os.strerror(code))
        self.what = what

    def __str__(self) -> str:
        return f"{self.what}: {self.strerror} ({errno.errorcode.get(self.errno or 0, self.errno)})"
