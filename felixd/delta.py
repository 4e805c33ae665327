"""A feed delta planned in O(changes): the changed prefixes through the planner's index (pure).

The desired routes are updated in place and the kernel writes needed to follow are returned; nothing
is read from the kernel and nothing is rebuilt. What a delta cannot do alone is said instead
(`needs_full`): a VXLAN neighbour or FDB entry the last full plan did not have, or the first learned
route on a host that had IP forwarding off. The full plan then takes over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from felixd.plan_index import PlanIndex
from felixd.state import IP_FORWARD, DesiredState, Mode, Op, RouteOp, RouteShape
from proto.prefix import Address, Prefix

LOCAL_MODES = (Mode.LOCAL_BLOCK, Mode.WORKLOAD)


@dataclass
class DeltaPlan:
    ops: list[RouteOp] = field(default_factory=list)
    needs_full: bool = False
    reasons: list[tuple[Prefix, str]] = field(default_factory=list)  # routes not installed, and why


def mode_counts(routes: Iterable[RouteShape]) -> Counter[Mode]:
    return Counter(shape.mode for shape in routes)


def plan_delta(changed: Iterable[Prefix], learned: Mapping[Prefix, Address], desired: DesiredState,
               index: PlanIndex, protocol: int, modes: Counter[Mode] | None = None) -> DeltaPlan:
    """Plan `changed` (prefixes whose learned route changed or went) against `desired`, updating its
    routes (and `modes`, the routes per mode) in place."""
    out = DeltaPlan()
    ops = out.ops
    routes = desired.routes
    local, own, decide = index.local_blocks, index.own_addresses, index.decide
    neighbours, fdb = desired.neighbours, desired.fdb
    forwarding = IP_FORWARD in desired.sysctls
    for prefix in changed:
        old = routes.get(prefix)
        if old is not None and old.mode in LOCAL_MODES:
            continue  # never displaced by a learned route
        new = None
        nh = learned.get(prefix)
        if nh is not None and prefix not in local and nh not in own:
            d = decide(prefix, nh)
            new = d.shape
            if new is None:
                if d.reason is not None:
                    out.reasons.append((prefix, d.reason))
            elif (d.neighbour is not None and (d.neighbour not in neighbours or d.fdb not in fdb)) or not forwarding:
                out.needs_full = True
        if new is None:
            if old is not None:
                ops.append((Op.DELETE, prefix, None, protocol))
                del routes[prefix]
                if modes is not None:
                    modes[old.mode] -= 1
        elif old is not new:
            routes[prefix] = new
            if old is None or not old.kernel_equal(new):
                ops.append((Op.REPLACE, prefix, new, protocol))
            if modes is not None:
                modes[new.mode] += 1
                if old is not None:
                    modes[old.mode] -= 1
    return out
