"""The BGP finite state machine of RFC 4271 section 8 as a table: (state, event) -> (actions, next state).

The table is the code: a session (`bgpd.session_machine`) looks every event up here and performs the
listed actions in order, so reading a row tells exactly what the speaker does. Each row follows the
text of RFC 4271 section 8.2.2 for that state.

Optional session attributes this speaker does not implement, and so the events that only exist with
them: DelayOpen (events 12 and 20, DelayOpenTimer_Expires and BGPOpen with DelayOpenTimer running)
and DampPeerOscillations (events 6, 7 and 13). Automatic restart with back-off is done by the session
generating AutomaticStart after its idle hold time, which RFC 4271 leaves to the implementation.

One event is added: RouteRefreshMsg (RFC 2918), which RFC 4271 does not know. It is handled like an
UPDATE: accepted in Established, an FSM error in OpenSent and OpenConfirm.

Two deliberate readings of the RFC:
- In Established, BGPHeaderErr and BGPOpenMsgErr are listed by section 8.2.2 among the "other events"
  answered with an FSM Error NOTIFICATION, while section 6.1/6.2 say to send the header (open) error
  itself; the section 6 error is sent, since it tells the peer what was wrong.
- Tcp_CR_Acked and TcpConnectionConfirmed in Idle are ignored by the RFC; a connection a stopped
  session does not want is dropped rather than left open.
"""

from __future__ import annotations

from enum import Enum, IntEnum

from proto.record import record


class State(IntEnum):
    IDLE = 1
    CONNECT = 2
    ACTIVE = 3
    OPENSENT = 4
    OPENCONFIRM = 5
    ESTABLISHED = 6


class Event(IntEnum):
    """RFC 4271 section 8.1, numbered as there."""

    ManualStart = 1
    ManualStop = 2
    AutomaticStart = 3
    ManualStart_with_PassiveTcpEstablishment = 4
    AutomaticStart_with_PassiveTcpEstablishment = 5
    AutomaticStop = 8
    ConnectRetryTimer_Expires = 9
    HoldTimer_Expires = 10
    KeepaliveTimer_Expires = 11
    TcpConnection_Valid = 14
    Tcp_CR_Invalid = 15
    Tcp_CR_Acked = 16
    TcpConnectionConfirmed = 17
    TcpConnectionFails = 18
    BGPOpen = 19
    BGPHeaderErr = 21
    BGPOpenMsgErr = 22
    OpenCollisionDump = 23
    NotifMsgVerErr = 24
    NotifMsg = 25
    KeepAliveMsg = 26
    UpdateMsg = 27
    UpdateMsgErr = 28
    RouteRefreshMsg = 100  # RFC 2918; not an RFC 4271 event


class Action(Enum):
    START_CONNECT_RETRY = "restart the ConnectRetryTimer (jittered ConnectRetryTime)"
    STOP_CONNECT_RETRY = "stop the ConnectRetryTimer and set it to zero"
    ZERO_RETRY_COUNTER = "set the ConnectRetryCounter to zero"
    INCR_RETRY_COUNTER = "increment the ConnectRetryCounter"
    INITIATE_TCP = "initiate a TCP connection to the peer"
    ACCEPT_TCP = "process the incoming TCP connection"
    REJECT_TCP = "reject the incoming TCP connection"
    DROP_TCP = "drop the TCP connection (or abandon the connection attempt)"
    RELEASE = "release all BGP resources (timers, queues; routes when Established)"
    SEND_OPEN = "complete initialisation and send an OPEN"
    SEND_KEEPALIVE = "send a KEEPALIVE"
    SEND_NOTIFICATION = "send the NOTIFICATION the event carries (Cease, 4/0 or the codec's error)"
    SEND_FSM_ERROR = "send NOTIFICATION Finite State Machine Error, subcode by state (RFC 6608)"
    SET_HOLD_LARGE = "set the HoldTimer to a large value (4 minutes)"
    COMPLETE_OPEN = "adopt the negotiated hold time and capabilities"
    START_KEEPALIVE = "restart the KeepaliveTimer, unless the negotiated hold time is zero"
    RESTART_HOLD = "restart the HoldTimer, unless the negotiated hold time is zero"
    ESTABLISH = "announce the session Established"
    PROCESS_UPDATE = "hand the UPDATE to the RIB"
    PROCESS_REFRESH = "hand the ROUTE-REFRESH to the RIB"


