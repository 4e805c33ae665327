"""The decision process: RFC 4271 section 9.1.2 with the RFC 4456 section 9 tie-breaks.

Written as the RFC writes it, a sequence of steps that each remove candidates, so the outcome depends
only on the set of paths, never on the order they arrived in (the MED step is not a total order).
`decide` returns the winner and the step that settled it, for `tortiectl bgp rib`.

Steps, in order:
  0. a route this node originates beats a learned one (RFC 4271 9.1.1: degree of preference);
  1. highest LOCAL_PREF (eBGP-learned routes carry the import policy's default, 100);
  2. shortest AS_PATH (AS_SET counts 1, confederation segments 0);
  3. lowest ORIGIN (IGP < EGP < INCOMPLETE);
  4. lowest MED among paths from the same neighbouring AS (a missing MED is 0), or among all paths
     when `always_compare_med`;
  5. eBGP-learned over iBGP-learned;
  6. lowest interior cost to the NEXT_HOP: skipped, tortie has no IGP and no next-hop metrics
     (every next hop is treated as reachable at equal cost);
  7. lowest BGP identifier, ORIGINATOR_ID standing in for it when present;
  8. shortest CLUSTER_LIST;
  9. lowest peer address;
 10. lowest ADD-PATH identifier (paths from one peer; only to make the choice deterministic).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from operator import attrgetter

from bgpd.rib.path import Path
from proto.record import record

ONLY_PATH = "only path"
_rank = attrgetter("rank")
_rank_without_med = attrgetter("rank_without_med")


@record(frozen=True, slots=True)
class DecisionConfig:
    always_compare_med: bool = False


DEFAULT_DECISION = DecisionConfig()


def _int_to_ip(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def _keep(
    cands: list[Path], key: Callable[[Path], object], highest: bool = False
) -> tuple[list[Path], object]:
    values = [key(p) for p in cands]
    best = max(values) if highest else min(values)  # type: ignore[type-var]
    return [p for p, v in zip(cands, values) if v == best], best


def _med_step(cands: list[Path]) -> list[Path]:
    """RFC 4271 9.1.2.2 c: drop a path when a path from the same neighbouring AS has a lower MED."""
    lowest: dict[int, int] = {}
    for p in cands:
        m = lowest.get(p.neighbour_as)
        if m is None or p.med < m:
            lowest[p.neighbour_as] = p.med
    return [p for p in cands if p.med == lowest[p.neighbour_as]]


def decide(paths: Sequence[Path], config: DecisionConfig = DEFAULT_DECISION) -> tuple[Path, str]:
    """The best of `paths` (at least one) and why it won."""
    if len(paths) == 1:
        return paths[0], ONLY_PATH
    cands = list(paths)
    reason = ""

    def step(new: list[Path], why: str) -> bool:
        nonlocal cands, reason
        if len(new) < len(cands):
            cands = new
            reason = why
        return len(cands) == 1

    new, _ = _keep(cands, lambda p: p.source.local, highest=True)
    if step(new, "locally originated"):
        return cands[0], reason
    new, lp = _keep(cands, lambda p: p.local_pref, highest=True)
    if step(new, f"highest LOCAL_PREF ({lp})"):
        return cands[0], reason
    new, n = _keep(cands, lambda p: p.as_path_len)
    if step(new, f"shortest AS_PATH ({n})"):
        return cands[0], reason
    new, o = _keep(cands, lambda p: p.origin)
    if step(new, f"lowest ORIGIN ({('IGP', 'EGP', 'INCOMPLETE')[o] if isinstance(o, int) and o < 3 else o})"):
        return cands[0], reason
    if config.always_compare_med:
        new, m = _keep(cands, lambda p: p.med)
        why = f"lowest MED ({m}, always compared)"
    else:
        new = _med_step(cands)
        why = f"lowest MED from the same neighbour AS ({min(p.med for p in new)})"
    if step(new, why):
        return cands[0], reason
    new, _ = _keep(cands, lambda p: p.source.ebgp, highest=True)
    if step(new, "eBGP over iBGP"):
        return cands[0], reason
    new, rid = _keep(cands, lambda p: p.tie_id)
    kind = "ORIGINATOR_ID" if any(p.attrs.originator_id for p in cands) else "router id"
    if step(new, f"lowest {kind} ({_int_to_ip(rid)})"):  # type: ignore[arg-type]
        return cands[0], reason
    new, n = _keep(cands, lambda p: p.cluster_len)
    if step(new, f"shortest CLUSTER_LIST ({n})"):
        return cands[0], reason
    new, _ = _keep(cands, lambda p: p.source.address_key)
    if step(new, f"lowest peer address ({new[0].source.address})"):
        return cands[0], reason
    new, _ = _keep(cands, lambda p: p.path_id)
    step(new, "lowest ADD-PATH identifier")
    return cands[0], reason or "equal paths, first kept"


def best_path(paths: Sequence[Path], config: DecisionConfig = DEFAULT_DECISION) -> Path:
    """`decide(paths)[0]`, fast: a precomputed sort key does every step at once whenever the MED
    step is an ordinary comparison (MED always compared, or all paths from one neighbour AS) or
    removes nothing (every path from a different neighbour AS). Only a mix falls back to `decide`."""
    if config.always_compare_med:
        return min(paths, key=_rank)
    first = paths[0].neighbour_as
    if all(p.neighbour_as == first for p in paths):
        return min(paths, key=_rank)
    if len(paths) == 2 or len({p.neighbour_as for p in paths}) == len(paths):
        return min(paths, key=_rank_without_med)
    return decide(paths, config)[0]


def better(a: Path, b: Path, config: DecisionConfig = DEFAULT_DECISION) -> bool:
    """True when `a` beats `b` head to head (for tests and tools; the RIB uses `decide`)."""
    return decide([a, b], config)[0] is a
