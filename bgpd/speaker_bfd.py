"""BFD beside the speaker's BGP sessions (RFC 5882): one BFD session per peer that asks for it, and
what its state changes do to the peer's BGP session. Part of `bgpd.speaker.Speaker` (a mixin: the
state is the speaker's, set up by its __init__).

A BFD failure takes the BGP session down at once, without graceful restart, and keeps it down until
BFD is Up again (or a hold-down runs out); BFD coming Up restarts a waiting session without its
back-off. The BFD sessions themselves are `bgpd.bfd_session`, demultiplexed by `bgpd.bfd_table`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bgpd.bfd_session import BfdSession, StateChange
from bgpd.fsm import State
from bgpd.speaker_settings import family_of
from proto.bfd import STATE_NAMES as BFD_STATE_NAMES
from proto.bfd import BfdState, diag_text
from proto.bgp import CeaseSubcode
from proto.tortie_annotations import BfdSettings

if TYPE_CHECKING:
    from bgpd.bfd_table import BfdTable
    from bgpd.peer import Peer
    from bgpd.schedule import Schedule
    from bgpd.topology import Topology

log = logging.getLogger("tortie.bgp")

# after a BFD failure the BGP session stays down (refusing the peer's connections too) until BFD is Up
# again, which restarts it at once; this only bounds the wait for a peer whose BFD never returns. Without
# it the session came straight back over a path BFD still calls down (BFD packets lost, TCP fine) and
# stayed up unprotected, since a BFD session that is already Down cannot fail again.
BFD_FAILURE_HOLD_DOWN = 30.0
BFD_CONNECT_DELAY = 1.0  # after BFD Up: the peer's BFD is Up within a packet or two (1 s apart at most)


class SpeakerBfd:
    if TYPE_CHECKING:  # what it works on, of bgpd.speaker.Speaker
        topology: Topology
        peers: dict[str, Peer]
        bfd: BfdTable
        _bfd_output: dict[BfdSession, None]
        _schedule: Schedule

        def _touch(self, peer: Peer, now: float) -> None: ...

    def bfd_with_output(self) -> list[BfdSession]:
        """BFD sessions with datagrams to send (`session.data_to_send()`), from `session.local` to
        `session.remote`, UDP port 3784 (4784 when `session.multihop`), TTL 255. A `closed` one is gone
        once they are sent."""
        out = list(self._bfd_output)
        self._bfd_output.clear()
        return out

    def set_bfd(self, key: str, settings: BfdSettings | None, now: float) -> None:
        """BFD for the peer `key` on (new settings applied without a restart) or off (None)."""
        peer = self.peers[key]
        if settings is None:
            self._bfd_close(key, now)
            return
        s = self.bfd.sessions.get(key)
        if s is not None and s.multihop != settings.multihop:
            self._bfd_close(key, now)  # the other port and rules: a new session
            s = None
        if s is not None:
            s.reconfigure(settings, now)
        else:
            local = peer.transport.source_address or next(
                (str(a) for a in self.topology.addresses if family_of(str(a)) == family_of(key)), None)
            if local is None:
                log.warning("peer %s: no local address of its family for BFD", key)
                return
            s = self.bfd.add(key, settings, local, key, now)
            log.info("peer %s: BFD on (%s -> %s%s, rx %d ms, tx %d ms, multiplier %d)", key, local, key,
                     ", multihop" if settings.multihop else "", settings.min_rx_ms, settings.min_tx_ms,
                     settings.multiplier)
        peer.bfd = s
        self._bfd_touch(s, now)

    def _bfd_close(self, key: str, now: float) -> None:
        s = self.bfd.remove(key, now)
        peer = self.peers.get(key)
        if peer is not None:
            peer.bfd = None
        if s is not None:
            self._bfd_touch(s, now)  # its AdminDown goes out; the schedule forgets it

    def stop_bfd(self, now: float) -> None:
        """Every BFD session AdminDown (bgpd stopping): peers are told, and do not count it as a
        failure of the path (RFC 5882 3.2), so a graceful restart keeps its routes."""
        for s in self.bfd.sessions.values():
            s.admin_down(now)
            self._bfd_touch(s, now)

    def bfd_receive(self, data: bytes, source: str, destination: str | None, ttl: int | None,
                    now: float, multihop: bool = False) -> None:
        """A datagram on UDP 3784 (4784 when `multihop`) from `source` to `destination` with this TTL
        (None: unknown)."""
        s = self.bfd.receive(data, source, destination, ttl, now, multihop)
        if s is not None:
            self._bfd_touch(s, now)

    def _bfd_touch(self, s: BfdSession, now: float) -> None:
        while (ev := s.next_event()) is not None:
            self._bfd_event(s, ev, now)
        if s.has_output:
            self._bfd_output[s] = None
        self._schedule.update(s, None if s.closed else s.next_deadline())

    def _bfd_event(self, s: BfdSession, ev: StateChange, now: float) -> None:
        peer = self.peers.get(s.name)
        if peer is None or peer.bfd is not s:
            return
        old, new = BFD_STATE_NAMES[ev.old], BFD_STATE_NAMES[ev.new]
        if ev.failure:
            log.warning("peer %s: BFD %s -> %s (%s)", peer.key, old, new, diag_text(ev.diag))
        else:
            log.info("peer %s: BFD %s -> %s (%s)", peer.key, old, new, diag_text(ev.diag))
        if ev.failure:
            peer.bfd_failures += 1
            # the path is gone: the BGP session goes down at once, and its routes with it (no graceful
            # restart: `_session_down`). A session that is not up is left alone: when bgpd itself died,
            # TCP told us first and graceful restart keeps its routes.
            for session in peer.neighbor.sessions():
                if session.state in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED):
                    peer.bfd_failed = True
                    session.automatic_stop(now, CeaseSubcode.BFD_DOWN,
                                           reason=f"BFD session down ({diag_text(ev.diag)})",
                                           hold_down=BFD_FAILURE_HOLD_DOWN)
            self._touch(peer, now)
        elif ev.new == BfdState.UP and not peer.admin_down:
            # the path is back: no need to wait out a back-off. Not at Init: a peer that cannot hear us
            # (our BFD packets lost) still makes ours Init. We accept its connection at once but connect
            # ourselves a moment later: its BFD may reach Up a packet after ours, and until then it
            # refuses us, which would cost a whole ConnectRetryTimer
            peer.session.retry_now(now, delay=BFD_CONNECT_DELAY)
            self._touch(peer, now)
