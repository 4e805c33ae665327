"""A feed delta planned in O(changes): the changed prefixes through the planner's index (pure).

Each changed prefix is planned twice through the same index, with the next hop it had (what the
kernel holds now) and with the one it has; the kernel writes to go from one to the other are
returned. Nothing is read from the kernel, nothing is rebuilt, nothing is copied. What a delta cannot do alone is said instead
(`needs_full`): a VXLAN neighbour or FDB entry the last full plan did not have, or the first learned
route on a host that had IP forwarding off. The full plan then takes over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import field

from felixd.planned import PlannedRoutes
from felixd.state import IP_FORWARD, DesiredState, Mode, Op, RouteOp, RouteShape
from proto.prefix import Address, Prefix
from proto.record import record


@record
class DeltaPlan:
    ops: list[RouteOp] = field(default_factory=list)
    needs_full: bool = False
    reasons: list[tuple[Prefix, str]] = field(default_factory=list)  # routes not installed, and why


def mode_counts(routes: Iterable[RouteShape]) -> Counter[Mode]:
    return Counter(shape.mode for shape in routes)


def plan_delta(changed: Mapping[Prefix, Address | None], planned: PlannedRoutes, desired: DesiredState,
               protocol: int, modes: Counter[Mode] | None = None) -> DeltaPlan:
    """Plan `changed` (prefix -> the next hop felixd last planned for it, None if none) against the
    learned routes as they are now (`planned`, the view of `desired.routes`); `modes` (routes per
    mode) is updated in place."""
    out = DeltaPlan()
    ops = out.ops
    index, learned = planned.index, planned.learned
    local, own, decide = planned.local, index.own_addresses, index.decide
    neighbours, fdb = desired.neighbours, desired.fdb
    forwarding = IP_FORWARD in desired.sysctls
    replace, delete = Op.REPLACE, Op.DELETE
    for prefix, old_nh in changed.items():
        if prefix in local:
            continue  # this host's blocks and workloads are never displaced by a learned route
        old = decide(prefix, old_nh)[0] if old_nh is not None and old_nh not in own else None
        nh = learned.get(prefix)
        new = None
        if nh is not None and nh not in own:
            d = decide(prefix, nh)
            new = d[0]
            if new is None:
                if d.reason is not None:
                    out.reasons.append((prefix, d.reason))
            elif (d[1] is not None and (d[1] not in neighbours or d[2] not in fdb)) or not forwarding:
                out.needs_full = True
        if new is None:
            if old is not None:
                ops.append((delete, prefix, None, protocol))
                if modes is not None:
                    modes[old.mode] -= 1
        elif old is not new:
            if old is None or not old.kernel_equal(new):
                ops.append((replace, prefix, new, protocol))
            if modes is not None:
                modes[new.mode] += 1
                if old is not None:
                    modes[old.mode] -= 1
    return out
