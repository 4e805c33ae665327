"""One BGP connection as a sans-I/O protocol object (h11 / aioquic style).

Bytes and time go in, bytes, events and the next deadline come out; there are no sockets, no asyncio
and no clock here. Every decision about the session is a row of `bgpd.fsm.TABLE`: entry points turn
what happened into an RFC 4271 event, look the row up and perform its actions.

    session.start(now)                      # or start(now, passive=True)
    session.connection_made(now, outbound)  # when the adapter has a TCP connection
    session.receive_data(data, now)         # bytes from the peer
    session.handle_timer(now)               # at or after next_deadline()
    out = session.data_to_send()            # write these
    while (ev := session.next_event()):     # ConnectRequested, CloseConnection, Established, ...

A `Session` is one connection. Connection collision (RFC 4271 6.8) is between two sessions for the
same peer and is decided by their owner, `bgpd.neighbor.Neighbor`: when an OPEN arrives the session
asks its `arbiter` whether it loses, before its KEEPALIVE goes out, and the arbiter closes the other
connection through its public entry points when that one loses instead.

Passive (`SessionConfig.passive`, BIRD's and Calico's meaning) never connects: the ConnectRetryTimer
expiry that would take Active to Connect is not acted on. Automatic restart after a drop waits a
back-off (`idle_hold_time` doubling per consecutive failure up to `idle_hold_max`, jittered), then
generates AutomaticStart.

Output has two queues: control messages (OPEN, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH) and UPDATEs.
`data_to_send` drains control first and only whole UPDATE units after it, so a KEEPALIVE due while
a large table is still queued goes out ahead of it. An UPDATE unit may be a memoryview: update groups
queue one encoded stream, or slices of it, to many sessions without copying it.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Iterable

from bgpd.fsm import FSM_ERROR_SUBCODE, TABLE, Action, Event, State
from bgpd.graceful import hard_reset_for, notification_negotiated
from bgpd.send_queue import SendQueue
from bgpd.session_config import MIN_HOLD_TIME, SessionConfig
from bgpd.session_events import (
    CloseConnection,
    ConnectRequested,
    Established,
    NotificationReceived,
    NotificationSent,
    RouteRefreshReceived,
    SessionDown,
    SessionEvent,
    StateChanged,
    UpdateReceived,
)
from bgpd.timers import RandomSource, Timer, earliest, jittered
from proto.bgp import (
    KEEPALIVE_BYTES,
    AddPathCap,
    CapCode,
    CeaseSubcode,
    EnhancedRouteRefreshCap,
    ErrorCode,
    ExtendedMessageCap,
    FourOctetAsCap,
    Framer,
    GracefulRestartCap,
    Keepalive,
    MessageError,
    MsgType,
    MultiprotocolCap,
    Negotiated,
    Notification,
    Open,
    OpenError,
    RouteRefresh,
    RouteRefreshCap,
    Update,
    decode_message_body,
    describe,
    encode_message,
    negotiate,
    notification_with_shutdown,
)
from proto.bgp.capabilities import encode_capability

log = logging.getLogger("bgpd.session")

LARGE_HOLD_TIME = 240.0  # RFC 4271 8.2.2: the hold timer in OpenSent, "4 minutes is suggested"
HOLD_GRACE = 10.0  # BIRD: when input is still queued at hold expiry, look again this much later

# Which capability class stands for a capability code in `SessionConfig.required_capabilities`.
_CAPABILITY_KIND: dict[int, type] = {
    CapCode.MULTIPROTOCOL: MultiprotocolCap,
    CapCode.ROUTE_REFRESH: RouteRefreshCap,
    CapCode.EXTENDED_MESSAGE: ExtendedMessageCap,
    CapCode.GRACEFUL_RESTART: GracefulRestartCap,
    CapCode.FOUR_OCTET_AS: FourOctetAsCap,
    CapCode.ADD_PATH: AddPathCap,
    CapCode.ENHANCED_ROUTE_REFRESH: EnhancedRouteRefreshCap,
}


class LocalProtocolError(RuntimeError):
    """The caller used the session wrongly (e.g. queued an UPDATE before Established)."""


_INPUT_EVENTS = (UpdateReceived, RouteRefreshReceived)
_UPDATE = int(MsgType.UPDATE)
_ESTABLISHED = State.ESTABLISHED


# ---------------------------------------------------------------- the session


def _has_capability(open_: Open, code: int) -> bool:
    kind = _CAPABILITY_KIND.get(code)
    return any(
        (kind is not None and isinstance(cap, kind)) or getattr(cap, "code", None) == code
        for cap in open_.capabilities
    )


# Called when an OPEN arrives on a session that has a sibling connection: True when this session is
# the one to close (RFC 4271 6.8). The owner of both sessions decides, and closes the other one itself.
Arbiter = Callable[["Session", float], bool]


# one generator for every session's timer jitter: a Mersenne Twister's state is 2.5 KB, per peer
_JITTER = random.Random()


class Session:
    def __init__(self, config: SessionConfig, rng: RandomSource | None = None, arbiter: Arbiter | None = None) -> None:
        self.config = config
        self.arbiter = arbiter
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

    def __repr__(self) -> str:
        return f"Session({self.config.name or self.config.router_id}, {self.state.name})"

    @property
    def notification_negotiated(self) -> bool:
        """RFC 8538: both OPENs set the N bit of graceful restart (so far as the peer's OPEN is known)."""
        if self.remote_open is None:
            return False
        local = self.local_open.capability(GracefulRestartCap)
        remote = self.remote_open.capability(GracefulRestartCap)
        return notification_negotiated(local, remote)  # type: ignore[arg-type]

    # ------------------------------------------------------------ entry points

    def start(self, now: float, passive: bool | None = None) -> None:
        """ManualStart: begin connecting (or, passive, wait for the peer to connect)."""
        self.auto_restart = True
        self.idle_hold.stop()
        self.held_down = False
        passive = self.config.passive if passive is None else passive
        self._passive = passive
        delay = self.config.connect_delay
        if passive or delay <= 0:
            self._fire(Event.ManualStart_with_PassiveTcpEstablishment if passive else Event.ManualStart, now)
            return
        # start listening (Active), and connect when the delay runs out: the ConnectRetryTimer's
        # expiry in Active is what takes a session to Connect in RFC 4271's table
        self._fire(Event.ManualStart_with_PassiveTcpEstablishment, now)
        if self.state == State.ACTIVE:
            self.connect_retry.start(now, jittered(delay, self.rng))

    def automatic_start(self, now: float, passive: bool | None = None) -> None:
        """AutomaticStart now, without waiting out the back-off (e.g. the peer is connecting to us)."""
        self.auto_restart = True
        self.idle_hold.stop()
        self.held_down = False
        passive = self.config.passive if passive is None else passive
        self._passive = passive
        self._fire(
            Event.AutomaticStart_with_PassiveTcpEstablishment if passive else Event.AutomaticStart, now
        )

    def stop(
        self, now: float, shutdown_message: str = "", subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN
    ) -> None:
        """ManualStop: Cease (RFC 4486 subcode; with an RFC 9003 shutdown communication for subcodes
        2 and 4) when connected, and no automatic restart until the next start()."""
        self.auto_restart = False
        self.idle_hold.stop()
        if shutdown_message and subcode in (
            CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
            CeaseSubcode.ADMINISTRATIVE_RESET,
        ):
            self._cause = notification_with_shutdown(subcode, shutdown_message)
        else:
            self._cause = Notification(ErrorCode.CEASE, subcode)
        self._cause = hard_reset_for(self._cause, self.notification_negotiated)
        self._reason = "stopped" + (f": {shutdown_message}" if shutdown_message else "")
        self._fire(Event.ManualStop, now)

    def automatic_stop(
        self, now: float, subcode: int, data: bytes = b"", reason: str = "", hold_down: float | None = None
    ) -> None:
        """AutomaticStop (e.g. Cease/1 when the peer sent too many prefixes): the session restarts by
        itself after `hold_down` seconds, or after the usual back-off."""
        if self.state == State.IDLE:
            if hold_down is not None and self.auto_restart:
                self.idle_hold.start(now, hold_down)
                self.held_down = True
            return
        self._cause = hard_reset_for(Notification(ErrorCode.CEASE, subcode, data), self.notification_negotiated)
        self._reason = reason or describe(self._cause)
        self._hold_down = hold_down
        self._fire(Event.AutomaticStop, now)

    def retry_now(self, now: float, delay: float = 0.0) -> None:
        """The peer is reachable again (its BFD session came Up): connect now, or after `delay`, instead
        of waiting out the back-off or the ConnectRetryTimer; the peer's connections are accepted from
        now on. A passive session keeps waiting to be connected to."""
        if self.state == State.IDLE and self.auto_restart:
            if delay > 0 and not self.config.passive:
                self.held_down = False  # its connection is taken at once (bgpd.neighbor)
                self.idle_hold.start(now, delay)
            else:
                self.automatic_start(now)
        elif self.state == State.ACTIVE and not self._passive:
            self.connect_retry.stop()
            if delay > 0:
                self.connect_retry.start(now, delay)
            else:
                self._fire(Event.ConnectRetryTimer_Expires, now)

    def connection_made(self, now: float, outbound: bool = True) -> bool:
        """A TCP connection to the peer is up: ours (Tcp_CR_Acked) or theirs (TcpConnectionConfirmed).
        Returns False when this session does not take it; the caller then closes it, or gives it to a
        second session for collision detection."""
        if self._connected:
            self._fire(Event.Tcp_CR_Acked if outbound else Event.TcpConnectionConfirmed, now)
            return False
        if outbound and not self._connecting:
            return False  # an attempt this session already gave up on
        before = self.state
        self.outbound = outbound
        self.connected_at = now
        self._fire(Event.Tcp_CR_Acked if outbound else Event.TcpConnectionConfirmed, now)
        return before in (State.CONNECT, State.ACTIVE) and self._connected

    def connection_failed(self, now: float, reason: str) -> None:
        """The connection attempt asked for by ConnectRequested failed."""
        if not self._connecting:
            return
        self.last_error = reason
        self._reason = reason
        self._fire(Event.TcpConnectionFails, now)

    def connection_lost(self, now: float, reason: str = "connection closed by peer") -> None:
        if not self._connected:
            return
        self.last_error = reason
        self._reason = reason
        self._fire(Event.TcpConnectionFails, now)

    def take_connection(self, now: float, outbound: bool) -> None:
        """Carry a connection this session did not ask for: the second connection to a peer during
        collision detection. The session starts passive, without automatic restart (whichever
        connection loses the collision is discarded by the owner), and sends its OPEN."""
        self._passive = True
        self._fire(Event.ManualStart_with_PassiveTcpEstablishment, now)
        self._connecting = outbound  # an attempt of the peer's other session that completed late, or theirs
        self.connection_made(now, outbound)

    def collision_dump(self, now: float, reason: str = "connection collision: the other connection won") -> None:
        """This connection lost a collision decided on its sibling (RFC 4271 6.8): Cease/7 and close."""
        self._cause = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
        self._reason = reason
        self._fire(Event.OpenCollisionDump, now)

    def retire(self) -> None:
        """An Idle session replaced by its sibling: no automatic restart any more."""
        self.auto_restart = False
        self.idle_hold.stop()

    def receive_data(self, data: bytes, now: float) -> None:
        if not self._connected or not data:
            return
        self._now = now
        try:
            messages = self._framer.feed(data)
        except MessageError as error:
            self._on_error(Event.BGPHeaderErr, error, now)
            return
        for msg_type, body in messages:
            if not self._connected:
                break  # an earlier message in this chunk ended the connection
            self._receive_message(msg_type, body, now)

    def handle_timer(self, now: float, input_pending: bool = False) -> None:
        """Fire every timer due at `now`. `input_pending`: the adapter has bytes from the peer it has
        not fed yet (BIRD's rule: then the hold timer is re-armed, not fired)."""
        self._now = now
        for _ in range(8):  # each firing may re-arm others; a few rounds settle everything due
            if self.hold.expired(now):
                if input_pending or self._queued_input:
                    self.hold.start(now, min(HOLD_GRACE, self.hold.duration or HOLD_GRACE))
                    continue
                self.hold.stop()
                self._cause = Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0)
                self._reason = "hold timer expired"
                self.last_error = self._reason
                self._fire(Event.HoldTimer_Expires, now)
            elif self.keepalive.expired(now):
                self.keepalive.stop()
                self._fire(Event.KeepaliveTimer_Expires, now)
            elif self.connect_retry.expired(now):
                self.connect_retry.stop()
                if self.state == State.ACTIVE and self._passive:
                    # passive as BIRD and Calico mean it: never connect, only wait to be connected to
                    continue
                if self.state == State.CONNECT:
                    self.last_error = "connect attempt timed out (no answer; TCP MD5 or filtering?)"
                self._fire(Event.ConnectRetryTimer_Expires, now)
            elif self.idle_hold.expired(now):
                self.idle_hold.stop()
                self.held_down = False
                if self.state == State.IDLE and self.auto_restart:
                    self.automatic_start(now)
            else:
                break

    def next_deadline(self) -> float | None:
        return earliest(self.hold, self.keepalive, self.connect_retry, self.idle_hold)

    def data_to_send(self, max_bytes: int | None = None, now: float | None = None) -> bytes:
        """Control messages first, then UPDATE units up to `max_bytes` (`max_bytes=0` gives control
        messages only, for a transport whose buffer is full; `bgpd.send_queue` says how a unit larger
        than that is cut). Some bytes are always handed out when there are any. With `now`, UPDATEs
        handed out restart the KeepaliveTimer (RFC 4271 8.2.2, Established); without it KEEPALIVEs
        simply keep their cadence."""
        data, updates = self._out.take(max_bytes)
        if updates and now is not None and self.keepalive_time > 0 and self.state == State.ESTABLISHED:
            self.keepalive.start(now, jittered(self.keepalive_time, self.rng))
        return data

    def next_event(self) -> SessionEvent | None:
        if not self._events:
            return None
        ev = self._events.popleft()
        if isinstance(ev, _INPUT_EVENTS):
            self._queued_input -= 1
        return ev

    def events(self) -> list[SessionEvent]:
        out = list(self._events)
        self._events.clear()
        self._queued_input = 0
        return out

    # ------------------------------------------------------------ output for the RIB

    def send_update_bytes(self, data: bytes) -> None:
        """Queue whole, encoded UPDATE messages (one or more, concatenated) as one unit."""
        if self.state != State.ESTABLISHED:
            raise LocalProtocolError(f"UPDATE queued in {self.state.name}")
        self._out.updates((data,))

    def send_updates(self, chunks: Iterable[bytes | memoryview], updates: int, refreshes: int = 0) -> None:
        """Queue chunks of whole encoded messages (UPDATEs, and BoRR/EoRR ROUTE-REFRESHes that must
        stay in line with them), each chunk one unit, and count them as sent."""
        if self.state != State.ESTABLISHED:
            raise LocalProtocolError(f"UPDATE queued in {self.state.name}")
        self._out.updates(chunks)
        self.sent[_UPDATE] += updates
        self.sent[MsgType.ROUTE_REFRESH] += refreshes

    def send_update(self, update: Update) -> None:
        self.send_update_bytes(encode_message(update, self.negotiated))

    def send_route_refresh(self, afi: int, safi: int, subtype: int = 0) -> None:
        if self.state != State.ESTABLISHED:
            raise LocalProtocolError(f"ROUTE-REFRESH in {self.state.name}")
        self._out.control(encode_message(RouteRefresh(afi, safi, subtype), self.negotiated))
        self.sent[MsgType.ROUTE_REFRESH] += 1

    @property
    def pending_update_bytes(self) -> int:
        return self._out.update_bytes

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def remote_router_id(self) -> str | None:
        return self.remote_open.router_id if self.remote_open is not None else None

    # ------------------------------------------------------------ receiving

    def _receive_message(self, msg_type: int, body: bytes, now: float) -> None:
        state = self.state
        if msg_type in self.received:
            self.received[msg_type] += 1
        if msg_type == _UPDATE and state == _ESTABLISHED:
            # the hot path of a table transfer: the same row as below, without the dispatch
            try:
                self._pending_update = decode_message_body(msg_type, body, self.negotiated)  # type: ignore[assignment]
            except MessageError as error:
                self._on_error(
                    Event.UpdateMsgErr if error.code != ErrorCode.MESSAGE_HEADER else Event.BGPHeaderErr,
                    error,
                    now,
                )
                return
            self._fire(Event.UpdateMsg, now)
            return
        if msg_type == MsgType.KEEPALIVE:
            if body:
                self._on_error(
                    Event.BGPHeaderErr,
                    MessageError(ErrorCode.MESSAGE_HEADER, 2, (19 + len(body)).to_bytes(2, "big")),
                    now,
                )
                return
            self._fire(Event.KeepAliveMsg, now)
            return
        if msg_type == MsgType.UPDATE and state != State.ESTABLISHED:
            self._fire(Event.UpdateMsg, now)  # unexpected: an FSM error, no need to parse it
            return
        if msg_type == MsgType.OPEN and state != State.OPENSENT:
            self._fire(Event.BGPOpen, now)
            return
        if msg_type == MsgType.ROUTE_REFRESH and state != State.ESTABLISHED:
            self._fire(Event.RouteRefreshMsg, now)
            return
        try:
            message = decode_message_body(msg_type, body, self.negotiated)
        except MessageError as error:
            event = {
                ErrorCode.MESSAGE_HEADER: Event.BGPHeaderErr,
                ErrorCode.OPEN_MESSAGE: Event.BGPOpenMsgErr,
            }.get(error.code, Event.UpdateMsgErr)  # UPDATE and ROUTE-REFRESH errors
            self._on_error(event, error, now)
            return
        if isinstance(message, Update):
            self._pending_update = message
            self._fire(Event.UpdateMsg, now)
        elif isinstance(message, Keepalive):
            self._fire(Event.KeepAliveMsg, now)
        elif isinstance(message, Notification):
            self._received = message
            text = describe(message)
            self._emit(NotificationReceived(message, text))
            log.warning("%s: NOTIFICATION received: %s", self._label(), text)
            self._reason = f"NOTIFICATION received: {text}"
            self.last_error = self._reason
            version_error = (
                message.code == ErrorCode.OPEN_MESSAGE
                and message.subcode == OpenError.UNSUPPORTED_VERSION_NUMBER
            )
            self._fire(Event.NotifMsgVerErr if version_error else Event.NotifMsg, now)
        elif isinstance(message, RouteRefresh):
            self._pending_refresh = message
            self._fire(Event.RouteRefreshMsg, now)
        elif isinstance(message, Open):
            self._receive_open(message, now)

    def _receive_open(self, remote: Open, now: float) -> None:
        error = self._check_open(remote)
        if error is not None:
            self._on_error(Event.BGPOpenMsgErr, error, now)
            return
        self.remote_open = remote
        if self.arbiter is not None and self.arbiter(self, now):
            self._cause = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
            self._reason = "connection collision: this connection closed"
            self._fire(Event.OpenCollisionDump, now)
            return
        self._pending_open = remote
        self._fire(Event.BGPOpen, now)

    def _check_open(self, remote: Open) -> MessageError | None:
        """The checks against configuration (the codec already did the ones that need none)."""
        cfg = self.config
        remote_as = remote.real_asn if cfg.four_octet_as else remote.asn
        if remote_as != cfg.peer_as:
            return MessageError(
                ErrorCode.OPEN_MESSAGE,
                OpenError.BAD_PEER_AS,
                reason=f"peer AS {remote_as}, expected {cfg.peer_as}",
            )
        if remote.hold_time != 0 and remote.hold_time < max(cfg.min_hold_time, MIN_HOLD_TIME):
            return MessageError(
                ErrorCode.OPEN_MESSAGE,
                OpenError.UNACCEPTABLE_HOLD_TIME,
                reason=f"hold time {remote.hold_time}",
            )
        if remote.router_id == "0.0.0.0" or (cfg.ibgp and remote.router_id == cfg.router_id):
            return MessageError(
                ErrorCode.OPEN_MESSAGE,
                OpenError.BAD_BGP_IDENTIFIER,
                reason=f"BGP identifier {remote.router_id}",
            )
        if remote.other_parameters:
            return MessageError(
                ErrorCode.OPEN_MESSAGE,
                OpenError.UNSUPPORTED_OPTIONAL_PARAMETER,
                reason=f"optional parameter type {remote.other_parameters[0].type}",
            )
        missing = [code for code in sorted(cfg.required_capabilities) if not _has_capability(remote, code)]
        if missing:
            data = b"".join(self._required_capability_bytes(code) for code in missing)
            return MessageError(
                ErrorCode.OPEN_MESSAGE,
                OpenError.UNSUPPORTED_CAPABILITY,
                data,
                reason=f"peer lacks required capabilities {missing}",
            )
        return None

    def _required_capability_bytes(self, code: int) -> bytes:
        """RFC 5492 section 3: the data names the capabilities we wanted, as we advertise them."""
        kind = _CAPABILITY_KIND.get(code)
        ours = self.local_open.capability(kind) if kind is not None else None
        if ours is not None:
            return encode_capability(ours)  # type: ignore[arg-type]
        return bytes((code, 0))

    def _on_error(self, event: Event, error: MessageError, now: float) -> None:
        self._cause = error.notification()
        self._reason = f"{describe(self._cause)}" + (f" ({error.reason})" if error.reason else "")
        self.last_error = self._reason
        log.warning("%s: %s", self._label(), self._reason)
        self._fire(event, now)

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
        if isinstance(event, _INPUT_EVENTS):
            self._queued_input += 1

    def _label(self) -> str:
        return self.config.name or f"AS{self.config.peer_as}"


