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

Output has two queues (`bgpd.send_queue`): control messages (OPEN, KEEPALIVE, NOTIFICATION,
ROUTE-REFRESH) and UPDATE units. `data_to_send` drains control first, then UPDATE units up to its
`max_bytes`: whole units while they fit, and a unit larger than `max_bytes` by itself (a joining
peer's whole table) in pieces of that size, so the transport never buffers more than that of it. A
control message queued while a unit is cut waits only for the end of the UPDATE message in flight, so
a KEEPALIVE due while a large table is still queued goes out ahead of the rest of it, never inside an
UPDATE. An UPDATE unit may be a memoryview: update groups queue one encoded stream, or slices of it, to
many sessions without copying it.

`Session` is the entry points and the receive path; the state they act on and the table's actions
are its base, `bgpd.session_machine.SessionMachine`, and the OPEN checks that need the configuration
are `bgpd.open_check`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from bgpd.fsm import Event, State
from bgpd.graceful import hard_reset_for, notification_negotiated
from bgpd.open_check import check_open
from bgpd.session_config import SessionConfig
from bgpd.session_events import INPUT_EVENTS, NotificationReceived, SessionEvent
from bgpd.session_machine import SessionMachine
from bgpd.timers import RandomSource, earliest, jittered
from proto.bgp import (
    CeaseSubcode,
    ErrorCode,
    GracefulRestartCap,
    Keepalive,
    MessageError,
    MsgType,
    Notification,
    Open,
    OpenError,
    RouteRefresh,
    Update,
    decode_message_body,
    describe,
    encode_message,
    notification_with_shutdown,
)

log = logging.getLogger("bgpd.session")

HOLD_GRACE = 10.0  # BIRD: when input is still queued at hold expiry, look again this much later


class LocalProtocolError(RuntimeError):
    """The caller used the session wrongly (e.g. queued an UPDATE before Established)."""


_UPDATE = int(MsgType.UPDATE)
_ESTABLISHED = State.ESTABLISHED


# Called when an OPEN arrives on a session that has a sibling connection: True when this session is
# the one to close (RFC 4271 6.8). The owner of both sessions decides, and closes the other one itself.
Arbiter = Callable[["Session", float], bool]


class Session(SessionMachine):
    def __init__(self, config: SessionConfig, rng: RandomSource | None = None, arbiter: Arbiter | None = None) -> None:
        super().__init__(config, rng)
        self.arbiter = arbiter

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

    def connection_made(self, now: float, outbound: bool = True, made_at: float | None = None) -> bool:
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
        # when the peer's connection waited in our accept queue, it was made before we saw it
        self.connected_at = now if made_at is None else min(made_at, now)
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

    def take_connection(self, now: float, outbound: bool, made_at: float | None = None) -> None:
        """Carry a connection this session did not ask for: the second connection to a peer during
        collision detection. The session starts passive, without automatic restart (whichever
        connection loses the collision is discarded by the owner), and sends its OPEN."""
        self._passive = True
        self._fire(Event.ManualStart_with_PassiveTcpEstablishment, now)
        self._connecting = outbound  # an attempt of the peer's other session that completed late, or theirs
        self.connection_made(now, outbound, made_at)

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
        if isinstance(ev, INPUT_EVENTS):
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
        error = check_open(self.config, self.local_open, remote)
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

    def _on_error(self, event: Event, error: MessageError, now: float) -> None:
        self._cause = error.notification()
        self._reason = f"{describe(self._cause)}" + (f" ({error.reason})" if error.reason else "")
        self.last_error = self._reason
        log.warning("%s: %s", self._label(), self._reason)
        self._fire(event, now)