@record(frozen=True, slots=True)
class Transition:
    actions: tuple[Action, ...]
    next_state: State


A = Action
S = State
E = Event

_START_EVENTS = (
    E.ManualStart,
    E.AutomaticStart,
    E.ManualStart_with_PassiveTcpEstablishment,
    E.AutomaticStart_with_PassiveTcpEstablishment,
)
_TCP_UP = (E.Tcp_CR_Acked, E.TcpConnectionConfirmed)
_IGNORE: tuple[Action, ...] = ()


def _state_rows(
    state: State, rows: dict[Event, Transition], other: Transition
) -> dict[tuple[State, Event], Transition]:
    """One state's explicit rows, then the RFC's "in response to any other event" row for the rest."""
    return {(state, ev): rows.get(ev, other) for ev in Event}


def _t(next_state: State, *actions: Action) -> Transition:
    return Transition(tuple(actions), next_state)


# Dropping out of Connect or Active after an error (RFC 4271 8.2.2, Connect and Active, "any other event").
_DOWN_COUNTED = (A.STOP_CONNECT_RETRY, A.RELEASE, A.DROP_TCP, A.INCR_RETRY_COUNTER)
# Dropping out of OpenSent, OpenConfirm or Established after sending what the event carries.
_NOTIFY_DOWN = (A.SEND_NOTIFICATION, A.STOP_CONNECT_RETRY, A.RELEASE, A.DROP_TCP, A.INCR_RETRY_COUNTER)
_FSM_ERROR_DOWN = (A.SEND_FSM_ERROR, A.STOP_CONNECT_RETRY, A.RELEASE, A.DROP_TCP, A.INCR_RETRY_COUNTER)
_MANUAL_STOP_DOWN = (A.SEND_NOTIFICATION, A.STOP_CONNECT_RETRY, A.RELEASE, A.DROP_TCP, A.ZERO_RETRY_COUNTER)

TABLE: dict[tuple[State, Event], Transition] = {}

TABLE |= _state_rows(
    S.IDLE,
    {
        E.ManualStart: _t(S.CONNECT, A.ZERO_RETRY_COUNTER, A.START_CONNECT_RETRY, A.INITIATE_TCP),
        E.AutomaticStart: _t(S.CONNECT, A.ZERO_RETRY_COUNTER, A.START_CONNECT_RETRY, A.INITIATE_TCP),
        E.ManualStart_with_PassiveTcpEstablishment: _t(S.ACTIVE, A.ZERO_RETRY_COUNTER, A.START_CONNECT_RETRY),
        E.AutomaticStart_with_PassiveTcpEstablishment: _t(
            S.ACTIVE, A.ZERO_RETRY_COUNTER, A.START_CONNECT_RETRY
        ),
        E.TcpConnection_Valid: _t(S.IDLE, A.REJECT_TCP),
        E.Tcp_CR_Invalid: _t(S.IDLE, A.REJECT_TCP),
        E.Tcp_CR_Acked: _t(S.IDLE, A.DROP_TCP),
        E.TcpConnectionConfirmed: _t(S.IDLE, A.DROP_TCP),
    },
    _t(S.IDLE),
)

