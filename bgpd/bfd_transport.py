"""The asyncio adapter for BFD (RFC 5881 single hop): UDP sockets beside the TCP transport, nothing else.

- Receiving: per listen address one socket on UDP 3784 (single hop, RFC 5881) and one on UDP 4784
  (multihop, RFC 5883), read with `recvmsg` so the TTL / hop limit of each datagram comes along
  (IP_RECVTTL, IPV6_RECVHOPLIMIT): the session table refuses anything but 255 for single hop. Every datagram goes to `speaker.bfd_receive`, then the TCP transport's `service()` acts on what
  followed (a BGP session taken down, the one timer re-armed).
- Coalescing: a hundred peers at 300 ms send about 330 packets a second, and one wake-up of the event
  loop per packet costs more than the packets (bench/bfd.py). After a read the sockets are left alone
  for `RX_HOLDOFF`, then drained again; only when that drain finds nothing does the loop watch them
  again. The speaker's timer drains them first too (`drain`, the TCP transport's `before_timer`), so
  a packet that waited is always seen before its session's detection time is judged, and each counts
  from its arrival (the kernel's receive timestamp, SO_TIMESTAMPNS), not from when it was read: the
  hold-off delays no detection.
- The listening sockets sit in one epoll set of their own, and the event loop watches that set's one
  descriptor: a reflector listening on a thousand addresses has two thousand BFD sockets, and a drain
  that tried each in turn cost two thousand system calls per timer even with BFD off (bench/scale.py).
  A drain reads only the sockets the set reports readable.
- Sending: one socket per BFD session, bound to the session's local address and a source port in
  49152-65535 (RFC 5881 section 4: one port per session), TTL / hop limit 255. `flush()` writes what
  the speaker's sessions produced; the daemon calls it after every `service()`. A send that fails (the
  link is down: ENETUNREACH) is counted, not raised: the session's timers decide what that means.

Timers are not here: BFD deadlines are in the speaker's schedule, behind the TCP transport's one timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import random
import select
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable

from bgpd.bfd_session import BfdSession
from bgpd.speaker import Speaker
from proto.bfd import CONTROL_PORT, MULTIHOP_PORT, SOURCE_PORTS, TTL

log = logging.getLogger("bgpd.bfd")

IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # Linux values, missing from Python's socket module
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # also the ancillary message type (SCM_TIMESTAMPNS)
READ_BUDGET = 256  # datagrams per socket and wake-up before the loop's other work gets a turn
RX_HOLDOFF = 0.040  # seconds between reads while packets keep coming
_ANC = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("=qq")
_TTL_CMSG = frozenset({(socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)})


_NORMAL: dict[str, str] = {}


def _normal(address: str) -> str:
    """One spelling per address (the table keys sessions by it); cached, it runs per packet."""
    out = _NORMAL.get(address)
    if out is None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if len(_NORMAL) > 65536:
            _NORMAL.clear()
        out = _NORMAL[address] = str(ip)
    return out


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class BfdTransport:
    def __init__(self, speaker: Speaker, service: Callable[[], None], *, port: int = CONTROL_PORT,
                 multihop_port: int = MULTIHOP_PORT, rng: random.Random | None = None) -> None:
        self.speaker = speaker
        self.service = service  # the TCP transport's: events, writes, the one timer
        self.port = port
        self.multihop_port = multihop_port
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()
        self.listeners: list[socket.socket] = []
        self._senders: dict[BfdSession, socket.socket] = {}
        self.send_errors: Counter[str] = Counter()  # errno name -> datagrams not sent
        self.sent = 0
        self._closed = False
        self._watching = True  # the loop watches the sockets (no hold-off running)
        self._holdoff: asyncio.TimerHandle | None = None
        self._sockets: dict[int, tuple[socket.socket, str, bool]] = {}  # fd -> (socket, local address, multihop)
        self._set = select.epoll()  # the listening sockets; the loop watches its descriptor alone
        self.loop.add_reader(self._set.fileno(), self._readable)

    # ------------------------------------------------------------ receiving

    def listen(self, addresses: list[str]) -> None:
        for address in addresses:
            for port, multihop in ((self.port, False), (self.multihop_port, True)):
                self._listen(address, port, multihop)

    def _listen(self, address: str, port: int, multihop: bool) -> None:
        family = _family(address)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # the kernel's arrival time: a packet read after the hold-off counts from when it came
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            sock.bind((address, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.listeners.append(sock)
        self._sockets[sock.fileno()] = (sock, _normal(address), multihop)
        self._set.register(sock.fileno(), select.EPOLLIN)

    @property
    def bound(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.listeners]

    def _readable(self) -> None:
        """A socket has data: read every socket, then leave them alone for the hold-off."""
        if self.drain():
            self.service()
        self._unwatch()

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self.loop.remove_reader(self._set.fileno())
        if self._holdoff is None and not self._closed:
            self._holdoff = self.loop.call_later(RX_HOLDOFF, self._holdoff_over)

    def _holdoff_over(self) -> None:
        self._holdoff = None
        if self._closed:
            return
        if self.drain():
            self.service()
            self._holdoff = self.loop.call_later(RX_HOLDOFF, self._holdoff_over)  # still busy
        else:
            self._watching = True  # quiet: let the loop watch the sockets again
            self.loop.add_reader(self._set.fileno(), self._readable)

    def drain(self) -> int:
        """Hand every datagram waiting on the sockets to the speaker; how many there were. The caller
        runs `service()` (the TCP transport's timer calls this before the speaker's timers)."""
        speaker = self.speaker
        now = self.loop.time()
        wall_to_loop = now - time.time()  # kernel timestamps are wall clock; the loop's is monotonic
        got = 0
        if self._closed:
            return got
        sockets = self._sockets
        for fd, _mask in self._set.poll(0):
            sock, local, multihop = sockets[fd]
            for _ in range(READ_BUDGET):
                try:
                    data, anc, _flags, addr = sock.recvmsg(512, _ANC)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # e.g. an ICMP error queued on the socket
                    log.debug("BFD receive on %s: %s", local, exc)
                    continue
                ttl = None
                at = now
                for level, kind, value in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                        sec, nsec = _TIMESPEC.unpack_from(value)
                        at = min(now, sec + nsec * 1e-9 + wall_to_loop)
                    elif (level, kind) in _TTL_CMSG and len(value) >= 4:
                        ttl = struct.unpack("=i", value[:4])[0]
                speaker.bfd_receive(data, _normal(addr[0]), local, ttl, at, multihop)
                got += 1
        return got

    # ------------------------------------------------------------ sending

    def flush(self) -> None:
        """Send what the speaker's BFD sessions have produced; forget the sockets of closed ones."""
        if self._closed:
            return
        for s in self.speaker.bfd_with_output():
            data = s.data_to_send()
            sock = self._senders.get(s)
            if sock is None and data:
                sock = self._sender(s)
            if sock is not None:
                for d in data:
                    try:
                        sock.send(d)  # connected to the peer's BFD port in _sender
                        self.sent += 1
                    except OSError as exc:
                        name = errno.errorcode.get(exc.errno or 0, "error")
                        if not self.send_errors[name]:
                            log.info("BFD to %s: %s (counted from now on, not logged again)", s.remote, exc)
                        self.send_errors[name] += 1
            if s.closed:
                self._drop(s)

    def _sender(self, s: BfdSession) -> socket.socket | None:
        family = _family(s.local)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
            lo, hi = SOURCE_PORTS
            for _ in range(64):
                try:
                    sock.bind((s.local, self.rng.randint(lo, hi)))
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
            else:
                raise OSError(errno.EADDRINUSE, "no free source port in 49152-65535")
            # connected: the kernel resolves the route once, and each packet is a plain send()
            sock.connect((s.remote, self.multihop_port if s.multihop else self.port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.warning("BFD to %s: cannot open a socket from %s: %s", s.remote, s.local, exc)
            self.send_errors[errno.errorcode.get(exc.errno or 0, "error")] += 1
            return None
        self._senders[s] = sock
        return sock

    def _drop(self, s: BfdSession) -> None:
        sock = self._senders.pop(s, None)
        if sock is not None:
            sock.close()

    # ------------------------------------------------------------ stopping

    def close(self) -> None:
        """Send what is pending (an AdminDown from `speaker.stop_bfd`), then close every socket."""
        self.flush()
        self._closed = True
        if self._holdoff is not None:
            self._holdoff.cancel()
            self._holdoff = None
        if self._watching:
            self._watching = False
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self._set.fileno())
        for sock in self.listeners:
            sock.close()
        self.listeners.clear()
        self._sockets.clear()
        self._set.close()
        for sock in self._senders.values():
            sock.close()
        self._senders.clear()
