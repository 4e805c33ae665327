"""Two sans-I/O sessions joined in memory: bytes moved by hand, time stepped by hand, no sockets."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from bgpd.fsm import State
from bgpd.neighbor import Neighbor
from bgpd.send_queue import message_end
from bgpd.session import HOLD_GRACE, LocalProtocolError, Session
from bgpd.session_config import GracefulRestartConfig, SessionConfig
from bgpd.session_events import (
    CloseConnection,
    ConnectRequested,
    Established,
    NotificationReceived,
    NotificationSent,
    RouteRefreshReceived,
    SessionDown,
    SessionEvent,
    UpdateReceived,
)
from bgpd.session_machine import LARGE_HOLD_TIME
from proto import prefix as pf
from proto.bgp import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    KEEPALIVE_BYTES,
    MARKER,
    AddPathCap,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    FourOctetAsCap,
    GracefulRestartCap,
    MsgType,
    MultiprotocolCap,
    Negotiated,
    Notification,
    Open,
    OptionalParameter,
    RouteRefreshCap,
    Update,
    decode_message,
    encode_message,
)
from proto.bgp.model import PathAttributes

ID_A = "10.0.0.1"
ID_B = "10.0.0.2"


class Pinned:
    """A random source that always returns the same point of the range asked for."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def config(router_id: str, local_as: int = 64512, peer_as: int = 64512, **kw: object) -> SessionConfig:
    return SessionConfig(local_as=local_as, peer_as=peer_as, router_id=router_id, name=router_id, **kw)  # type: ignore[arg-type]


@dataclass
class End:
    """A session plus everything it has said so far."""

    session: Session
    events: list[SessionEvent] = field(default_factory=list)
    wire: Wire | None = None
    neighbor: Neighbor | None = None  # the owner of the session, when collisions are in play

    def drain(self) -> list[SessionEvent]:
        new = self.session.events()
        self.events += new
        return new

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class Wire:
    """One TCP connection between two sessions; `a` opened it."""

    a: End
    b: End
    open: bool = True
    a_to_b: list[bytes] = field(default_factory=list)  # written by a, not yet read by b
    b_to_a: list[bytes] = field(default_factory=list)

    def exchange(self, now: float) -> None:
        """Both ends write what they have, then both read it: messages in flight cross."""
        to_b = self.a.session.data_to_send()
        to_a = self.b.session.data_to_send()
        self.b.session.receive_data(to_b, now)
        self.a.session.receive_data(to_a, now)

    def pump(self, now: float, *, deliver_to_a: bool = True, deliver_to_b: bool = True) -> None:
        """Move bytes both ways until neither side has anything more to say."""
        for _ in range(100):
            moved = False
            for src, dst, queue, deliver in (
                (self.a, self.b, self.a_to_b, deliver_to_b),
                (self.b, self.a, self.b_to_a, deliver_to_a),
            ):
                data = src.session.data_to_send() if src.wire is self else b""
                if data:
                    queue.append(data)
                closing = [e for e in src.drain() if isinstance(e, CloseConnection)]
                if deliver and queue and dst.wire is self:
                    chunk = b"".join(queue)
                    queue.clear()
                    dst.session.receive_data(chunk, now)
                    moved = True
                if closing and src.wire is self:
                    src.wire = None
                    self.open = False
                    if dst.wire is self:
                        # what src wrote before closing still arrives, then the end of the stream
                        if queue:
                            dst.session.receive_data(b"".join(queue), now)
                            queue.clear()
                        dst.session.connection_lost(now, "connection closed by peer")
                        dst.wire = None
                    moved = True
            if not moved and not any(e.session.has_output for e in (self.a, self.b) if e.wire is self):
                return
        raise AssertionError("sessions keep talking")


def connect(a: End, b: End, now: float) -> Wire:
    """a's connection attempt reaches b, which accepts it."""
    wire = Wire(a, b)
    assert a.session.connection_made(now, outbound=True)
    a.wire = wire
    if b.session.connection_made(now, outbound=False):
        b.wire = wire
    return wire


def establish(
    cfg_a: SessionConfig, cfg_b: SessionConfig, now: float = 0.0, rng: object = None
) -> tuple[End, End, Wire]:
    na, nb = Neighbor(cfg_a, rng or Pinned(1.0)), Neighbor(cfg_b, rng or Pinned(1.0))  # type: ignore[arg-type]
    a, b = End(na.session, neighbor=na), End(nb.session, neighbor=nb)
    b.session.start(now, passive=True)
    a.session.start(now)
    assert any(isinstance(e, ConnectRequested) for e in a.drain())
    wire = connect(a, b, now)
    wire.pump(now)
    return a, b, wire


def open_confirm_pair(now: float = 0.0) -> tuple[End, End, Wire]:
    """Two neighbours whose OPENs crossed: both in OpenConfirm, their KEEPALIVEs not yet read."""
    na, nb = Neighbor(config(ID_A), Pinned(1.0)), Neighbor(config(ID_B), Pinned(1.0))  # type: ignore[arg-type]
    a, b = End(na.session, neighbor=na), End(nb.session, neighbor=nb)
    b.session.start(now, passive=True)
    a.session.start(now)
    a.drain()
    wire = connect(a, b, now)
    wire.exchange(now)
    return a, b, wire


def run_until(ends: list[End], wires: list[Wire], until: float, start: float) -> float:
    """Step time from deadline to deadline, firing timers and moving bytes, up to `until`."""
    now = start
    while True:
        deadlines = [d for e in ends if (d := e.session.next_deadline()) is not None]
        if not deadlines or min(deadlines) > until:
            return until
        now = max(now, min(deadlines))
        for e in ends:
            e.session.handle_timer(now)
        for w in wires:
            w.pump(now)


