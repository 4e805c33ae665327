"""Shared set-up for felixd's kernel tests: namespaces, pods, a netlink change witness, a scripted feed."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from felixd.kernel.netns import NetnsWorker
from lab.netns import Netns, NetnsSet
from proto.feed import FeedEncoder, FeedRoute
from runtime.control import ControlError

PREFIX = "tk"

# RTMGRP_* bits: links, neighbours, IPv4/IPv6 addresses and routes
_GROUPS = 0x1 | 0x4 | 0x10 | 0x40 | 0x100 | 0x400
_NLMSGHDR = struct.Struct("=IHHII")


class ChangeWitness:
    """Counts every link, address, neighbour and route notification in a namespace.

    Independent of what felixd says it did: the kernel announces every change it makes, so a quiet
    witness proves that nothing was written.
    """

    def __init__(self, netns: str) -> None:
        self._worker = NetnsWorker(netns)
        self.sock = self._worker.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: see every message of a load
        self.sock.bind((0, _GROUPS))
        self.sock.setblocking(False)
        self._worker.close()

    def drain(self) -> list[int]:
        """Message types received since the last drain."""
        types: list[int] = []
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return types
            pos = 0
            while pos + 16 <= len(data):
                length, mtype, _f, _s, _p = _NLMSGHDR.unpack_from(data, pos)
                types.append(mtype)
                pos += (max(length, 16) + 3) & ~3

    def drain_routes(self) -> list[tuple[int, str]]:
        """(message type, prefix) of every route notification since the last drain (others dropped)."""
        from felixd.kernel.route_codec import RouteParser
        from felixd.state import key_text

        parser, out = RouteParser({}), []
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return out
            pos = 0
            while pos + 16 <= len(data):
                length, mtype, _f, _s, _p = _NLMSGHDR.unpack_from(data, pos)
                if mtype in (24, 25):  # RTM_NEWROUTE, RTM_DELROUTE
                    kr = parser.parse_slow(data, pos, pos + length)
                    if kr is not None:
                        out.append((mtype, key_text(kr[0])))
                pos += (max(length, 16) + 3) & ~3

    def close(self) -> None:
        self.sock.close()


@dataclass
class Host:
    ns: Netns
    uplink: str
    address: str  # underlay address, no prefix length


def routes_json(ns: Netns, *args: str) -> list[dict[str, object]]:
    out = ns.ip("-j", "route", "show", *args).stdout
    return json.loads(out) if out.strip() else []


def route_lines(ns: Netns, family: str = "-4", *args: str) -> list[str]:
    return sorted(line.strip() for line in ns.ip(family, "route", "show", *args).stdout.splitlines()
                  if line.strip())


def two_hosts(nss: NetnsSet, subnet: str = "172.31.0") -> tuple[Host, Host]:
    """Two namespaces joined by a veth (eth0 on each side), addresses .1 and .2 of a /24."""
    a, b = nss.add("a"), nss.add("b")
    nss.veth(a, "eth0", b, "eth0")
    a.ip("addr", "add", f"{subnet}.1/24", "dev", "eth0")
    b.ip("addr", "add", f"{subnet}.2/24", "dev", "eth0")
    return Host(a, "eth0", f"{subnet}.1"), Host(b, "eth0", f"{subnet}.2")


def add_pod(nss: NetnsSet, host: Netns, host_if: str, ip: str) -> Netns:
    """A pod namespace wired as Calico does: /32 on eth0, default via 169.254.1.1 (host proxy-ARPs)."""
    pod = nss.add("pod")
    host.ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod.name)
    host.ip("link", "set", host_if, "up")
    pod.ip("link", "set", "eth0", "up")
    pod.ip("addr", "add", f"{ip}/32", "dev", "eth0")
    pod.ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    pod.ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
    return pod


class ScriptedFeed:
    """A route feed server speaking bgpd's side of the contract (proto.feed's encoder), scripted by the
    test: each reader gets a snapshot of `routes` when it connects, then what `send` gives it."""

    def __init__(self, path: str, routes: dict[str, FeedRoute] | None = None, epoch: int = 1) -> None:
        self.path = path
        self.routes: dict[str, FeedRoute] = dict(routes or {})
        self.epoch = epoch
        self.readers: list[tuple[FeedEncoder, asyncio.StreamWriter]] = []
        self.connected = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> ScriptedFeed:
        self._server = await asyncio.start_unix_server(self._reader, self.path)
        return self

    async def _reader(self, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        enc = FeedEncoder(self.epoch)
        writer.write(enc.snapshot(self.routes.values()))
        self.readers.append((enc, writer))
        self.connected.set()

    async def send(self, changes: dict[str, FeedRoute | None]) -> None:
        """Deltas to every reader (a FeedRoute adds or replaces, None withdraws)."""
        for prefix, r in changes.items():
            if r is None:
                self.routes.pop(prefix, None)
            else:
                self.routes[prefix] = r
        for enc, writer in self.readers:
            writer.write(b"".join(enc.update(r) if r is not None else enc.withdraw(p) for p, r in changes.items()))
            await writer.drain()

    async def close(self) -> None:
        for _enc, writer in self.readers:
            writer.close()
        self.readers = []
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def until(pred: Callable[[], Any], timeout: float, what: str, diag: Callable[[], str] = lambda: "",
                interval: float = 0.02) -> Any:
    """Poll the blocking `pred` (in a thread) until it is true; a control socket not answering yet
    counts as not yet. Raises with `diag()` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            got = await asyncio.to_thread(pred)
            if got:
                return got
        except (ControlError, OSError):
            pass
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{diag()}")
        await asyncio.sleep(interval)
