"""The asyncio adapter around `bgpd.session.Session`: sockets, one timer, nothing else.

On data, a timer or a connection event it feeds the session, writes what the session produced, acts
on the session's adapter events (ConnectRequested, CloseConnection) and re-arms exactly one
`loop.call_at` for the earliest deadline of the peer's sessions (aioquic's `asyncio/protocol.py`).

- `BgpListener` listens on addresses (IPv4 and IPv6, one socket each) and hands each accepted
  connection to the peer registered for its source address; connections from anyone else are closed.
  TCP MD5 keys (RFC 2385, Linux `TCP_MD5SIG`) are installed on the listening socket per peer address.
- `BgpPeer` connects from `source_address` when its session asks for it (retry and back-off are the
  session's timers), accepts what the listener hands it, and resolves collisions (RFC 4271 6.8) by
  running a second session for a second connection, linked to the first.
- GTSM (RFC 5082, ttlSecurity): outgoing TTL / hop limit 255 and a minimum incoming TTL of
  256 - hops, on connecting and accepted sockets; the listening socket sends with TTL 255 so that
  the SYN-ACK passes a GTSM peer's check too.
- Reads land in a 1 MiB buffer (BufferedProtocol) and go to the session whole. Writes stop pulling
  UPDATEs from the session while asyncio's write buffer is above its high-water mark; control
  messages (KEEPALIVE, NOTIFICATION) are still written. `write_ready` tells the RIB when to produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import logging
import socket
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.fsm import State
from bgpd.session import (
    CloseConnection,
    ConnectRequested,
    Session,
    SessionConfig,
    SessionDown,
    SessionEvent,
    StateChanged,
    second_session,
)
from bgpd.timers import LoopTimer, RandomSource
from proto.bgp import CeaseSubcode, Update

log = logging.getLogger("bgpd.transport")

BGP_PORT = 179
READ_BUFFER = 1 << 20
WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024
WRITE_CHUNK = 64 * 1024  # UPDATE bytes pulled from the session per write while not paused

# Linux numbers the socket module does not export (linux/tcp.h, linux/in.h, linux/in6.h)
TCP_MD5SIG = 14
TCP_MD5SIG_MAXKEYLEN = 80
IP_MINTTL = 21
IPV6_MINHOPCOUNT = 73

_READ_VIEW = memoryview(bytearray(READ_BUFFER))

SocketFactory = Callable[[int], socket.socket]
EventHandler = Callable[["BgpPeer", SessionEvent], None]


def _default_socket(family: int) -> socket.socket:
    return socket.socket(family, socket.SOCK_STREAM)


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _normal(address: str) -> str:
    """One spelling per address: IPv4-mapped IPv6 becomes IPv4, IPv6 is compressed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


# ---------------------------------------------------------------- socket options


def md5sig(address: str, key: bytes) -> bytes:
    """struct tcp_md5sig for `address`; an empty key removes the entry."""
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"TCP MD5 key longer than {TCP_MD5SIG_MAXKEYLEN} octets")
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + ip.packed
    else:
        sockaddr = (
            struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 0, 0) + ip.packed + struct.pack("=I", 0)
        )
    sockaddr = sockaddr.ljust(128, b"\0")  # struct __kernel_sockaddr_storage
    return sockaddr + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")


