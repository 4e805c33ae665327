"""The asyncio adapter for BFD (RFC 5881 single hop): UDP sockets beside the TCP transport, nothing else.

- Receiving: per listen address one socket on UDP 3784 (single hop, RFC 5881) and one on UDP 4784
  (multihop, RFC 5883), read with `recvmsg` so the TTL / hop limit of each datagram comes along
  (IP_RECVTTL, IPV6_RECVHOPLIMIT): the session table refuses anything but 255 for single hop. Every datagram goes to `speaker.bfd_receive`, then the TCP transport's `service()` acts on what
  followed (a BGP session taken down, the one timer re-armed).
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
import socket
import struct
from collections import Counter
from collections.abc import Callable

from bgpd.bfd_session import BfdSession
from bgpd.speaker import Speaker
from proto.bfd import CONTROL_PORT, MULTIHOP_PORT, SOURCE_PORTS, TTL

log = logging.getLogger("bgpd.bfd")

IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # Linux values, missing from Python's socket module
READ_BUDGET = 256  # datagrams per wake-up before the loop's other work gets a turn
_ANC = socket.CMSG_SPACE(4)


def _normal(address: str) -> str:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


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
        self.loop.add_reader(sock.fileno(), self._readable, sock, multihop)
        self.listeners.append(sock)

    @property
    def bound(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.listeners]

    def _readable(self, sock: socket.socket, multihop: bool) -> None:
        speaker = self.speaker
        now = self.loop.time()
        local = _normal(sock.getsockname()[0])
        got = 0
        for _ in range(READ_BUDGET):
            try:
                data, anc, _flags, addr = sock.recvmsg(512, _ANC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("BFD receive on %s: %s", local, exc)
                continue
            ttl = None
            for level, kind, value in anc:
                if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL),
                                     (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)) and len(value) >= 4:
                    ttl = struct.unpack("=i", value[:4])[0]
            speaker.bfd_receive(data, _normal(addr[0]), local, ttl, now, multihop)
            got += 1
        if got:
            self.service()

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
                        sock.sendto(d, (s.remote, self.multihop_port if s.multihop else self.port))
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
        for sock in self.listeners:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(sock.fileno())
            sock.close()
        self.listeners.clear()
        for sock in self._senders.values():
            sock.close()
        self._senders.clear()
