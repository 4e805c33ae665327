"""The raw netlink route socket: route changes many per sendmsg with errors matched by sequence, and
the dumps felixd reads (links, addresses, routes), parsed by hand.

pyroute2 programs a few thousand routes a second one call at a time; here RTM_NEWROUTE /
RTM_DELROUTE messages (`felixd.kernel.route_codec`) are packed back to back into one buffer per
sendmsg. The kernel handles a netlink write synchronously, in the sender's context, so when sendmsg
returns every message of the buffer has been processed and its error (if any) queued. Only the
last message of each buffer asks for an ACK: errors come back without being asked for, tagged with
the failing message's sequence number, and the final ACK says that nothing more is coming.

Encoding (`encode`) and transmitting (`transmit`) are separate steps so that the daemon can encode
on its event loop and leave the kernel's share of a big batch to a worker thread (the GIL is free
while the kernel works), or do both inline for a small change (no thread hop: lowest latency).
The same socket serves every route write, so the netlink notifications of felixd's own writes all
carry its port id (`portid`), which `felixd.kernel.events` filters out in the kernel.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator, Sequence

from felixd.kernel.netns import NetnsWorker
from felixd.kernel.route_codec import KernelRoute, RouteParser, RouteTemplate, split_key
from felixd.kernel.rtnl import (
    ERR,
    IFA_ADDRESS,
    IFA_LOCAL,
    IFADDRMSG,
    IFF_LOWER_UP,
    IFF_RUNNING,
    IFF_UP,
    IFINFOMSG,
    IFLA_ADDRESS,
    IFLA_IFNAME,
    IFLA_MTU,
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_GET_STRICT_CHK,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGERR_ATTR_MSG,
    NLMSGHDR,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMSG,
    SO_RCVBUFFORCE,
    SO_SNDBUFFORCE,
    SOL_NETLINK,
    attrs,
)
from felixd.state import Op, RouteError, RouteKind, RouteOp, RouteShape
from proto.record import record

# Messages per sendmsg: the buffer (~70-100 octets a route) stays far below the forced socket buffer.
CHUNK = 4096
_BUF_SIZE = 32 << 20
_REPLACE_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
_LINK_STATE = IFF_UP | IFF_RUNNING | IFF_LOWER_UP
_SEQ = struct.Struct("=I")


@record(frozen=True, slots=True)
class Link:
    index: int
    mtu: int
    state: int  # IFF_UP | IFF_RUNNING | IFF_LOWER_UP bits
    mac: bytes = b""


class NetlinkError(OSError):
    pass


class Batch:
    """Encoded route messages for one sendmsg, and which op each sequence number belongs to."""

    __slots__ = ("data", "errors", "first_seq", "ops")

    def __init__(self, data: bytes, first_seq: int, ops: list[RouteOp], errors: list[RouteError]) -> None:
        self.data = data
        self.first_seq = first_seq
        self.ops = ops  # ops[i] was sent with sequence number first_seq + i
        self.errors = errors  # refused before sending (no device, bad shape)


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
        self.portid: int = self.sock.getsockname()[0]
        self._seq = 1
        self._rbuf = bytearray(1 << 20)
        self.dumps = 0  # route dumps made (tests count them: a feed delta must make none)
        self.messages = 0  # route messages sent

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BulkNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self, n: int = 1) -> int:
        if self._seq + n >= 0xFFFFFFFF:
            self._seq = 1
        seq = self._seq
        self._seq += n
        return seq

    def _recv(self) -> memoryview:
        n = self.sock.recv_into(self._rbuf)
        return memoryview(self._rbuf)[:n]

    @staticmethod
    def _ext_message(data: memoryview, pos: int, end: int, flags: int) -> str:
        # With NETLINK_CAP_ACK the original request is not echoed: attributes follow the 16-octet header.
        if not flags & NLM_F_ACK_TLVS:
            return ""
        for kind, a, b in attrs(data, pos + 20 + 16, end):
            if kind == NLMSGERR_ATTR_MSG:
                return bytes(data[a:b]).rstrip(b"\0").decode(errors="replace")
        return ""

    # ------------------------------------------------------------ writes

    def encode(self, ops: Sequence[RouteOp], ifindex: dict[str, int]) -> Batch:
        """One buffer for `ops` (at most CHUNK of them), the last message asking for the ACK."""
        errors: list[RouteError] = []
        sent: list[RouteOp] = []
        parts: list[bytes] = []
        append, pack_seq = parts.append, _SEQ.pack
        first = seq = self._next_seq(len(ops))
        # the template of the previous op: consecutive ops mostly differ in their prefix only
        t_op: Op | None = None
        t_shape: RouteShape | None = None
        t_proto = t_version = -1
        head = tail = b""
        mids: list[bytes | None] = []
        template: RouteTemplate | None = None
        for item in ops:
            op, key, shape, protocol = item
            if not (shape is t_shape and op is t_op and protocol == t_proto and type(key) is bytes
                    and key[0] == t_version):
                # another template: find the device, build the template (and reuse it while it fits)
                if type(key) is bytes:
                    prefix, table, metric = key, 254, 1024 if key[0] == 6 else 0
                else:
                    prefix, table, metric = split_key(key)
                oif = None
                if op is Op.REPLACE:
                    assert shape is not None
                    if shape.dev is not None and shape.kind != RouteKind.BLACKHOLE:
                        oif = ifindex.get(shape.dev)
                        if oif is None:
                            errors.append(RouteError(op, key, errno.ENODEV, f"no device {shape.dev}"))
                            continue
                try:
                    template = RouteTemplate(RTM_NEWROUTE if op is Op.REPLACE else RTM_DELROUTE,
                                             _REPLACE_FLAGS if op is Op.REPLACE else NLM_F_REQUEST,
                                             prefix[0], table, metric, protocol,
                                             shape if op is Op.REPLACE else None, oif)
                except ValueError as exc:
                    errors.append(RouteError(op, key, errno.EINVAL, str(exc)))
                    t_op = None
                    continue
                if type(key) is bytes:
                    t_op, t_shape, t_proto, t_version = op, shape, protocol, key[0]
                    head, mids, tail = template.head[0], template.mids, template.tail
                else:
                    t_op = None  # off the main table or default metric: a template per route
                append(template.message(seq, prefix))
            else:
                plen = key[1]
                mid = mids[plen]
                if mid is None or not plen:
                    append(template.message(seq, key))  # type: ignore[union-attr]
                else:
                    append(head + pack_seq(seq) + mid + key[2:] + tail)
            sent.append(item)
            seq += 1
        if parts:
            # Only the last message asks for an ACK: errors arrive unasked, and the ACK closes the buffer.
            last = parts[-1]
            flags = int.from_bytes(last[6:8], "little") | NLM_F_ACK
            parts[-1] = last[:6] + flags.to_bytes(2, "little") + last[8:]
        return Batch(b"".join(parts), first, sent, errors)

    def transmit(self, batch: Batch) -> list[RouteError]:
        """Send one encoded batch and collect the kernel's refusals (safe to run in a worker thread)."""
        errors = list(batch.errors)
        if not batch.ops:
            return errors
        self.sock.sendall(batch.data)
        self.messages += len(batch.ops)
        first, ops = batch.first_seq, batch.ops
        last_seq = first + len(ops) - 1
        done = False
        while not done:
            data = self._recv()
            pos, end = 0, len(data)
            while pos + 16 <= end:
                length, mtype, mflags, seq, _pid = NLMSGHDR.unpack_from(data, pos)
                if length < 16:
                    break
                if mtype == NLMSG_ERROR and first <= seq <= last_seq:
                    (code,) = ERR.unpack_from(data, pos + 16)
                    if code:
                        op, key, _shape, _proto = ops[seq - first]
                        errors.append(RouteError(op, key, -code, self._ext_message(data, pos, pos + length, mflags)))
                    if seq == last_seq:
                        done = True
                pos += (length + 3) & ~3
        return errors

    def apply(self, ops: Sequence[RouteOp], ifindex: dict[str, int], chunk: int = CHUNK) -> list[RouteError]:
        """Replace or delete routes; returns one RouteError per route refused."""
        errors: list[RouteError] = []
        for start in range(0, len(ops), chunk):
            errors.extend(self.transmit(self.encode(ops[start:start + chunk], ifindex)))
        return errors

    # ------------------------------------------------------------ dumps

    def _dump(self, msg_type: int, payload: bytes) -> Iterator[tuple[memoryview, int, int, int]]:
        """(buffer, message start, message end, message type) of every message of a dump."""
        seq = self._next_seq()
        self.sock.sendall(NLMSGHDR.pack(16 + len(payload), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + payload)
        while True:
            data = self._recv()
            pos, end = 0, len(data)
            while pos + 16 <= end:
                length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, pos)
                if length < 16:
                    break
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return
                    if mtype == NLMSG_ERROR:
                        (code,) = ERR.unpack_from(data, pos + 16)
                        if code:
                            raise NetlinkError(-code, f"dump failed: {os.strerror(-code)}")
                        return
                    yield data, pos, pos + length, mtype
                pos += (length + 3) & ~3

    def links(self) -> dict[str, int]:
        """Interface name -> ifindex."""
        return {name: link.index for name, link in self.link_states().items()}

    def link_states(self) -> dict[str, Link]:
        """Interface name -> index, MTU, up/running state and MAC address."""
        out: dict[str, Link] = {}
        for data, pos, end, mtype in self._dump(RTM_GETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            if mtype != RTM_NEWLINK:
                continue
            _fam, _type, index, flags, _change = IFINFOMSG.unpack_from(data, pos + 16)
            name, mtu, mac = None, 1500, b""
            for kind, a, b in attrs(data, pos + 32, end):
                if kind == IFLA_IFNAME:
                    name = bytes(data[a:b]).rstrip(b"\0").decode()
                elif kind == IFLA_MTU:
                    mtu = int.from_bytes(data[a:b], "little")
                elif kind == IFLA_ADDRESS:
                    mac = bytes(data[a:b])
            if name is not None:
                out[name] = Link(index, mtu, flags & _LINK_STATE, mac)
        return out

    def addresses(self) -> list[tuple[int, int, bytes, int, int]]:
        """(ifindex, IP version, address octets, prefix length, scope) of every address."""
        out = []
        for data, pos, end, mtype in self._dump(RTM_GETADDR, IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            if mtype != RTM_NEWADDR:
                continue
            fam, plen, _flags, scope, index = IFADDRMSG.unpack_from(data, pos + 16)
            if fam not in (socket.AF_INET, socket.AF_INET6):
                continue
            found: dict[int, bytes] = {}
            for kind, a, b in attrs(data, pos + 24, end):
                if kind in (IFA_ADDRESS, IFA_LOCAL):
                    found[kind] = bytes(data[a:b])
            # IFA_LOCAL is the address itself on point-to-point links; IFA_ADDRESS their peer
            raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
            if raw is not None:
                out.append((index, 4 if fam == socket.AF_INET else 6, raw, plen, scope))
        return out

    def dump_routes(self, family: int, protocol: int | None = None, names: dict[int, str] | None = None,
                    fast: bool = True, skip_protocol: int | None = None) -> Iterator[KernelRoute]:
        """Unicast and blackhole routes of `family` in every table, of `protocol` (None: every one but
        `skip_protocol`), as KernelRoutes (plain tuples: no per-route objects beyond them).

        `fast=False` parses every message attribute by attribute (the reference for the fast path).
        """
        self.dumps += 1
        # With strict checking the kernel filters by protocol itself (older kernels ignore the filter;
        # the check below decides either way).
        req = RTMSG.pack(family, 0, 0, 0, 0, protocol or 0, 0, 0, 0)
        parser = RouteParser(names or {})
        parse = parser.parse if fast else parser.parse_slow
        for data, pos, end, mtype in self._dump(RTM_GETROUTE, req):
            if mtype != RTM_NEWROUTE:
                continue
            proto = data[pos + 21]  # rtm_protocol: skip before parsing what is not wanted
            if (protocol is not None and proto != protocol) or proto == skip_protocol:
                continue
            kr = parse(data, pos, end)
            if kr is not None:
                yield kr