def sent_messages(data: bytes) -> list[int]:
    types, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 16 : pos + 18], "big")
        types.append(data[pos + 18])
        pos += length
    return types


def eor_bytes() -> bytes:
    return encode_message(Update(), Negotiated())


# ---------------------------------------------------------------- establishment


def test_establish_and_open_contents() -> None:
    gr = GracefulRestartConfig(
        restart_time=90, restarting=True, forwarding_preserved=frozenset({IPV4_UNICAST})
    )
    a, b, _ = establish(
        config(ID_A, graceful_restart=gr, add_path_receive=frozenset({IPV4_UNICAST})), config(ID_B)
    )
    assert a.session.state == State.ESTABLISHED and b.session.state == State.ESTABLISHED
    (ea,) = a.of(Established)
    (eb,) = b.of(Established)
    assert ea.outbound and not eb.outbound
    assert ea.hold_time == eb.hold_time == 90 and ea.keepalive_time == 30
    assert ea.negotiated.four_octet_as and ea.negotiated.extended_message
    # A asked to receive ADD-PATH; B does not send it, so nothing is negotiated
    assert ea.negotiated.add_path_receive == frozenset()
    seen: Open = eb.remote_open
    assert seen.router_id == ID_A and seen.real_asn == 64512
    kinds = {type(c) for c in seen.capabilities}
    assert {
        MultiprotocolCap,
        RouteRefreshCap,
        EnhancedRouteRefreshCap,
        ExtendedMessageCap,
        FourOctetAsCap,
        GracefulRestartCap,
        AddPathCap,
    } <= kinds
    assert {(c.afi, c.safi) for c in seen.capabilities if isinstance(c, MultiprotocolCap)} == {
        IPV4_UNICAST,
        IPV6_UNICAST,
    }
    grcap = seen.capability(GracefulRestartCap)
    assert isinstance(grcap, GracefulRestartCap)
    assert grcap.restart_time == 90 and grcap.restarting
    assert set(grcap.families) == {(1, 1, True), (2, 1, False)}
    addpath = seen.capability(AddPathCap)
    assert isinstance(addpath, AddPathCap) and addpath.families == ((1, 1, 1),)


def test_four_octet_as_uses_as_trans() -> None:
    _a, b, _ = establish(
        config(ID_A, local_as=4200000001, peer_as=4200000002),
        config(ID_B, local_as=4200000002, peer_as=4200000001),
    )
    assert b.session.state == State.ESTABLISHED
    assert b.session.remote_open is not None and b.session.remote_open.asn == 23456
    assert b.session.remote_open.real_asn == 4200000001


def test_hold_time_negotiation_takes_the_smaller() -> None:
    a, b, _ = establish(config(ID_A, hold_time=30), config(ID_B, hold_time=90))
    assert a.session.hold_time == b.session.hold_time == 30
    assert a.session.keepalive_time == b.session.keepalive_time == 10
    assert a.session.hold.deadline == 30 and a.session.keepalive.deadline == 10  # jitter pinned at 1.0


def test_hold_time_zero_means_no_keepalives_and_no_hold() -> None:
    a, b, wire = establish(config(ID_A, hold_time=0), config(ID_B))
    assert a.session.state == b.session.state == State.ESTABLISHED
    assert a.session.hold_time == b.session.hold_time == 0
    assert a.session.next_deadline() is None and b.session.next_deadline() is None
    run_until([a, b], [wire], 10_000, 0)
    assert a.session.state == b.session.state == State.ESTABLISHED


@pytest.mark.parametrize("hold", [1, 2])
def test_hold_time_one_or_two_is_refused(hold: int) -> None:
    b = End(Session(config(ID_B)))
    b.session.start(0, passive=True)
    assert b.session.connection_made(0, outbound=False)
    b.session.data_to_send()
    bad = Open(asn=64512, hold_time=hold, router_id=ID_A, capabilities=(FourOctetAsCap(64512),))
    b.session.receive_data(encode_message(bad, Negotiated()), 0)
    sent = decode_message(b.session.data_to_send(), Negotiated())
    assert sent == Notification(2, 6)
    assert b.session.state == State.IDLE
    assert b.of(SessionDown) == [] and any(isinstance(e, SessionDown) for e in b.drain())


def test_keepalive_cadence_and_no_hold_expiry() -> None:
    a, b, wire = establish(config(ID_A, hold_time=30), config(ID_B, hold_time=30))
    before = len(b.events)
    received: list[float] = []
    now = 0.0
    while now < 300:
        nxt = min(d for e in (a, b) if (d := e.session.next_deadline()) is not None)
        now = nxt
        a.session.handle_timer(now)
        data = a.session.data_to_send()
        if data:
            assert sent_messages(data) == [MsgType.KEEPALIVE]
            received.append(now)
            b.session.receive_data(data, now)
        b.session.handle_timer(now)
        a.session.receive_data(b.session.data_to_send(), now)
    gaps = [y - x for x, y in itertools.pairwise(received)]
    assert len(received) == 30 and all(g == pytest.approx(10) for g in gaps)
    assert a.session.state == b.session.state == State.ESTABLISHED
    assert not [e for e in b.drain()[before:] if isinstance(e, SessionDown)]
    del wire


