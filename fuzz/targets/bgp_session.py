"""The session core (`bgpd.session.Session`) driven only through its public entry points: bytes
from the peer, timer ticks, connection events, operator actions, in any order.

Input: a config octet, a peer octet, then operations.
  config bit 0: 4-octet AS; 1: extended messages; 2/3: ADD-PATH receive IPv4/IPv6; 4: passive;
         5: graceful restart; 6: eBGP (7: with a 4-octet peer AS)
  peer   bit 0: send a valid OPEN + KEEPALIVE first (reaching Established); what that OPEN says:
         1: 4-octet AS; 2: extended messages; 3/4: ADD-PATH send IPv4/IPv6; 5: graceful restart;
         6: hold time 0; 7: hold time 3
  operations, by the low two bits of an octet:
    0: bytes from the peer: a length (one octet, or two when bit 2 is set) and that many octets
    1: time passes: the next octet is seconds (bit 2: tenths), then handle_timer
    2: time jumps to the session's next deadline, then handle_timer (bit 2: input_pending)
    3: a connection or operator event (bits 2-4: lost, start, made, stop, automatic stop,
       ROUTE-REFRESH, End-of-RIB, connect failed)
Oracle: no entry point raises (LocalProtocolError only where the caller broke the documented rule,
which this driver does not); every octet the session sends decodes as BGP (with the receiver's
mirror of what was negotiated) and every NOTIFICATION it sends or reports has a code and subcode
that exist; after handle_timer(now) no deadline is left at or before `now` (an adapter would spin).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from bgpd.fsm import State
from bgpd.session import Session
from bgpd.session_config import GracefulRestartConfig, SessionConfig
from bgpd.session_events import NotificationSent, SessionDown
from fuzz.oracle import Finding, check_notification
from proto.bgp import (
    AS_TRANS,
    IPV4_UNICAST,
    IPV6_UNICAST,
    KEEPALIVE_BYTES,
    AddPathCap,
    AddPathMode,
    ExtendedMessageCap,
    FourOctetAsCap,
    Framer,
    GracefulRestartCap,
    Message,
    MessageError,
    MultiprotocolCap,
    Negotiated,
    Notification,
    Open,
    RouteRefreshCap,
    Update,
    decode_message_body,
    encode_message,
)

NAME = "bgp-session"
MAX_LEN = 8192
# the code this target exercises, for the line coverage the campaign reports
COVERS = ("bgpd/session.py", "bgpd/session_machine.py", "bgpd/open_check.py", "bgpd/send_queue.py",
          "bgpd/session_config.py", "bgpd/session_events.py", "bgpd/fsm.py", "bgpd/timers.py", "proto/bgp/")
LOCAL_AS = 64512
LOCAL_ID = "10.0.0.1"
PEER_ID = "10.0.0.2"


class _Rng:
    """Timers jitter with a fixed fraction: the same input always takes the same path."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def make_config(octet: int) -> SessionConfig:
    families = (IPV4_UNICAST, IPV6_UNICAST)
    add_path = frozenset(f for bit, f in ((4, IPV4_UNICAST), (8, IPV6_UNICAST)) if octet & bit)
    peer_as = (4200000001 if octet & 128 else 65001) if octet & 64 else LOCAL_AS
    return SessionConfig(local_as=LOCAL_AS, peer_as=peer_as, router_id=LOCAL_ID, hold_time=90,
                         connect_retry_time=30.0, passive=bool(octet & 16), families=families,
                         four_octet_as=bool(octet & 1) or peer_as > 0xFFFF, extended_message=bool(octet & 2),
                         graceful_restart=GracefulRestartConfig() if octet & 32 else None,
                         add_path_receive=add_path, name="fuzz")


@cache
def peer_open(config: SessionConfig, octet: int) -> bytes:
    caps: list[object] = [MultiprotocolCap(*IPV4_UNICAST), MultiprotocolCap(*IPV6_UNICAST), RouteRefreshCap()]
    if octet & 2:
        caps.append(FourOctetAsCap(config.peer_as))
    if octet & 4:
        caps.append(ExtendedMessageCap())
    modes = tuple((*f, AddPathMode.SEND) for bit, f in ((8, IPV4_UNICAST), (16, IPV6_UNICAST)) if octet & bit)
    if modes:
        caps.append(AddPathCap(modes))
    if octet & 32:
        caps.append(GracefulRestartCap(restart_time=120, families=((1, 1, True), (2, 1, True))))
    hold = 0 if octet & 64 else 3 if octet & 128 else 90
    asn = config.peer_as if config.peer_as <= 0xFFFF else AS_TRANS
    op = Open(asn=asn, hold_time=hold, router_id=PEER_ID, capabilities=tuple(caps))  # type: ignore[arg-type]
    return encode_message(op, Negotiated())


_SENT: dict[tuple[int, bytes, Negotiated], Message] = {}


def _decode_sent(msg_type: int, body: bytes, mirror: Negotiated) -> Message:
    """Our own OPENs and NOTIFICATIONs repeat across inputs: decode each distinct one once."""
    key = (msg_type, body, mirror)
    msg = _SENT.get(key)
    if msg is None:
        msg = decode_message_body(msg_type, body, mirror)
        if len(_SENT) < 4096:
            _SENT[key] = msg
    return msg


