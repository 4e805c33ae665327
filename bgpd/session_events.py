"""What a `bgpd.session.Session` reports: events for its owner (the speaker) and its adapter."""

from __future__ import annotations

from bgpd.fsm import Event, State
from proto.bgp import (
    Negotiated,
    Notification,
    Open,
    RouteRefresh,
    Update,
)
from proto.record import record


@record(frozen=True, slots=True)
class ConnectRequested:
    """For the adapter: open a TCP connection to the peer and report it with connection_made or
    connection_failed."""


@record(frozen=True, slots=True)
class CloseConnection:
    """For the adapter: write what data_to_send still returns, then close the connection (or abandon
    the connection attempt)."""

    reason: str


@record(frozen=True, slots=True)
class StateChanged:
    old: State
    new: State
    event: Event


@record(frozen=True, slots=True)
class Established:
    negotiated: Negotiated
    local_open: Open
    remote_open: Open
    hold_time: int
    keepalive_time: float
    outbound: bool


@record(frozen=True, slots=True)
class UpdateReceived:
    update: Update


@record(frozen=True, slots=True)
class RouteRefreshReceived:
    refresh: RouteRefresh


@record(frozen=True, slots=True)
class NotificationReceived:
    notification: Notification
    description: str


@record(frozen=True, slots=True)
class NotificationSent:
    notification: Notification
    description: str


@record(frozen=True, slots=True)
class SessionDown:
    """The session left OpenSent, OpenConfirm or Established (or a connection attempt ended) for Idle.

    `was_established` tells the RIB whether routes go; for graceful restart (RFC 4724, RFC 8538) it
    also needs to know whether a NOTIFICATION was exchanged, hence `notification_sent/received`."""

    reason: str
    was_established: bool
    notification_sent: Notification | None = None
    notification_received: Notification | None = None


SessionEvent = (
    ConnectRequested
    | CloseConnection
    | StateChanged
    | Established
    | UpdateReceived
    | RouteRefreshReceived
    | NotificationReceived
    | NotificationSent
    | SessionDown
)


# the events that carry the peer's input: while any is queued the hold timer is not fired (BIRD's rule)
INPUT_EVENTS = (UpdateReceived, RouteRefreshReceived)
