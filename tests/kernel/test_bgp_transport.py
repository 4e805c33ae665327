"""The asyncio transport over real TCP: two namespaces joined by a veth, one event loop, a speaker on
each side with its sockets created inside its own namespace. Root only."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bgpd.fsm import State
from bgpd.peer import Peer
from bgpd.sockopts import IP_MINTTL, last_received, ttl_options
from bgpd.speaker import Speaker
from bgpd.speaker_settings import pools_from_networks
from bgpd.topology import GLOBAL, PeerConfig, Topology
from bgpd.transport import WRITE_CHUNK, Transport
from lab.netns import Netns, NetnsSet
from proto import prefix as pf
from proto.bgp import MsgType, Negotiated, PathAttributes, Update, encode_message
from tests.conftest import require_root, require_tools

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
EOR = encode_message(Update(), Negotiated())


@contextlib.contextmanager
def inside(ns: Netns) -> Iterator[None]:
    """Run the block with this thread in `ns` (sockets made here stay in `ns` for good)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(ns.path, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


def socket_factory(ns: Netns) -> Callable[[int], socket.socket]:
    def make(family: int) -> socket.socket:
        with inside(ns):
            return socket.socket(family, socket.SOCK_STREAM)

    return make


@dataclass
class Side:
    ns: Netns
    address: str
    router_id: str


@dataclass
class End:
    """One side's speaker and transport, and its view of the other side."""

    side: Side
    speaker: Speaker
    transport: Transport
    peer_address: str

    @property
    def peer(self) -> Peer:
        return self.speaker.peers[self.peer_address]

    @property
    def state(self) -> State:
        return self.peer.state

    def connection(self) -> object:
        return self.transport.connection(self.peer.session)

    def sock(self) -> socket.socket | None:
        conn = self.transport.connection(self.peer.session)
        return conn.sock if conn is not None else None


@pytest.fixture
def lab() -> Iterator[tuple[Side, Side, Side, Side]]:
    """Two namespaces on one veth, with IPv4 and IPv6 addresses: (a4, b4, a6, b6) views of them."""
    require_root()
    require_tools("ip")
    with NetnsSet(prefix="tb") as nets:
        a, b = nets.add("a"), nets.add("b")
        nets.veth(a, "tba0", b, "tbb0")
        a.ip("addr", "add", "10.231.0.1/24", "dev", "tba0")
        b.ip("addr", "add", "10.231.0.2/24", "dev", "tbb0")
        a.ip("addr", "add", "fd00:231::1/64", "dev", "tba0", "nodad")
        b.ip("addr", "add", "fd00:231::2/64", "dev", "tbb0", "nodad")
        yield (
            Side(a, "10.231.0.1", "10.231.0.1"),
            Side(b, "10.231.0.2", "10.231.0.2"),
            Side(a, "fd00:231::1", "10.231.0.1"),
            Side(b, "fd00:231::2", "10.231.0.2"),
        )


def topology(me: Side, other: Side, *, passive: bool, md5: str | None, ttl: int | None, hold: int) -> Topology:
    peer = PeerConfig(address=ipaddress.ip_address(other.address), asn=64512, local_asn=64512, peer_type=GLOBAL,
                      passive=passive, password=md5, ttl_security=ttl, hold_time=hold,
                      source_address=ipaddress.ip_address(me.address))
    return Topology(node=me.address, asn=64512, router_id=ipaddress.IPv4Address(me.router_id), listen_port=179,
                    cluster_id=None, addresses=(ipaddress.ip_address(me.address),), peers={peer.key: peer},
                    originate=())


async def start_end(me: Side, other: Side, *, passive: bool = False, md5: str | None = None,
                    ttl: int | None = None, hold: int = 90, listen: bool = True,
                    connect_delay: float = 0.0) -> End:
    loop = asyncio.get_running_loop()
    topo = topology(me, other, passive=passive, md5=md5, ttl=ttl, hold=hold)
    speaker = Speaker(topo, pools_from_networks([ipaddress.ip_network("10.0.0.0/8")]), loop.time(),
                      connect_retry_time=2, connect_delay=connect_delay)
    transport = Transport(speaker, socket_factory=socket_factory(me.ns))
    for peer in speaker.peers.values():
        transport.peer_added(peer.transport)
    if listen:
        await transport.listen([(me.address, 179)])
    transport.service()
    return End(me, speaker, transport, str(ipaddress.ip_address(other.address)))


@contextlib.asynccontextmanager
async def running(x: Side, y: Side, *, passive_y: bool = True, md5: tuple[str | None, str | None] = (None, None),
                  ttl: tuple[int | None, int | None] = (None, None), hold: int = 90) -> AsyncIterator[tuple[End, End]]:
    """A speaker on each side, x towards y and y towards x; everything closed afterwards."""
    ex = await start_end(x, y, passive=False, md5=md5[0], ttl=ttl[0], hold=hold)
    ey = await start_end(y, x, passive=passive_y, md5=md5[1], ttl=ttl[1], hold=hold)
    try:
        yield ex, ey
    finally:
        for e in (ex, ey):
            await e.transport.close(message="test over")


async def poll(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)  # yields to the loop that does the work; bounded by the timeout


async def both_established(p: End, q: End, timeout: float = 15) -> None:
    await poll(lambda: p.state == State.ESTABLISHED and q.state == State.ESTABLISHED, timeout)


async def test_establish_update_and_shutdown_over_ipv4(lab: tuple[Side, Side, Side, Side]) -> None:
    a, b, _, _ = lab
    async with running(a, b) as (pa, pb):
        await both_established(pa, pb)
        assert pa.peer.session.outbound and pa.peer.session.remote_router_id == "10.231.0.2"
        sock = pa.sock()
        assert sock is not None
        assert sock.getpeername()[0] == "10.231.0.2" and sock.getsockname()[0] == "10.231.0.1"
        assert pa.speaker.local_address(pa.peer.session) == "10.231.0.1"
        assert pa.peer.session.hold_time == 90
        # each side sent End-of-RIB for both families when it joined its update group
        await poll(lambda: pb.peer.session.received[MsgType.UPDATE] >= 2, 10)
        before = pb.peer.session.received[MsgType.UPDATE]
        session = pa.peer.session
        session.send_updates([EOR * 1000], 1000)
        pa.transport.service()
        await poll(lambda: pb.peer.session.received[MsgType.UPDATE] == before + 1000, 10)
        pa.speaker.shutdown_peer(pa.peer_address, pa.transport.now(), "maintenance")
        pa.transport.service()
        await poll(lambda: bool(pb.peer.notifications_received), 10)
        # RFC 8538: with the N bit negotiated, an administrative shutdown goes as a Hard Reset (6/9)
        # carrying the Cease/2 and its message
        assert dict(pb.peer.notifications_received) == {(6, 9): 1}
        assert pb.peer.last_received is not None and "maintenance" in pb.peer.last_received
        assert pb.state != State.ESTABLISHED and "maintenance" in pb.peer.session.last_error


async def test_establish_over_ipv6(lab: tuple[Side, Side, Side, Side]) -> None:
    _, _, a6, b6 = lab
    async with running(a6, b6) as (pa, pb):
        await both_established(pa, pb)
        sock = pb.sock()
        assert sock is not None and sock.family == socket.AF_INET6
        assert sock.getpeername()[0] == "fd00:231::1"


@pytest.mark.parametrize("a_id", ["10.231.0.1", "10.231.0.9"])
async def test_both_active_collide_and_keep_one_connection(
    lab: tuple[Side, Side, Side, Side], a_id: str
) -> None:
    a, b, _, _ = lab
    a.router_id = a_id
    async with running(a, b, passive_y=False) as (pa, pb):
        await both_established(pa, pb)
        # whatever raced, the session that stays is the connection opened by the higher identifier
        await poll(lambda: pa.peer.neighbor.second is None and pb.peer.neighbor.second is None, 10)
        higher_is_a = a_id > b.router_id
        assert pa.peer.session.outbound == higher_is_a
        assert pb.peer.session.outbound == (not higher_is_a)
        # the same TCP connection at both ends
        sa, sb = pa.sock(), pb.sock()
        assert sa is not None and sb is not None and sa.getsockname() == sb.getpeername()


async def test_md5_matched_establishes(lab: tuple[Side, Side, Side, Side]) -> None:
    a, b, _, _ = lab
    async with running(a, b, md5=("s3cret-key", "s3cret-key")) as (pa, pb):
        await both_established(pa, pb)
        assert pa.state == pb.state == State.ESTABLISHED


@pytest.mark.parametrize("keys", [("s3cret-key", "other-key"), ("s3cret-key", None), (None, "s3cret-key")])
async def test_md5_mismatched_never_establishes(
    lab: tuple[Side, Side, Side, Side], keys: tuple[str | None, str | None]
) -> None:
    a, b, _, _ = lab
    async with running(a, b, md5=keys) as (pa, pb):
        # the connecting side's SYNs go unanswered: its connect attempts time out, one after another
        await poll(lambda: "no answer" in pa.peer.session.last_error, 15)
        assert pa.state in (State.CONNECT, State.ACTIVE, State.IDLE)
        assert pb.state == State.ACTIVE  # passive: it waits, and nothing valid ever reaches it
        assert pa.peer.established_count == pb.peer.established_count == 0
        assert pa.sock() is None


async def test_gtsm_sets_socket_options_and_establishes(lab: tuple[Side, Side, Side, Side]) -> None:
    a, b, _, _ = lab
    async with running(a, b, ttl=(1, 1)) as (pa, pb):
        await both_established(pa, pb)
        for end in (pa, pb):  # the connecting and the accepted socket
            sock = end.sock()
            assert sock is not None and ttl_options(sock) == (255, 255)
        lsock = pb.transport.sockets[0]
        assert lsock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
        assert lsock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 0


async def test_gtsm_refuses_a_peer_too_far_away(lab: tuple[Side, Side, Side, Side]) -> None:
    """Only the accepting side checks TTL, and the connecting side sends with the default TTL of 64:
    the accepted connection then never hears the OPEN, so the session cannot come up."""
    a, b, _, _ = lab
    async with running(a, b, ttl=(None, 1)) as (pa, pb):
        await poll(lambda: pb.sock() is not None, 10)
        sock = pb.sock()
        assert sock is not None and ttl_options(sock) == (255, 255)
        with pytest.raises(TimeoutError):
            await poll(lambda: pb.state == State.ESTABLISHED, 4)
        assert pa.peer.established_count == pb.peer.established_count == 0
        assert pa.state in (State.OPENSENT, State.OPENCONFIRM) and pb.state == State.OPENSENT


async def test_hold_timer_rearmed_while_bytes_wait_in_the_socket(lab: tuple[Side, Side, Side, Side]) -> None:
    """BIRD's rule over a real socket: b stops reading (a busy daemon); a's KEEPALIVEs pile up unread in
    b's receive buffer; b's hold timer runs out but finds input waiting, so it re-arms instead of
    sending Hold Timer Expired. Once b reads again the session simply carries on."""
    a, b, _, _ = lab
    async with running(a, b, hold=3) as (pa, pb):
        await both_established(pa, pb)
        conn = pb.transport.connection(pb.peer.session)
        assert conn is not None and conn.transport is not None
        conn.transport.pause_reading()
        deadline = pb.peer.session.hold.deadline
        assert deadline is not None
        # past the hold time, with a KEEPALIVE from a sitting in b's socket
        await poll(lambda: pb.transport.now() > deadline + 0.5, 10)
        assert pb.state == State.ESTABLISHED
        assert pb.peer.session.hold.deadline is not None and pb.peer.session.hold.deadline > deadline
        assert not pb.peer.notifications_sent
        conn.transport.resume_reading()
        with pytest.raises(TimeoutError):
            await poll(lambda: pb.state != State.ESTABLISHED, 4)
        assert pa.state == State.ESTABLISHED


@contextlib.asynccontextmanager
async def stalled_reader(pa: End, pb: End) -> AsyncIterator[tuple[Any, int]]:
    """Once both are established, b stops reading (after both End-of-RIBs): yields b's connection
    (the test resumes its reading) and how many UPDATEs b had received."""
    await both_established(pa, pb)
    await poll(lambda: pb.peer.session.received[MsgType.UPDATE] >= 2, 10)  # the End-of-RIBs
    before = pb.peer.session.received[MsgType.UPDATE]
    conn = pb.transport.connection(pb.peer.session)
    assert conn is not None and conn.transport is not None
    conn.transport.pause_reading()
    yield conn, before


async def test_writes_back_off_while_the_peer_does_not_read(lab: tuple[Side, Side, Side, Side]) -> None:
    a, b, _, _ = lab
    async with running(a, b, hold=30) as (pa, pb), stalled_reader(pa, pb) as (conn, before):
        # one extended-length UPDATE of 12,000 host routes, about 60 kB
        nlri = [pf.make(4, 32, bytes([10, i >> 16, (i >> 8) & 255, i & 255])) for i in range(12_000)]
        attrs = PathAttributes(origin=0, as_path=(), next_hop=a.address, local_pref=100)
        session = pa.peer.session
        unit = encode_message(Update(attributes=attrs, nlri=nlri), session.negotiated)
        assert 50_000 < len(unit) <= 65_535
        session.send_updates([unit] * 300, 300)  # 18 MB: far more than the socket buffers hold
        pa.transport.service()
        aconn = pa.transport.connection(session)
        assert aconn is not None and aconn.transport is not None
        await poll(lambda: aconn.paused, 10)
        # the session still holds most of it: nothing was pushed blindly into asyncio's buffer
        assert session.pending_update_bytes > 10_000_000
        assert aconn.transport.get_write_buffer_size() < 4 * 1024 * 1024
        conn.transport.resume_reading()
        await poll(lambda: pb.peer.session.received[MsgType.UPDATE] == before + 300, 60)
        assert session.pending_update_bytes == 0
        assert pa.state == pb.state == State.ESTABLISHED
        # and b's speaker took every route into its Adj-RIB-In (host routes inside the pool)
        assert len(pb.speaker.rib.peers[pb.peer.info].ins[(1, 1)]) == 12_000


async def test_a_whole_table_in_one_unit_is_not_copied_into_the_write_buffer(
    lab: tuple[Side, Side, Side, Side],
) -> None:
    # an update group hands a joining member its whole table as one unit (shared by every member);
    # a reflector with thousands of slow clients must not copy it into each connection's buffer
    a, b, _, _ = lab
    async with running(a, b, hold=30) as (pa, pb), stalled_reader(pa, pb) as (conn, before):
        attrs = PathAttributes(origin=0, as_path=(), next_hop=a.address, local_pref=100)
        session = pa.peer.session
        one = [encode_message(Update(attributes=attrs, nlri=[pf.make(4, 26, bytes([10, 9, i >> 2, (i & 3) << 6]))]),
                              session.negotiated) for i in range(1024)]
        table = b"".join(one * 100)  # 102,400 UPDATEs, about 5 MB, one unit
        session.send_updates([table], len(one) * 100)
        pa.transport.service()
        aconn = pa.transport.connection(session)
        assert aconn is not None and aconn.transport is not None
        await poll(lambda: aconn.paused, 10)
        assert session.pending_update_bytes > len(table) // 2  # the socket buffers hold the rest
        assert aconn.transport.get_write_buffer_size() <= WRITE_CHUNK
        conn.transport.resume_reading()
        await poll(lambda: pb.peer.session.received[MsgType.UPDATE] == before + len(one) * 100, 60)
        assert session.pending_update_bytes == 0
        assert pa.state == pb.state == State.ESTABLISHED
        assert len(pb.speaker.rib.peers[pb.peer.info].ins[(1, 1)]) == 1024


async def test_restarted_peer_with_graceful_restart_replaces_the_old_session(
    lab: tuple[Side, Side, Side, Side],
) -> None:
    """a's process freezes with its connection still open and a new a starts (a restart the kernel
    did not see): b takes the new connection and ends the old session without a NOTIFICATION, as
    RFC 4724 asks, so its routes can be kept as stale."""
    a, b, _, _ = lab
    async with running(a, b) as (pa, pb):
        await both_established(pa, pb)
        old = pb.peer.session
        # freeze the old a: no more reading, no more timers (a test's poke at the adapter's insides)
        frozen = pa.transport.connection(pa.peer.session)
        assert frozen is not None and frozen.transport is not None
        frozen.transport.pause_reading()
        pa.transport._closed = True
        pa.transport._timer.cancel()
        fresh = await start_end(a, b, listen=False)
        try:
            await poll(lambda: fresh.state == State.ESTABLISHED, 15)
            await poll(lambda: pb.peer.session is not old and pb.state == State.ESTABLISHED, 10)
            assert old.state == State.IDLE
            assert pb.peer.established_count == 2 and not pb.peer.notifications_sent
            assert "restarted" in old.last_error
            assert pb.peer.neighbor.second is None
        finally:
            await fresh.transport.close()


def test_an_accepted_connection_says_how_long_it_waited_in_the_accept_queue() -> None:
    """`last_received`: a busy speaker accepts late, and the peer's OPEN (here four octets on
    loopback) has been in the kernel since it was sent: the connection was made that long ago."""
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        t0 = time.monotonic()
        client.sendall(b"open")
        t1 = time.monotonic()
        time.sleep(0.3)  # the condition under test: a connection left in the accept queue (no event to wait for)
        a0 = time.monotonic()
        conn, _ = server.accept()
        with conn:
            waited = last_received(conn)
            a1 = time.monotonic()
    assert waited is not None
    slack = 0.02  # the kernel counts in jiffies
    assert a0 - t1 - slack <= waited <= a1 - t0 + slack, (waited, a0 - t1, a1 - t0)
    assert waited >= 0.25
