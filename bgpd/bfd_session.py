"""One BFD session (RFC 5880 asynchronous mode, RFC 5881 single hop) as a sans-I/O state machine.

Packets and time in; datagrams to send, state-change events and one next deadline out, like
`bgpd.session`. The session table (`bgpd.bfd_table`) picks the session for a received packet (by
discriminator or addresses) and checks the TTL; the speaker drives the timers through its schedule.

State changes on a received packet are a table, `(local state, remote state) -> (new state, diag)`
(RFC 5880 6.8.6), tested pair by pair. What the rest of section 6.8 says, as done here:

- timers (6.8.2-6.8.4): while not Up the desired transmit interval is at least one second; Up, the
  configured one. A change of either interval while Up starts a Poll Sequence (P bit until a packet
  with F comes back); a longer transmit interval or a shorter receive interval takes effect only when
  the poll ends. The transmit interval is max(our desired, the peer's required) less 0-25 % jitter
  (10-25 % with a multiplier of 1); the detection time is the peer's multiplier times max(our
  required, the peer's desired), measured from the last accepted packet. When it passes, an Init or
  Up session goes Down (diag 1) and the peer's discriminator is forgotten.
- a packet with P is answered at once with F; a state change sends a packet at once (the next periodic
  one follows the usual interval), so a session comes Up in one round trip.
- the peer signalling AdminDown takes the session Down with diag 3, but RFC 5882 3.2 says that is no
  failure: the event says so (`StateChange.failure`), and the speaker leaves BGP alone then.
- authentication (6.7): simple password, keyed and meticulous keyed MD5 / SHA1, with the sequence
  number windows of 6.7.3 and 6.7.4; the sequence is forgotten after twice the detection time without
  a valid packet.
- no Demand mode and no Echo function: our Required Min Echo RX Interval is 0, so peers send none.
  The C bit is 0: BFD runs inside bgpd and shares its fate.
"""

from __future__ import annotations

import random
from collections import deque

from proto.bfd import (
    DIGEST,
    METICULOUS,
    AuthType,
    BfdState,
    ControlPacket,
    Diag,
    digest_ok,
    encode,
)
from proto.bfd import Auth as WireAuth
from proto.record import record
from proto.tortie_annotations import BfdSettings

SLOW_TX_US = 1_000_000  # RFC 5880 6.8.3: at least one second while not Up
_U32 = 1 << 32
# Periodic packets go out on a grid of an eighth of the interval, 50 ms at most (and never earlier
# than the 75 % RFC 5880 6.8.7 allows): a hundred sessions at 300 ms then wake the process about
# thirty times a second, not once per packet, and each wake-up sends several (bench/bfd.py: the
# wake-ups, not the packets, were most of the cost).
TX_GRID_MAX = 0.050

DOWN, INIT, UP, ADMIN_DOWN = BfdState.DOWN, BfdState.INIT, BfdState.UP, BfdState.ADMIN_DOWN

# RFC 5880 6.8.6: (our state, the state the peer sends) -> (our new state, diag to set or None).
# Our AdminDown discards every packet before this table is consulted.
TRANSITIONS: dict[tuple[BfdState, BfdState], tuple[BfdState, Diag | None]] = {
    (DOWN, ADMIN_DOWN): (DOWN, None),
    (DOWN, DOWN): (INIT, None),
    (DOWN, INIT): (UP, None),
    (DOWN, UP): (DOWN, None),
    (INIT, ADMIN_DOWN): (DOWN, Diag.NEIGHBOR_DOWN),
    (INIT, DOWN): (INIT, None),
    (INIT, INIT): (UP, None),
    (INIT, UP): (UP, None),
    (UP, ADMIN_DOWN): (DOWN, Diag.NEIGHBOR_DOWN),
    (UP, DOWN): (DOWN, Diag.NEIGHBOR_DOWN),
    (UP, INIT): (UP, None),
    (UP, UP): (UP, None),
}


@record(frozen=True, slots=True)
class StateChange:
    old: BfdState
    new: BfdState
    diag: Diag
    # a path failure the BGP session must act on: Up -> Down on timeout or on the peer saying Down;
    # not the peer's AdminDown (RFC 5882 3.2) nor our own
    failure: bool


_STATES = tuple(BfdState)
_DIAGS = {d.value: d for d in Diag}


def _diag(value: int) -> Diag:
    return _DIAGS.get(value, Diag.NONE)  # 9-31 are reserved: shown as none


def _in_window(seq: int, base: int, low: int, high: int) -> bool:
    """seq in [base + low, base + high], arithmetic modulo 2^32."""
    return low <= (seq - base) % _U32 <= high