def test_jitter_bounds_with_a_real_random_source() -> None:
    rng = random.Random(4271)
    a, b, wire = establish(config(ID_A, hold_time=90), config(ID_B, hold_time=90), rng=rng)
    intervals = []
    now = 0.0
    for _ in range(200):
        start = now
        deadline = a.session.keepalive.deadline
        assert deadline is not None
        intervals.append(deadline - start if start else deadline)
        now = deadline
        a.session.handle_timer(now)
        b.session.receive_data(a.session.data_to_send(), now)
        b.session.handle_timer(now)
        a.session.receive_data(b.session.data_to_send(), now)
    assert all(0.75 * 30 - 1e-9 <= i <= 30 + 1e-9 for i in intervals)
    assert min(intervals) < 0.8 * 30 and max(intervals) > 0.95 * 30  # really spread, not pinned
    assert a.session.state == State.ESTABLISHED
    del wire


@pytest.mark.parametrize(("fraction", "factor"), [(0.0, 0.75), (1.0, 1.0), (0.5, 0.875)])
def test_jitter_range_is_rfc4271(fraction: float, factor: float) -> None:
    s = Session(config(ID_A, connect_retry_time=120), Pinned(fraction))
    s.start(100.0)
    assert s.connect_retry.deadline == pytest.approx(100 + 120 * factor)
    a, _b, _ = establish(config(ID_A), config(ID_B), rng=Pinned(fraction))
    assert a.session.keepalive.deadline == pytest.approx(30 * factor)
    assert a.session.hold.deadline == 90  # the hold timer is not jittered


# ---------------------------------------------------------------- hold timer


def test_hold_expiry_sends_4_0_and_the_peer_sees_it() -> None:
    a, b, wire = establish(config(ID_A, hold_time=9), config(ID_B, hold_time=9))
    # B falls silent: nothing it writes reaches A any more
    now = 0.0
    while a.session.state == State.ESTABLISHED:
        now = a.session.next_deadline() or now
        a.session.handle_timer(now)
        wire.pump(now, deliver_to_a=False)
    assert now == 9
    assert a.session.state == State.IDLE
    (sent,) = a.of(NotificationSent)
    assert sent.notification == Notification(4, 0)
    (got,) = b.of(NotificationReceived)
    assert got.notification == Notification(4, 0) and "Hold Timer Expired" in got.description
    assert b.session.state == State.IDLE
    (down,) = a.of(SessionDown)
    assert down.was_established and "hold timer expired" in down.reason
    assert a.session.last_error == "hold timer expired"


def test_hold_timer_rearmed_while_input_is_queued() -> None:
    a, b, wire = establish(config(ID_A, hold_time=9), config(ID_B, hold_time=9))
    b.session.send_route_refresh(1, 1)
    wire.pump(1.0)
    a.drain()
    # one more message arrives and nobody takes it from A's event queue
    b.session.send_route_refresh(2, 1)
    a.session.receive_data(b.session.data_to_send(), 2.0)
    assert a.session.hold.deadline == 11
    a.session.handle_timer(11)
    assert a.session.state == State.ESTABLISHED
    assert a.session.hold.deadline == 11 + min(HOLD_GRACE, 9)
    assert set(sent_messages(a.session.data_to_send())) == {MsgType.KEEPALIVE}  # no NOTIFICATION
    # the adapter reports unread bytes in the socket: re-armed again
    a.session.next_event()
    a.session.handle_timer(20, input_pending=True)
    assert a.session.state == State.ESTABLISHED and a.session.hold.deadline == 29
    # nothing queued anywhere: now the hold timer drops the session
    a.session.handle_timer(29)
    assert a.session.state == State.IDLE
    out = a.session.data_to_send()
    assert set(sent_messages(out)[:-1]) <= {MsgType.KEEPALIVE}
    assert decode_message(out[-21:], Negotiated()) == Notification(4, 0)


def test_opensent_hold_timer_is_large() -> None:
    s = Session(config(ID_A))
    s.start(0)
    assert s.connection_made(5, outbound=True)
    assert s.state == State.OPENSENT and s.hold.deadline == 5 + LARGE_HOLD_TIME


# ---------------------------------------------------------------- output ordering


def test_keepalive_goes_ahead_of_queued_updates() -> None:
    a, b, wire = establish(config(ID_A, hold_time=30), config(ID_B, hold_time=30))
    unit = eor_bytes() * 100
    for _ in range(50):
        a.session.send_update_bytes(unit)
    first = a.session.data_to_send(max_bytes=len(unit) * 2, now=0)
    assert len(first) == 2 * len(unit)
    assert a.session.pending_update_bytes == 48 * len(unit)
    # a slow link: the keepalive interval passes with most of the table still queued
    a.session.handle_timer(10)
    nxt = a.session.data_to_send(max_bytes=len(unit))
    assert nxt.startswith(KEEPALIVE_BYTES)
    assert sent_messages(nxt)[0] == MsgType.KEEPALIVE and set(sent_messages(nxt)[1:]) == {MsgType.UPDATE}
    b.session.receive_data(first + nxt, 10)
    b.session.receive_data(a.session.data_to_send(), 10)
    updates = [e for e in b.drain() if isinstance(e, UpdateReceived)]
    assert len(updates) == 50 * 100 and all(u.update.end_of_rib() == IPV4_UNICAST for u in updates)
    assert b.session.state == State.ESTABLISHED and a.session.pending_update_bytes == 0
    del wire


