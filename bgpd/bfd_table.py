"""Every BFD session of the speaker, and which one a received packet is for (RFC 5880 6.8.6, RFC 5881).

Sans-I/O: datagrams with their addresses and TTL in, the session that took each out. A packet is
dropped and counted by reason, never raised, when it is malformed (`proto.bfd.decode`'s reasons),
came for a single-hop session without TTL / hop limit 255 (RFC 5881 section 5), came on the port of
the other mode (`hop-mode`: single hop is UDP 3784, multihop UDP 4784, RFC 5883), names a discriminator we
did not give out or a session whose peer is elsewhere, has Your Discriminator 0 in a state other than
Down or AdminDown, or fails the session's authentication. A counted drop never touches a session's
state, so garbage cannot flap it.

Discriminators are random, nonzero and unique (RFC 5880 6.8.1 wants them unpredictable).
"""

from __future__ import annotations

import random
from collections import Counter

from bgpd.bfd_session import BfdSession
from proto.bfd import TTL, BfdPacketError, BfdState, decode
from proto.tortie_annotations import BfdSettings


class BfdTable:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.sessions: dict[str, BfdSession] = {}  # by the peer's key
        self._by_discr: dict[int, BfdSession] = {}
        self._by_addresses: dict[tuple[str, str], BfdSession] = {}  # (remote, local)
        self.dropped: Counter[str] = Counter()  # reason -> packets
        self.received = 0

    def __len__(self) -> int:
        return len(self.sessions)

    def _discriminator(self) -> int:
        while True:
            d = self.rng.getrandbits(32)
            if d and d not in self._by_discr:
                return d

    def add(self, key: str, settings: BfdSettings, local: str, remote: str, now: float) -> BfdSession:
        if key in self.sessions:
            raise ValueError(f"BFD session for {key} already exists")
        s = BfdSession(self._discriminator(), settings, local, remote, now, self.rng, name=key)
        self.sessions[key] = s
        self._by_discr[s.local_discr] = s
        self._by_addresses[(remote, local)] = s
        return s

    def remove(self, key: str, now: float) -> BfdSession | None:
        """Forget the session; its last packet (AdminDown, RFC 5880 6.8.16) is still in its output."""
        s = self.sessions.pop(key, None)
        if s is None:
            return None
        s.admin_down(now)
        s.closed = True
        self._by_discr.pop(s.local_discr, None)
        if self._by_addresses.get((s.remote, s.local)) is s:
            del self._by_addresses[(s.remote, s.local)]
        return s

    def receive(self, data: bytes, source: str, destination: str | None, ttl: int | None,
                now: float, multihop: bool = False) -> BfdSession | None:
        """The session that accepted the packet (it came on the multihop port when `multihop`), or
        None (dropped, and counted in `dropped`)."""
        self.received += 1
        if not multihop and ttl is not None and ttl != TTL:
            self.dropped["ttl"] += 1
            return None
        try:
            p = decode(data)
        except BfdPacketError as exc:
            self.dropped[exc.reason] += 1
            return None
        if p.your_discriminator:
            s = self._by_discr.get(p.your_discriminator)
            if s is None:
                self.dropped["your-discriminator"] += 1
                return None
            if s.remote != source:
                self.dropped["source"] += 1
                return None
        else:
            if p.state not in (BfdState.DOWN, BfdState.ADMIN_DOWN):
                self.dropped["zero-your-discriminator"] += 1
                return None
            s = self._by_addresses.get((source, destination)) if destination is not None else None
            if s is None:
                s = next((x for (r, _l), x in self._by_addresses.items() if r == source), None)
            if s is None:
                self.dropped["no-session"] += 1
                return None
        if s.multihop != multihop:
            self.dropped["hop-mode"] += 1
            return None
        why = s.receive(p, data, now)
        if why is not None:
            self.dropped[why] += 1
            return None
        return s
