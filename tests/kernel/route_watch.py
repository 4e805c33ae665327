"""A route witness: every RTM_NEWROUTE / RTM_DELROUTE in a namespace, with the moment it arrived.

A thread blocks on a netlink socket opened inside the namespace (felixd.kernel.netns.NetnsWorker) and
records each IPv4/IPv6 route notification as (monotonic time, "add" | "del", destination prefix). It
is the kernel's own account, so timings measured against it are what other hosts' traffic sees,
independent of what the daemons report.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from dataclasses import dataclass

from felixd.kernel.netns import NetnsWorker

RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE = 0x40, 0x400
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTA_DST = 1
_NLMSG = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")


@dataclass(frozen=True)
class RouteEvent:
    at: float  # time.monotonic()
    op: str  # "add" or "del"
    prefix: str


class RouteWatch:
    def __init__(self, netns: str) -> None:
        worker = NetnsWorker(netns)
        try:
            self.sock = worker.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        finally:
            worker.close()
        self.sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
        self.sock.settimeout(0.2)
        self.events: list[RouteEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            pos = 0
            while pos + 16 <= len(data):
                length, mtype, _f, _s, _p = _NLMSG.unpack_from(data, pos)
                if mtype in (RTM_NEWROUTE, RTM_DELROUTE) and length >= 16 + _RTMSG.size:
                    family, dst_len = data[pos + 16], data[pos + 17]
                    prefix = self._dst(data[pos + 16 + _RTMSG.size:pos + length], family, dst_len)
                    if prefix is not None:
                        with self._lock:
                            self.events.append(RouteEvent(now, "add" if mtype == RTM_NEWROUTE else "del", prefix))
                pos += (max(length, 16) + 3) & ~3

    @staticmethod
    def _dst(attrs: bytes, family: int, dst_len: int) -> str | None:
        pos = 0
        while pos + 4 <= len(attrs):
            rlen, rtype = _RTA.unpack_from(attrs, pos)
            if rlen < 4:
                return None
            if rtype == RTA_DST:
                raw = attrs[pos + 4:pos + rlen]
                ip = ipaddress.ip_address(raw[:16] if family == socket.AF_INET6 else raw[:4])
                return str(ipaddress.ip_network(f"{ip}/{dst_len}", strict=False))
            pos += (rlen + 3) & ~3
        return None

    def first(self, op: str, prefix: str, after: float = 0.0) -> float | None:
        with self._lock:
            return next((e.at for e in self.events if e.op == op and e.prefix == prefix and e.at >= after), None)

    def wait(self, op: str, prefix: str, after: float, timeout: float) -> float | None:
        """When the first `op` of `prefix` at or after `after` happened; None if none within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            at = self.first(op, prefix, after)
            if at is not None or time.monotonic() > deadline:
                return at
            time.sleep(0.005)  # the witness thread records; this only waits for it

    def changes(self, prefixes: set[str], after: float = 0.0) -> list[RouteEvent]:
        with self._lock:
            return [e for e in self.events if e.prefix in prefixes and e.at >= after]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