def _table_unit(n: int) -> bytes:
    """One unit of `n` UPDATEs of different lengths (a group's whole table, as a joiner gets it)."""
    msgs = []
    for i in range(n):
        upd = Update(attributes=PathAttributes(origin=0, as_path=(), next_hop=ID_A, local_pref=100 + i),
                     nlri=[pf.parse(f"10.{i % 200}.{j}.0/24") for j in range(1 + i % 7)])
        msgs.append(encode_message(upd, Negotiated()))
    return b"".join(msgs)


def test_message_end_walks_the_headers() -> None:
    unit = _table_unit(5)
    first = int.from_bytes(unit[16:18], "big")
    second = first + int.from_bytes(unit[first + 16 : first + 18], "big")
    assert message_end(unit, 0, 0) == 0
    assert message_end(unit, 0, 1) == first
    assert message_end(unit, 0, first) == first
    assert message_end(unit, 0, first + 1) == message_end(unit, first, first + 1) == second
    assert message_end(memoryview(unit), 0, len(unit)) == len(unit)
    with pytest.raises(ValueError):
        message_end(b"\x00" * 40, 0, 1)


def test_a_unit_larger_than_a_write_goes_out_in_pieces() -> None:
    # a joiner's whole table is one unit: the transport must never be handed all of it at once
    # (one copy per slow peer in asyncio's write buffer), but the bytes on the wire are the same
    a, b, wire = establish(config(ID_A), config(ID_B))
    unit = _table_unit(300)
    small = eor_bytes()
    a.session.send_updates([unit, small], 301)
    pieces = []
    while a.session.has_output:
        piece = a.session.data_to_send(max_bytes=1000, now=1)
        assert 0 < len(piece) <= 1000
        pieces.append(piece)
    assert b"".join(pieces) == unit + small and a.session.pending_update_bytes == 0
    assert len(pieces) == -(-len(unit) // 1000) + (len(unit) % 1000 + len(small) > 1000)
    b.session.receive_data(b"".join(pieces), 1)
    assert len([e for e in b.drain() if isinstance(e, UpdateReceived)]) == 301
    del wire


def test_control_messages_wait_for_the_end_of_a_cut_update() -> None:
    a, b, wire = establish(config(ID_A, hold_time=30), config(ID_B, hold_time=30))
    unit = _table_unit(100)
    a.session.send_update_bytes(unit)
    first = a.session.data_to_send(max_bytes=500, now=0)
    assert len(first) == 500  # the middle of an UPDATE
    a.session.handle_timer(10)  # the keepalive is due, a slow link
    before = a.session.pending_update_bytes
    paused = a.session.data_to_send(max_bytes=0)  # the transport is full: control messages only
    end = message_end(unit, 0, 500)
    assert paused == unit[500:end] + KEEPALIVE_BYTES  # the UPDATE in flight is finished first
    assert a.session.pending_update_bytes == before - (end - 500)
    rest = a.session.data_to_send()
    stream = first + paused + rest
    assert sent_messages(stream).count(MsgType.KEEPALIVE) == 1
    b.session.receive_data(stream, 10)
    assert len([e for e in b.drain() if isinstance(e, UpdateReceived)]) == 100
    assert b.session.state == State.ESTABLISHED
    del wire


def test_a_notification_waits_for_the_end_of_a_cut_update() -> None:
    a, b, wire = establish(config(ID_A), config(ID_B))
    unit = _table_unit(50)
    a.session.send_update_bytes(unit)
    first = a.session.data_to_send(max_bytes=300, now=0)
    a.session.stop(1, shutdown_message="maintenance")
    last = a.session.data_to_send(max_bytes=0)
    end = message_end(unit, 0, 300)
    assert last.startswith(unit[300:end]) and not a.session.has_output
    assert sent_messages(first + last)[-1] == MsgType.NOTIFICATION
    b.session.receive_data(first + last, 1)
    events = b.drain()
    assert len([e for e in events if isinstance(e, UpdateReceived)]) == len(sent_messages(first + last)) - 1
    (got,) = [e for e in events if isinstance(e, NotificationReceived)]
    assert got.notification.code == 6
    del wire


def test_updates_sent_stand_in_for_keepalives() -> None:
    a, b, wire = establish(config(ID_A, hold_time=30), config(ID_B, hold_time=30))
    a.session.send_update_bytes(eor_bytes())
    assert sent_messages(a.session.data_to_send(now=5)) == [MsgType.UPDATE]
    a.session.handle_timer(10)
    assert a.session.data_to_send() == b""  # the UPDATE restarted the keepalive interval
    assert a.session.keepalive.deadline == 15
    a.session.handle_timer(15)
    assert a.session.data_to_send() == KEEPALIVE_BYTES
    del wire, b


def test_updates_before_established_are_refused() -> None:
    s = Session(config(ID_A))
    with pytest.raises(LocalProtocolError):
        s.send_update_bytes(eor_bytes())


def test_update_with_attributes_crosses() -> None:
    a, b, wire = establish(config(ID_A), config(ID_B))
    upd = Update(
        attributes=PathAttributes(origin=0, as_path=(), next_hop=ID_A, local_pref=100),
        nlri=[pf.parse("192.168.1.0/24")],
    )
    a.session.send_update(upd)
    wire.pump(1)
    (got,) = b.of(UpdateReceived)
    assert got.update.nlri == [pf.parse("192.168.1.0/24")] and got.update.attributes is not None
    assert got.update.attributes.next_hop == ID_A


# ---------------------------------------------------------------- stops and NOTIFICATIONs


def test_admin_shutdown_message_reaches_the_peer() -> None:
    a, b, wire = establish(config(ID_A), config(ID_B))
    a.session.stop(5, shutdown_message="maintenance: swapping the ToR")
    wire.pump(5)
    assert a.session.state == State.IDLE and b.session.state == State.IDLE
    (got,) = b.of(NotificationReceived)
    assert got.notification.code == 6 and got.notification.subcode == 2
    assert got.notification.shutdown_message == "maintenance: swapping the ToR"
    assert "maintenance: swapping the ToR" in got.description
    (down,) = b.of(SessionDown)
    assert down.was_established and down.notification_received == got.notification
    assert "swapping the ToR" in b.session.last_error
    # the stopped side stays down; the other one tries again after its back-off
    assert a.session.next_deadline() is None
    assert b.session.idle_hold.running


def test_automatic_restart_after_back_off() -> None:
    a, b, wire = establish(config(ID_A, idle_hold_time=2), config(ID_B, idle_hold_time=2))
    b.session.stop(1)
    wire.pump(1)
    assert a.session.state == State.IDLE and a.session.idle_hold.deadline == 3
    a.drain()
    a.session.handle_timer(3)
    assert a.session.state == State.CONNECT
    assert any(isinstance(e, ConnectRequested) for e in a.drain())


def test_max_prefix_stop_holds_the_peer_down() -> None:
    a, b, wire = establish(config(ID_A), config(ID_B))
    data = bytes([0, 1, 1, 0, 0, 0, 100])  # RFC 4486: AFI, SAFI, the limit
    a.session.automatic_stop(5, subcode=1, data=data, reason="more than 100 prefixes", hold_down=30)
    wire.pump(5)
    (got,) = b.of(NotificationReceived)
    assert got.notification == Notification(6, 1, data)
    (down,) = a.of(SessionDown)
    assert down.reason == "more than 100 prefixes" and down.notification_sent == Notification(6, 1, data)
    assert a.session.idle_hold.deadline == 35  # the hold-down, not the usual back-off
    a.session.handle_timer(34.9)
    assert a.session.state == State.IDLE
    a.session.handle_timer(35)
    assert a.session.state == State.CONNECT


def test_connect_failures_back_off_exponentially() -> None:
    s = Session(config(ID_A, idle_hold_time=1, idle_hold_max=8), Pinned(1.0))
    s.start(0)
    now = 0.0
    waits = []
    for _ in range(6):
        assert s.state == State.CONNECT
        s.connection_failed(now, "connection refused")
        assert s.state == State.IDLE and s.last_error == "connection refused"
        deadline = s.idle_hold.deadline
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
        s.handle_timer(now)
    # connect failures back off only up to connect_hold_max (5 s): a peer not listening yet is found soon
    assert waits == [1, 2, 4, 5, 5, 5]
    kinds = [type(e) for e in s.events()]
    assert kinds.count(ConnectRequested) == 7


def test_sessions_that_got_as_far_as_an_open_back_off_up_to_idle_hold_max() -> None:
    a = End(Session(config(ID_A, idle_hold_time=1, idle_hold_max=30), Pinned(1.0)))
    b = End(Session(config(ID_B, passive=True), Pinned(1.0)))
    b.session.start(0, passive=True)
    a.session.start(0)
    now = 0.0
    waits = []
    for _ in range(6):
        a.drain()
        assert a.session.state == State.CONNECT
        wire = connect(a, b, now)
        wire.exchange(now)  # the OPENs cross; then the connection breaks
        for e in (a, b):
            if e.wire is wire:
                e.session.connection_lost(now, "reset")
                e.wire = None
        assert a.session.state == State.IDLE
        deadline = a.session.idle_hold.deadline
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
        a.session.handle_timer(now)
        b.session.handle_timer(now)
        b.drain()
        if b.session.state == State.IDLE:
            b.session.start(now, passive=True)
    assert waits == [1, 2, 4, 8, 16, 30]


def test_unanswered_connect_retries_and_records_why() -> None:
    s = Session(config(ID_A, connect_retry_time=5), Pinned(1.0))
    s.start(0)
    s.events()
    s.handle_timer(5)
    assert s.state == State.CONNECT
    evs = s.events()
    assert [type(e) for e in evs if isinstance(e, (CloseConnection, ConnectRequested))] == [
        CloseConnection,
        ConnectRequested,
    ]
    assert "timed out" in s.last_error
    assert s.connect_retry.deadline == 10


def test_passive_session_waits() -> None:
    s = Session(config(ID_A, passive=True, connect_retry_time=5))
    s.start(0)
    assert s.state == State.ACTIVE
    # the connect-retry expiry that would take Active to Connect is not acted on
    s.handle_timer(1000)
    assert s.state == State.ACTIVE and s.next_deadline() is None
    assert not any(isinstance(e, ConnectRequested) for e in s.events())
    assert not s.connection_made(1, outbound=True)
    assert s.connection_made(1, outbound=False) and s.state == State.OPENSENT


def _open_exchange(cfg_b: SessionConfig, remote: Open) -> tuple[End, Notification]:
    b = End(Session(cfg_b))
    b.session.start(0, passive=True)
    assert b.session.connection_made(0, outbound=False)
    b.session.data_to_send()
    b.session.receive_data(encode_message(remote, Negotiated()), 0)
    notification = decode_message(b.session.data_to_send(), Negotiated())
    assert isinstance(notification, Notification)
    b.drain()
    return b, notification


def test_open_checks_send_the_right_notification() -> None:
    a_open = config(ID_A).local_open()
    b, n = _open_exchange(config(ID_B, peer_as=65000), a_open)
    assert (n.code, n.subcode) == (2, 2) and b.session.state == State.IDLE
    assert "Bad Peer AS" in b.session.last_error

    same_id = config(ID_B).local_open()
    b, n = _open_exchange(config(ID_B), same_id)
    assert (n.code, n.subcode) == (2, 3)

    # eBGP with the same identifier is allowed (RFC 6286)
    ebgp_same = Open(asn=65001, hold_time=90, router_id=ID_B, capabilities=(FourOctetAsCap(65001),))
    b = End(Session(config(ID_B, local_as=64512, peer_as=65001)))
    b.session.start(0, passive=True)
    b.session.connection_made(0, outbound=False)
    b.session.data_to_send()
    b.session.receive_data(encode_message(ebgp_same, Negotiated()), 0)
    assert b.session.state == State.OPENCONFIRM

    other_param = Open(
        asn=64512, hold_time=90, router_id=ID_A, other_parameters=(OptionalParameter(1, b"\x01"),)
    )
    b, n = _open_exchange(config(ID_B), other_param)
    assert (n.code, n.subcode) == (2, 4)

    b, n = _open_exchange(config(ID_B, min_hold_time=10), Open(asn=64512, hold_time=5, router_id=ID_A))
    assert (n.code, n.subcode) == (2, 6)


def test_missing_required_capability_is_2_7_with_the_capability() -> None:
    two_octet_only = config(ID_A, four_octet_as=False).local_open()
    _b, n = _open_exchange(config(ID_B, required_capabilities=frozenset({65})), two_octet_only)
    assert (n.code, n.subcode) == (2, 7)
    assert n.data[0] == 65 and n.data[1] == 4 and int.from_bytes(n.data[2:6], "big") == 64512
    # without the requirement the same OPEN is fine, and 4-octet AS is simply not negotiated
    _a, b2, _ = establish(config(ID_A, four_octet_as=False), config(ID_B))
    assert b2.session.state == State.ESTABLISHED and not b2.session.negotiated.four_octet_as


def test_unexpected_message_in_opensent_is_fsm_error() -> None:
    b = End(Session(config(ID_B)))
    b.session.start(0, passive=True)
    b.session.connection_made(0, outbound=False)
    b.session.data_to_send()
    b.session.receive_data(KEEPALIVE_BYTES, 0)
    assert decode_message(b.session.data_to_send(), Negotiated()) == Notification(5, 1)
    assert b.session.state == State.IDLE


def test_header_error_is_answered() -> None:
    a, b, wire = establish(config(ID_A), config(ID_B))
    b.session.receive_data(b"\x00" * 16 + b"\x00\x13\x04", 1)
    assert decode_message(b.session.data_to_send(), Negotiated()) == Notification(1, 1)
    assert b.session.state == State.IDLE
    bad_type = MARKER + b"\x00\x13\x09"
    a2, b2, _ = establish(config(ID_A), config(ID_B))
    b2.session.receive_data(bad_type, 1)
    assert decode_message(b2.session.data_to_send(), Negotiated()) == Notification(1, 3, b"\x09")
    del a, wire, a2


def test_update_error_is_answered_and_ends_the_session() -> None:
    a, b, wire = establish(config(ID_A), config(ID_B))
    # withdrawn-routes length pointing past the end of the message
    bad = MARKER + (23).to_bytes(2, "big") + bytes([MsgType.UPDATE]) + b"\x00\x09\x00\x00"
    b.session.receive_data(bad, 1)
    n = decode_message(b.session.data_to_send(), Negotiated())
    assert isinstance(n, Notification) and n.code == 3
    assert b.session.state == State.IDLE
    del a, wire


def test_route_refresh_is_delivered_and_unknown_family_ignored() -> None:
    a, b, wire = establish(config(ID_A), config(ID_B))
    a.session.send_route_refresh(2, 1)
    a.session.send_route_refresh(25, 70)  # not advertised: RFC 2918 says ignore
    wire.pump(1)
    refreshes = b.of(RouteRefreshReceived)
    assert [(r.refresh.afi, r.refresh.safi) for r in refreshes] == [(2, 1)]
    assert b.session.state == State.ESTABLISHED


# ---------------------------------------------------------------- collision (RFC 4271 6.8)


@pytest.mark.parametrize(("id_a", "id_b"), [("10.0.0.9", "10.0.0.1"), ("10.0.0.1", "10.0.0.9")])
@pytest.mark.parametrize("a_first", [True, False])
@pytest.mark.parametrize("crossing", [True, False])
def test_collision_higher_identifier_keeps_its_outgoing_connection(
    id_a: str, id_b: str, a_first: bool, crossing: bool
) -> None:
    na, nb = Neighbor(config(id_a)), Neighbor(config(id_b))
    na.session.start(0)
    nb.session.start(0)
    for n in (na, nb):
        n.session.events()
    # both connect at once. a's connection: its own session carries it, b accepts it (b's session
    # takes it, its own attempt still pending); then b's attempt completes and a accepts that one:
    # both carry one connection each way, through a second session
    a_out = End(na.connection_made(0, outbound=True))  # type: ignore[arg-type]
    b_in = End(nb.connection_made(0, outbound=False))  # type: ignore[arg-type]
    b_out = End(nb.connection_made(0, outbound=True))  # type: ignore[arg-type]
    a_in = End(na.connection_made(0, outbound=False))  # type: ignore[arg-type]
    assert nb.second is b_out.session and na.second is a_in.session
    wire_ab, wire_ba = Wire(a_out, b_in), Wire(b_out, a_in)
    a_out.wire = b_in.wire = wire_ab
    b_out.wire = a_in.wire = wire_ba
    assert b_out.session.state == a_in.session.state == State.OPENSENT
    order = [wire_ab, wire_ba] if a_first else [wire_ba, wire_ab]
    if crossing:
        # the OPENs cross on both connections before any KEEPALIVE is read
        for w in order:
            w.exchange(0)
    # otherwise one connection goes all the way to Established before the other's OPENs are read
    for _ in range(2):  # a session closed by its neighbour's verdict is seen on the next round
        for w in order:
            w.pump(0)
    higher_is_a = id_a > id_b
    winner = wire_ab if higher_is_a else wire_ba  # the higher identifier's outgoing connection
    loser = wire_ba if higher_is_a else wire_ab
    assert winner.a.session.state == winner.b.session.state == State.ESTABLISHED
    assert loser.a.session.state == loser.b.session.state == State.IDLE
    assert not loser.open
    # each end of the losing connection closed it with Cease/7 or was told so by the other end
    # (both send it when both detect the collision at once)
    cease7 = Notification(6, 7)
    for end in (loser.a, loser.b):
        said = [e.notification for e in end.of(NotificationSent)]
        heard = [e.notification for e in end.of(NotificationReceived)]
        assert cease7 in said + heard
        assert all(n == cease7 for n in said + heard)
    if crossing:
        # decided while both were in OpenConfirm: the losing connection never got to Established
        assert not loser.a.of(Established) and not loser.b.of(Established)
    # each neighbour keeps the winning session as its own once the loser is gone
    for n, end in ((na, winner.a if higher_is_a else winner.b), (nb, winner.b if higher_is_a else winner.a)):
        for s in list(n.sessions()):
            if s.state == State.IDLE:
                n.session_down(s)
        assert n.session is end.session and n.second is None


def test_graceful_restart_peer_reopening_replaces_the_established_session() -> None:
    _a, b, wire = establish(config(ID_A), config(ID_B))
    # A restarted without B noticing: a fresh A connects while B's old session is still Established
    a2 = End(Session(config(ID_A)))
    a2.session.start(10)
    a2.drain()
    assert b.neighbor is not None
    b2 = End(b.neighbor.connection_made(10, outbound=False))  # type: ignore[arg-type]
    assert b2.session is b.neighbor.second
    wire2 = Wire(a2, b2)
    assert a2.session.connection_made(10, outbound=True)
    a2.wire = b2.wire = wire2
    wire2.pump(10)
    assert b2.session.state == State.ESTABLISHED and a2.session.state == State.ESTABLISHED
    assert b.session.state == State.IDLE
    b.neighbor.session_down(b.session)
    assert b.neighbor.session is b2.session  # the new connection is the peer's session now
    (down,) = [e for e in b.drain() if isinstance(e, SessionDown)]
    assert down.was_established and down.notification_sent is None and "restarted" in down.reason
    del wire


def test_new_connection_without_graceful_restart_loses_to_established() -> None:
    _a, b, wire = establish(config(ID_A, graceful_restart=None), config(ID_B))
    a2 = End(Session(config(ID_A, graceful_restart=None)))
    a2.session.start(10)
    a2.drain()
    assert b.neighbor is not None
    b2 = End(b.neighbor.connection_made(10, outbound=False))  # type: ignore[arg-type]
    wire2 = Wire(a2, b2)
    assert a2.session.connection_made(10, outbound=True)
    a2.wire = b2.wire = wire2
    wire2.pump(10)
    assert b.session.state == State.ESTABLISHED
    assert b2.session.state == State.IDLE and a2.session.state == State.IDLE
    assert any(e.notification == Notification(6, 7) for e in a2.of(NotificationReceived))
    del wire


# ---------------------------------------------------------------- random operations (Hypothesis)

CONNECTED_STATES = (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED)
# weighted towards what brings sessions up, so that most runs also exercise Established
OPS = (
    ["advance"] * 4
    + ["pump"] * 5
    + ["connect"] * 3
    + ["refresh", "update"] * 2
    + ["refuse", "reset", "stop_a", "stop_b", "start_a", "start_b", "garbage"]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(OPS), st.integers(0, 200), st.binary(max_size=40)), min_size=5, max_size=40
    ),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_random_operations_keep_sessions_consistent(
    ops: list[tuple[str, int, bytes]], seed: int, up_first: bool
) -> None:
    rng = random.Random(seed)
    a = End(Session(config(ID_A, hold_time=9, connect_retry_time=7, idle_hold_time=1), rng))
    b = End(Session(config(ID_B, hold_time=12, passive=True), rng))
    a.session.start(0)
    b.session.start(0)
    now = 0.0
    wire: Wire | None = None
    if up_first:
        wire = connect(a, b, now)
        wire.pump(now)
        assert a.session.state == b.session.state == State.ESTABLISHED
    for op, n, blob in ops:
        if op == "advance":
            now += n / 4
            a.session.handle_timer(now)
            b.session.handle_timer(now)
            for e in (a, b):
                deadline = e.session.next_deadline()
                assert deadline is None or deadline > now
        elif op == "pump" and wire is not None:
            wire.pump(now)
        elif op in ("connect", "refuse"):
            wants = (
                any(isinstance(ev, ConnectRequested) for ev in a.drain()) or a.session.state == State.CONNECT
            )
            if wants and a.session.state == State.CONNECT:
                if op == "connect" and b.session.state in (State.ACTIVE, State.CONNECT) and a.wire is None:
                    wire = connect(a, b, now)
                elif op == "refuse":
                    a.session.connection_failed(now, "connection refused")
        elif op == "reset" and wire is not None:
            for e in (wire.a, wire.b):
                if e.wire is wire:
                    e.session.connection_lost(now, "reset")
                    e.wire = None
            wire.open = False
        elif op == "stop_a":
            a.session.stop(now, blob.decode("utf-8", "replace"))
        elif op == "stop_b":
            b.session.stop(now)
        elif op == "start_a":
            a.session.start(now)
        elif op == "start_b":
            b.session.start(now)
        elif op == "garbage" and b.session.connected:
            b.session.receive_data(MARKER + blob if n % 2 else blob, now)
        elif op == "refresh" and a.session.state == State.ESTABLISHED:
            a.session.send_route_refresh(1, 1)
        elif op == "update" and a.session.state == State.ESTABLISHED:
            a.session.send_update_bytes(eor_bytes() * (n % 5 + 1))
        for e in (a, b):
            s = e.session
            e.drain()
            assert s.connected == (s.state in CONNECTED_STATES)
            if s.state == State.IDLE:
                assert not (s.hold.running or s.keepalive.running or s.connect_retry.running)
            if s.state in CONNECTED_STATES and s.state != State.ESTABLISHED:
                assert s.pending_update_bytes == 0
            if not s.connected and e.wire is not None:
                # it closed its end: the other end reads what was written, then end of stream
                w = e.wire
                other = w.b if e is w.a else w.a
                data = s.data_to_send()
                e.wire, w.open = None, False
                if other.wire is w:
                    other.session.receive_data(data, now)
                    other.session.connection_lost(now, "closed")
                    other.wire = None
        if any(isinstance(ev, Established) for ev in a.events):
            event("reached Established")
    # a stopped pair can always be brought up again from scratch
    for e in (a, b):
        e.session.stop(now)
        assert e.session.state == State.IDLE and e.session.next_deadline() is None