_ACTION_METHODS: dict[Action, Callable[[Session, Event, State], None]] = {
    Action.START_CONNECT_RETRY: Session._act_start_connect_retry,
    Action.STOP_CONNECT_RETRY: Session._act_stop_connect_retry,
    Action.ZERO_RETRY_COUNTER: Session._act_zero_retry_counter,
    Action.INCR_RETRY_COUNTER: Session._act_incr_retry_counter,
    Action.INITIATE_TCP: Session._act_initiate_tcp,
    Action.ACCEPT_TCP: Session._act_accept_or_reject_tcp,
    Action.REJECT_TCP: Session._act_accept_or_reject_tcp,
    Action.DROP_TCP: Session._act_drop_tcp,
    Action.RELEASE: Session._act_release,
    Action.SEND_OPEN: Session._act_send_open,
    Action.SEND_KEEPALIVE: Session._act_send_keepalive,
    Action.SEND_NOTIFICATION: Session._act_send_notification,
    Action.SEND_FSM_ERROR: Session._act_send_fsm_error,
    Action.SET_HOLD_LARGE: Session._act_set_hold_large,
    Action.COMPLETE_OPEN: Session._act_complete_open,
    Action.START_KEEPALIVE: Session._act_start_keepalive,
    Action.RESTART_HOLD: Session._act_restart_hold,
    Action.ESTABLISH: Session._act_establish,
    Action.PROCESS_UPDATE: Session._act_process_update,
    Action.PROCESS_REFRESH: Session._act_process_refresh,
}
assert set(_ACTION_METHODS) == set(Action), "every action of the table has its method"

_PLAN: dict[tuple[State, Event], tuple[tuple[Callable[[Session, Event, State], None], ...], State]] = {
    key: (tuple(_ACTION_METHODS[a] for a in t.actions), t.next_state) for key, t in TABLE.items()
}
