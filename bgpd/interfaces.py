"""Which interface the kernel reaches an address on: what BGPFilter `interface` rules test (BIRD's
`ifname` of a route is the interface of its resolved next hop).

bgpd never writes the kernel's routes; it reads the main table the way `ip route get` would decide
(longest prefix, then lowest metric) from /proc/net/route and /proc/net/ipv6_route, so no netlink
library is loaded for it. The table is read again when it is older than `max_age`; a decision made
with it is kept with the route until the route comes again (as BIRD evaluates a filter once per
route). Pure parsing (`parse_v4`, `parse_v6`, `RouteTable`) is separate from the reading (`KernelInterfaces`).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from proto.record import record

Entry = tuple[int, int, int, str]  # (prefix length, network as int, metric, interface)


def parse_v4(text: str) -> list[Entry]:
    """/proc/net/route: Iface, Destination, Gateway, Flags, RefCnt, Use, Metric, Mask (little-endian hex)."""
    out: list[Entry] = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8 or not int(f[3], 16) & 1:  # RTF_UP
            continue
        # the address's network-order octets, printed as a host-order (little-endian) number
        net = struct.unpack("<I", bytes.fromhex(f[1]))[0]
        plen = bin(struct.unpack("<I", bytes.fromhex(f[7]))[0]).count("1")
        out.append((plen, net, int(f[6]), f[0]))
    return out


def parse_v6(text: str) -> list[Entry]:
    """/proc/net/ipv6_route: dest, dest length, src, src length, gateway, metric, refcnt, use, flags, iface."""
    out: list[Entry] = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or not int(f[8], 16) & 1:  # RTF_UP
            continue
        out.append((int(f[1], 16), int(f[0], 16), int(f[5], 16), f[9]))
    return out


@record(frozen=True)
class RouteTable:
    v4: tuple[Entry, ...] = ()
    v6: tuple[Entry, ...] = ()

    def interface(self, address: str) -> str | None:
        """The interface of the most specific route to `address` (lowest metric among equals)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        bits = 32 if ip.version == 4 else 128
        value = int(ip)
        best: tuple[int, int] | None = None
        name = None
        for plen, net, metric, iface in self.v4 if ip.version == 4 else self.v6:
            if plen and (value >> (bits - plen)) != (net >> (bits - plen)):
                continue
            rank = (-plen, metric)
            if best is None or rank < best:
                best, name = rank, iface
        return name


def read_table(v4: Path = Path("/proc/net/route"), v6: Path = Path("/proc/net/ipv6_route")) -> RouteTable:
    def read(path: Path) -> str:
        try:
            return path.read_text()
        except OSError:
            return ""
    return RouteTable(tuple(parse_v4(read(v4))), tuple(parse_v6(read(v6))))


class KernelInterfaces:
    """A callable `address -> interface name` over the kernel's main table, read again when stale."""

    def __init__(self, max_age: float = 5.0, reader: Callable[[], RouteTable] = read_table,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.reader = reader
        self.clock = clock
        self._table: RouteTable | None = None
        self._read_at = 0.0

    def __call__(self, address: str) -> str | None:
        now = self.clock()
        if self._table is None or now - self._read_at > self.max_age:
            self._table = self.reader()
            self._read_at = now
        return self._table.interface(address)


def addresses_text(entries: Iterable[Entry], version: int) -> list[str]:
    """The entries as `prefix dev iface metric` text (for logs and tests)."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    size = 4 if version == 4 else 16
    return [f"{socket.inet_ntop(family, net.to_bytes(size, 'big'))}/{plen} dev {iface} metric {metric}"
            for plen, net, metric, iface in entries]
