"""Loc-RIB: the best path per prefix of one family, re-decided only for prefixes that changed.

The candidates for a prefix are not stored twice: they are the entries of the Adj-RIB-Ins registered
as sources (one dict lookup per source). The Loc-RIB keeps only the winner, a dict entry pointing at
an interned `Path`. Every call that changes Adj-RIB-In contents hands the touched prefixes to
`update`, which returns the prefixes whose best path changed (new `Path`, or None when withdrawn);
the caller passes that batch on to the feed and the Adj-RIB-Outs (and `listeners` get it too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bgpd.rib.adj_rib_in import AdjRibIn
from bgpd.rib.decision import DEFAULT_DECISION, ONLY_PATH, DecisionConfig, best_path, decide
from bgpd.rib.path import Path
from proto.bgp.constants import AfiSafi

Change = tuple[bytes, Path | None]
Listener = Callable[[AfiSafi, list[Change]], None]


class LocRib:
    def __init__(self, family: AfiSafi, config: DecisionConfig = DEFAULT_DECISION) -> None:
        self.family = family
        self.config = config
        self.best: dict[bytes, Path] = {}
        self.sources: list[AdjRibIn] = []
        self.listeners: list[Listener] = []
        # while a restarting speaker defers its decision (RFC 4724 4.1), touched prefixes wait here
        self.deferred: set[bytes] | None = None

    def __len__(self) -> int:
        return len(self.best)

    def get(self, prefix: bytes) -> Path | None:
        return self.best.get(prefix)

    def add_source(self, rib_in: AdjRibIn) -> None:
        if rib_in.family != self.family:
            raise ValueError(f"Adj-RIB-In of {rib_in.family} given to the Loc-RIB of {self.family}")
        if rib_in not in self.sources:
            self.sources.append(rib_in)

    def remove_source(self, rib_in: AdjRibIn) -> list[Change]:
        """Forget a source and re-decide every prefix it held."""
        if rib_in not in self.sources:
            return []
        prefixes = list(rib_in.routes)
        self.sources.remove(rib_in)
        return self.update(prefixes)

    # ---------------------------------------------------------------- decision

    def candidates(self, prefix: bytes) -> list[Path]:
        out: list[Path] = []
        for src in self.sources:
            e = src.routes.get(prefix)
            if e is None:
                continue
            if isinstance(e, tuple):
                out.extend(e)
            else:
                out.append(e)
        return out

    def update(self, prefixes: Iterable[bytes], source: AdjRibIn | None = None) -> list[Change]:
        """Re-run the decision for `prefixes`; returns what changed. `source`, when given, is the
        only Adj-RIB-In whose entries for `prefixes` changed since the last call."""
        if self.deferred is not None:
            self.deferred.update(prefixes)
            return []
        best = self.best
        config = self.config
        sources = self.sources
        changes: list[Change] = []
        append = changes.append
        if len(sources) == 1 or source is not None:
            # a prefix without a best path had no candidate before this change, so only `source`
            # can hold one now: no need to look at the other sources (a table's first arrival)
            only = len(sources) == 1
            routes = (source or sources[0]).routes
            rest = []
            for prefix in prefixes:
                old = best.get(prefix)
                if old is not None and not only:
                    rest.append(prefix)
                    continue
                e = routes.get(prefix)
                if isinstance(e, tuple):
                    e = best_path(e, config)
                if e is old:
                    continue
                if e is None:
                    del best[prefix]
                else:
                    best[prefix] = e
                append((prefix, e))
            if rest:
                changes.extend(self._redecide(rest))
        else:
            changes = self._redecide(prefixes)
        if changes:
            for listener in self.listeners:
                listener(self.family, changes)
        return changes

    def _redecide(self, prefixes: Iterable[bytes]) -> list[Change]:
        best = self.best
        config = self.config
        sources = self.sources
        changes: list[Change] = []
        append = changes.append
        if len(sources) == 1:
            routes = sources[0].routes
            for prefix in prefixes:
                e = routes.get(prefix)
                if isinstance(e, tuple):
                    e = best_path(e, config)
                old = best.get(prefix)
                if e is old:
                    continue
                if e is None:
                    del best[prefix]
                else:
                    best[prefix] = e
                append((prefix, e))
        else:
            for prefix in prefixes:
                found: Path | None = None
                many: list[Path] | None = None
                for src in sources:
                    e = src.routes.get(prefix)
                    if e is None:
                        continue
                    if found is None and not isinstance(e, tuple):
                        found = e
                        continue
                    if many is None:
                        many = [] if found is None else [found]
                    if isinstance(e, tuple):
                        many.extend(e)
                    else:
                        many.append(e)
                new = found if many is None else best_path(many, config)
                old = best.get(prefix)
                if new is old:
                    continue
                if new is None:
                    del best[prefix]
                else:
                    best[prefix] = new
                append((prefix, new))
        return changes

    def explain(self, prefix: bytes) -> tuple[Path | None, str, list[Path]]:
        """The best path, why it won, and every candidate (for `tortiectl bgp rib`)."""
        cands = self.candidates(prefix)
        if not cands:
            return None, "no path", []
        if len(cands) == 1:
            return cands[0], ONLY_PATH, cands
        winner, reason = decide(cands, self.config)
        return winner, reason, cands

    # ---------------------------------------------------------------- deferral (restarting speaker)

    def defer(self) -> None:
        """Hold back the decision: changes are collected, not decided (RFC 4724 4.1)."""
        if self.deferred is None:
            self.deferred = set()

    def resume(self) -> list[Change]:
        """Run the deferred decisions in one batch."""
        pending, self.deferred = self.deferred, None
        if not pending:
            return []
        return self.update(sorted(pending))