TABLE |= _state_rows(
    S.CONNECT,
    {
        **{ev: _t(S.CONNECT) for ev in _START_EVENTS},
        E.ManualStop: _t(S.IDLE, A.DROP_TCP, A.RELEASE, A.ZERO_RETRY_COUNTER, A.STOP_CONNECT_RETRY),
        E.ConnectRetryTimer_Expires: _t(S.CONNECT, A.DROP_TCP, A.START_CONNECT_RETRY, A.INITIATE_TCP),
        E.TcpConnection_Valid: _t(S.CONNECT, A.ACCEPT_TCP),
        E.Tcp_CR_Invalid: _t(S.CONNECT, A.REJECT_TCP),
        **{ev: _t(S.OPENSENT, A.STOP_CONNECT_RETRY, A.SEND_OPEN, A.SET_HOLD_LARGE) for ev in _TCP_UP},
        E.TcpConnectionFails: _t(S.IDLE, A.STOP_CONNECT_RETRY, A.DROP_TCP, A.RELEASE),
        E.NotifMsgVerErr: _t(S.IDLE, *_DOWN_COUNTED),
    },
    _t(S.IDLE, *_DOWN_COUNTED),
)

TABLE |= _state_rows(
    S.ACTIVE,
    {
        **{ev: _t(S.ACTIVE) for ev in _START_EVENTS},
        E.ManualStop: _t(S.IDLE, A.RELEASE, A.DROP_TCP, A.ZERO_RETRY_COUNTER, A.STOP_CONNECT_RETRY),
        E.ConnectRetryTimer_Expires: _t(S.CONNECT, A.START_CONNECT_RETRY, A.INITIATE_TCP),
        E.TcpConnection_Valid: _t(S.ACTIVE, A.ACCEPT_TCP),
        E.Tcp_CR_Invalid: _t(S.ACTIVE, A.REJECT_TCP),
        **{ev: _t(S.OPENSENT, A.STOP_CONNECT_RETRY, A.SEND_OPEN, A.SET_HOLD_LARGE) for ev in _TCP_UP},
        E.TcpConnectionFails: _t(S.IDLE, A.START_CONNECT_RETRY, A.RELEASE, A.INCR_RETRY_COUNTER),
        E.NotifMsgVerErr: _t(S.IDLE, *_DOWN_COUNTED),
    },
    _t(S.IDLE, *_DOWN_COUNTED),
)

TABLE |= _state_rows(
    S.OPENSENT,
    {
        **{ev: _t(S.OPENSENT) for ev in _START_EVENTS},
        E.ManualStop: _t(S.IDLE, *_MANUAL_STOP_DOWN),
        E.AutomaticStop: _t(S.IDLE, *_NOTIFY_DOWN),
        E.HoldTimer_Expires: _t(S.IDLE, *_NOTIFY_DOWN),
        # A second connection: tracked by collision detection (RFC 4271 6.8) in a session of its own.
        E.TcpConnection_Valid: _t(S.OPENSENT),
        E.Tcp_CR_Invalid: _t(S.OPENSENT),
        E.Tcp_CR_Acked: _t(S.OPENSENT),
        E.TcpConnectionConfirmed: _t(S.OPENSENT),
        E.TcpConnectionFails: _t(S.ACTIVE, A.DROP_TCP, A.START_CONNECT_RETRY),
        E.BGPOpen: _t(
            S.OPENCONFIRM,
            A.STOP_CONNECT_RETRY,
            A.COMPLETE_OPEN,
            A.SEND_KEEPALIVE,
            A.START_KEEPALIVE,
            A.RESTART_HOLD,
        ),
        E.BGPHeaderErr: _t(S.IDLE, *_NOTIFY_DOWN),
        E.BGPOpenMsgErr: _t(S.IDLE, *_NOTIFY_DOWN),
        E.OpenCollisionDump: _t(S.IDLE, *_NOTIFY_DOWN),
        E.NotifMsgVerErr: _t(S.IDLE, A.STOP_CONNECT_RETRY, A.RELEASE, A.DROP_TCP),
    },
    _t(S.IDLE, *_FSM_ERROR_DOWN),
)

