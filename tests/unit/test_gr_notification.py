"""RFC 8538 (the N bit of graceful restart): negotiation, Hard Reset for the stops that mean "gone",
and which session ends leave the peer's routes stale. Two sans-I/O sessions joined in memory."""

from __future__ import annotations

import pytest

from bgpd.graceful import hard_reset_for, keeps_routes, notification_negotiated
from bgpd.session_config import GracefulRestartConfig
from bgpd.session_events import NotificationReceived, SessionDown
from proto.bgp import (
    IPV4_UNICAST,
    CeaseSubcode,
    ErrorCode,
    GracefulRestartCap,
    Notification,
    describe,
    hard_reset,
    hard_reset_inner,
    is_hard_reset,
    notification_with_shutdown,
)
from tests.unit.test_session import ID_A, ID_B, config, establish

GR_N = GracefulRestartConfig(restart_time=120, forwarding_preserved=frozenset({IPV4_UNICAST}), notification=True)
GR = GracefulRestartConfig(restart_time=120, forwarding_preserved=frozenset({IPV4_UNICAST}))
CAP_N = GracefulRestartCap(120, notification=True, families=((1, 1, True),))
CAP = GracefulRestartCap(120, families=((1, 1, True),))


def test_hard_reset_carries_the_notification_it_stands_for() -> None:
    inner = notification_with_shutdown(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "leaving the cluster")
    hr = hard_reset(inner)
    assert (hr.code, hr.subcode) == (ErrorCode.CEASE, CeaseSubcode.HARD_RESET)
    assert hr.data[:2] == bytes((6, 2)) and is_hard_reset(hr)
    assert hard_reset_inner(hr) == inner
    assert describe(hr) == 'Cease / Hard Reset (6/9) for Cease / Administrative Shutdown (6/2): "leaving the cluster"'
    assert hard_reset_inner(Notification(6, 9, b"")) is None and not is_hard_reset(inner)


@pytest.mark.parametrize(("subcode", "wrapped"), [
    (CeaseSubcode.MAX_PREFIXES_REACHED, True), (CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, True),
    (CeaseSubcode.PEER_DECONFIGURED, True), (CeaseSubcode.BFD_DOWN, True), (CeaseSubcode.ADMINISTRATIVE_RESET, False),
    (CeaseSubcode.OTHER_CONFIGURATION_CHANGE, False), (CeaseSubcode.CONNECTION_COLLISION_RESOLUTION, False),
])
def test_hard_reset_only_for_the_stops_that_mean_gone(subcode: int, wrapped: bool) -> None:
    n = Notification(ErrorCode.CEASE, subcode)
    assert is_hard_reset(hard_reset_for(n, True)) == wrapped
    assert hard_reset_for(n, False) == n  # without the N bit nothing is wrapped
    assert hard_reset_for(Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0), True).subcode == 0


def test_keeps_routes_table() -> None:
    admin_reset = Notification(6, 4)
    hold = Notification(4, 0)
    hr = hard_reset(Notification(6, 2))
    # RFC 4724: only a session that ends without a NOTIFICATION
    assert keeps_routes(CAP, True, None, None)
    assert not keeps_routes(CAP, True, None, admin_reset) and not keeps_routes(CAP, True, hold, None)
    # RFC 8538, both sides set N: any NOTIFICATION but a Hard Reset, either way
    assert keeps_routes(CAP_N, True, None, admin_reset) and keeps_routes(CAP_N, True, hold, None)
    assert not keeps_routes(CAP_N, True, None, hr) and not keeps_routes(CAP_N, True, hr, None)
    assert not keeps_routes(CAP_N, False, None, admin_reset)  # we did not set N
    # a path BFD saw fail is no restart, even as a plain Cease / BFD Down (RFC 9384) under the N bit
    bfd_down = Notification(6, CeaseSubcode.BFD_DOWN)
    assert not keeps_routes(CAP_N, True, None, bfd_down) and not keeps_routes(CAP_N, True, bfd_down, None)
    assert not keeps_routes(None, True, None, None)  # no graceful restart at all
    assert not keeps_routes(GracefulRestartCap(120, notification=True), True, None, None)  # no families
    assert notification_negotiated(CAP_N, CAP_N) and not notification_negotiated(CAP_N, CAP)
    assert not notification_negotiated(None, CAP_N)


def test_n_bit_on_the_wire_and_negotiated() -> None:
    a, b, _ = establish(config(ID_A, graceful_restart=GR_N), config(ID_B, graceful_restart=GR_N))
    cap = b.session.remote_open.capability(GracefulRestartCap)  # type: ignore[union-attr]
    assert isinstance(cap, GracefulRestartCap) and cap.notification
    assert a.session.notification_negotiated and b.session.notification_negotiated
    a2, b2, _ = establish(config(ID_A, graceful_restart=GR_N), config(ID_B, graceful_restart=GR))
    assert not a2.session.notification_negotiated and not b2.session.notification_negotiated


def test_administrative_shutdown_goes_out_as_hard_reset_when_negotiated() -> None:
    a, b, wire = establish(config(ID_A, graceful_restart=GR_N), config(ID_B, graceful_restart=GR_N))
    a.session.stop(1.0, "node drained", CeaseSubcode.ADMINISTRATIVE_SHUTDOWN)
    wire.pump(1.0)
    (got,) = b.of(NotificationReceived)
    assert is_hard_reset(got.notification)
    assert hard_reset_inner(got.notification) == notification_with_shutdown(2, "node drained")
    (down_b,) = b.of(SessionDown)
    (down_a,) = a.of(SessionDown)
    # both ends see a Hard Reset: neither keeps the other's routes
    assert not keeps_routes(CAP_N, True, down_b.notification_sent, down_b.notification_received)
    assert not keeps_routes(CAP_N, True, down_a.notification_sent, down_a.notification_received)


def test_graceful_stop_is_a_plain_administrative_reset() -> None:
    a, b, wire = establish(config(ID_A, graceful_restart=GR_N), config(ID_B, graceful_restart=GR_N))
    a.session.stop(1.0, "tortie-bgpd restarting", CeaseSubcode.ADMINISTRATIVE_RESET)
    wire.pump(1.0)
    (got,) = b.of(NotificationReceived)
    assert (got.notification.code, got.notification.subcode) == (6, 4) and not is_hard_reset(got.notification)
    (down_b,) = b.of(SessionDown)
    assert keeps_routes(CAP_N, True, down_b.notification_sent, down_b.notification_received)


def test_without_the_n_bit_nothing_is_wrapped() -> None:
    a, b, wire = establish(config(ID_A, graceful_restart=GR_N), config(ID_B, graceful_restart=GR))
    a.session.stop(1.0, "bye", CeaseSubcode.ADMINISTRATIVE_SHUTDOWN)
    wire.pump(1.0)
    (got,) = b.of(NotificationReceived)
    assert got.notification == notification_with_shutdown(2, "bye")


def test_max_prefix_stop_is_a_hard_reset_when_negotiated() -> None:
    a, b, wire = establish(config(ID_A, graceful_restart=GR_N), config(ID_B, graceful_restart=GR_N))
    data = bytes([0, 1, 1, 0, 0, 0, 100])
    a.session.automatic_stop(5, subcode=1, data=data, reason="more than 100 prefixes", hold_down=30)
    wire.pump(5)
    (got,) = b.of(NotificationReceived)
    assert hard_reset_inner(got.notification) == Notification(6, 1, data)