def test_our_own_attempt_completing_late_is_closed_unused() -> None:
    """A connection we opened ourselves that gets through after the session came up the other way is
    closed before it carries an OPEN: a graceful-restart peer takes a new OPEN from an Established
    neighbour for its restart (RFC 4724 4.2) and would drop the session that carries the routes."""
    _a, b, wire = establish(config(ID_A), config(ID_B))
    assert b.neighbor is not None and b.session.state == State.ESTABLISHED
    b.drain()
    assert b.neighbor.connection_made(10, outbound=True) is None
    assert b.neighbor.second is None and b.session.state == State.ESTABLISHED
    assert not b.session.data_to_send()  # nothing of it reached the established connection either
    # while the session is only in OpenConfirm, a late attempt of ours is still a collision to resolve
    c, d, _wire = open_confirm_pair()
    assert d.neighbor is not None and d.session.state == State.OPENCONFIRM
    second = d.neighbor.connection_made(10, outbound=True)
    assert second is not None and second is d.neighbor.second
    del wire, c


def _late_accepted(made_at: float | None) -> tuple[End, End]:
    """`b` Established on the connection `a` opened; then `b` accepts, late, a connection the peer (with
    graceful restart) had opened towards it: made at `made_at`, as the accept queue says."""
    gr = GracefulRestartConfig(restart_time=120)
    _a, b, wire = establish(config(ID_A, graceful_restart=gr), config(ID_B, graceful_restart=gr), now=0.0)
    assert b.neighbor is not None and b.session.state == State.ESTABLISHED
    b2 = End(b.neighbor.connection_made(10, outbound=False, made_at=made_at))  # type: ignore[arg-type]
    a2 = End(Session(config(ID_A, graceful_restart=gr)))  # the peer's side of that connection: its own attempt
    a2.session.start(-1, passive=False)
    a2.drain()
    assert a2.session.connection_made(-1, outbound=True)
    wire2 = Wire(a2, b2)
    a2.wire = b2.wire = wire2
    wire2.pump(10)
    del wire
    return b, b2


