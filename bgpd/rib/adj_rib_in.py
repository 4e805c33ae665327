"""Adj-RIB-In: the routes one peer sent for one family, after import policy.

Keyed by the prefix without its ADD-PATH identifier, so the decision process finds every path for a
prefix with one lookup per peer. The value is one `Path`, or a tuple of `Path`s when the peer sent
several ADD-PATH paths for the prefix (each `Path` carries its own identifier). Only accepted routes
are kept: a route refresh, not a second copy of the table, recovers what policy dropped. What policy
rejected is remembered beside them, with the reason, for the operator (BIRD's `import keep filtered`):
`filtered`, keyed like the NLRI (with the ADD-PATH identifier), until the peer withdraws or replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable

from bgpd.rib.path import NO_PATH_ID, NextHop, Path, PeerInfo, path
from proto.bgp.constants import AfiSafi
from proto.bgp.model import PathAttributes

Entry = Path | tuple[Path, ...]


def entry_paths(entry: Entry) -> tuple[Path, ...]:
    return entry if isinstance(entry, tuple) else (entry,)


class AdjRibIn:
    __slots__ = ("add_path", "family", "filtered", "path_count", "routes", "source")

    def __init__(self, source: PeerInfo, family: AfiSafi, add_path: bool = False) -> None:
        self.source = source
        self.family = family
        self.add_path = add_path  # prefixes arrive with a 4-octet path identifier in front
        self.routes: dict[bytes, Entry] = {}
        self.path_count = 0  # differs from len(routes) only with ADD-PATH
        self.filtered: dict[bytes, tuple[Path, str]] = {}  # NLRI -> (path as received, why rejected)

    def __len__(self) -> int:
        return self.path_count

    def get(self, prefix: bytes) -> Entry | None:
        return self.routes.get(prefix)

    # ---------------------------------------------------------------- changes from UPDATEs

    def keep_filtered(self, prefixes: Iterable[bytes], attrs: PathAttributes, next_hop: NextHop,
                      reason: str) -> None:
        """Remember prefixes import policy rejected (after `withdraw` took them out of the table)."""
        entry = (path(self.source, attrs, next_hop), reason)
        filtered = self.filtered
        for nlri in prefixes:
            filtered[nlri] = entry

    def iter_filtered(self) -> Iterable[tuple[bytes, Path, str]]:
        """(plain prefix, path as received, reason) for each rejected route."""
        strip = 4 if self.add_path else 0
        for nlri, (p, reason) in self.filtered.items():
            yield (nlri[strip:] if strip and len(nlri) in (10, 22) else nlri), p, reason

    def announce(self, prefixes: Iterable[bytes], attrs: PathAttributes, next_hop: NextHop) -> list[bytes]:
        """Store the prefixes with this attribute set; returns the (plain) prefixes whose entry changed."""
        if self.filtered:
            prefixes = list(prefixes)
            pop = self.filtered.pop
            for nlri in prefixes:
                pop(nlri, None)
        if self.add_path:
            return self._announce_add_path(prefixes, attrs, next_hop)
        p = path(self.source, attrs, next_hop)
        routes = self.routes
        get = routes.get
        changed = []
        append = changed.append
        before = len(routes)
        for prefix in prefixes:
            old = get(prefix)
            if old is not p:
                routes[prefix] = p
                append(prefix)
                if type(old) is tuple:  # left from an ADD-PATH session (graceful restart)
                    self.path_count -= len(old) - 1
        self.path_count += len(routes) - before
        return changed

    def _announce_add_path(
        self, prefixes: Iterable[bytes], attrs: PathAttributes, next_hop: NextHop
    ) -> list[bytes]:
        by_id: dict[bytes, Path] = {}
        routes = self.routes
        changed = []
        for nlri in prefixes:
            pid, prefix = nlri[:4], nlri[4:]
            p = by_id.get(pid)
            if p is None:
                p = by_id[pid] = path(self.source, attrs, next_hop, pid)
            old = routes.get(prefix)
            if old is None:
                routes[prefix] = p
                self.path_count += 1
            elif old is p:
                continue
            elif isinstance(old, tuple):
                rest = tuple(q for q in old if q.path_id != pid)
                self.path_count += len(rest) + 1 - len(old)
                routes[prefix] = (*rest, p)
            elif old.path_id == pid:
                routes[prefix] = p
            else:
                routes[prefix] = (old, p)
                self.path_count += 1
            changed.append(prefix)
        return changed

    def withdraw(self, prefixes: Iterable[bytes]) -> list[bytes]:
        """Remove the prefixes; returns the (plain) prefixes that were present."""
        routes = self.routes
        if self.filtered:
            prefixes = list(prefixes)
            pop_filtered = self.filtered.pop
            for nlri in prefixes:
                pop_filtered(nlri, None)
        changed = []
        if not self.add_path:
            pop = routes.pop
            append = changed.append
            for prefix in prefixes:
                old = pop(prefix, None)
                if old is not None:
                    append(prefix)
                    if type(old) is tuple:
                        self.path_count -= len(old) - 1
            self.path_count -= len(changed)
            return changed
        for nlri in prefixes:
            pid, prefix = nlri[:4], nlri[4:]
            old = routes.get(prefix)
            if old is None:
                continue
            if isinstance(old, tuple):
                rest = tuple(q for q in old if q.path_id != pid)
                if len(rest) == len(old):
                    continue
                routes[prefix] = rest[0] if len(rest) == 1 else rest
            elif old.path_id == pid:
                del routes[prefix]
            else:
                continue
            self.path_count -= 1
            changed.append(prefix)
        return changed

    def sync(self, prefixes: Iterable[bytes], attrs: PathAttributes, next_hop: NextHop) -> list[bytes]:
        """Make the table exactly `prefixes` with this attribute set (locally originated routes)."""
        wanted = set(prefixes)
        gone = [p for p in self.routes if p not in wanted]
        return self.withdraw(gone) + self.announce(sorted(wanted), attrs, next_hop)

    def clear(self) -> list[bytes]:
        changed = list(self.routes)
        self.routes.clear()
        self.filtered.clear()
        self.path_count = 0
        return changed

    # ---------------------------------------------------------------- stale marking (GR, RFC 7313)

    def mark_stale(self) -> list[bytes]:
        """Mark every route stale (graceful restart helper, enhanced route refresh BoRR). What was
        rejected is forgotten: the peer sends it again."""
        self.filtered.clear()
        twins: dict[int, Path] = {}

        def twin(p: Path) -> Path:
            t = twins.get(id(p))
            if t is None:
                t = twins[id(p)] = p.with_stale(True)
            return t

        routes = self.routes
        changed = []
        for prefix, entry in routes.items():
            if isinstance(entry, tuple):
                new: Entry = tuple(twin(p) for p in entry)
                if any(a is not b for a, b in zip(new, entry)):
                    routes[prefix] = new
                    changed.append(prefix)
            elif not entry.stale:
                routes[prefix] = twin(entry)
                changed.append(prefix)
        return changed

    def sweep_stale(self) -> list[bytes]:
        """Remove every route still stale; returns the prefixes whose entry changed."""
        routes = self.routes
        changed = []
        for prefix, entry in list(routes.items()):
            if isinstance(entry, tuple):
                rest = tuple(p for p in entry if not p.stale)
                if len(rest) == len(entry):
                    continue
                self.path_count -= len(entry) - len(rest)
                if not rest:
                    del routes[prefix]
                else:
                    routes[prefix] = rest[0] if len(rest) == 1 else rest
                changed.append(prefix)
            elif entry.stale:
                del routes[prefix]
                self.path_count -= 1
                changed.append(prefix)
        return changed

    def stale_count(self) -> int:
        return sum(1 for e in self.routes.values() for p in entry_paths(e) if p.stale)

    def iter_paths(self) -> Iterable[tuple[bytes, Path]]:
        for prefix, entry in self.routes.items():
            if isinstance(entry, tuple):
                for p in entry:
                    yield prefix, p
            else:
                yield prefix, entry


__all__ = ["NO_PATH_ID", "AdjRibIn", "Entry", "entry_paths"]
