"""What two OPENs agree on: the `Negotiated` the codec frames and parses with.

- 4-octet AS numbers (RFC 6793) and extended messages (RFC 8654): both sides advertised them.
- ADD-PATH (RFC 7911 section 4): we receive path identifiers for a family when we advertised
  receive (or both) and the peer advertised send (or both); we send them in the symmetric case.
  Modes other than 1..3 mean nothing and are ignored. When a side lists a family more than once,
  its last entry counts.
- Extended next hop (RFC 8950): an NLRI family may carry an IPv6 next hop when both sides
  advertised (AFI, SAFI, next-hop AFI IPv6) for it, so either direction may use it.
"""

from __future__ import annotations

from proto.bgp.constants import AFI, AddPathMode, AfiSafi
from proto.bgp.model import (
    AddPathCap,
    ExtendedMessageCap,
    ExtendedNextHopCap,
    FourOctetAsCap,
    Negotiated,
    Open,
)

_RECEIVES = (AddPathMode.RECEIVE, AddPathMode.BOTH)
_SENDS = (AddPathMode.SEND, AddPathMode.BOTH)


def _add_path_modes(open_: Open) -> dict[AfiSafi, int]:
    modes: dict[AfiSafi, int] = {}
    for cap in open_.capabilities:
        if isinstance(cap, AddPathCap):
            for afi, safi, mode in cap.families:
                modes[(afi, safi)] = mode
    return modes


def _ipv6_next_hop_families(open_: Open) -> set[AfiSafi]:
    families: set[AfiSafi] = set()
    for cap in open_.capabilities:
        if isinstance(cap, ExtendedNextHopCap):
            for afi, safi, nexthop_afi in cap.entries:
                if nexthop_afi == AFI.IPV6:
                    families.add((afi, safi))
    return families


def _has(open_: Open, kind: type) -> bool:
    return any(isinstance(cap, kind) for cap in open_.capabilities)


def negotiate(local: Open, remote: Open) -> Negotiated:
    ours = _add_path_modes(local)
    theirs = _add_path_modes(remote)
    shared = ours.keys() & theirs.keys()
    return Negotiated(
        four_octet_as=_has(local, FourOctetAsCap) and _has(remote, FourOctetAsCap),
        extended_message=_has(local, ExtendedMessageCap) and _has(remote, ExtendedMessageCap),
        add_path_receive=frozenset(f for f in shared if ours[f] in _RECEIVES and theirs[f] in _SENDS),
        add_path_send=frozenset(f for f in shared if ours[f] in _SENDS and theirs[f] in _RECEIVES),
        extended_next_hop=frozenset(_ipv6_next_hop_families(local) & _ipv6_next_hop_families(remote)),
    )