class Driver:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 2
        self.now = 0.0
        self.config = make_config(data[0])
        self.session = Session(self.config, rng=_Rng())
        self.out = Framer(65535)  # what we send, split as the peer would (size checked per message)

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def octet(self) -> int:
        b = self.take(1)
        return b[0] if b else 0

    def settle(self) -> None:
        s = self.session
        wire = s.data_to_send(now=self.now)
        negotiated = s.negotiated
        mirror = Negotiated(four_octet_as=negotiated.four_octet_as, extended_message=negotiated.extended_message,
                            add_path_receive=negotiated.add_path_send,
                            extended_next_hop=negotiated.extended_next_hop)
        try:
            messages = self.out.feed(wire)
        except MessageError as error:
            raise Finding(f"the session sent a bad header: {error!r}: {wire.hex()}") from None
        for msg_type, body in messages:
            if 19 + len(body) > mirror.max_message_len and msg_type != 1:
                raise Finding(f"sent a {19 + len(body)}-octet message of type {msg_type} over the limit")
            try:
                msg: Message = _decode_sent(msg_type, body, mirror)
            except MessageError as error:
                raise Finding(f"the session sent a message the peer cannot decode: {error!r}: "
                              f"type {msg_type} body {body.hex()}") from None
            if isinstance(msg, Notification):
                check_notification(msg.code, msg.subcode, msg.data, "sent")
            elif isinstance(msg, Update) and s.state != State.ESTABLISHED and s.state != State.IDLE:
                raise Finding(f"UPDATE sent in {s.state.name}")
        while (ev := s.next_event()) is not None:
            if isinstance(ev, NotificationSent):
                n = ev.notification
                check_notification(n.code, n.subcode, n.data, "NotificationSent")
            elif isinstance(ev, SessionDown) and ev.notification_sent is not None:
                n = ev.notification_sent
                check_notification(n.code, n.subcode, n.data, "SessionDown.notification_sent")

    def timer(self, input_pending: bool = False) -> None:
        self.session.handle_timer(self.now, input_pending)
        self.settle()
        deadline = self.session.next_deadline()
        if deadline is not None and deadline <= self.now:
            raise Finding(f"after handle_timer({self.now}) a deadline is still due: {deadline} "
                          f"({self.session!r})")

    def event(self, which: int) -> None:
        s = self.session
        if which == 0:
            s.connection_lost(self.now, "fuzz: connection lost")
        elif which == 1:
            s.start(self.now)
        elif which == 2:
            s.connection_made(self.now, outbound=not self.config.passive)
        elif which == 3:
            s.stop(self.now, "fuzz stop")
        elif which == 4:
            s.automatic_stop(self.now, 1, reason="fuzz: too many prefixes", hold_down=30.0)
        elif which == 5:
            if s.state == State.ESTABLISHED:
                s.send_route_refresh(*IPV4_UNICAST)
        elif which == 6:
            if s.state == State.ESTABLISHED:
                s.send_update(Update())
        else:
            s.connection_failed(self.now, "fuzz: refused")

    def run(self) -> None:
        s = self.session
        s.start(self.now)
        s.connection_made(self.now, outbound=not self.config.passive)
        self.settle()
        if self.data[1] & 1:
            s.receive_data(peer_open(self.config, self.data[1]) + KEEPALIVE_BYTES, self.now)
            self.settle()
        while self.pos < len(self.data):
            op = self.octet()
            kind = op & 3
            if kind == 0:
                n = int.from_bytes(self.take(2), "big") if op & 4 else self.octet()
                s.receive_data(self.take(n), self.now)
                self.settle()
            elif kind == 1:
                step = self.octet()
                self.now += step / 10 if op & 4 else float(step)
                self.timer()
            elif kind == 2:
                deadline = s.next_deadline()
                if deadline is not None:
                    self.now = max(self.now, deadline)
                self.timer(bool(op & 4))
            else:
                self.event((op >> 2) & 7)
                self.settle()


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    Driver(data).run()


def _config_octets(n: Negotiated) -> tuple[int, int]:
    cfg = int(n.four_octet_as) | (2 if n.extended_message else 0)
    peer = 1 | (2 if n.four_octet_as else 0) | (4 if n.extended_message else 0)
    if IPV4_UNICAST in n.add_path_receive:
        cfg |= 4
        peer |= 8
    if IPV6_UNICAST in n.add_path_receive:
        cfg |= 8
        peer |= 16
    return cfg, peer


def seeds() -> Iterator[bytes]:
    """One seed per captured direction: its messages after the OPEN, a tick of a second between
    them, then the hold timer running out."""
    from fuzz.captures import captured_messages

    by_direction: dict[tuple[str, tuple[str, int, str, int]], list[bytes]] = {}
    negotiated: dict[tuple[str, tuple[str, int, str, int]], Negotiated] = {}
    for m in captured_messages():
        key = (m.capture, m.direction)
        if m.data[18] == 1:
            continue
        by_direction.setdefault(key, []).append(m.data)
        negotiated[key] = m.receive
    for key, messages in by_direction.items():
        cfg, peer = _config_octets(negotiated[key])
        ops = bytearray()
        for data in messages:
            ops += bytes((4,)) + len(data).to_bytes(2, "big") + data + bytes((1, 1))
        yield bytes((cfg, peer)) + bytes(ops) + bytes((2, 2, 2))
        yield bytes((cfg | 64, peer | 32)) + bytes(ops[: 200]) + bytes((3 | (3 << 2), 2, 1, 200))
