"""The asyncio transport over real TCP: two namespaces joined by a veth, one event loop, each peer's
sockets created inside its own namespace. Root only."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from bgpd.fsm import State
from bgpd.session import (
    Established,
    NotificationReceived,
    NotificationSent,
    SessionConfig,
    SessionDown,
    SessionEvent,
    UpdateReceived,
)
from bgpd.transport import (
    IP_MINTTL,
    BgpListener,
    BgpPeer,
    PeerTransportConfig,
    ttl_options,
)
from lab.netns import Netns, NetnsSet
from proto.bgp import IPV4_UNICAST, Negotiated, PathAttributes, Update, encode_message
from tests.conftest import require_root, require_tools

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


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
    listener: BgpListener | None = None
    peer: BgpPeer | None = None
    events: list[SessionEvent] = field(default_factory=list)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


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


@contextlib.asynccontextmanager
async def running(
    x: Side,
    y: Side,
    *,
    passive_y: bool = True,
    md5: tuple[str | None, str | None] = (None, None),
    ttl: tuple[int | None, int | None] = (None, None),
    **session: object,
) -> AsyncIterator[tuple[BgpPeer, BgpPeer]]:
    """Listener and peer on each side, x towards y and y towards x; everything closed afterwards."""
    peers = []
    for me, other, passive, key, hops in ((x, y, False, md5[0], ttl[0]), (y, x, passive_y, md5[1], ttl[1])):
        me.listener = BgpListener([(me.address, 179)], socket_factory=socket_factory(me.ns))
        cfg = SessionConfig(
            local_as=64512,
            peer_as=64512,
            router_id=me.router_id,
            name=f"{me.address}->{other.address}",
            passive=passive,
            connect_retry_time=2,
            idle_hold_time=0.2,
            **session,
        )  # type: ignore[arg-type]
        tcfg = PeerTransportConfig(
            peer_address=other.address, source_address=me.address, md5_password=key, ttl_security=hops
        )
        me.peer = BgpPeer(
            cfg,
            tcfg,
            listener=me.listener,
            handler=lambda _p, ev, me=me: me.events.append(ev),
            socket_factory=socket_factory(me.ns),
        )
        await me.listener.start()
        peers.append(me.peer)
    try:
        for p in peers:
            p.start()
        yield peers[0], peers[1]
    finally:
        for p in peers:
            await p.close("test over")
        for side in (x, y):
            if side.listener is not None:
                await side.listener.close()


async def both_established(p: BgpPeer, q: BgpPeer, timeout: float = 15) -> None:
    await asyncio.gather(p.wait_state(State.ESTABLISHED, timeout), q.wait_state(State.ESTABLISHED, timeout))


async def poll(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)  # yields to the loop that does the work; bounded by the timeout


async def test_establish_update_and_shutdown_over_ipv4(lab: tuple[Side, Side, Side, Side]) -> None:
    a, b, _, _ = lab
    async with running(a, b) as (pa, pb):
        await both_established(pa, pb)
        (ea,) = a.of(Established)
        assert ea.outbound and ea.remote_open.router_id == "10.231.0.2"
        conn = pa.connection
        assert conn is not None and conn.sock is not None
        assert conn.sock.getpeername()[0] == "10.231.0.2" and conn.sock.getsockname()[0] == "10.231.0.1"
        st = pa.status()
        assert st["state"] == "ESTABLISHED" and st["remote_router_id"] == "10.231.0.2"
        assert st["local"] is not None and st["local"][0] == "10.231.0.1" and st["hold_time"] == 90
        pa.send_update_bytes(encode_message(Update(), Negotiated()) * 1000)
        await poll(lambda: len(b.of(UpdateReceived)) == 1000, 10)
        assert b.of(UpdateReceived)[0].update.end_of_rib() == IPV4_UNICAST
        assert pa.write_ready.is_set()
        pa.stop("maintenance")
        await poll(lambda: bool(b.of(NotificationReceived)), 10)
        (n,) = b.of(NotificationReceived)
        assert (n.notification.code, n.notification.subcode) == (6, 2)
        assert n.notification.shutdown_message == "maintenance"
        assert pb.state != State.ESTABLISHED and "maintenance" in pb.last_error


async def test_establish_over_ipv6(lab: tuple[Side, Side, Side, Side]) -> None:
    _, _, a6, b6 = lab
    async with running(a6, b6) as (pa, pb):
        await both_established(pa, pb)
        conn = pb.connection
        assert conn is not None and conn.sock is not None and conn.sock.family == socket.AF_INET6
        assert conn.sock.getpeername()[0] == "fd00:231::1"


@pytest.mark.parametrize("a_id", ["10.231.0.1", "10.231.0.9"])
async def test_both_active_collide_and_keep_one_connection(
    lab: tuple[Side, Side, Side, Side], a_id: str
) -> None:
    a, b, _, _ = lab
    a.router_id = a_id
    async with running(a, b, passive_y=False) as (pa, pb):
        await both_established(pa, pb)
        # whatever raced, the session that stays is the connection opened by the higher identifier
        await poll(lambda: pa.second is None and pb.second is None, 10)
        higher_is_a = a_id > b.router_id
        assert pa.session.outbound == higher_is_a
        assert pb.session.outbound == (not higher_is_a)
        # the same TCP connection at both ends
        ca, cb = pa.connection, pb.connection
        assert ca is not None and cb is not None and ca.sock is not None and cb.sock is not None
        assert ca.sock.getsockname() == cb.sock.getpeername()


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
        await poll(lambda: "timed out" in pa.last_error, 15)
        assert pa.state in (State.CONNECT, State.ACTIVE, State.IDLE)
        assert pb.state == State.ACTIVE  # passive: it waits, and nothing valid ever reaches it
        assert not a.of(Established) and not b.of(Established)
        assert pa.session.connect_retry_counter >= 0 and pa.connection is None


async def test_gtsm_sets_socket_options_and_establishes(lab: tuple[Side, Side, Side, Side]) -> None:
    a, b, _, _ = lab
    async with running(a, b, ttl=(1, 1)) as (pa, pb):
        await both_established(pa, pb)
        for peer in (pa, pb):  # the connecting and the accepted socket
            conn = peer.connection
            assert conn is not None and conn.sock is not None
            assert ttl_options(conn.sock) == (255, 255)
        assert b.listener is not None
        lsock = b.listener.sockets[0]
        assert lsock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
        assert lsock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 0


async def test_gtsm_refuses_a_peer_too_far_away(lab: tuple[Side, Side, Side, Side]) -> None:
    """Only the accepting side checks TTL, and the connecting side sends with the default TTL of 64:
    the accepted connection then never hears the OPEN, so the session cannot come up."""
    a, b, _, _ = lab
    async with running(a, b, ttl=(None, 1)) as (pa, pb):
        await poll(lambda: pb.connection is not None, 10)
        sock = pb.connection.sock if pb.connection is not None else None
        assert sock is not None and ttl_options(sock) == (255, 255)
        with pytest.raises(TimeoutError):
            await pb.wait_state(State.ESTABLISHED, 4)
        assert not a.of(Established) and not b.of(Established)
        assert pa.state in (State.OPENSENT, State.OPENCONFIRM) and pb.state == State.OPENSENT


async def test_hold_timer_rearmed_while_bytes_wait_in_the_socket(lab: tuple[Side, Side, Side, Side]) -> None:
    """BIRD's rule over a real socket: b stops reading (a busy daemon); a's KEEPALIVEs pile up unread in
    b's receive buffer; b's hold timer runs out but finds input waiting, so it re-arms instead of
    sending Hold Timer Expired. Once b reads again the session simply carries on."""
    a, b, _, _ = lab
    async with running(a, b, hold_time=3) as (pa, pb):
        await both_established(pa, pb)
        conn = pb.connection
        assert conn is not None and conn.transport is not None
        conn.transport.pause_reading()
        deadline = pb.session.hold.deadline
        assert deadline is not None
        # past the hold time, with a KEEPALIVE from a sitting in b's socket
        await poll(lambda: pb.now() > deadline + 0.5, 10)
        assert pb.state == State.ESTABLISHED
        assert pb.session.hold.deadline is not None and pb.session.hold.deadline > deadline
        assert not [e for e in b.events if isinstance(e, NotificationSent)]
        conn.transport.resume_reading()
        with pytest.raises(TimeoutError):
            await pb.wait_for(lambda p: p.state != State.ESTABLISHED, 4)
        assert pa.state == State.ESTABLISHED


async def test_writes_back_off_while_the_peer_does_not_read(lab: tuple[Side, Side, Side, Side]) -> None:
    a, b, _, _ = lab
    async with running(a, b, hold_time=30) as (pa, pb):
        await both_established(pa, pb)
        conn = pb.connection
        assert conn is not None and conn.transport is not None
        conn.transport.pause_reading()
        # one extended-length UPDATE of 12,000 host routes, about 60 kB
        nlri = [bytes([32, 10, i >> 16, (i >> 8) & 255, i & 255]) for i in range(12_000)]
        attrs = PathAttributes(origin=0, as_path=(), next_hop=a.address, local_pref=100)
        unit = encode_message(Update(attributes=attrs, nlri=nlri), pa.session.negotiated)
        assert 50_000 < len(unit) <= 65_535
        for _ in range(300):  # 18 MB: far more than the socket buffers hold
            pa.send_update_bytes(unit)
        await poll(lambda: not pa.write_ready.is_set(), 10)
        # the session still holds most of it: nothing was pushed blindly into asyncio's buffer
        aconn = pa.connection
        assert aconn is not None and aconn.transport is not None and aconn.paused
        assert pa.session.pending_update_bytes > 10_000_000
        assert aconn.transport.get_write_buffer_size() < 4 * 1024 * 1024
        conn.transport.resume_reading()
        await asyncio.wait_for(pa.write_ready.wait(), 30)
        await poll(lambda: len(b.of(UpdateReceived)) == 300, 60)
        assert len(b.of(UpdateReceived)[-1].update.nlri) == 12_000
        assert pa.session.pending_update_bytes == 0
        assert pa.state == pb.state == State.ESTABLISHED


async def test_restarted_peer_with_graceful_restart_replaces_the_old_session(
    lab: tuple[Side, Side, Side, Side],
) -> None:
    """a's process freezes with its connection still open and a new a starts (a restart the kernel
    did not see): b takes the new connection and ends the old session without a NOTIFICATION, as
    RFC 4724 asks, so its routes can be kept as stale."""
    a, b, _, _ = lab
    async with running(a, b) as (pa, pb):
        await both_established(pa, pb)
        old_conn = pb.connection
        # freeze the old a: no more reading, no more timers
        frozen = pa.connection
        assert frozen is not None and frozen.transport is not None
        frozen.transport.pause_reading()
        pa._closed = True
        pa._arm_timer()
        cfg = SessionConfig(
            local_as=64512, peer_as=64512, router_id=a.router_id, name="a-restarted", connect_retry_time=2
        )
        tcfg = PeerTransportConfig(peer_address=b.address, source_address=a.address)
        fresh = BgpPeer(cfg, tcfg, socket_factory=socket_factory(a.ns))
        fresh.start()
        try:
            await fresh.wait_state(State.ESTABLISHED, 15)
            await poll(lambda: pb.connection is not old_conn and pb.state == State.ESTABLISHED, 10)
            downs = [e for e in b.events if isinstance(e, SessionDown)]
            assert downs and downs[0].was_established and downs[0].notification_sent is None
            assert "restarted" in downs[0].reason
            assert pb.second is None
        finally:
            await fresh.close()
