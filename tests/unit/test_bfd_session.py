"""The BFD session (bgpd/bfd_session.py) and its table (bgpd/bfd_table.py), sans-I/O: two sessions
joined in memory, time stepped by hand. Every pair of the transition table; coming Up in one round
trip; the Poll Sequence when the intervals change; detection time and jitter bounds; failures versus
the peer's AdminDown; authentication windows; and the table's refusals, which never touch a session."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from bgpd.bfd_session import SLOW_TX_US, TRANSITIONS, BfdSession, StateChange
from bgpd.bfd_table import BfdTable
from proto.bfd import Auth, AuthType, BfdState, ControlPacket, Diag, decode, encode
from proto.tortie_annotations import BfdSettings

A, B = "10.0.0.1", "10.0.0.2"
DOWN, INIT, UP, ADMIN_DOWN = BfdState.DOWN, BfdState.INIT, BfdState.UP, BfdState.ADMIN_DOWN


@dataclass
class Pair:
    """Two tables with one session each, and a wire between them that can be cut or tampered with."""

    settings_a: BfdSettings = field(default_factory=BfdSettings)
    settings_b: BfdSettings = field(default_factory=BfdSettings)
    now: float = 0.0
    cut: bool = False
    tamper: Callable[[str, bytes], bytes | None] | None = None
    sent: dict[str, list[ControlPacket]] = field(default_factory=lambda: {A: [], B: []})
    times: dict[str, list[float]] = field(default_factory=lambda: {A: [], B: []})
    events: dict[str, list[StateChange]] = field(default_factory=lambda: {A: [], B: []})

    def __post_init__(self) -> None:
        self.ta, self.tb = BfdTable(random.Random(1)), BfdTable(random.Random(2))
        self.a = self.ta.add(B, self.settings_a, A, B, self.now)
        self.b = self.tb.add(A, self.settings_b, B, A, self.now)

    def move(self) -> None:
        for _ in range(50):
            quiet = True
            for src, s, dst_table in ((A, self.a, self.tb), (B, self.b, self.ta)):
                while (ev := s.next_event()) is not None:
                    self.events[src].append(ev)
                for data in s.data_to_send():
                    quiet = False
                    self.sent[src].append(decode(data))
                    self.times[src].append(self.now)
                    if self.cut:
                        continue
                    if self.tamper is not None:
                        got = self.tamper(src, data)
                        if got is None:
                            continue
                        data = got
                    dst_table.receive(data, src, B if src == A else A, 255, self.now)
            if quiet:
                return

    def run(self, until: float) -> None:
        self.move()
        while True:
            d = [x for x in (self.a.next_deadline(), self.b.next_deadline()) if x is not None]
            if not d or min(d) > until:
                self.now = until
                return
            self.now = max(self.now, min(d))
            self.a.handle_timer(self.now)
            self.b.handle_timer(self.now)
            self.move()


def test_the_transition_table_is_rfc_5880_6_8_6_for_every_pair() -> None:
    assert set(TRANSITIONS) == {(a, b) for a in (DOWN, INIT, UP) for b in BfdState}
    # a remote AdminDown takes Init and Up down with diag 3; Down stays Down
    for local in (INIT, UP):
        assert TRANSITIONS[local, ADMIN_DOWN] == (DOWN, Diag.NEIGHBOR_DOWN)
    assert TRANSITIONS[DOWN, ADMIN_DOWN] == (DOWN, None)
    assert TRANSITIONS[DOWN, DOWN] == (INIT, None)
    assert TRANSITIONS[DOWN, INIT] == (UP, None)
    assert TRANSITIONS[DOWN, UP] == (DOWN, None)
    assert TRANSITIONS[INIT, DOWN] == (INIT, None)
    assert TRANSITIONS[INIT, INIT] == (UP, None) and TRANSITIONS[INIT, UP] == (UP, None)
    assert TRANSITIONS[UP, DOWN] == (DOWN, Diag.NEIGHBOR_DOWN)
    assert TRANSITIONS[UP, INIT] == (UP, None) and TRANSITIONS[UP, UP] == (UP, None)


@pytest.mark.parametrize(("local", "remote"), sorted(TRANSITIONS))
def test_each_pair_of_the_table_as_a_session_sees_it(local: BfdState, remote: BfdState) -> None:
    s = BfdSession(1, BfdSettings(), A, B, 0.0, random.Random(0))
    s.state = local
    p = ControlPacket(state=remote, detect_mult=3, my_discriminator=9, your_discriminator=1 if remote != DOWN else 0,
                      desired_min_tx=300_000, required_min_rx=300_000)
    assert s.receive(p, encode(p), 1.0) is None
    new, diag = TRANSITIONS[local, remote]
    assert s.state == new
    events = [e for e in iter(s.next_event, None)]
    if new != local:
        assert events == [StateChange(local, new, diag if diag is not None else Diag.NONE,
                                      local == UP and remote == DOWN)]
    else:
        assert events == []


def test_both_come_up_in_one_round_trip_then_poll_down_to_the_configured_rate() -> None:
    p = Pair()
    p.run(0.0)  # only what happens at time 0: the first packets and their answers
    assert p.a.state == UP and p.b.state == UP
    # going Up lowered the desired transmit interval from 1 s to 300 ms: a Poll Sequence, answered with F
    assert any(x.poll for x in p.sent[A]) and any(x.final for x in p.sent[B])
    assert not any(x.poll and x.final for x in p.sent[A] + p.sent[B])
    assert not p.a.polling and not p.b.polling
    assert p.a.tx_interval == pytest.approx(0.3) and p.a.detection_time == pytest.approx(0.9)
    assert [(e.old, e.new) for e in p.events[A]] in ([(DOWN, INIT), (INIT, UP)], [(DOWN, UP)])


def test_while_not_up_packets_go_out_at_most_once_a_second() -> None:
    p = Pair()
    p.cut = True
    p.run(10.0)
    times: list[float] = []
    s = BfdSession(1, BfdSettings(), A, B, 0.0, random.Random(3))
    now = 0.0
    for _ in range(20):
        s.handle_timer(now)
        if s.data_to_send():
            times.append(now)
        now = s.next_deadline() or now
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and all(0.75 <= g <= 1.0 for g in gaps), gaps
    assert all(x.desired_min_tx == SLOW_TX_US for x in p.sent[A])


def test_up_intervals_are_jittered_75_to_100_percent_and_90_with_multiplier_1() -> None:
    for mult, high in ((3, 1.0), (1, 0.9)):
        p = Pair(BfdSettings(multiplier=mult), BfdSettings(multiplier=mult))
        p.run(60.0)
        assert p.a.state == UP
        steady = [t for t in p.times[A] if t > 5.0]  # after coming Up and the poll: periodic only
        gaps = [b - a for a, b in itertools.pairwise(steady)]
        assert len(gaps) > 150
        assert min(gaps) >= 0.3 * 0.75 - 1e-9 and max(gaps) <= 0.3 * high + 1e-9, (mult, min(gaps), max(gaps))
        assert sum(gaps) / len(gaps) == pytest.approx(0.3 * (0.75 + high) / 2, rel=0.05)


def test_the_slower_side_sets_the_rate_and_the_detection_time() -> None:
    p = Pair(BfdSettings(min_rx_ms=300, min_tx_ms=300), BfdSettings(min_rx_ms=500, min_tx_ms=200, multiplier=4))
    p.run(5.0)
    assert p.a.state == UP
    # A sends no faster than B accepts (500 ms); B sends at max(200, 300) = 300 ms
    assert p.a.tx_interval == pytest.approx(0.5) and p.b.tx_interval == pytest.approx(0.3)
    # A's detection time: B's multiplier 4 x max(A's rx 300, B's tx 200); B's: 3 x max(500, 300)
    assert p.a.detection_time == pytest.approx(4 * 0.3) and p.b.detection_time == pytest.approx(3 * 0.5)


def test_silence_takes_it_down_within_the_detection_time_and_it_comes_back_by_itself() -> None:
    p = Pair()
    p.run(5.0)
    assert p.a.state == UP
    p.cut = True
    last_rx = p.a.last_rx
    assert last_rx is not None
    p.run(p.now + 2.0)
    assert p.a.state == DOWN and p.a.local_diag == Diag.DETECTION_TIME_EXPIRED
    down = [e for e in p.events[A] if e.new == DOWN]
    assert down and down[-1].failure
    assert p.a.changed_at - last_rx == pytest.approx(0.9, abs=1e-6)  # 3 x 300 ms after the last packet
    assert p.a.remote_discr == 0
    p.cut = False
    p.run(p.now + 3.0)
    assert p.a.state == UP and p.b.state == UP


def test_the_peer_saying_down_is_a_failure_its_admin_down_is_not() -> None:
    p = Pair()
    p.run(3.0)
    p.b.admin_down(p.now)
    p.run(p.now + 0.01)
    assert p.a.state == DOWN and p.a.local_diag == Diag.NEIGHBOR_DOWN
    assert not p.events[A][-1].failure
    p.b.admin_up(p.now)
    p.run(p.now + 5)
    assert p.a.state == UP
    # B loses A's packets (one-way failure): B times out and says Down; A hears that: a failure for A
    p.tamper = lambda src, data: None if src == A else data
    p.run(p.now + 1.5)
    assert p.b.state in (DOWN, INIT) and p.b.local_diag == Diag.DETECTION_TIME_EXPIRED
    assert p.a.state != UP
    assert [e for e in p.events[A] if e.old == UP][-1].failure


def test_a_poll_is_answered_at_once_with_final_and_without_poll() -> None:
    s = BfdSession(1, BfdSettings(), A, B, 0.0, random.Random(0))
    s.data_to_send()
    p = ControlPacket(state=DOWN, detect_mult=3, my_discriminator=9, your_discriminator=0,
                      desired_min_tx=1_000_000, required_min_rx=300_000, poll=True)
    s.receive(p, encode(p), 0.5)
    sent = [decode(d) for d in s.data_to_send()]
    assert sent[-1].final and not sent[-1].poll


def test_a_longer_tx_interval_waits_for_the_poll_to_end_a_shorter_one_does_not() -> None:
    p = Pair()
    p.run(3.0)
    held: list[ControlPacket] = []

    def hold_finals(src: str, data: bytes) -> bytes | None:
        pkt = decode(data)
        if src == B and pkt.final:
            held.append(pkt)
            return None
        return data

    p.tamper = hold_finals
    p.a.reconfigure(BfdSettings(min_tx_ms=800), p.now)
    p.run(p.now + 3.0)
    assert p.a.polling and p.a.desired_tx == 800_000
    assert p.a.tx_interval == pytest.approx(0.3)  # still the old rate: B has not confirmed
    assert held, "B answered the poll"
    p.tamper = None
    p.run(p.now + 3.0)
    assert not p.a.polling and p.a.tx_interval == pytest.approx(0.8)
    assert p.b.detection_time == pytest.approx(2.4)
    p.a.reconfigure(BfdSettings(min_tx_ms=100), p.now)
    assert p.a.tx_interval == pytest.approx(0.3)  # B requires 300 ms between packets
    assert p.a.state == UP and p.b.state == UP


def test_no_periodic_packets_to_a_peer_that_wants_none() -> None:
    s = BfdSession(1, BfdSettings(), A, B, 0.0, random.Random(0))
    s.handle_timer(0.0)
    p = ControlPacket(state=DOWN, detect_mult=3, my_discriminator=9, your_discriminator=0,
                      desired_min_tx=1_000_000, required_min_rx=0)
    s.receive(p, encode(p), 0.1)
    s.data_to_send()  # our answer to its state (Init), sent at once
    for t in (1.0, 2.0, 3.0):  # nothing periodic before its 3 s detection time
        s.handle_timer(t)
        assert s.data_to_send() == []
    s.handle_timer(3.2)  # the session times out: that state change is told once, then silence again
    assert len(s.data_to_send()) == 1 and s.state == DOWN
    for t in (5.0, 9.0):
        s.handle_timer(t)
        assert s.data_to_send() == []


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize("kind", list(AuthType))
def test_authenticated_sessions_come_up_and_a_wrong_key_never_does(kind: AuthType) -> None:
    key = b"pw" if kind == AuthType.SIMPLE else b"s3cret"
    good = BfdSettings(auth_type=kind, auth_key_id=2, auth_key=key)
    p = Pair(good, good)
    p.run(5.0)
    assert p.a.state == UP and p.b.state == UP
    bad = Pair(good, replace(good, auth_key=b"other"))
    bad.run(5.0)
    assert bad.a.state == DOWN and bad.b.state == DOWN
    assert bad.ta.dropped["auth-failed"] > 0 and bad.tb.dropped["auth-failed"] > 0
    mixed = Pair(good, BfdSettings())
    mixed.run(5.0)
    assert mixed.ta.dropped["auth-missing"] > 0 and mixed.tb.dropped["auth-unexpected"] > 0
    keyid = Pair(good, replace(good, auth_key_id=3))
    keyid.run(3.0)
    assert keyid.ta.dropped["auth-key-id"] > 0 and keyid.a.state == DOWN


@pytest.mark.parametrize("kind", [AuthType.KEYED_SHA1, AuthType.METICULOUS_KEYED_MD5])
def test_replayed_and_far_sequence_numbers_are_refused(kind: AuthType) -> None:
    cfg = BfdSettings(auth_type=kind, auth_key=b"k")
    p = Pair(cfg, cfg)
    captured: list[bytes] = []

    def keep(src: str, data: bytes) -> bytes | None:
        if src == B:
            captured.append(data)
        return data

    p.tamper = keep
    p.run(3.0)
    assert p.a.state == UP
    before = p.ta.dropped["auth-sequence"]
    old = captured[0]  # far behind A's window by now
    p.ta.receive(old, B, A, 255, p.now)
    assert p.ta.dropped["auth-sequence"] == before + 1
    last = captured[-1]
    p.ta.receive(last, B, A, 255, p.now)  # the very last packet again
    meticulous = kind == AuthType.METICULOUS_KEYED_MD5
    assert p.ta.dropped["auth-sequence"] == before + 1 + (1 if meticulous else 0)
    # a sequence number past the window (3 x multiplier) is refused too
    pkt = decode(last)
    assert pkt.auth is not None
    far = ControlPacket(**{**{f: getattr(pkt, f) for f in ("state", "detect_mult", "my_discriminator",
                                                           "your_discriminator", "desired_min_tx",
                                                           "required_min_rx")},
                           "auth": Auth(kind, pkt.auth.key_id, sequence=(pkt.auth.sequence + 50) % 2**32)})
    p.ta.receive(encode(far, b"k"), B, A, 255, p.now)
    assert p.ta.dropped["auth-sequence"] >= before + 2
    assert p.a.state == UP  # refusals never touch the session


def test_the_sequence_is_forgotten_after_twice_the_detection_time() -> None:
    cfg = BfdSettings(auth_type=AuthType.METICULOUS_KEYED_SHA1, auth_key=b"k")
    p = Pair(cfg, cfg)
    p.run(3.0)
    p.cut = True
    p.run(p.now + 5.0)  # > 2 x 0.9 s of silence
    p.b.xmit_seq = (p.b.xmit_seq + 1_000_000) % 2**32  # B's sequence jumped (say, it restarted)
    p.cut = False
    p.run(p.now + 5.0)
    assert p.a.state == UP and p.b.state == UP


# ---------------------------------------------------------------- the table


def _packet(state: BfdState = DOWN, your: int = 0, mine: int = 99) -> bytes:
    return encode(ControlPacket(state=state, detect_mult=3, my_discriminator=mine, your_discriminator=your,
                                desired_min_tx=1_000_000, required_min_rx=300_000))


def test_the_table_drops_and_counts_what_it_cannot_use_and_the_session_stays_put() -> None:
    p = Pair()
    p.run(3.0)
    assert p.a.state == UP
    t = p.ta
    good = p.sent[B][-1]
    cases = {
        "ttl": (encode(good), 64),
        "version": (bytes([0x40]) + encode(good)[1:], 255),
        "length": (encode(good)[:20], 255),
        "detect-mult": (encode(good)[:2] + b"\0" + encode(good)[3:], 255),
        "multipoint": (encode(good)[:1] + bytes([encode(good)[1] | 1]) + encode(good)[2:], 255),
        "my-discriminator": (_packet(UP, p.a.local_discr, mine=0), 255),
        "your-discriminator": (_packet(UP, p.a.local_discr + 1), 255),
        "zero-your-discriminator": (_packet(UP, 0), 255),
    }
    for reason, (data, ttl) in cases.items():
        before = t.dropped[reason]
        assert t.receive(data, B, A, ttl, p.now) is None
        assert t.dropped[reason] == before + 1, reason
    assert t.receive(encode(good), "10.0.0.9", A, 255, p.now) is None and t.dropped["source"] == 1
    assert t.receive(_packet(DOWN, 0), "10.0.0.9", A, 255, p.now) is None and t.dropped["no-session"] == 1
    assert p.a.state == UP and p.a.received > 0
    assert all(e.new != DOWN for e in p.events[A])


def test_discriminators_are_unique_nonzero_and_a_removed_session_says_admin_down() -> None:
    t = BfdTable(random.Random(5))
    sessions = [t.add(f"10.1.{i // 250}.{i % 250 + 1}", BfdSettings(), A, f"10.1.{i // 250}.{i % 250 + 1}", 0.0)
                for i in range(500)]
    discrs = {s.local_discr for s in sessions}
    assert len(discrs) == 500 and 0 not in discrs
    s = t.remove(sessions[0].name, 1.0)
    assert s is not None and s.closed and s.state == ADMIN_DOWN
    last = decode(s.data_to_send()[-1])
    assert last.state == ADMIN_DOWN and last.diag == Diag.ADMIN_DOWN
    assert t.receive(_packet(UP, s.local_discr), s.remote, A, 255, 1.0) is None
    assert t.dropped["your-discriminator"] == 1


def test_multihop_sessions_take_any_ttl_on_their_own_port_only() -> None:
    t = BfdTable(random.Random(6))
    hop = t.add("10.9.0.1", BfdSettings(multihop=True), A, "10.9.0.1", 0.0)
    one = t.add(B, BfdSettings(), A, B, 0.0)
    assert t.receive(_packet(DOWN, 0), "10.9.0.1", A, 250, 0.1, multihop=True) is hop
    assert hop.state == INIT
    assert t.receive(_packet(DOWN, 0, mine=7), "10.9.0.1", A, 255, 0.2) is None  # on the single-hop port
    assert t.receive(_packet(DOWN, 0, mine=8), B, A, 255, 0.2, multihop=True) is None
    assert t.dropped["hop-mode"] == 2 and one.state == DOWN
    assert t.receive(_packet(DOWN, 0, mine=8), B, A, 255, 0.3) is one
