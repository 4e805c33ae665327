"""A configured peer as the speaker keeps it: how to reach it, its sessions, and what it has done.

`Peer` ties together what the configuration says (`bgpd.topology.PeerConfig`), the peer as a source
and target of routes (`bgpd.rib.path.PeerInfo`), its sessions (`bgpd.neighbor.Neighbor`), the update
group it is in while Established, and the counters and last events that `tortiectl` and the metrics
show. `PeerTransportConfig` is what the asyncio adapter needs to connect to it and to accept it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import field

from bgpd.bfd_session import BfdSession
from bgpd.fsm import State
from bgpd.neighbor import Neighbor
from bgpd.rib.path import PeerInfo
from bgpd.session import Session
from bgpd.topology import PeerConfig
from proto.bgp import AfiSafi, GracefulRestartCap, Negotiated, Open
from proto.record import record

BGP_PORT = 179


@record(frozen=True, slots=True)
class PeerTransportConfig:
    peer_address: str
    peer_port: int = BGP_PORT
    source_address: str | None = None
    md5_password: str | None = None
    ttl_security: int | None = None  # GTSM: the peer is at most this many hops away (1: direct)
    # A SYN nobody answers (a TCP MD5 mismatch drops it silently, so does a filter) would otherwise
    # keep the session in Connect for the kernel's SYN retries with nothing to show the operator.
    connect_timeout: float = 5.0


@record(eq=False)
class Peer:
    cfg: PeerConfig
    info: PeerInfo
    neighbor: Neighbor
    transport: PeerTransportConfig
    group: object | None = None  # the UpdateGroup it is in while Established
    negotiated: Negotiated | None = None
    families: tuple[AfiSafi, ...] = ()
    remote_gr: GracefulRestartCap | None = None
    enhanced_refresh: bool = False
    established: Session | None = None  # the session that carries its routes now
    since: float = field(default_factory=time.time)  # wall clock of the last state change
    admin_down: bool = False
    last_sent: str | None = None
    last_received: str | None = None
    established_count: int = 0
    notifications_sent: Counter[tuple[int, int]] = field(default_factory=Counter)
    notifications_received: Counter[tuple[int, int]] = field(default_factory=Counter)
    treat_as_withdraw: int = 0
    prefix_limit_hits: int = 0  # sessions reset for sending more prefixes than max_prefixes
    bfd: BfdSession | None = None  # while BFD is configured for the peer
    bfd_failed: bool = False  # its BGP session is going down because BFD saw the path fail
    bfd_failures: int = 0  # BFD Up -> Down failures seen
    key: str = field(init=False)  # the configured address as text: how the speaker and tortiectl name it

    def __post_init__(self) -> None:
        self.key = self.cfg.key

    @property
    def session(self) -> Session:
        return self.neighbor.session

    @property
    def state(self) -> State:
        return self.neighbor.state

    @property
    def remote_open(self) -> Open | None:
        return self.neighbor.session.remote_open
