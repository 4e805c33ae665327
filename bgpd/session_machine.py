"""The RFC 4271 state machine of one BGP connection: its state, timers and output queue, and the actions
of `bgpd.fsm.TABLE` performed on them.

`SessionMachine` is the half of `bgpd.session.Session` that the table drives: `_fire(event, now)` looks
the (state, event) row up and runs its actions in order, one method per action (`_PLAN` binds every
row to its methods once, at import). Entering Idle reports `SessionDown` and arms the automatic
restart's back-off. `Session` adds the entry points that turn what happened (a connection, bytes from
the peer, a timer, an operator's stop) into the table's events.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable

from bgpd.fsm import FSM_ERROR_SUBCODE, TABLE, Action, Event, State
from bgpd.send_queue import SendQueue
from bgpd.session_config import SessionConfig
from bgpd.session_events import (
    INPUT_EVENTS,
    CloseConnection,
    ConnectRequested,
    Established,
    NotificationSent,
    RouteRefreshReceived,
    SessionDown,
    SessionEvent,
    StateChanged,
    UpdateReceived,
)
from bgpd.timers import RandomSource, Timer, jittered
from proto.bgp import (
    KEEPALIVE_BYTES,
    ErrorCode,
    Framer,
    MsgType,
    Negotiated,
    Notification,
    Open,
    RouteRefresh,
    Update,
    describe,
    encode_message,
    negotiate,
)

log = logging.getLogger("bgpd.session")

LARGE_HOLD_TIME = 240.0  # RFC 4271 8.2.2: the hold timer in OpenSent, "4 minutes is suggested"

# one generator for every session's timer jitter: a Mersenne Twister's state is 2.5 KB, per peer
_JITTER = random.Random()


class SessionMachine:
    def __init__(self, config: SessionConfig, rng: RandomSource | None = None) -> None:
        self.config = config
        self.rng: RandomSource = rng if rng is not None else _JITTER
        self.local_open = config.local_open()
        self.state = State.IDLE
        self.connect_retry_counter = 0
        self.failures = 0  # consecutive drops to Idle since the last Established: the back-off exponent
        self.auto_restart = False  # set by start(), cleared by stop()
        self.last_error = ""
        self.outbound: bool | None = None  # who opened the current connection
        self.connected_at: float | None = None
        self._passive = config.passive

        self.connect_retry = Timer("ConnectRetry")
        self.hold = Timer("Hold")
        self.keepalive = Timer("Keepalive")
        self.idle_hold = Timer("IdleHold")

        self.remote_open: Open | None = None
        self.negotiated = Negotiated(four_octet_as=config.four_octet_as)
        self.hold_time = 0  # negotiated
        self.keepalive_time = 0.0  # negotiated
        self.established_at: float | None = None

        self._connected = False
        self._connecting = False
        self._framer = Framer()
        self._out = SendQueue()
        # messages by type (MsgType value) over the life of this session object, for `bgp neighbors`
        self.sent: dict[int, int] = dict.fromkeys(range(1, 6), 0)
        self.received: dict[int, int] = dict.fromkeys(range(1, 6), 0)
        self._events: deque[SessionEvent] = deque()
        self._queued_input = 0  # UpdateReceived / RouteRefreshReceived not yet taken by next_event
        self._now = 0.0
        # what the current event carries: the NOTIFICATION to send, why we go down
        self._cause: Notification | None = None
        self._reason = ""
        self._received: Notification | None = None
        self._sent: Notification | None = None
        self._pending_open: Open | None = None
        self._pending_update: Update | None = None
        self._pending_refresh: RouteRefresh | None = None
        self._hold_down: float | None = None
        # Idle for a hold-down after AutomaticStop (max-prefix Cease/1): the peer's connections are
        # refused until it runs out, as RFC 4271 Idle refuses them; the usual back-off does not refuse
        self.held_down = False

    # ------------------------------------------------------------ the FSM

    def _fire(self, event: Event, now: float) -> None:
        self._now = now
        old = self.state
        steps, new = _PLAN[old, event]
        for step in steps:
            step(self, event, old)
        self.state = new
        if old != new:
            self._emit(StateChanged(old, new, event))
            log.info("%s: %s -> %s on %s", self._label(), old.name, new.name, event.name)
            if new == State.IDLE:
                self._enter_idle(old, event)
        # what this event carried is spent, whatever the row did with it
        self._cause = None
        self._reason = ""
        self._hold_down = None
        self._pending_open = self._pending_update = self._pending_refresh = None

    def _enter_idle(self, old: State, event: Event) -> None:
        # RFC 4271 restarts the ConnectRetryTimer on some ways into Idle; in Idle it does nothing.
        self.connect_retry.stop()
        was_established = old == State.ESTABLISHED
        reason = self._reason or event.name
        self._emit(SessionDown(reason, was_established, self._sent, self._received))
        self._sent = self._received = None
        if event == Event.ManualStop:
            return
        self.failures += 1
        if self.auto_restart:
            if self._hold_down is not None:
                delay = self._hold_down
                self.held_down = True
            else:
                cap = self.config.idle_hold_max
                if old in (State.CONNECT, State.ACTIVE):  # never got a connection as far as an OPEN
                    cap = min(cap, self.config.connect_hold_max)
                delay = jittered(min(cap, self.config.idle_hold_time * 2 ** (self.failures - 1)), self.rng)
            self.idle_hold.start(self._now, delay)

    # One method per action of the table; `_PLAN` binds every row to its methods once, at import.

    def _act_start_connect_retry(self, event: Event, state: State) -> None:
        self.connect_retry.start(self._now, jittered(self.config.connect_retry_time, self.rng))

    def _act_stop_connect_retry(self, event: Event, state: State) -> None:
        self.connect_retry.stop()

    def _act_zero_retry_counter(self, event: Event, state: State) -> None:
        self.connect_retry_counter = 0

    def _act_incr_retry_counter(self, event: Event, state: State) -> None:
        self.connect_retry_counter += 1

    def _act_initiate_tcp(self, event: Event, state: State) -> None:
        self._connecting = True
        self.outbound = True
        self._emit(ConnectRequested())

    def _act_accept_or_reject_tcp(self, event: Event, state: State) -> None:
        pass  # the adapter accepts or refuses before it asks us (see connection_made)

    def _act_drop_tcp(self, event: Event, state: State) -> None:
        self._drop(event)

    def _act_release(self, event: Event, state: State) -> None:
        self._release()

    def _act_send_open(self, event: Event, state: State) -> None:
        # a new connection: nothing queued for an earlier one may precede the OPEN
        self._connected, self._connecting = True, False
        self._framer = Framer()
        self.negotiated = Negotiated(four_octet_as=self.config.four_octet_as)
        self.remote_open = None
        self._out.restart(encode_message(self.local_open, self.negotiated))
        self.sent[MsgType.OPEN] += 1

    def _act_set_hold_large(self, event: Event, state: State) -> None:
        self.hold.start(self._now, LARGE_HOLD_TIME)

    def _act_send_keepalive(self, event: Event, state: State) -> None:
        self._out.control(KEEPALIVE_BYTES)
        self.sent[MsgType.KEEPALIVE] += 1

    def _act_start_keepalive(self, event: Event, state: State) -> None:
        if self.keepalive_time > 0:
            self.keepalive.start(self._now, jittered(self.keepalive_time, self.rng))

    def _act_restart_hold(self, event: Event, state: State) -> None:
        if self.hold_time > 0:
            hold = self.hold
            hold.duration = self.hold_time
            hold.deadline = self._now + self.hold_time
        else:
            self.hold.stop()

    def _act_send_notification(self, event: Event, state: State) -> None:
        self._send_notification(self._cause or Notification(ErrorCode.CEASE, 0))

    def _act_send_fsm_error(self, event: Event, state: State) -> None:
        self._reason = f"unexpected {event.name} in {state.name}"
        self.last_error = self._reason
        self._send_notification(Notification(ErrorCode.FSM, FSM_ERROR_SUBCODE[state]))

    def _act_complete_open(self, event: Event, state: State) -> None:
        self._complete_open()

    def _act_establish(self, event: Event, state: State) -> None:
        assert self.remote_open is not None
        self.established_at = self._now
        self.failures = 0
        self.last_error = ""
        self._emit(
            Established(
                self.negotiated,
                self.local_open,
                self.remote_open,
                self.hold_time,
                self.keepalive_time,
                bool(self.outbound),
            )
        )

    def _act_process_update(self, event: Event, state: State) -> None:
        update = self._pending_update
        if update is not None:
            self._events.append(UpdateReceived(update))
            self._queued_input += 1

    def _act_process_refresh(self, event: Event, state: State) -> None:
        refresh = self._pending_refresh
        # RFC 2918 / RFC 7313: a family we did not advertise or an unknown subtype is ignored
        if (
            refresh is not None
            and (refresh.afi, refresh.safi) in self.config.families
            and refresh.subtype <= 2
        ):
            self._emit(RouteRefreshReceived(refresh))

    def _complete_open(self) -> None:
        remote = self._pending_open
        assert remote is not None
        self.remote_open = remote
        self.negotiated = negotiate(self.local_open, remote)
        self._framer.negotiated(self.negotiated)
        self.hold_time = min(self.config.hold_time, remote.hold_time)
        if self.hold_time == 0:
            self.keepalive_time = 0.0
        else:
            third = self.hold_time / 3
            configured = self.config.keepalive_time
            self.keepalive_time = min(configured, third) if configured else third

    def _send_notification(self, notification: Notification) -> None:
        if not self._connected:
            return
        self._out.final(encode_message(notification, self.negotiated))
        self.sent[MsgType.NOTIFICATION] += 1
        self._sent = notification
        text = describe(notification)
        self._emit(NotificationSent(notification, text))
        log.warning("%s: NOTIFICATION sent: %s", self._label(), text)
        if not self._reason:
            self._reason = f"NOTIFICATION sent: {text}"
        self.last_error = self._reason or f"NOTIFICATION sent: {text}"

    def _drop(self, event: Event) -> None:
        if self._connected or self._connecting:
            self._emit(CloseConnection(self._reason or event.name))
        if event == Event.TcpConnectionFails:
            self._out.drop_control()  # the connection is already gone: nothing more can be written
        self._connected = self._connecting = False
        # what is still queued apart from a final NOTIFICATION is for a connection that is gone
        self._out.drop_updates()
        self.hold.stop()
        self.keepalive.stop()

    def _release(self) -> None:
        self.hold.stop()
        self.keepalive.stop()
        self._out.drop_updates()
        self.hold_time = 0
        self.keepalive_time = 0.0
        self.established_at = None

    def _emit(self, event: SessionEvent) -> None:
        self._events.append(event)
        if isinstance(event, INPUT_EVENTS):
            self._queued_input += 1

    def _label(self) -> str:
        return self.config.name or f"AS{self.config.peer_as}"


_ACTION_METHODS: dict[Action, Callable[[SessionMachine, Event, State], None]] = {
    Action.START_CONNECT_RETRY: SessionMachine._act_start_connect_retry,
    Action.STOP_CONNECT_RETRY: SessionMachine._act_stop_connect_retry,
    Action.ZERO_RETRY_COUNTER: SessionMachine._act_zero_retry_counter,
    Action.INCR_RETRY_COUNTER: SessionMachine._act_incr_retry_counter,
    Action.INITIATE_TCP: SessionMachine._act_initiate_tcp,
    Action.ACCEPT_TCP: SessionMachine._act_accept_or_reject_tcp,
    Action.REJECT_TCP: SessionMachine._act_accept_or_reject_tcp,
    Action.DROP_TCP: SessionMachine._act_drop_tcp,
    Action.RELEASE: SessionMachine._act_release,
    Action.SEND_OPEN: SessionMachine._act_send_open,
    Action.SEND_KEEPALIVE: SessionMachine._act_send_keepalive,
    Action.SEND_NOTIFICATION: SessionMachine._act_send_notification,
    Action.SEND_FSM_ERROR: SessionMachine._act_send_fsm_error,
    Action.SET_HOLD_LARGE: SessionMachine._act_set_hold_large,
    Action.COMPLETE_OPEN: SessionMachine._act_complete_open,
    Action.START_KEEPALIVE: SessionMachine._act_start_keepalive,
    Action.RESTART_HOLD: SessionMachine._act_restart_hold,
    Action.ESTABLISH: SessionMachine._act_establish,
    Action.PROCESS_UPDATE: SessionMachine._act_process_update,
    Action.PROCESS_REFRESH: SessionMachine._act_process_refresh,
}
assert set(_ACTION_METHODS) == set(Action), "every action of the table has its method"

_PLAN: dict[tuple[State, Event], tuple[tuple[Callable[[SessionMachine, Event, State], None], ...], State]] = {
    key: (tuple(_ACTION_METHODS[a] for a in t.actions), t.next_state) for key, t in TABLE.items()
}
