"""The asyncio adapter around `bgpd.speaker.Speaker`: sockets and one timer, nothing else.

On data, a timer or a connection event it feeds the speaker, then `service()`: acts on the speaker's
adapter events (`ConnectTo`: open a connection; `Disconnect`: write the last bytes and close), writes
what the sessions produced, and re-arms exactly one `loop.call_at` for the speaker's next deadline
(aioquic's `asyncio/protocol.py`).

- Listening sockets (IPv4 and IPv6, one each) hand each accepted connection to the speaker by its
  source address; the speaker says which session takes it, or none (close it). TCP MD5 keys (RFC
  2385, Linux `TCP_MD5SIG`) are installed on the listening sockets per peer address.
- GTSM (RFC 5082, ttlSecurity): outgoing TTL / hop limit 255 and a minimum incoming TTL of
  256 - hops, on connecting and accepted sockets; the listening socket sends with TTL 255 so that
  the SYN-ACK passes a GTSM peer's check too.
- Reads land in one shared 1 MiB buffer (BufferedProtocol) and go to the speaker whole. Writes pull
  UPDATEs from a session in pieces of at most WRITE_CHUNK and stop as soon as the kernel leaves any
  of one in asyncio's write buffer, until that buffer is empty again; control messages (KEEPALIVE,
  NOTIFICATION) are still written. The UPDATEs a session has queued are shared with every other
  member of its update group (slices of one buffer), while asyncio's write buffer is a copy per
  connection: a reflector whose thousands of clients read slowly would otherwise hold a copy of its
  table for each of them (issue 12: 400 MB with 3,000 clients, where the table is 200 KB).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import mmap
import socket
from collections.abc import Callable

from bgpd.peer import BGP_PORT, PeerTransportConfig
from bgpd.session import Session
from bgpd.sockopts import last_received, set_md5, set_ttl_security, unread_bytes
from bgpd.speaker import ConnectTo, Disconnect, Speaker
from bgpd.timers import LoopTimer

log = logging.getLogger("bgpd.transport")

READ_BUFFER = 1 << 20
# asyncio's write buffer per connection: pause as soon as the kernel leaves anything in it, resume
# once it is empty (the kernel's socket buffer still holds data then, so the link does not idle)
WRITE_HIGH_WATER = 0
WRITE_LOW_WATER = 0
WRITE_CHUNK = 16 * 1024  # UPDATE bytes pulled from a session per write while not paused
# Input handed to the speaker per loop callback: a full 1 MiB read can hold 200,000 prefixes, and
# the control socket, keepalives and other peers must not wait for all of them.
INPUT_SLICE = 128 * 1024

# an anonymous mapping, not a bytearray: its pages become resident only as reads reach them, so an
# idle speaker, whose reads are keepalives, holds a few KiB of it instead of 1 MiB (issue 12)
_READ_VIEW = memoryview(mmap.mmap(-1, READ_BUFFER))

SocketFactory = Callable[[int], socket.socket]

__all__ = ["BGP_PORT", "PeerTransportConfig", "Transport"]


def _default_socket(family: int) -> socket.socket:
    return socket.socket(family, socket.SOCK_STREAM)


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def normal_address(address: str) -> str:
    """One spelling per address: IPv4-mapped IPv6 becomes IPv4, IPv6 is compressed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection; it carries a session once the speaker has given it one."""

    def __init__(self, owner: Transport, session: Session | None = None, accepted: bool = False) -> None:
        self.owner = owner
        self.session = session
        self.accepted = accepted
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.closed = False
        self.backlog = False  # read bytes not yet handed to the speaker (reading is paused meanwhile)

    @property
    def sock(self) -> socket.socket | None:
        if self.transport is None:
            return None
        return self.transport.get_extra_info("socket")  # type: ignore[no-any-return]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        if self.accepted:
            self.owner._accepted(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        # One buffer for every connection: asyncio fills it and calls buffer_updated in the same
        # callback, and the bytes are copied out there, so a thousand peers do not hold 1 GiB.
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        if self.session is not None:
            self.owner._on_data(self, bytes(_READ_VIEW[:nbytes]))

    def eof_received(self) -> bool | None:
        return False  # close our side too: BGP has no half-open use

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.session is not None:
            self.owner._on_lost(self, f"connection lost: {exc}" if exc else "connection closed by peer")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.session is not None:
            self.owner._write(self.session, self)

    def close(self) -> None:
        """Close after what is written so far has gone (asyncio flushes on close)."""
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True


class Transport:
    def __init__(self, speaker: Speaker, *, socket_factory: SocketFactory = _default_socket,
                 backlog: int = 4096, after: Callable[[], None] | None = None,
                 before_timer: Callable[[], object] | None = None) -> None:
        self.speaker = speaker
        self.socket_factory = socket_factory
        self.backlog = backlog
        self.after = after  # called after every service (the daemon wakes the feed's readers)
        # called before the speaker's timers run: input other adapters hold back comes in first (BFD)
        self.before_timer = before_timer
        self.loop = asyncio.get_running_loop()
        self.conns: dict[Session, _Connection] = {}
        self.sockets: list[socket.socket] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._connects: dict[Session, asyncio.Task[None]] = {}
        self._keys: dict[str, str] = {}  # peer address -> MD5 key installed on the listening sockets
        self._timer = LoopTimer(self.loop, self._on_timer)
        self._closed = False

    def now(self) -> float:
        return self.loop.time()

    # ------------------------------------------------------------ listening

    async def listen(self, addresses: list[tuple[str, int]]) -> None:
        for address, port in addresses:
            family = _family(address)
            sock = self.socket_factory(family)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    # IPv4 peers come in on the IPv4 socket, where their MD5 keys are
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
                sock.bind((address, port))
                sock.setblocking(False)
                for peer, key in self._keys.items():
                    if _family(peer) == family:
                        set_md5(sock, peer, key)
            except OSError:
                sock.close()
                raise
            server = await self.loop.create_server(lambda: _Connection(self, accepted=True), sock=sock,
                                                   backlog=self.backlog)
            self.sockets.append(sock)
            self._servers.append(server)

    @property
    def bound(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets]

    async def close_listeners(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self.sockets.clear()

    def peer_added(self, cfg: PeerTransportConfig) -> None:
        """Install the peer's MD5 key on the listening sockets (before its session may be accepted)."""
        if cfg.md5_password is None:
            return
        address = normal_address(cfg.peer_address)
        self._keys[address] = cfg.md5_password
        for sock in self.sockets:
            if sock.family == _family(address):
                set_md5(sock, address, cfg.md5_password)

    def peer_removed(self, cfg: PeerTransportConfig) -> None:
        address = normal_address(cfg.peer_address)
        if self._keys.pop(address, None) is None:
            return
        for sock in self.sockets:
            if sock.family == _family(address):
                set_md5(sock, address, None)

    def _accepted(self, conn: _Connection) -> None:
        assert conn.transport is not None
        remote = normal_address(conn.transport.get_extra_info("peername")[0])
        local = normal_address(conn.transport.get_extra_info("sockname")[0])
        peer = self.speaker.peers.get(remote)
        if peer is None or self._closed:
            log.info("connection from unknown address %s refused", remote)
            conn.abort()
            return
        sock = conn.sock
        if sock is not None and peer.transport.ttl_security is not None:
            set_ttl_security(sock, peer.transport.ttl_security)
        now = self.now()
        # a busy loop accepts late: the peer made this connection (and sent its OPEN) before we saw it,
        # maybe before our session with it came up the other way; a connection made then is a
        # collision to resolve, not the peer restarting (bgpd.neighbor)
        waited = last_received(sock)
        session = self.speaker.accept(remote, now, local, None if waited is None else now - waited)
        if session is None:
            conn.close()
        else:
            self._bind(session, conn)
        self.service()

    # ------------------------------------------------------------ driving the speaker

    def service(self) -> None:
        """After anything happened: act on the speaker's events, write, re-arm the one timer."""
        speaker = self.speaker
        while (ev := speaker.next_event()) is not None:
            if isinstance(ev, ConnectTo):
                self._start_connect(ev.session, ev.peer)
            elif isinstance(ev, Disconnect):
                self._disconnect(ev.session)
        for session in speaker.sessions_with_output():
            conn = self.conns.get(session)
            if conn is not None:
                self._write(session, conn)
        self._timer.arm(None if self._closed else speaker.next_deadline())
        if self.after is not None:
            self.after()

    def _on_timer(self) -> None:
        conns = self.conns

        def input_pending(session: Session) -> bool:
            conn = conns.get(session)
            return conn is not None and (conn.backlog or unread_bytes(conn.sock) > 0)

        if self.before_timer is not None:
            self.before_timer()
        self.speaker.handle_timer(self.now(), input_pending)
        self.service()

    def _write(self, session: Session, conn: _Connection) -> None:
        if conn.transport is None or conn.closed:
            return
        if conn.paused:
            data = session.data_to_send(max_bytes=0)  # control messages still go
            if data:
                conn.transport.write(data)
            return
        now = self.now()
        # nothing is pulled once the kernel has left bytes behind (pause_writing, called from write)
        while not conn.paused and (data := session.data_to_send(max_bytes=WRITE_CHUNK, now=now)):
            conn.transport.write(data)

    # ------------------------------------------------------------ connections

    def _start_connect(self, session: Session, cfg: PeerTransportConfig) -> None:
        old = self._connects.pop(session, None)
        if old is not None:
            old.cancel()
        self._connects[session] = self.loop.create_task(self._connect(session, cfg))

    async def _connect(self, session: Session, cfg: PeerTransportConfig) -> None:
        sock = self.socket_factory(_family(cfg.peer_address))
        try:
            sock.setblocking(False)
            if cfg.md5_password is not None:
                set_md5(sock, cfg.peer_address, cfg.md5_password)
            if cfg.ttl_security is not None:
                set_ttl_security(sock, cfg.ttl_security)
            if cfg.source_address:
                sock.bind((cfg.source_address, 0))
            await asyncio.wait_for(self.loop.sock_connect(sock, (cfg.peer_address, cfg.peer_port)),
                                   cfg.connect_timeout)
        except asyncio.CancelledError:
            sock.close()
            raise
        except TimeoutError:
            sock.close()
            self._connect_failed(session, (f"Socket: no answer within {cfg.connect_timeout:g} s (TCP MD5 "
                                           "mismatch or filtering?)") if cfg.md5_password is not None else
                                 f"Socket: no answer within {cfg.connect_timeout:g} s")
            return
        except OSError as error:
            sock.close()
            self._connect_failed(session, f"Socket: {error.strerror or error}")
            return
        if self._connects.get(session) is asyncio.current_task():
            del self._connects[session]
        conn = _Connection(self)
        try:
            await self.loop.create_connection(lambda: conn, sock=sock)
        except OSError as error:
            self.speaker.connection_failed(session, self.now(), f"Socket: {error.strerror or error}")
            self.service()
            return
        if self._closed:
            conn.close()
            return
        local = normal_address(sock.getsockname()[0])
        taken = self.speaker.connection_made(session, self.now(), local)
        if taken is None:
            conn.close()
        else:
            self._bind(taken, conn)
        self.service()

    def _connect_failed(self, session: Session, reason: str) -> None:
        if self._connects.get(session) is asyncio.current_task():
            del self._connects[session]
        self.speaker.connection_failed(session, self.now(), reason)
        self.service()

    def _bind(self, session: Session, conn: _Connection) -> None:
        # a session carries one connection: an attempt of its own still under way (the peer's
        # connection got there first) would only come back as a collision to resolve
        task = self._connects.pop(session, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        conn.session = session
        self.conns[session] = conn

    def _disconnect(self, session: Session) -> None:
        task = self._connects.pop(session, None)
        if task is not None:
            task.cancel()
        conn = self.conns.pop(session, None)
        if conn is not None:
            # write the final NOTIFICATION, then close; the connection no longer feeds the session
            if conn.transport is not None and not conn.closed:
                data = session.data_to_send(max_bytes=0)
                if data:
                    conn.transport.write(data)
            conn.session = None
            conn.close()

    def _on_data(self, conn: _Connection, data: bytes) -> None:
        session = conn.session
        if session is None:
            return
        if len(data) <= INPUT_SLICE:
            self.speaker.receive_data(session, data, self.now())
            self.service()
            return
        # a big read goes to the speaker in slices, one per loop callback, reading paused meanwhile
        assert conn.transport is not None
        conn.transport.pause_reading()
        conn.backlog = True
        self._feed_slice(conn, memoryview(data), 0)

    def _feed_slice(self, conn: _Connection, data: memoryview, pos: int) -> None:
        session = conn.session
        if session is None:
            conn.backlog = False
            return
        end = pos + INPUT_SLICE
        self.speaker.receive_data(session, bytes(data[pos:end]), self.now())
        self.service()
        if end < len(data) and conn.session is not None:
            self.loop.call_soon(self._feed_slice, conn, data, end)
            return
        conn.backlog = False
        if conn.transport is not None and not conn.closed:
            conn.transport.resume_reading()

    def _on_lost(self, conn: _Connection, reason: str) -> None:
        session = conn.session
        conn.session = None
        if session is None or self.conns.get(session) is not conn:
            return
        del self.conns[session]
        self.speaker.connection_lost(session, self.now(), reason)
        self.service()

    def connection(self, session: Session) -> _Connection | None:
        return self.conns.get(session)

    # ------------------------------------------------------------ stopping

    async def close(self, graceful: bool = False, message: str = "tortie-bgpd shutting down") -> None:
        """Stop everything. `graceful`: no NOTIFICATION of our own (peers doing graceful restart keep
        our routes, RFC 4724), only what the speaker already queued (RFC 8538's Administrative Reset)
        goes out before the connections close; otherwise the speaker's Cease (administrative shutdown
        with `message`) goes out first."""
        if not graceful:
            self.speaker.stop(self.now(), message)
            self.service()
        self._closed = True
        self._timer.cancel()
        for task in self._connects.values():
            task.cancel()
        for task in list(self._connects.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._connects.clear()
        for conn in list(self.conns.values()):
            conn.close()  # after what is written: a queued NOTIFICATION is not thrown away
        self.conns.clear()
        await self.close_listeners()
