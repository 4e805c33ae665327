"""This node as BGP policy sees it: its AS, router id, cluster id (on a route reflector) and
addresses. Import policy checks received routes against it (loops, next hops that are ours); export
policy prepends its AS and reflects with its cluster id."""

from __future__ import annotations

from proto.record import record


@record(frozen=True)
class Identity:
    """This node as the policy sees it."""

    asn: int
    router_id: str
    cluster_id: str | None = None  # set on route reflectors
    addresses: frozenset[str] = frozenset()  # every address of this node (next-hop sanity check)
