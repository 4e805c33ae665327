"""What one BGP session is configured with: the local OPEN it sends and the limits it enforces."""

from __future__ import annotations

import ipaddress
from dataclasses import field

from proto.bgp import (
    AS_TRANS,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPathCap,
    AddPathMode,
    AfiSafi,
    AnyCapability,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    FourOctetAsCap,
    GracefulRestartCap,
    MultiprotocolCap,
    Open,
    RouteRefreshCap,
)
from proto.record import record

MIN_HOLD_TIME = 3  # RFC 4271 4.2: the hold time is zero or at least three seconds


@record(frozen=True, slots=True)
class GracefulRestartConfig:
    restart_time: int = 120  # seconds, 12 bits on the wire
    restarting: bool = False  # R bit: we are coming back from a restart
    # families whose forwarding state we kept (F bit); every advertised family is listed in the
    # capability, those here with F set
    forwarding_preserved: frozenset[AfiSafi] = frozenset()
    notification: bool = False  # N bit (RFC 8538)


@record(frozen=True, slots=True)
class SessionConfig:
    local_as: int
    peer_as: int
    router_id: str
    hold_time: int = 90
    keepalive_time: float | None = None  # default: a third of the negotiated hold time
    connect_retry_time: float = 120.0
    passive: bool = False  # wait for the peer to connect (Calico: the side with the higher address)
    # back-off before an automatic restart: idle_hold_time, doubling per consecutive failure
    idle_hold_time: float = 1.0
    idle_hold_max: float = 30.0  # a flapping session waits at most this long between attempts
    # A connection refused or unanswered costs the peer nothing: a mesh of hosts starting together
    # (some not listening yet) must find each other within seconds, not after a long back-off.
    connect_hold_max: float = 5.0
    # BIRD's `connect delay time` (Calico sets 2 s): wait this long after a manual start before the
    # first connect attempt, listening meanwhile. Where both sides may connect, the one that waits
    # takes the other's connection instead of racing it: no collision to resolve.
    connect_delay: float = 0.0
    families: tuple[AfiSafi, ...] = (IPV4_UNICAST, IPV6_UNICAST)
    four_octet_as: bool = True
    route_refresh: bool = True
    enhanced_route_refresh: bool = True
    extended_message: bool = True
    graceful_restart: GracefulRestartConfig | None = field(default_factory=GracefulRestartConfig)
    add_path_receive: frozenset[AfiSafi] = frozenset()
    required_capabilities: frozenset[int] = frozenset()  # CapCode values the peer must advertise
    min_hold_time: int = MIN_HOLD_TIME  # a peer's non-zero hold time below this gets 2/6
    # RFC 4271 6.8 CollisionDetectEstablishedState: dump the Established connection on a collision
    collision_detect_established: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if self.hold_time != 0 and self.hold_time < MIN_HOLD_TIME:
            raise ValueError(f"hold time {self.hold_time}: must be 0 or at least {MIN_HOLD_TIME}")
        if self.local_as > 0xFFFF and not self.four_octet_as:
            raise ValueError(f"AS {self.local_as} needs the 4-octet AS capability")
        ipaddress.IPv4Address(self.router_id)

    @property
    def ibgp(self) -> bool:
        return self.local_as == self.peer_as

    def local_open(self) -> Open:
        caps: list[AnyCapability] = [MultiprotocolCap(afi, safi) for afi, safi in self.families]
        if self.route_refresh:
            caps.append(RouteRefreshCap())
        if self.enhanced_route_refresh:
            caps.append(EnhancedRouteRefreshCap())
        if self.extended_message:
            caps.append(ExtendedMessageCap())
        gr = self.graceful_restart
        if gr is not None:
            caps.append(
                GracefulRestartCap(
                    restart_time=gr.restart_time,
                    restarting=gr.restarting,
                    notification=gr.notification,
                    families=tuple(
                        (afi, safi, (afi, safi) in gr.forwarding_preserved) for afi, safi in self.families
                    ),
                )
            )
        if self.four_octet_as:
            caps.append(FourOctetAsCap(self.local_as))
        if self.add_path_receive:
            caps.append(
                AddPathCap(
                    tuple(
                        (afi, safi, AddPathMode.RECEIVE)
                        for afi, safi in self.families
                        if (afi, safi) in self.add_path_receive
                    )
                )
            )
        return Open(
            asn=self.local_as if self.local_as <= 0xFFFF else AS_TRANS,
            hold_time=self.hold_time,
            router_id=self.router_id,
            capabilities=tuple(caps),
        )