def test_a_connection_that_waited_in_the_accept_queue_is_a_collision_not_a_restart() -> None:
    """Made before the session came up (the peer's OPEN waited in our accept queue), it is a
    collision (RFC 4271 6.8): the higher identifier (ours) keeps the connection it opened, the
    session that carries the routes stays up, the other connection gets Cease/7."""
    b, b2 = _late_accepted(made_at=-0.5)
    assert b.session.state == State.ESTABLISHED and b.neighbor is not None and b.neighbor.session is b.session
    assert b2.session.state == State.IDLE
    assert any(e.notification == Notification(6, 7) for e in b2.of(NotificationSent))
    # accepted late without knowing when it was made, the same connection is the peer restarting
    b, b2 = _late_accepted(made_at=None)
    assert b.session.state != State.ESTABLISHED and "restarted" in (b.session.last_error or "")


def test_connect_delay_listens_first_and_takes_the_peers_connection() -> None:
    s = Session(config(ID_A, connect_delay=2.0), Pinned(1.0))
    s.start(0)
    assert s.state == State.ACTIVE
    assert not [e for e in s.events() if isinstance(e, ConnectRequested)]
    assert s.next_deadline() == 2.0
    # nobody came: it connects when the delay runs out
    s.handle_timer(2.0)
    assert s.state == State.CONNECT
    assert [e for e in s.events() if isinstance(e, ConnectRequested)]
    # the peer connecting during the delay is simply taken (no attempt of our own to collide with)
    t = Session(config(ID_A, connect_delay=2.0), Pinned(1.0))
    t.start(0)
    t.events()
    assert t.connection_made(1.0, outbound=False)
    assert t.state == State.OPENSENT
    assert not [e for e in t.events() if isinstance(e, ConnectRequested)]
