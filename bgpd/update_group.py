"""Update groups: peers that get the same routes share one Adj-RIB-Out and one encoded stream.

FRR's idea, BIRD's packing. Peers whose export target (`bgpd.export_policy.ExportTarget`: eBGP or iBGP,
mesh, reflector client, next hop self...) and encoding (4-octet AS, extended messages, families) are
equal belong to one `UpdateGroup` (`bgpd.group_key`). Loc-RIB changes go into the group once, not once per peer; at the
end of the coalescing window the group exports each changed prefix once (the per-path work cached),
packs the announcements by attribute set and encodes every UPDATE once. Every member gets the same
bytes object, so a reflector with a thousand clients encodes a route once, not a thousand times.

One thing differs between members: a route never goes back to the peer it came from, nor to the peer
that originated it (RFC 4456 ORIGINATOR_ID). Announcements are therefore bucketed by (attribute set,
owner), where the owner is the member that must not get them, and each member gets the encoded
stream minus the units it owns (`bgpd.update_stream` encodes, keeps and slices the stream). A group
of one member does not even keep the routes that member owns (a peer sending us a full table is
usually alone in its group); they are added back when a second member joins.

Our own address on the session (next hop self) differs between members of an iBGP group when they
reach us on different local addresses. It matters only for the routes this node originates, so it
is not part of an iBGP group's key: those routes are exported and encoded once per distinct address
among the members (units tagged with that `hop`), and everything else is shared.

A member that joins (a session just Established) or asks for a route refresh needs the whole table:
the group replays its encoded history (`bgpd.update_stream.UpdateHistory`), not a new encoding.

Time is given, never read: `flush(now)` returns what each member must send; `next_deadline()` says
when to call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from bgpd.export_policy import Exporter, ExportPolicy, ExportTarget
from bgpd.group_key import GroupKey
from bgpd.rib.loc_rib import Change, LocRib
from bgpd.rib.path import Advert, NextHop, Path, PeerInfo, advert
from bgpd.update_stream import (
    Output,
    Packer,
    Unit,
    UpdateHistory,
    default_packer,
    distribute,
    encode_refresh_message,
    encode_units,
)
from proto.bgp.as4 import for_two_octet_peer
from proto.bgp.constants import AfiSafi, RefreshSubtype

DEFAULT_WINDOW = 0.02  # seconds: long enough to batch a burst, short enough not to be noticed
_UNKNOWN = object()


class Member:
    __slots__ = ("enhanced_refresh", "hops", "info", "joining", "previous", "refresh")

    def __init__(self, info: PeerInfo, enhanced_refresh: bool,
                 previous: Mapping[AfiSafi, Iterable[bytes]] | None = None) -> None:
        self.info = info
        self.enhanced_refresh = enhanced_refresh
        self.joining = True  # needs the whole table, then End-of-RIB
        # what another group advertised to it before it moved here (its export rules changed): what
        # this group does not advertise is withdrawn when it joins, and End-of-RIB is not sent again
        self.previous = {f: set(p) for f, p in previous.items()} if previous is not None else None
        self.refresh: set[AfiSafi] = set()  # families to send again (route refresh)
        self.hops: dict[AfiSafi, NextHop] = dict(info.next_hop_self)  # our address on its session

    def __repr__(self) -> str:
        return f"Member({self.info.name}{', joining' if self.joining else ''})"


class UpdateGroup:
    def __init__(self, key: GroupKey, policy: ExportPolicy, loc_ribs: Mapping[AfiSafi, LocRib],
                 packer: Packer | None = None, window: float = DEFAULT_WINDOW) -> None:
        self.key = key
        self.families = key.families
        self.negotiated = key.encoding.negotiated()
        self.policy = policy
        self.loc_ribs = loc_ribs
        self.packer = packer if packer is not None else default_packer()
        self.window = window
        self.members: dict[PeerInfo, Member] = {}
        self._by_router_id: dict[str, Member] = {}
        self._exporters: dict[AfiSafi, Exporter] = {}
        self.advertised: dict[AfiSafi, dict[bytes, Advert]] = {}
        self.owned: dict[AfiSafi, dict[bytes, PeerInfo]] = {}  # prefixes whose units a member must not get
        # iBGP groups: our own routes per next hop self of the members (see the module docstring)
        # (a group whose key holds our address already, nextHopMode Self, needs no split)
        self.per_hop = key.target.ibgp and not key.target.next_hop_self
        self.local_adv: dict[AfiSafi, dict[NextHop, dict[bytes, Advert]]] = {}
        self._hop_exporters: dict[tuple[AfiSafi, NextHop], Exporter] = {}
        self._hop_users: dict[tuple[AfiSafi, NextHop], int] = {}  # members per (family, next hop self)
        self.pending: dict[AfiSafi, dict[bytes, Path | None]] = {}
        self._history = UpdateHistory()
        self._loaded = False
        self._deadline: float | None = None

    def __repr__(self) -> str:
        return f"UpdateGroup({len(self.members)} members, {self.key.target})"

    def __len__(self) -> int:
        return sum(len(a) for a in self.advertised.values()) + sum(
            len(t) for by_hop in self.local_adv.values() for t in by_hop.values())

    def advertised_to(self, info: PeerInfo, family: AfiSafi) -> dict[bytes, Advert]:
        """What the group sends the member for `family`: the shared table without what it owns, and
        our own routes with its next hop."""
        member = self.members.get(info)
        owned = self.owned.get(family, {})
        out = {p: a for p, a in self.advertised.get(family, {}).items() if owned.get(p) is not info}
        hop = member.hops.get(family) if member is not None else None
        if hop is not None:
            out.update(self.local_adv.get(family, {}).get(hop, {}))
        return out

    def owned_counts(self, family: AfiSafi) -> dict[PeerInfo, int]:
        """How many routes of the shared table for `family` each member owns (not sent back to it)."""
        owned = self.owned.get(family, {})
        counts: dict[PeerInfo, int] = {}
        if owned:
            for p in self.advertised.get(family, {}):
                o = owned.get(p)
                if o is not None:
                    counts[o] = counts.get(o, 0) + 1
        return counts

    def advertised_count(self, info: PeerInfo, family: AfiSafi, owned_counts: dict[PeerInfo, int]) -> int:
        """len(advertised_to(info, family)), from `owned_counts(family)`."""
        shared = self.advertised.get(family, {})
        n = len(shared) - owned_counts.get(info, 0)
        member = self.members.get(info)
        hop = member.hops.get(family) if member is not None else None
        if hop is not None:
            owned = self.owned.get(family, {})
            for p in self.local_adv.get(family, {}).get(hop, {}):
                if p not in shared or owned.get(p) is info:
                    n += 1
        return n

    # ------------------------------------------------------------ membership

    def join(self, info: PeerInfo, now: float, enhanced_refresh: bool = False,
             previous: Mapping[AfiSafi, Iterable[bytes]] | None = None) -> None:
        """A member's session is Established (and the speaker is not deferring its decision): it gets
        the whole table, then End-of-RIB for every family, at the next flush. A member that comes from
        another group on the same session (`previous`: what that group advertised to it) gets the
        whole table and the withdrawal of what it had that this group does not advertise."""
        if info in self.members:
            return
        before = len(self.members)
        member = self.members[info] = Member(info, enhanced_refresh, previous)
        self._by_router_id[info.router_id] = member
        if not self._loaded:
            self._load()
        elif before == 1:
            self._add_owned_routes(next(m for m in self.members.values() if m is not member).info)
        users = self._hop_users
        for family, hop in member.hops.items():
            users[family, hop] = users.get((family, hop), 0) + 1
            if self.per_hop and family in self.local_adv and hop not in self.local_adv[family]:
                self._load_hop(family, hop)
        self._due(now)

    def leave(self, info: PeerInfo) -> None:
        """The member's session went down. What it owns stays marked as its own: if it comes back it
        must not get its routes, and the others already have them. The encoded history stays valid
        too (a joiner is never the owner of another peer's units), so a flapping member costs nothing
        here, not a new encoding of the table."""
        member = self.members.pop(info, None)
        if member is None:
            return
        if self._by_router_id.get(info.router_id) is member:
            del self._by_router_id[info.router_id]
        users = self._hop_users
        gone: list[tuple[AfiSafi, NextHop]] = []
        for family, hop in member.hops.items():
            left = users[family, hop] - 1
            if left:
                users[family, hop] = left
            else:
                del users[family, hop]
                gone.append((family, hop))
        if not self.members:
            self._unload()
            return
        if len(self.members) == 1:
            (last,) = self.members
            self._drop_owned_routes(last)
        for family, hop in gone:
            # its units in the history are for nobody now: skipped by everyone (counted per member,
            # not by walking the members: a thousand clients each on its own address leave and join)
            by_hop = self.local_adv.get(family)
            if by_hop is not None:
                by_hop.pop(hop, None)

    def refresh(self, info: PeerInfo, family: AfiSafi, now: float) -> None:
        """The member asked for our table again (RFC 2918; RFC 7313 when enhanced refresh is on)."""
        member = self.members.get(info)
        if member is not None and family in self.families and not member.joining:
            member.refresh.add(family)
            self._due(now)

    # ------------------------------------------------------------ changes

    def changes(self, family: AfiSafi, changes: Sequence[Change], now: float) -> None:
        """Loc-RIB changes of `family`; exported at the end of the window."""
        pend = self.pending.get(family)
        if pend is None or not changes:
            return
        pend.update(changes)
        if self._deadline is None:
            self._deadline = now + self.window

    def next_deadline(self) -> float | None:
        return self._deadline

    def _due(self, now: float) -> None:
        # joins and refreshes also wait for the window: a storm of sessions coming up shares a flush
        if self._deadline is None:
            self._deadline = now + self.window

    # ------------------------------------------------------------ flushing

    def flush(self, now: float, force: bool = False) -> dict[PeerInfo, Output]:
        """The UPDATEs each member must send now (End-of-RIB and BoRR/EoRR included), in order."""
        if self._deadline is None or (now < self._deadline and not force):
            return {}
        self._deadline = None
        out: dict[PeerInfo, Output] = {}
        if not self.members:
            return out
        steady = [m for m in self.members.values() if not m.joining]
        # with nobody in step and no history to extend, the delta only updates the table: joiners get
        # the table encoded once, not the delta and then the table
        delta = self._delta(encode=bool(steady) or self._history.units is not None)
        if delta:
            self._history.extend(delta)
            distribute(delta, steady, out)
        joiners = [m for m in self.members.values() if m.joining]
        refreshers = [m for m in self.members.values() if m.refresh]
        if joiners or refreshers:
            history = self._full_units()
            if joiners:
                for m in joiners:
                    if m.previous is not None:
                        self._withdraw_previous(m, out)
                distribute(history, joiners, out)
                eor = [self.packer.end_of_rib(f) for f in self.families]
                for m in joiners:
                    o = out.setdefault(m.info, Output())
                    if m.previous is None:
                        o.chunks.extend(eor)
                        o.updates += len(eor)
                    m.joining = False
                    m.previous = None
            for m in refreshers:
                o = out.setdefault(m.info, Output())
                for family in sorted(m.refresh):
                    if m.enhanced_refresh:
                        o.chunks.append(encode_refresh_message(family, RefreshSubtype.BORR, self.negotiated))
                        o.refreshes += 1
                    distribute([u for u in history if u.family == family], [m], out)
                    if m.enhanced_refresh:
                        o.chunks.append(encode_refresh_message(family, RefreshSubtype.EORR, self.negotiated))
                        o.refreshes += 1
                m.refresh.clear()
        return out

    def _withdraw_previous(self, member: Member, out: dict[PeerInfo, Output]) -> None:
        assert member.previous is not None
        o = out.setdefault(member.info, Output())
        for family, had in member.previous.items():
            gone = sorted(had - set(self.advertised_to(member.info, family))) if family in self.families else []
            if gone:
                messages = self.packer.pack_withdrawals(family, gone, self.negotiated)
                o.chunks.extend(messages)
                o.updates += len(messages)

    def _delta(self, encode: bool = True) -> list[Unit]:
        """Export what changed since the last flush and (with `encode`) encode it; the table follows."""
        units: list[Unit] = []
        # a group of one: what that member sent us is neither exported nor kept (nobody to send it to)
        alone = next(iter(self.members)) if len(self.members) == 1 else None
        owner_of = self._owner
        for family in self.families:
            pend = self.pending[family]
            if not pend:
                continue
            self.pending[family] = {}
            export = self._exporters[family]
            adv = self.advertised[family]
            owned = self.owned[family]
            owners: dict[Path, PeerInfo | None] = {}
            groups: dict[tuple[Advert, PeerInfo | None, NextHop | None], list[bytes]] = {}
            withdrawals: list[bytes] = []
            withdrawals_by_hop: dict[NextHop, list[bytes]] = {}
            local = self.local_adv.get(family) if self.per_hop else None
            for prefix, best in pend.items():
                if local:
                    # our own routes live per next hop; a prefix may also leave them (no longer ours)
                    is_ours = best is not None and best.source.local
                    for hop, table in local.items():
                        a = self._hop_export(family, hop)(prefix, best) if is_ours else None  # type: ignore[arg-type]
                        if a is None:
                            if table.pop(prefix, None) is not None:
                                withdrawals_by_hop.setdefault(hop, []).append(prefix)
                        elif table.get(prefix) is not a:
                            table[prefix] = a
                            groups.setdefault((a, None, hop), []).append(prefix)
                    if is_ours:
                        continue
                new = None if best is None or best.source is alone else export(prefix, best)
                if new is None:
                    if prefix in adv:
                        del adv[prefix]
                        owned.pop(prefix, None)
                        withdrawals.append(prefix)
                    continue
                owner = owners.get(best, _UNKNOWN)  # type: ignore[arg-type]
                if owner is _UNKNOWN:
                    owner = owners[best] = owner_of(best, new)  # type: ignore[arg-type]
                if owner is not None and owner is alone:
                    if prefix in adv:
                        del adv[prefix]
                        owned.pop(prefix, None)
                        withdrawals.append(prefix)
                    continue
                if owner is None:
                    owned.pop(prefix, None)
                else:
                    owned[prefix] = owner  # type: ignore[assignment]
                if adv.get(prefix) is new:
                    continue
                adv[prefix] = new
                groups.setdefault((new, owner, None), []).append(prefix)  # type: ignore[arg-type]
            if encode:
                units.extend(encode_units(self.packer, self.negotiated, family, withdrawals, groups,
                                          withdrawals_by_hop))
        return units

    def _hop_export(self, family: AfiSafi, hop: NextHop) -> Exporter:
        export = self._hop_exporters.get((family, hop))
        if export is None:
            target = replace(self.key.target, next_hop_self=((family, hop),))
            export = self._hop_exporters[family, hop] = self._exporter(family, target)
        return export

    def _owner(self, best: Path, advert: Advert) -> PeerInfo | None:
        member = self.members.get(best.source)
        if member is None:
            originator = advert.attrs.originator_id
            if originator is not None:
                member = self._by_router_id.get(originator)
        return member.info if member is not None else None

    def _full_units(self) -> list[Unit]:
        """The table as encoded units: the history, rebuilt from the table when there is none."""
        units = self._history.units
        if units is None:
            units = []
            for family in self.families:
                owned = self.owned[family]
                groups: dict[tuple[Advert, PeerInfo | None, NextHop | None], list[bytes]] = {}
                for prefix, a in self.advertised[family].items():
                    groups.setdefault((a, owned.get(prefix), None), []).append(prefix)
                for hop, table in self.local_adv.get(family, {}).items():
                    for prefix, a in table.items():
                        groups.setdefault((a, None, hop), []).append(prefix)
                units.extend(encode_units(self.packer, self.negotiated, family, [], groups))
            self._history.rebase(units)
        return units

    # ------------------------------------------------------------ the table

    def reload(self, now: float) -> None:
        """Export policy changed (pools): export the whole Loc-RIB again; what differs is sent."""
        if not self._loaded:
            return
        self._hop_exporters = {}
        for family in self.families:
            self._exporters[family] = self._exporter(family)
            if family in self.loc_ribs:
                # every prefix advertised or now best is looked at again
                pend = self.pending[family]
                for prefix in self.advertised[family]:
                    pend.setdefault(prefix, self.loc_ribs[family].best.get(prefix))
                for prefix, best in self.loc_ribs[family].best.items():
                    pend.setdefault(prefix, best)
        self._due(now)

    def _exporter(self, family: AfiSafi, target: ExportTarget | None = None) -> Exporter:
        export = self.policy.exporter(target or self.key.target, family)
        if self.key.encoding.four_octet_as:
            return export
        # members without 4-octet AS numbers: AS_TRANS in AS_PATH, the real path in AS4_PATH (RFC 6793)
        converted: dict[Advert, Advert] = {}

        def export_two_octet(prefix: bytes, best: Path) -> Advert | None:
            a = export(prefix, best)
            if a is None:
                return None
            b = converted.get(a)
            if b is None:
                if len(converted) > 4096:
                    converted.clear()
                b = converted[a] = advert(for_two_octet_peer(a.attrs), a.next_hop)
            return b

        return export_two_octet

    def _load(self) -> None:
        """The first member: export the Loc-RIB (the group keeps no table while it has no members)."""
        self._loaded = True
        self._history.drop()
        self._hop_exporters = {}
        for family in self.families:
            self._exporters[family] = self._exporter(family)
            self.advertised[family] = {}
            self.owned[family] = {}
            if self.per_hop:
                self.local_adv[family] = {}
            # what is in the Loc-RIB now is exported at the next flush, like any change
            self.pending[family] = dict(self.loc_ribs[family].best) if family in self.loc_ribs else {}

    def _load_hop(self, family: AfiSafi, hop: NextHop) -> None:
        """A member reaches us on an address no other member uses: our own routes with that next hop
        are exported at the next flush, as a delta that the history takes like any other. Only when
        the history still holds units for this hop from an earlier member (it left, and what changed
        since was never encoded for the hop) is the history rebuilt: a reflector whose clients each
        reach it on their own address would otherwise re-encode its whole table for every client
        that joins (issue 12: most of its CPU with 3,000 clients)."""
        self.local_adv[family][hop] = {}
        loc = self.loc_ribs.get(family)
        if loc is not None:
            pend = self.pending[family]
            for src in loc.sources:
                if src.source.local:
                    for prefix in src.routes:
                        pend.setdefault(prefix, loc.best.get(prefix))
        if (family, hop) in self._history.hops:
            self._history.drop()

    def _unload(self) -> None:
        self._loaded = False
        self.local_adv, self._hop_exporters, self._hop_users = {}, {}, {}
        self.advertised, self.owned, self.pending, self._exporters = {}, {}, {}, {}
        self._history.drop()
        self._deadline = None

    def _add_owned_routes(self, first: PeerInfo) -> None:
        """A second member joins: the routes the first one owns (left out while it was alone) are
        needed now. They are exported again at the next flush; the first member does not get them."""
        for family in self.families:
            loc = self.loc_ribs.get(family)
            if loc is None:
                continue
            pend = self.pending[family]
            for prefix, best in loc.best.items():
                if best.source is first or best.attrs.originator_id == first.router_id:
                    pend.setdefault(prefix, best)
        self._history.drop()

    def _drop_owned_routes(self, last: PeerInfo) -> None:
        """Back to one member: the routes it owns were never sent to it; forget them."""
        for family in self.families:
            owned = self.owned[family]
            adv = self.advertised[family]
            for prefix in [p for p, o in owned.items() if o is last]:
                del owned[prefix]
                adv.pop(prefix, None)
        self._history.drop()

