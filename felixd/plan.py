"""The pure planner: learned routes + pools + nodes + this host's network -> desired kernel state.

No I/O here. The inputs are plain values (`felixd.plan_input`: built from the cluster model and from
a read of the host's network by the daemon), so every routing decision of Calico's article can be
tested by constructing a few values: which next hop and device a remote block gets under IP-in-IP,
VXLAN, direct and CrossSubnet, and what the host needs besides (tunnel devices, VXLAN neighbour and
FDB entries, blackholes for its own blocks, /32s to its workloads, NAT-outgoing sets).

The per-route decisions live in `felixd.plan_index.PlanIndex`, built once per change of the cluster
model or of the host: a full plan walks every learned route through it, and a feed delta
(`felixd.delta`) walks only the changed prefixes through the same index.
"""

from __future__ import annotations

from felixd.plan_index import PlanIndex
from felixd.plan_input import (
    HostAddress,
    HostRoute,
    PlanInput,
    PlanNode,
    PlanPool,
    Workload,
)
from felixd.state import DesiredState
from proto.resources import vtep_mac_for

__all__ = ["vtep_mac_for", "PlanPool", "PlanNode", "Workload", "HostAddress", "HostRoute", "PlanInput",
           "PlanIndex", "Planner", "plan"]


class Planner:
    """A full plan: every route, device, neighbour, NAT set and sysctl (start, resync, config change)."""

    def __init__(self, data: PlanInput, index: PlanIndex | None = None) -> None:
        self.data = data
        self.index = index if index is not None else PlanIndex(data)

    def plan(self) -> DesiredState:
        return self.index.plan(self.data.routes)


def plan(data: PlanInput) -> DesiredState:
    return Planner(data).plan()
