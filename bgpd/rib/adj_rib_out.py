"""Adj-RIB-Out: per peer, what was last advertised, and the UPDATEs that bring the peer up to date.

Loc-RIB changes go through the export policy into `pending` (prefix -> `Advert`, or None to
withdraw), one entry per prefix, so several changes of a prefix inside the coalescing window become
one, and a prefix announced and withdrawn again before it was ever sent becomes nothing. `flush`
compares `pending` with `advertised`, groups the announcements by `Advert` (interned: one attribute
set and next hop) and packs each group with `proto.bgp.packing` into as few UPDATEs as fit.

Every family gets End-of-RIB after its initial table. A route refresh re-sends the whole table of the
family, between BoRR and EoRR when the peer negotiated enhanced route refresh (RFC 7313).

Time is given, never read: `flush(now)` sends what is due and `next_deadline()` says when to call
again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from bgpd.policy import Exporter, ExportPolicy
from bgpd.rib.loc_rib import Change, LocRib
from bgpd.rib.path import Advert, NextHop, PeerInfo
from proto.bgp.constants import AfiSafi, RefreshSubtype
from proto.bgp.model import Negotiated, PathAttributes, RouteRefresh

DEFAULT_WINDOW = 0.02  # seconds: long enough to batch a burst, short enough not to be noticed


class Packer(Protocol):
    """`proto.bgp.packing`, as a parameter so tests can watch the grouping."""

    def pack_announcements(
        self,
        family: AfiSafi,
        attrs: PathAttributes,
        next_hop: NextHop,
        prefixes: Sequence[bytes],
        negotiated: Negotiated,
    ) -> list[bytes]: ...

    def pack_withdrawals(
        self, family: AfiSafi, prefixes: Sequence[bytes], negotiated: Negotiated
    ) -> list[bytes]: ...

    def end_of_rib(self, family: AfiSafi) -> bytes: ...


def default_packer() -> Packer:
    from proto.bgp import packing

    return packing  # type: ignore[return-value]


def encode_refresh_message(family: AfiSafi, subtype: int, negotiated: Negotiated) -> bytes:
    from proto.bgp.codec import encode_message

    return encode_message(RouteRefresh(family[0], family[1], subtype), negotiated)


class AdjRibOut:
    def __init__(
        self,
        target: PeerInfo,
        export: ExportPolicy,
        negotiated: Negotiated | None = None,
        packer: Packer | None = None,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        self.target = target
        self.export = export
        self.negotiated = negotiated if negotiated is not None else Negotiated()
        self.packer = packer if packer is not None else default_packer()
        self.window = window
        self.families: tuple[AfiSafi, ...] = ()
        self.enhanced_refresh = False
        self.advertised: dict[AfiSafi, dict[bytes, Advert]] = {}
        self.pending: dict[AfiSafi, dict[bytes, Advert | None]] = {}
        self._exporters: dict[AfiSafi, Exporter] = {}
        self._eor_due: set[AfiSafi] = set()
        self._refresh_due: dict[AfiSafi, bool] = {}  # family -> enhanced (BoRR/EoRR around it)
        self._deadline: float | None = None

    @property
    def started(self) -> bool:
        return bool(self.families)

    def start(
        self,
        now: float,
        loc_ribs: Mapping[AfiSafi, LocRib],
        families: Sequence[AfiSafi],
        negotiated: Negotiated | None = None,
        enhanced_refresh: bool = False,
    ) -> None:
        """The session is Established: queue the initial table of every family, End-of-RIB after it.

        Not while a restarting speaker defers its decision (RFC 4724 4.1): an empty table followed
        by End-of-RIB would make graceful-restart helpers drop every route they kept for us. Start
        the Adj-RIB-Outs when `RestartDeferral` is done."""
        if any(loc.deferred is not None for loc in loc_ribs.values()):
            raise RuntimeError("Adj-RIB-Out started while the Loc-RIB defers its decision")
        if negotiated is not None:
            self.negotiated = negotiated
        self.enhanced_refresh = enhanced_refresh
        self.families = tuple(f for f in families if f in loc_ribs)
        self.advertised = {f: {} for f in self.families}
        self.pending = {f: {} for f in self.families}
        # a new session may have a new local address: export afresh
        self._exporters = {f: self.export.exporter(self.target, f) for f in self.families}
        self._refresh_due = {}
        for f in self.families:
            export = self._exporters[f]
            pend = self.pending[f]
            for prefix, best in loc_ribs[f].best.items():
                a = export(prefix, best)
                if a is not None:
                    pend[prefix] = a
        self._eor_due = set(self.families)
        self._deadline = now

    def stop(self) -> None:
        """The session went down: nothing is advertised any more."""
        self.families = ()
        self.advertised = {}
        self.pending = {}
        self._exporters = {}
        self._eor_due = set()
        self._refresh_due = {}
        self._deadline = None

    def changes(self, family: AfiSafi, changes: Sequence[Change], now: float) -> None:
        """Loc-RIB changes of `family`; sent at the end of the window."""
        export = self._exporters.get(family)
        if export is None:
            return
        pend = self.pending[family]
        for prefix, best in changes:
            pend[prefix] = None if best is None else export(prefix, best)
        if pend and self._deadline is None:
            self._deadline = now + self.window

    def route_refresh(self, family: AfiSafi, now: float) -> None:
        """The peer asked for our table again (RFC 2918; RFC 7313 when enhanced refresh is on)."""
        if family in self.advertised:
            self._refresh_due[family] = self.enhanced_refresh
            self._deadline = now

    def next_deadline(self) -> float | None:
        return self._deadline

    def flush(self, now: float, force: bool = False) -> list[bytes]:
        """The UPDATEs (and End-of-RIB, BoRR/EoRR) due at `now`, in sending order."""
        if self._deadline is None or (now < self._deadline and not force):
            return []
        self._deadline = None
        out: list[bytes] = []
        for family in self.families:
            out.extend(self._flush_family(family))
        return out

    def _flush_family(self, family: AfiSafi) -> list[bytes]:
        packer = self.packer
        negotiated = self.negotiated
        pend = self.pending[family]
        adv = self.advertised[family]
        self.pending[family] = {}
        groups: dict[Advert, list[bytes]] = {}
        withdrawals: list[bytes] = []
        for prefix, new in pend.items():
            old = adv.get(prefix)
            if new is old:
                continue
            if new is None:
                del adv[prefix]
                withdrawals.append(prefix)
            else:
                adv[prefix] = new
                groups.setdefault(new, []).append(prefix)
        out: list[bytes] = []
        refresh = self._refresh_due.pop(family, None)
        if refresh is not None:
            if refresh:
                out.append(encode_refresh_message(family, RefreshSubtype.BORR, negotiated))
            groups = {}
            for prefix, a in adv.items():
                groups.setdefault(a, []).append(prefix)
        if withdrawals:
            out.extend(packer.pack_withdrawals(family, withdrawals, negotiated))
        for a, prefixes in groups.items():
            out.extend(packer.pack_announcements(family, a.attrs, a.next_hop, prefixes, negotiated))
        if refresh:
            out.append(encode_refresh_message(family, RefreshSubtype.EORR, negotiated))
        if family in self._eor_due:
            self._eor_due.discard(family)
            out.append(packer.end_of_rib(family))
        return out

    def __len__(self) -> int:
        return sum(len(a) for a in self.advertised.values())
