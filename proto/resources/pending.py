"""The one place that lists the Calico fields tortie parses and validates but does not act on yet, and that
would change routing: each is refused with a message naming it, never silently ignored.

The parsed values are carried in the resources (and, for BGPPeers, in bgpd's PeerConfig) so that the
code that implements one only removes its row here. Fields that change nothing about routing are not
here: each kind keeps those (`Resource.KEPT`) and docs/configuration.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable

from proto.record import record
from proto.resources.errors import Problem
from proto.resources.kinds import BGPConfiguration, BGPPeer, IPPool, Resource, WorkloadEndpoint


@record(frozen=True, slots=True)
class NotYet:
    kind: str
    path: str
    present: Callable[[Resource], bool]
    what: str  # what the field would do


NOT_YET: tuple[NotYet, ...] = (
    NotYet("BGPPeer", "spec.localWorkloadSelector",
           lambda r: r.local_workload_selector is not None,  # type: ignore[attr-defined]
           "peering with workloads on the node"),
    NotYet("BGPConfiguration", "spec.localWorkloadPeeringIPV4",
           lambda r: r.local_workload_peering_ipv4 is not None,  # type: ignore[attr-defined]
           "peering with workloads on the node"),
    NotYet("BGPConfiguration", "spec.localWorkloadPeeringIPV6",
           lambda r: r.local_workload_peering_ipv6 is not None,  # type: ignore[attr-defined]
           "peering with workloads on the node"),
    NotYet("IPPool", "spec.allowedUses", lambda r: r.load_balancer,  # type: ignore[attr-defined]
           "LoadBalancer pools (addresses for Kubernetes services)"),
    NotYet("WorkloadEndpoint", "spec.ipNATs", lambda r: bool(r.ip_nats),  # type: ignore[attr-defined]
           "floating IPs (NAT and routes to the external addresses)"),
)

_KINDS = {BGPConfiguration.kind, BGPPeer.kind, IPPool.kind, WorkloadEndpoint.kind}
assert {n.kind for n in NOT_YET} <= _KINDS


def not_yet_problems(resource: Resource) -> list[Problem]:
    """One problem per field of `resource` that tortie does not implement yet."""
    return [resource.problem(n.path, f"not implemented yet: {n.what}. tortie refuses the field rather than "
                             "ignore it, since it would change routing")
            for n in NOT_YET if n.kind == resource.kind and n.present(resource)]
