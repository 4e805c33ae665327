"""One configured neighbour's sessions, and connection collisions between them (RFC 4271 6.8).

Sans-I/O like `bgpd.session`: a `Neighbor` holds the primary `Session` and, while two connections to
the peer exist, a second one. It decides which session takes a new TCP connection, which connection
survives a collision, and which session is the neighbour's after one of them goes away. It is the
only object that looks at both sessions; each session asks it (its `arbiter`) when an OPEN arrives.

Collision rules: when an OPEN arrives and the other session is in OpenConfirm, the higher BGP
identifier keeps the connection it opened, and both speakers reach the same verdict before any
KEEPALIVE for the losing connection goes out. A sibling already Established is judged the same way
when both connections were made before it got there; a connection made later is a new attempt: with
a graceful-restart peer it replaces the old session (RFC 4724 4.2: the peer restarted, its routes go
stale rather than away), otherwise it is refused with Cease/7.

When a connection was made is when it reached us, except for the peer's connections that waited in
a busy speaker's accept queue: they count from the last moment the kernel received on them (the
transport reads it from TCP_INFO), so the peer's OPEN sent before the session came up is not taken
for a restart. An attempt of our own that completes after the session came up the other way is
closed before it carries an OPEN (a graceful-restart peer would take that OPEN for our restart).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace

from bgpd.fsm import State
from bgpd.session import Session
from bgpd.session_config import SessionConfig
from bgpd.timers import RandomSource
from proto.bgp import GracefulRestartCap

log = logging.getLogger("bgpd.neighbor")

_CONNECTED = (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED)


def _router_id_int(router_id: str) -> int:
    return int(ipaddress.IPv4Address(router_id))


class Neighbor:
    def __init__(self, config: SessionConfig, rng: RandomSource | None = None) -> None:
        self.config = config
        self.session = Session(config, rng, arbiter=self._arbitrate)  # the primary session
        self.second: Session | None = None  # a second connection during collision detection
        self.collisions = 0  # connection collisions resolved (RFC 4271 6.8), for the metrics

    def __repr__(self) -> str:
        return f"Neighbor({self.config.name}, {self.session.state.name})"

    @property
    def state(self) -> State:
        return self.session.state

    def sessions(self) -> tuple[Session, ...]:
        return (self.session,) if self.second is None else (self.session, self.second)

    def restart_done(self) -> None:
        """The speaker's restart is over (RFC 4724 4.1): the OPENs of later connections carry no
        Restart State bit. A peer restarting after us must not take us for a restarting speaker too,
        or it would not wait for our End-of-RIB."""
        gr = self.config.graceful_restart
        if gr is None or not gr.restarting:
            return
        self.config = replace(self.config, graceful_restart=replace(gr, restarting=False))
        for session in self.sessions():
            session.config = self.config
            session.local_open = self.config.local_open()

    # ------------------------------------------------------------ connections

    def connection_made(self, now: float, outbound: bool, made_at: float | None = None) -> Session | None:
        """A TCP connection to the peer is up: ours (`outbound`) or theirs. Returns the session that
        carries it, or None: close it. `made_at`: for theirs, the latest moment the peer can have made
        it (it may have waited in the accept queue; see `bgpd.sockopts.last_received`)."""
        primary = self.session
        if not outbound and primary.state == State.IDLE and primary.auto_restart and not primary.held_down:
            # the peer is back before our back-off ran out: take its connection now
            primary.automatic_start(now, passive=True)
        if not primary.connected and primary.connection_made(now, outbound, made_at):
            return primary
        if outbound and primary.state == State.ESTABLISHED and not self.config.collision_detect_established:
            # An attempt of ours whose handshake completed after the session came up the other way
            # (its connect was under way, or the kernel finished it before we cancelled it). An OPEN on
            # it would tell a graceful-restart peer that we restarted (RFC 4724 4.2) and make it drop the
            # session we have: close it unused (RFC 4271 6.8 closes it anyway).
            log.info("%s: outgoing connection completed after Established, closed unused", self.config.name)
            return None
        if self.second is None and primary.state in _CONNECTED:
            second = Session(primary.config, primary.rng, arbiter=self._arbitrate)
            second.take_connection(now, outbound, made_at)
            self.second = second
            return second
        log.info("%s: %s connection not needed, closed", self.config.name, "outgoing" if outbound else "incoming")
        return None

    def session_down(self, session: Session) -> None:
        """`session` went to Idle: who is the neighbour's session now."""
        if session is self.second:
            self.second = None
        elif session is self.session and self.second is not None and self.second.state != State.IDLE:
            # the second connection won (or outlived) the first: it becomes the neighbour's session
            old, self.session = self.session, self.second
            self.second = None
            self.session.auto_restart = old.auto_restart
            old.retire()

    def adopt_second(self, now: float) -> Session | None:
        """The primary lost its connection without going Idle (OpenSent to Active, RFC 4271 8.2.2)
        while the second connection goes on: the second becomes the neighbour's session, as when the
        primary goes Idle, and the old primary stops. Returns it (its SessionDown is still to be
        read), or None when nothing changed."""
        primary, second = self.session, self.second
        if second is None or primary.connected or primary.state == State.IDLE or not second.connected:
            return None
        self.session, self.second = second, None
        second.auto_restart = primary.auto_restart
        primary.stop(now)
        return primary

    # ------------------------------------------------------------ collisions

    def _arbitrate(self, session: Session, now: float) -> bool:
        """RFC 4271 6.8 on receipt of an OPEN on `session`. True when `session` loses; when the other
        connection loses, it is closed here (Cease/7), before `session` answers the OPEN."""
        other = self.second if session is self.session else self.session
        if other is None or other is session or other.state not in (State.OPENCONFIRM, State.ESTABLISHED):
            return False
        late = other.established_at is not None and (session.connected_at or 0.0) > other.established_at
        if other.state == State.ESTABLISHED and late and not session.config.collision_detect_established:
            remote_gr = session.remote_open.capability(GracefulRestartCap) if session.remote_open else None
            if remote_gr is None or session.outbound:
                # the Established connection stays, the new one goes; one we opened ourselves (an
                # attempt that completed late) is never the peer coming back from a restart
                return True
            # RFC 4724 4.2: a new OPEN from a graceful-restart peer means its old session is gone: the old
            # connection closes without a NOTIFICATION and its routes go stale, not away.
            other.connection_lost(now, "peer restarted: new connection with graceful restart")
            return False
        local_id = _router_id_int(session.config.router_id)
        remote_id = _router_id_int(session.remote_open.router_id) if session.remote_open else 0
        keep_outbound = local_id > remote_id  # the higher identifier keeps the connection it opened
        self.collisions += 1
        if session.outbound == other.outbound:
            return True  # cannot happen with one connection each way; keep the older one
        log.info("%s: connection collision, keeping the connection %s opened", self.config.name,
                 "we" if keep_outbound else "the peer")
        if bool(session.outbound) == keep_outbound:
            other.collision_dump(now)
            return False
        return True
