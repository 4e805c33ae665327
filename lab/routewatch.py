"""When did every host's kernel hold the routes it should? Netlink route events from each host's
namespace wake a reader, which re-reads that host's routes and notes the first moment all of them
were as expected.

One rtnetlink socket per namespace, subscribed to the IPv4 and IPv6 route groups, is opened by a
short-lived thread that joins the namespace first (a socket stays in the namespace it was made in).
Events only say "something changed there"; the routes themselves are read with `ip -j route`, once
per burst of events, so the cost is a few reads per switch rather than a poll loop. A read every
`rescan` seconds covers events lost to a full socket buffer (rare: keep it slow, since under the VM's
emulation every read costs two process starts).
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import field

from lab.article import PredictedRoute
from lab.netns import run
from proto.record import record

CLONE_NEWNET = 0x40000000
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
RESCAN_SECONDS = 2.0
READ_SECONDS = 30.0
PROTO = "80"


def _netlink_socket_in(netns: str) -> socket.socket:
    """An rtnetlink socket subscribed to route changes inside the named namespace."""
    made: dict[str, object] = {}

    def enter_and_open() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({netns})")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
            sock.setblocking(False)
            made["sock"] = sock
        except OSError as exc:
            made["error"] = exc

    # This thread ends inside the namespace; only it ever entered it.
    t = threading.Thread(target=enter_and_open, name=f"netns-{netns}")
    t.start()
    t.join()
    if "error" in made:
        raise made["error"]  # type: ignore[misc]
    return made["sock"]  # type: ignore[return-value]


def kernel_routes(netns: str, timeout: float = READ_SECONDS) -> dict[str, PredictedRoute | str]:
    """felixd's routes (protocol 80) in a namespace, IPv4 and IPv6: destination -> shape (a string
    for routes without a gateway: `blackhole`, or `dev <name>`). subprocess.TimeoutExpired when `ip`
    takes longer than `timeout`."""
    out: dict[str, PredictedRoute | str] = {}
    for family in ("-4", "-6"):
        proc = run(["ip", "-n", netns, "-j", family, "route", "show", "proto", PROTO], check=False, timeout=timeout)
        try:
            rows = json.loads(proc.stdout or "[]")
        except ValueError:
            continue
        for r in rows:
            dst = r.get("dst", "")
            if dst and "/" not in dst:
                dst += "/32" if family == "-4" else "/128"
            if r.get("type") == "blackhole":
                out[dst] = "blackhole"
            elif "gateway" in r:
                out[dst] = PredictedRoute(dst, r["gateway"], r.get("dev", ""), "onlink" in r.get("flags", []))
            else:
                out[dst] = f"dev {r.get('dev', '')}"
    return out


def mismatches(expected: Mapping[str, PredictedRoute], have: Mapping[str, PredictedRoute | str]) -> list[str]:
    """What differs, in words; empty when every expected route is there exactly."""
    out = []
    for dst, want in sorted(expected.items()):
        got = have.get(dst)
        if got != want:
            shown = got.text() if isinstance(got, PredictedRoute) else (f"{dst} {got}" if got else "nothing")
            out.append(f"{dst}: want `{want.text()}`, kernel has `{shown}`")
    return out


@record
class Converged:
    seconds: dict[str, float] = field(default_factory=dict)  # host -> first match, from `since`
    missing: dict[str, list[str]] = field(default_factory=dict)  # host -> mismatches at the deadline

    @property
    def all(self) -> float | None:
        return max(self.seconds.values()) if self.seconds and not self.missing else None


class RouteWatch:
    """Started before a change, so that every host's routes are followed as they change, and joined
    after it. `wait` is the same, in the caller's thread."""

    def __init__(self, namespaces: Mapping[str, str], rescan: float = RESCAN_SECONDS, settle: float = 0.0,
                 read_timeout: float = READ_SECONDS) -> None:
        """`settle`: after an event, how long to let its burst finish before reading (one read per
        burst; the time taken is then up to `settle` late). `read_timeout`: a read of a host's routes
        that takes longer is abandoned and retried (a starved machine, not a wrong route)."""
        self.namespaces = dict(namespaces)  # host -> namespace
        self.rescan = rescan
        self.settle = settle
        self.read_timeout = read_timeout
        self.socks = {host: _netlink_socket_in(ns) for host, ns in self.namespaces.items()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: Converged | None = None
        self._error: BaseException | None = None

    def start(self, wants: Mapping[str, Mapping[str, PredictedRoute]], since: float, deadline: float) -> None:
        def body() -> None:
            try:
                self._result = self.wait(wants, since, deadline)
            except BaseException as exc:  # handed to join()
                self._error = exc

        self._thread = threading.Thread(target=body, name="route-watch", daemon=True)
        self._thread.start()

    def join(self) -> Converged:
        assert self._thread is not None, "start() first"
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for s in self.socks.values():
            s.close()
        self.socks.clear()

    def __enter__(self) -> RouteWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                if not sock.recv(65536):
                    return
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ENOBUFS: events were lost; the read that follows sees the outcome
                return

    def wait(self, wants: Mapping[str, Mapping[str, PredictedRoute]], since: float, deadline: float) -> Converged:
        """Until every host holds its `wants[host]` routes, or `deadline` seconds after `since` (both on
        time.monotonic()); a host's time is when the event that completed its routes arrived."""
        result = Converged()
        pending = set(self.namespaces)
        last_read = dict.fromkeys(pending, 0.0)
        dirty = set(pending)  # read every host once at the start
        end = since + deadline
        while pending:
            now = time.monotonic()
            for host in list(pending):
                if host in dirty or now - last_read[host] >= self.rescan:
                    dirty.discard(host)
                    woke = now
                    last_read[host] = time.monotonic()
                    have = self._read(host)
                    if have is None:
                        dirty.add(host)  # read again on the next round
                    elif not mismatches(wants[host], have):
                        result.seconds[host] = max(0.0, woke - since)
                        pending.discard(host)
            if not pending or time.monotonic() >= end or self._stop.is_set():
                break
            socks = {self.socks[h].fileno(): h for h in pending}
            ready, _, _ = select.select(list(socks), [], [], min(self.rescan, max(0.0, end - time.monotonic())))
            if ready and self.settle:
                time.sleep(self.settle)  # let the burst finish: one read for it
                ready, _, _ = select.select(list(socks), [], [], 0)
            for fd in ready:
                host = socks[fd]
                self._drain(self.socks[host])
                dirty.add(host)
        for host in pending:
            have = self._read(host)
            result.missing[host] = [f"its routes could not be read within {self.read_timeout:.0f} s"] \
                if have is None else mismatches(wants[host], have)
        return result

    def _read(self, host: str) -> dict[str, PredictedRoute | str] | None:
        """The host's routes; None when `ip` did not answer in time (the caller tries again)."""
        try:
            return kernel_routes(self.namespaces[host], self.read_timeout)
        except subprocess.TimeoutExpired:
            return None