TABLE |= _state_rows(
    S.OPENCONFIRM,
    {
        **{ev: _t(S.OPENCONFIRM) for ev in _START_EVENTS},
        E.ManualStop: _t(S.IDLE, *_MANUAL_STOP_DOWN),
        E.AutomaticStop: _t(S.IDLE, *_NOTIFY_DOWN),
        E.HoldTimer_Expires: _t(S.IDLE, *_NOTIFY_DOWN),
        E.KeepaliveTimer_Expires: _t(S.OPENCONFIRM, A.SEND_KEEPALIVE, A.START_KEEPALIVE),
        E.TcpConnection_Valid: _t(S.OPENCONFIRM),
        E.Tcp_CR_Invalid: _t(S.OPENCONFIRM),
        E.Tcp_CR_Acked: _t(S.OPENCONFIRM),
        E.TcpConnectionConfirmed: _t(S.OPENCONFIRM),
        E.TcpConnectionFails: _t(S.IDLE, *_DOWN_COUNTED),
        E.NotifMsg: _t(S.IDLE, *_DOWN_COUNTED),
        E.NotifMsgVerErr: _t(S.IDLE, A.STOP_CONNECT_RETRY, A.RELEASE, A.DROP_TCP),
        E.BGPHeaderErr: _t(S.IDLE, *_NOTIFY_DOWN),
        E.BGPOpenMsgErr: _t(S.IDLE, *_NOTIFY_DOWN),
        E.OpenCollisionDump: _t(S.IDLE, *_NOTIFY_DOWN),
        E.KeepAliveMsg: _t(S.ESTABLISHED, A.RESTART_HOLD, A.ESTABLISH),
    },
    _t(S.IDLE, *_FSM_ERROR_DOWN),
)

TABLE |= _state_rows(
    S.ESTABLISHED,
    {
        **{ev: _t(S.ESTABLISHED) for ev in _START_EVENTS},
        E.ManualStop: _t(S.IDLE, *_MANUAL_STOP_DOWN),
        E.AutomaticStop: _t(S.IDLE, *_NOTIFY_DOWN),
        E.HoldTimer_Expires: _t(S.IDLE, *_NOTIFY_DOWN),
        E.KeepaliveTimer_Expires: _t(S.ESTABLISHED, A.SEND_KEEPALIVE, A.START_KEEPALIVE),
        E.TcpConnection_Valid: _t(S.ESTABLISHED),
        E.Tcp_CR_Invalid: _t(S.ESTABLISHED),
        E.Tcp_CR_Acked: _t(S.ESTABLISHED),
        E.TcpConnectionConfirmed: _t(S.ESTABLISHED),
        E.OpenCollisionDump: _t(S.IDLE, *_NOTIFY_DOWN),
        E.NotifMsgVerErr: _t(S.IDLE, *_DOWN_COUNTED),
        E.NotifMsg: _t(S.IDLE, *_DOWN_COUNTED),
        E.TcpConnectionFails: _t(S.IDLE, *_DOWN_COUNTED),
        E.KeepAliveMsg: _t(S.ESTABLISHED, A.RESTART_HOLD),
        E.UpdateMsg: _t(S.ESTABLISHED, A.PROCESS_UPDATE, A.RESTART_HOLD),
        E.RouteRefreshMsg: _t(S.ESTABLISHED, A.PROCESS_REFRESH, A.RESTART_HOLD),
        E.UpdateMsgErr: _t(S.IDLE, *_NOTIFY_DOWN),
        E.BGPHeaderErr: _t(S.IDLE, *_NOTIFY_DOWN),
        E.BGPOpenMsgErr: _t(S.IDLE, *_NOTIFY_DOWN),
    },
    _t(S.IDLE, *_FSM_ERROR_DOWN),
)

# The actions a transition performs that talk to the peer, for readers of the table and its tests.
SENDS = frozenset({A.SEND_OPEN, A.SEND_KEEPALIVE, A.SEND_NOTIFICATION, A.SEND_FSM_ERROR})

# RFC 6608 Finite State Machine Error subcodes by the state the unexpected message arrived in.
FSM_ERROR_SUBCODE: dict[State, int] = {
    S.OPENSENT: 1,
    S.OPENCONFIRM: 2,
    S.ESTABLISHED: 3,
}


def transition(state: State, event: Event) -> Transition:
    return TABLE[(state, event)]


assert len(TABLE) == len(State) * len(Event), "every (state, event) pair has a row"
