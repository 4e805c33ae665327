"""The RFC 4271 section 8 table: every (state, event) pair against an independent reading of the RFC,
and random event sequences through an abstract model of the resources the actions manage."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.fsm import FSM_ERROR_SUBCODE, SENDS, TABLE, Action, Event, State, transition

S = State
E = Event
A = Action

STARTS = {
    E.ManualStart,
    E.AutomaticStart,
    E.ManualStart_with_PassiveTcpEstablishment,
    E.AutomaticStart_with_PassiveTcpEstablishment,
}
TCP_SECOND = {E.TcpConnection_Valid, E.Tcp_CR_Invalid, E.Tcp_CR_Acked, E.TcpConnectionConfirmed}

# Where each event leads, read off RFC 4271 8.2.2 state by state; anything not listed goes to Idle.
EXPECTED_NEXT: dict[State, dict[Event, State]] = {
    S.IDLE: {
        E.ManualStart: S.CONNECT,
        E.AutomaticStart: S.CONNECT,
        E.ManualStart_with_PassiveTcpEstablishment: S.ACTIVE,
        E.AutomaticStart_with_PassiveTcpEstablishment: S.ACTIVE,
    },
    S.CONNECT: {
        **dict.fromkeys(STARTS, S.CONNECT),
        E.ConnectRetryTimer_Expires: S.CONNECT,
        E.TcpConnection_Valid: S.CONNECT,
        E.Tcp_CR_Invalid: S.CONNECT,
        E.Tcp_CR_Acked: S.OPENSENT,
        E.TcpConnectionConfirmed: S.OPENSENT,
    },
    S.ACTIVE: {
        **dict.fromkeys(STARTS, S.ACTIVE),
        E.ConnectRetryTimer_Expires: S.CONNECT,
        E.TcpConnection_Valid: S.ACTIVE,
        E.Tcp_CR_Invalid: S.ACTIVE,
        E.Tcp_CR_Acked: S.OPENSENT,
        E.TcpConnectionConfirmed: S.OPENSENT,
    },
    S.OPENSENT: {
        **dict.fromkeys(STARTS | TCP_SECOND, S.OPENSENT),
        E.TcpConnectionFails: S.ACTIVE,
        E.BGPOpen: S.OPENCONFIRM,
    },
    S.OPENCONFIRM: {
        **dict.fromkeys(STARTS | TCP_SECOND, S.OPENCONFIRM),
        E.KeepaliveTimer_Expires: S.OPENCONFIRM,
        E.KeepAliveMsg: S.ESTABLISHED,
    },
    S.ESTABLISHED: {
        **dict.fromkeys(STARTS | TCP_SECOND, S.ESTABLISHED),
        E.KeepaliveTimer_Expires: S.ESTABLISHED,
        E.KeepAliveMsg: S.ESTABLISHED,
        E.UpdateMsg: S.ESTABLISHED,
        E.RouteRefreshMsg: S.ESTABLISHED,
    },
}

# Events answered with an FSM Error NOTIFICATION (RFC 4271 8.2.2 "any other event", RFC 6608 subcodes).
EXPECTED_FSM_ERROR: dict[State, set[Event]] = {
    S.OPENSENT: {
        E.ConnectRetryTimer_Expires,
        E.KeepaliveTimer_Expires,
        E.NotifMsg,
        E.KeepAliveMsg,
        E.UpdateMsg,
        E.UpdateMsgErr,
        E.RouteRefreshMsg,
    },
    S.OPENCONFIRM: {E.ConnectRetryTimer_Expires, E.UpdateMsg, E.UpdateMsgErr, E.RouteRefreshMsg, E.BGPOpen},
    S.ESTABLISHED: {E.ConnectRetryTimer_Expires, E.BGPOpen},
}
# Events that end a connected session and send the NOTIFICATION the event carries.
EXPECTED_NOTIFY = {
    E.ManualStop,
    E.AutomaticStop,
    E.HoldTimer_Expires,
    E.BGPHeaderErr,
    E.BGPOpenMsgErr,
    E.OpenCollisionDump,
}
CONNECTED = {S.OPENSENT, S.OPENCONFIRM, S.ESTABLISHED}

ALL_PAIRS = [(s, e) for s in State for e in Event]


def test_table_is_complete() -> None:
    assert set(TABLE) == set(ALL_PAIRS)


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: v.name)
def test_every_pair(state: State, event: Event) -> None:
    t = transition(state, event)
    assert t.next_state == EXPECTED_NEXT[state].get(event, S.IDLE)
    acts = set(t.actions)
    assert len(acts) == len(t.actions), "no action twice"

    # Only a connected session talks to its peer, except for the OPEN that makes it connected.
    if state not in CONNECTED:
        assert acts & SENDS <= {A.SEND_OPEN}
    assert (A.SEND_OPEN in acts) == (state in (S.CONNECT, S.ACTIVE) and t.next_state == S.OPENSENT)

    sends_fsm_error = A.SEND_FSM_ERROR in acts
    assert sends_fsm_error == (event in EXPECTED_FSM_ERROR.get(state, set()))
    if sends_fsm_error:
        assert state in FSM_ERROR_SUBCODE
    notify = EXPECTED_NOTIFY | ({E.UpdateMsgErr} if state == S.ESTABLISHED else set())
    if state in CONNECTED and t.next_state == S.IDLE and event in notify:
        assert A.SEND_NOTIFICATION in acts
    if A.SEND_NOTIFICATION in acts:
        assert event in notify and state in CONNECTED

    # Leaving a connection behind always drops it and frees what it held.
    if state != S.IDLE and t.next_state == S.IDLE:
        assert {A.DROP_TCP, A.RELEASE} <= acts or (state == S.ACTIVE and event == E.TcpConnectionFails)
        assert acts.isdisjoint({A.RESTART_HOLD, A.START_KEEPALIVE, A.INITIATE_TCP})
    if event == E.ManualStop and state != S.IDLE:
        assert A.ZERO_RETRY_COUNTER in acts
    if state in CONNECTED and t.next_state == S.IDLE and event != E.ManualStop:
        assert A.INCR_RETRY_COUNTER in acts or event == E.NotifMsgVerErr

    assert (A.ESTABLISH in acts) == (state == S.OPENCONFIRM and t.next_state == S.ESTABLISHED)
    assert (A.PROCESS_UPDATE in acts) == (state == S.ESTABLISHED and event == E.UpdateMsg)
    assert (A.PROCESS_REFRESH in acts) == (state == S.ESTABLISHED and event == E.RouteRefreshMsg)
    if (
        event in (E.KeepAliveMsg, E.UpdateMsg, E.RouteRefreshMsg)
        and t.next_state != S.IDLE
        and state in CONNECTED
    ):
        assert A.RESTART_HOLD in acts


def test_start_events_ignored_outside_idle() -> None:
    for state in State:
        for event in STARTS:
            t = transition(state, event)
            if state == S.IDLE:
                assert t.next_state != S.IDLE and A.START_CONNECT_RETRY in t.actions
            else:
                assert t.actions == () and t.next_state == state


def test_fsm_error_subcodes_are_rfc6608() -> None:
    assert FSM_ERROR_SUBCODE == {S.OPENSENT: 1, S.OPENCONFIRM: 2, S.ESTABLISHED: 3}


# ---------------------------------------------------------------- random sequences (h2's style)


@dataclass
class Resources:
    """What the actions manage, tracked abstractly: a connection (or an attempt) and three timers."""

    state: State = S.IDLE
    connected: bool = False
    connecting: bool = False
    connect_retry: bool = False
    hold: bool = False
    keepalive: bool = False
    counter: int = 0
    established_seen: bool = False

    def possible(self) -> list[Event]:
        """Events the world can produce now: timers only when running, messages only on a connection."""
        out = [
            E.ManualStart,
            E.ManualStop,
            E.AutomaticStart,
            E.AutomaticStop,
            E.ManualStart_with_PassiveTcpEstablishment,
            E.AutomaticStart_with_PassiveTcpEstablishment,
            E.TcpConnection_Valid,
            E.Tcp_CR_Invalid,
            E.TcpConnectionConfirmed,
        ]
        if self.connect_retry:
            out.append(E.ConnectRetryTimer_Expires)
        if self.hold:
            out.append(E.HoldTimer_Expires)
        if self.keepalive:
            out.append(E.KeepaliveTimer_Expires)
        if self.connecting and not self.connected:
            out.append(E.Tcp_CR_Acked)
        if self.connecting or self.connected:
            out.append(E.TcpConnectionFails)
        if self.connected:
            out += [
                E.BGPOpen,
                E.BGPHeaderErr,
                E.BGPOpenMsgErr,
                E.OpenCollisionDump,
                E.NotifMsgVerErr,
                E.NotifMsg,
                E.KeepAliveMsg,
                E.UpdateMsg,
                E.UpdateMsgErr,
                E.RouteRefreshMsg,
            ]
        return out

    def step(self, event: Event) -> None:
        t = transition(self.state, event)
        takes_connection = self.state in (S.CONNECT, S.ACTIVE) and t.next_state == S.OPENSENT
        for act in t.actions:
            if act in SENDS and act != A.SEND_OPEN:
                assert self.connected, f"{act} without a connection in {self.state.name} on {event.name}"
            match act:
                case A.INITIATE_TCP:
                    self.connecting = True
                case A.DROP_TCP:
                    self.connected = self.connecting = self.hold = self.keepalive = False
                case A.RELEASE:
                    self.hold = self.keepalive = False
                case A.START_CONNECT_RETRY:
                    self.connect_retry = True
                case A.STOP_CONNECT_RETRY:
                    self.connect_retry = False
                case A.SET_HOLD_LARGE | A.RESTART_HOLD:
                    self.hold = True
                case A.START_KEEPALIVE:
                    self.keepalive = True
                case A.ZERO_RETRY_COUNTER:
                    self.counter = 0
                case A.INCR_RETRY_COUNTER:
                    self.counter += 1
                case A.ESTABLISH:
                    self.established_seen = True
                case A.SEND_OPEN:
                    assert takes_connection
        if takes_connection:
            self.connected, self.connecting = True, False
        if t.next_state == S.IDLE:
            # RFC 4271 restarts the ConnectRetryTimer on Active -> Idle; in Idle its expiry is ignored.
            self.connect_retry = False
        self.state = t.next_state

    def check(self) -> None:
        assert self.connected == (self.state in CONNECTED)
        if self.state == S.IDLE:
            assert not (self.connecting or self.hold or self.keepalive)
        if self.state == S.CONNECT:
            assert self.connecting and self.connect_retry
        if self.state == S.ACTIVE:
            assert not self.connecting and self.connect_retry
        if self.state in CONNECTED:
            assert not self.connect_retry and self.hold
        if self.state in (S.OPENCONFIRM, S.ESTABLISHED):
            assert self.keepalive


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_sequences_keep_resources_consistent(data: st.DataObject) -> None:
    res = Resources()
    for _ in range(data.draw(st.integers(1, 40))):
        event = data.draw(st.sampled_from(res.possible()))
        res.step(event)
        res.check()


def test_shortest_path_to_established() -> None:
    res = Resources()
    for event in (E.ManualStart, E.Tcp_CR_Acked, E.BGPOpen, E.KeepAliveMsg):
        res.step(event)
        res.check()
    assert res.state == S.ESTABLISHED and res.established_seen
    res.step(E.ManualStop)
    assert res.state == S.IDLE and res.counter == 0 and not res.connected