class BfdSession:
    def __init__(self, local_discr: int, settings: BfdSettings, local: str, remote: str, now: float,
                 rng: random.Random | None = None, name: str = "") -> None:
        self.local_discr = local_discr
        self.local = local  # our address (the packets' source)
        self.remote = remote
        self.multihop = settings.multihop  # RFC 5883 (UDP 4784, any TTL) rather than RFC 5881
        self.name = name or remote
        self.rng = rng or random.Random()
        self.settings = settings
        self.state = DOWN
        self.remote_state = DOWN
        self.local_diag = Diag.NONE
        self.remote_diag = Diag.NONE
        self.remote_discr = 0
        self.remote_min_rx = 1  # us; RFC 5880 6.8.1 initial value
        self.remote_desired_tx = 0
        self.remote_mult = 0  # 0: nothing received yet
        self.desired_tx = SLOW_TX_US  # what we advertise
        self.required_rx = settings.min_rx_ms * 1000
        self._tx_in_use = self.desired_tx  # differs from desired_tx while a poll holds back a change
        self._rx_in_use = self.required_rx
        self.polling = False
        self._poll_again = False
        self._send_final = False
        self.last_rx: float | None = None
        self.up_since: float | None = None
        self.changed_at = now
        # authentication
        self.xmit_seq = self.rng.getrandbits(32)
        self.rcv_seq = 0
        self.seq_known = False
        # counters
        self.sent = 0
        self.received = 0
        self.transitions: dict[BfdState, int] = dict.fromkeys(BfdState, 0)
        self.dropped: dict[str, int] = {}
        self.closed = False  # deconfigured: the table forgets it once its last packets are out
        self._events: deque[StateChange] = deque()
        self._out: list[bytes] = []
        self._cache: tuple[tuple[object, ...], bytes] | None = None
        self._next_tx: float | None = now  # the first packet goes out at once
        self._detect_at: float | None = None

    def __repr__(self) -> str:
        return f"BfdSession({self.name}, {self.state.name})"

    # ------------------------------------------------------------ derived values

    @property
    def detection_time(self) -> float | None:
        """Seconds (RFC 5880 6.8.4, asynchronous mode); None before the first packet."""
        if not self.remote_mult:
            return None
        return self.remote_mult * max(self._rx_in_use, self.remote_desired_tx) / 1e6

    @property
    def tx_interval(self) -> float:
        """Seconds between our periodic packets, before jitter (RFC 5880 6.8.7)."""
        return max(self._tx_in_use, self.remote_min_rx) / 1e6

    def _jittered(self) -> float:
        # 0-25 % less; with a multiplier of 1 at least 10 % less, so one late packet does not fail it
        high = 0.9 if self.settings.multiplier == 1 else 1.0
        return self.tx_interval * self.rng.uniform(0.75, high)

    # ------------------------------------------------------------ outputs

    def next_event(self) -> StateChange | None:
        return self._events.popleft() if self._events else None

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        tx, detect = self._next_tx, self._detect_at
        if tx is None:
            return detect
        return tx if detect is None or tx < detect else detect

    # ------------------------------------------------------------ inputs

    def handle_timer(self, now: float) -> None:
        if self._detect_at is not None and now >= self._detect_at:
            self._detect_at = None
            self.remote_discr = 0  # 6.8.1: forgotten once a detection time passes without packets
            if self.state in (INIT, UP):
                self._set_state(DOWN, Diag.DETECTION_TIME_EXPIRED, now, failure=self.state == UP)
        if self._next_tx is not None and now >= self._next_tx:
            self._transmit(now)
            self._schedule_tx(now)

    def receive(self, p: ControlPacket, raw: bytes, now: float) -> str | None:
        """A packet the table chose this session for. None when it was accepted, else why it was
        dropped (a metric label)."""
        if p.auth is not None or self.settings.auth_type is not None:
            why = self._authenticate(p, raw, now)
            if why is not None:
                self.dropped[why] = self.dropped.get(why, 0) + 1
                return why
        self.received += 1
        self.last_rx = now
        self.remote_discr = p.my_discriminator
        self.remote_state = _STATES[p.state]
        self.remote_diag = _diag(p.diag)
        self.remote_min_rx = p.required_min_rx
        self.remote_desired_tx = p.desired_min_tx
        self.remote_mult = p.detect_mult
        if self.polling and p.final:
            self._end_poll()
        if self.state == ADMIN_DOWN:
            return None
        new, diag = TRANSITIONS[self.state, self.remote_state]
        if new != self.state:
            failure = self.state == UP and self.remote_state == DOWN
            self._set_state(new, diag if diag is not None else self.local_diag, now, failure=failure)
        if p.poll:
            self._send_final = True
            self._transmit(now)
        self._detect_at = now + (self.detection_time or 0.0)
        if self._next_tx is None and self.remote_min_rx and self.state != ADMIN_DOWN:
            self._schedule_tx(now)
        return None

    def admin_down(self, now: float) -> None:
        """Take the session administratively down (deconfigured, or bgpd stopping gracefully): the
        peer is told AdminDown and must not treat it as a failure (RFC 5882 3.2)."""
        if self.state != ADMIN_DOWN:
            self._set_state(ADMIN_DOWN, Diag.ADMIN_DOWN, now, failure=False)

    def admin_up(self, now: float) -> None:
        if self.state == ADMIN_DOWN:
            self._set_state(DOWN, Diag.NONE, now, failure=False)

    def reconfigure(self, settings: BfdSettings, now: float) -> None:
        """New intervals, multiplier or authentication without restarting the session; interval
        changes while Up go through a Poll Sequence."""
        old = self.settings
        self.settings = settings
        if (settings.auth_type, settings.auth_key_id, settings.auth_key) != (
                old.auth_type, old.auth_key_id, old.auth_key):
            self.seq_known = False
        self._set_intervals(now)
        self._transmit(now)

    # ------------------------------------------------------------ state and timers

    def _set_state(self, new: BfdState, diag: Diag, now: float, *, failure: bool) -> None:
        old = self.state
        self.state = new
        self.local_diag = diag
        self.changed_at = now
        self.transitions[new] += 1
        self.up_since = now if new == UP else None
        self._events.append(StateChange(old, new, diag, failure))
        self._set_intervals(now)
        self._transmit(now)  # a state change goes out at once
        self._schedule_tx(now)

    def _set_intervals(self, now: float) -> None:
        up = self.state == UP
        desired = self.settings.min_tx_ms * 1000 if up else max(SLOW_TX_US, self.settings.min_tx_ms * 1000)
        required = self.settings.min_rx_ms * 1000
        if (desired, required) == (self.desired_tx, self.required_rx):
            return
        # 6.8.3: while Up, a longer transmit interval and a shorter receive interval wait for the poll;
        # the other directions, and any change while not Up, apply at once
        self.desired_tx, self.required_rx = desired, required
        if not up or desired < self._tx_in_use:
            self._tx_in_use = desired
        if not up or required > self._rx_in_use:
            self._rx_in_use = required
        if up:
            if self.polling:
                self._poll_again = True
            else:
                self.polling = True
        else:
            self.polling = self._poll_again = False

    def _end_poll(self) -> None:
        self._tx_in_use = self.desired_tx
        self._rx_in_use = self.required_rx
        self.polling = False
        if self._poll_again:
            self._poll_again = False
            self.polling = True

    def _schedule_tx(self, now: float) -> None:
        # 6.8.7: nothing periodic when the peer asked for none (Required Min RX Interval 0)
        if self.remote_min_rx == 0:
            self._next_tx = None
            return
        interval = self.tx_interval
        step = min(TX_GRID_MAX, interval / 8)
        at = now + self._jittered()
        grid = (at // step) * step
        if grid - now < 0.75 * interval:  # rounding down must not go below the 75 % floor
            grid += step
        self._next_tx = grid

    # ------------------------------------------------------------ packets

    def _transmit(self, now: float) -> None:
        final = self._send_final
        self._send_final = False
        s = self.settings
        auth = None
        key = b""
        if s.auth_type is not None:
            if s.auth_type == AuthType.SIMPLE:
                auth = WireAuth(s.auth_type, s.auth_key_id, password=s.auth_key)
            else:
                # the sequence advances with every packet (allowed for the keyed types, required for
                # the meticulous ones): a receiver's window is 3 x its multiplier packets
                self.xmit_seq = (self.xmit_seq + 1) % _U32
                auth = WireAuth(s.auth_type, s.auth_key_id, sequence=self.xmit_seq)
                key = s.auth_key
        fields = (self.state, self.local_diag, final, self.polling and not final, self.remote_discr,
                  self.desired_tx, self.required_rx, s.multiplier, auth)
        cached = self._cache
        if cached is not None and cached[0] == fields:
            data = cached[1]
        else:
            p = ControlPacket(
                state=self.state, detect_mult=s.multiplier, my_discriminator=self.local_discr,
                your_discriminator=self.remote_discr, desired_min_tx=self.desired_tx,
                required_min_rx=self.required_rx, required_min_echo_rx=0, diag=self.local_diag,
                poll=self.polling and not final, final=final, auth=auth,
            )
            data = encode(p, key)
            self._cache = (fields, data)
        self._out.append(data)
        self.sent += 1

    def _authenticate(self, p: ControlPacket, raw: bytes, now: float) -> str | None:
        s = self.settings
        a = p.auth
        if s.auth_type is None:
            return "auth-unexpected" if a is not None else None
        if a is None:
            return "auth-missing"
        if a.auth_type != s.auth_type:
            return "auth-type"
        if a.key_id != s.auth_key_id:
            return "auth-key-id"
        if a.auth_type == AuthType.SIMPLE:
            return None if a.password == s.auth_key else "auth-failed"
        detect = self.detection_time
        if self.seq_known and self.last_rx is not None and detect is not None and now - self.last_rx > 2 * detect:
            self.seq_known = False  # 6.8.1: twice the detection time without a valid packet
        if self.seq_known:
            window = 3 * p.detect_mult
            low = 1 if a.auth_type in METICULOUS else 0
            if not _in_window(a.sequence, self.rcv_seq, low, window):
                return "auth-sequence"
        assert a.auth_type in DIGEST
        if not digest_ok(raw, s.auth_key):
            return "auth-failed"
        self.rcv_seq = a.sequence
        self.seq_known = True
        return None