def set_md5(sock: socket.socket, peer: str, password: str | None) -> None:
    """Install (or with None remove) the TCP MD5 key for `peer` on `sock`."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(peer, (password or "").encode()))
    except OSError as error:
        if password is None and error.errno == errno.ENOENT:
            return  # there was no key to remove
        raise


def set_ttl_security(sock: socket.socket, hops: int) -> None:
    """GTSM: send with TTL 255, accept only what left its sender at most `hops` hops away."""
    minimum = 256 - hops
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, minimum)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, minimum)


def ttl_options(sock: socket.socket) -> tuple[int, int]:
    """(outgoing TTL, minimum incoming TTL) as the kernel has them, for checks and status."""
    if sock.family == socket.AF_INET6:
        return (
            sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS),
            sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT),
        )
    return sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL), sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL)


def unread_bytes(sock: socket.socket | None) -> int:
    if sock is None:
        return 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("=i", buf)[0])


# ---------------------------------------------------------------- one TCP connection


class _Connection(asyncio.BufferedProtocol):
    """The protocol object of one TCP connection; it belongs to a peer once the peer has claimed it."""

    def __init__(
        self, peer: BgpPeer | None, listener: BgpListener | None = None, session: Session | None = None
    ) -> None:
        self.peer = peer
        self.listener = listener
        self.session = session  # the session this connection carries, once attached
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.closed = False

    @property
    def sock(self) -> socket.socket | None:
        if self.transport is None:
            return None
        return self.transport.get_extra_info("socket")  # type: ignore[no-any-return]

    @property
    def remote(self) -> str:
        assert self.transport is not None
        return _normal(self.transport.get_extra_info("peername")[0])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        if self.listener is not None:
            self.listener._accepted(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        # One buffer for every connection: asyncio fills it and calls buffer_updated in the same
        # callback, and the bytes are copied out there, so a thousand peers do not hold 1 GiB.
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        if self.peer is not None and self.session is not None:
            self.peer._on_data(self, bytes(_READ_VIEW[:nbytes]))

    def eof_received(self) -> bool | None:
        return False  # close our side too: BGP has no half-open use

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None and self.session is not None:
            reason = f"connection lost: {exc}" if exc else "connection closed by peer"
            self.peer._on_lost(self, reason)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.peer is not None and self.session is not None:
            self.peer._flush(self.session)

    def close(self) -> None:
        """Close after what is written so far has gone (asyncio flushes on close)."""
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


# ---------------------------------------------------------------- the listener


@dataclass(frozen=True, slots=True)
class PeerTransportConfig:
    peer_address: str
    peer_port: int = BGP_PORT
    source_address: str | None = None
    md5_password: str | None = None
    ttl_security: int | None = None  # GTSM: the peer is at most this many hops away (1: direct)
    # A SYN nobody answers (a TCP MD5 mismatch drops it silently, so does a filter) would otherwise
    # keep the session in Connect for the kernel's SYN retries with nothing to show the operator.
    connect_timeout: float = 5.0


class BgpListener:
    """Listening sockets shared by every peer; accepted connections go to the peer by address."""

    def __init__(
        self,
        addresses: list[tuple[str, int]],
        socket_factory: SocketFactory = _default_socket,
        backlog: int = 128,
    ) -> None:
        self.addresses = addresses
        self.socket_factory = socket_factory
        self.backlog = backlog
        self.peers: dict[str, BgpPeer] = {}
        self.sockets: list[socket.socket] = []
        self._servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for address, port in self.addresses:
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
                for peer in self.peers.values():
                    self._install_key(sock, peer)
            except OSError:
                sock.close()
                raise
            server = await loop.create_server(
                lambda: _Connection(None, self), sock=sock, backlog=self.backlog
            )
            self.sockets.append(sock)
            self._servers.append(server)

    @property
    def bound(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets]

    def _install_key(self, sock: socket.socket, peer: BgpPeer, remove: bool = False) -> None:
        address = peer.transport_config.peer_address
        if sock.family != _family(address) or peer.transport_config.md5_password is None:
            return
        set_md5(sock, address, None if remove else peer.transport_config.md5_password)

    def register(self, peer: BgpPeer) -> None:
        self.peers[_normal(peer.transport_config.peer_address)] = peer
        for sock in self.sockets:
            self._install_key(sock, peer)

    def unregister(self, peer: BgpPeer) -> None:
        self.peers.pop(_normal(peer.transport_config.peer_address), None)
        for sock in self.sockets:
            self._install_key(sock, peer, remove=True)

    def _accepted(self, conn: _Connection) -> None:
        peer = self.peers.get(conn.remote)
        if peer is None:
            log.info("connection from unknown address %s refused", conn.remote)
            assert conn.transport is not None
            conn.transport.abort()
            return
        peer._accept(conn)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self.sockets.clear()


# ---------------------------------------------------------------- the peer


class BgpPeer:
    """One configured neighbour: its sessions (two during a collision), connections and timer."""

    def __init__(
        self,
        config: SessionConfig,
        transport_config: PeerTransportConfig,
        *,
        listener: BgpListener | None = None,
        handler: EventHandler | None = None,
        rng: RandomSource | None = None,
        socket_factory: SocketFactory = _default_socket,
    ) -> None:
        self.config = config
        self.transport_config = transport_config
        self.listener = listener
        self.handler = handler
        self.socket_factory = socket_factory
        self.session = Session(config, rng)  # the primary session
        self.second: Session | None = None  # a second connection during collision detection
        self._loop = asyncio.get_running_loop()
        self._conns: dict[Session, _Connection] = {}
        self._connects: dict[Session, asyncio.Task[None]] = {}
        self._timer = LoopTimer(self._loop, self._on_timer)
        self.write_ready = asyncio.Event()  # set while UPDATEs may be queued without piling up
        self._state_changed = asyncio.Condition()
        self._closed = False
        if listener is not None:
            listener.register(self)

    # ------------------------------------------------------------ API

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def last_error(self) -> str:
        return self.session.last_error

    @property
    def connection(self) -> _Connection | None:
        return self._conns.get(self.session)

    def now(self) -> float:
        return self._loop.time()

    def start(self) -> None:
        self.session.start(self.now())
        self._service(self.session)

    def stop(self, shutdown_message: str = "", subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN) -> None:
        """Cease (Administrative Shutdown with an RFC 9003 message by default; Peer De-configured,
        subcode 3, when a reload removes the peer) and no automatic restart until start()."""
        now = self.now()
        for s in self._sessions():
            s.stop(now, shutdown_message, subcode)
            self._service(s)

    async def close(
        self, shutdown_message: str = "", subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN
    ) -> None:
        """Stop (Cease/2 with the message), let the NOTIFICATION go out, release everything."""
        self.stop(shutdown_message, subcode)
        for conn in list(self._conns.values()):
            conn.close()
        await self._release()

    async def abort(self) -> None:
        """Drop the connections without a NOTIFICATION and release everything: how a speaker that
        restarts gracefully leaves (RFC 4724 peers keep its routes as stale until it is back)."""
        for conn in list(self._conns.values()):
            if conn.transport is not None and not conn.closed:
                conn.transport.abort()
            conn.closed = True
        await self._release()

    async def _release(self) -> None:
        self._closed = True
        if self.listener is not None:
            self.listener.unregister(self)
        for task in self._connects.values():
            task.cancel()
        for task in list(self._connects.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._connects.clear()
        self._timer.cancel()

    def send_update_bytes(self, data: bytes) -> None:
        """Queue whole encoded UPDATEs (see `Session.send_update_bytes`); produce more only while
        `write_ready` is set."""
        self.session.send_update_bytes(data)
        self._flush(self.session)

    def send_update(self, update: Update) -> None:
        self.session.send_update(update)
        self._flush(self.session)

    def send_route_refresh(self, afi: int, safi: int, subtype: int = 0) -> None:
        self.session.send_route_refresh(afi, safi, subtype)
        self._flush(self.session)

    def status(self) -> dict[str, object]:
        """What `tortiectl bgp neighbors` shows."""
        s = self.session
        conn = self.connection
        sock = conn.sock if conn is not None else None
        return {
            "peer": self.transport_config.peer_address,
            "state": s.state.name,
            "since_established_seconds": None
            if s.established_at is None
            else round(self.now() - s.established_at, 3),
            "last_error": s.last_error,
            "outbound": s.outbound,
            "local": sock.getsockname()[:2] if sock is not None else None,
            "remote_router_id": s.remote_router_id,
            "hold_time": s.hold_time,
            "keepalive_time": s.keepalive_time,
            "negotiated": s.negotiated if s.state == State.ESTABLISHED else None,
            "pending_update_bytes": s.pending_update_bytes,
            "connect_retry_counter": s.connect_retry_counter,
        }

    async def wait_for(self, predicate: Callable[[BgpPeer], bool], timeout: float) -> None:
        """Until `predicate(self)` holds, re-checked on every state change; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            async with self._state_changed:
                await self._state_changed.wait_for(lambda: predicate(self))

    async def wait_state(self, state: State, timeout: float) -> None:
        await self.wait_for(lambda p: p.state == state, timeout)

    # ------------------------------------------------------------ driving the sessions

    def _sessions(self) -> list[Session]:
        return [s for s in (self.session, self.second) if s is not None]

    def _service_all(self, first: Session) -> None:
        """Service `first`, then the peer's other session: resolving a collision on one connection
        closes the other (RFC 4271 6.8), so both may have something to say."""
        others = [s for s in self._sessions() if s is not first]
        self._service(first)
        for s in others:
            self._service(s)

    def _service(self, session: Session) -> None:
        """After anything happened to `session`: write, act on its events, re-arm the timer."""
        self._flush(session)
        changed = False
        while (event := session.next_event()) is not None:
            if isinstance(event, ConnectRequested):
                self._start_connect(session)
            elif isinstance(event, CloseConnection):
                self._close_connection(session)
            elif isinstance(event, SessionDown):
                self._session_down(session)
            if isinstance(event, StateChanged):
                changed = True
            if not isinstance(event, (ConnectRequested, CloseConnection)):
                self._deliver(event)
        if changed:
            self._notify_state()
        self._arm_timer()

    def _deliver(self, event: SessionEvent) -> None:
        if self.handler is not None:
            try:
                self.handler(self, event)
            except Exception:
                log.exception("%s: event handler failed on %r", self.config.name, event)

    def _notify_state(self) -> None:
        async def notify() -> None:
            async with self._state_changed:
                self._state_changed.notify_all()

        self._loop.create_task(notify())

    def _flush(self, session: Session) -> None:
        conn = self._conns.get(session)
        if conn is None or conn.transport is None or conn.closed:
            return
        now = self.now()
        if conn.paused:
            data = session.data_to_send(max_bytes=0)  # control messages still go
        else:
            data = session.data_to_send(max_bytes=WRITE_CHUNK, now=now)
            while data and not conn.paused and session.pending_update_bytes:
                conn.transport.write(data)
                data = session.data_to_send(max_bytes=WRITE_CHUNK, now=now)
        if data:
            conn.transport.write(data)
        if session is self.session:
            ready = not conn.paused and session.pending_update_bytes < WRITE_LOW_WATER
            if ready:
                self.write_ready.set()
            else:
                self.write_ready.clear()

    def _arm_timer(self) -> None:
        deadlines = [d for s in self._sessions() if (d := s.next_deadline()) is not None]
        self._timer.arm(min(deadlines) if deadlines and not self._closed else None)

    def _on_timer(self) -> None:
        now = self.now()
        for s in self._sessions():
            conn = self._conns.get(s)
            s.handle_timer(now, input_pending=unread_bytes(conn.sock if conn else None) > 0)
            self._service_all(s)
        self._arm_timer()

    # ------------------------------------------------------------ connections

    def _start_connect(self, session: Session) -> None:
        old = self._connects.pop(session, None)
        if old is not None:
            old.cancel()
        self._connects[session] = self._loop.create_task(self._connect(session))

    async def _connect(self, session: Session) -> None:
        cfg = self.transport_config
        family = _family(cfg.peer_address)
        sock = self.socket_factory(family)
        try:
            sock.setblocking(False)
            if cfg.md5_password is not None:
                set_md5(sock, cfg.peer_address, cfg.md5_password)
            if cfg.ttl_security is not None:
                set_ttl_security(sock, cfg.ttl_security)
            if cfg.source_address:
                sock.bind((cfg.source_address, 0))
            await asyncio.wait_for(self._loop.sock_connect(sock, (cfg.peer_address, cfg.peer_port)),
                                   cfg.connect_timeout)
        except asyncio.CancelledError:
            sock.close()
            raise
        except TimeoutError:
            sock.close()
            if self._connects.get(session) is asyncio.current_task():
                del self._connects[session]
            reason = (f"Socket: no answer within {cfg.connect_timeout:g} s (TCP MD5 mismatch or filtering?)"
                      if cfg.md5_password is not None else
                      f"Socket: no answer within {cfg.connect_timeout:g} s")
            session.connection_failed(self.now(), reason)
            self._service(session)
            return
        except OSError as error:
            sock.close()
            if self._connects.get(session) is asyncio.current_task():
                del self._connects[session]
            reason = f"Socket: {error.strerror or error}"
            session.connection_failed(self.now(), reason)
            self._service(session)
            return
        if self._connects.get(session) is asyncio.current_task():
            del self._connects[session]
        conn = _Connection(self)
        try:
            await self._loop.create_connection(lambda: conn, sock=sock)
        except OSError as error:
            session.connection_failed(self.now(), f"Socket: {error.strerror or error}")
            self._service(session)
            return
        self._attach(conn, outbound=True, requested_by=session)

    def _accept(self, conn: _Connection) -> None:
        conn.peer = self
        sock = conn.sock
        if sock is not None and self.transport_config.ttl_security is not None:
            set_ttl_security(sock, self.transport_config.ttl_security)
        if self._closed:
            conn.close()
            return
        if self.session.state == State.IDLE and self.session.auto_restart:
            # the peer is back before our back-off ran out: take its connection now
            self.session.automatic_start(self.now(), passive=True)
            self._service(self.session)
        self._attach(conn, outbound=False)

    def _attach(self, conn: _Connection, outbound: bool, requested_by: Session | None = None) -> None:
        now = self.now()
        primary = self.session
        if self._closed:
            conn.close()
            return
        if primary not in self._conns and primary.connection_made(now, outbound):
            self._bind(primary, conn)
            return
        if self.second is None and primary.state in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED):
            second = second_session(primary, now, outbound)
            self.second = second
            self._bind(second, conn)
            return
        log.info(
            "%s: %s connection not needed, closed", self.config.name, "outgoing" if outbound else "incoming"
        )
        conn.close()
        if requested_by is not None:
            self._service(requested_by)

    def _bind(self, session: Session, conn: _Connection) -> None:
        conn.session = session
        conn.peer = self
        self._conns[session] = conn
        self._service(session)

    def _close_connection(self, session: Session) -> None:
        task = self._connects.pop(session, None)
        if task is not None:
            task.cancel()
        conn = self._conns.pop(session, None)
        if conn is not None:
            # write the final NOTIFICATION, then close; the protocol no longer feeds this session
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
        session.receive_data(data, self.now())
        self._service_all(session)

    def _on_lost(self, conn: _Connection, reason: str) -> None:
        session = conn.session
        conn.session = None
        if session is None or self._conns.get(session) is not conn:
            return
        del self._conns[session]
        session.connection_lost(self.now(), reason)
        self._service(session)

    def _session_down(self, session: Session) -> None:
        """A session went to Idle: collision bookkeeping (who is primary now)."""
        if session is self.second:
            self.second = None
            self.session.sibling = None
            self._close_connection(session)
        elif session is self.session and self.second is not None and self.second.state != State.IDLE:
            # the second connection won (or outlived) the first: it becomes the session of this peer
            old, self.session = self.session, self.second
            self.second = None
            self.session.sibling = None
            self.session.auto_restart = old.auto_restart
            self._close_connection(old)
            old.idle_hold.stop()
