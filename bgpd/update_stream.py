"""An update group's encoded stream: UPDATEs encoded once, kept as a history and sliced per member.

What `bgpd.update_group.UpdateGroup` decides to send is encoded into units, each the UPDATEs of one
family for one (attribute set, owner, next hop self) bucket. Every member gets the same bytes:
`distribute` joins the units into one buffer and gives each member that buffer, or memoryview slices
of it around the units it must not get (the ones it owns: its own routes; the ones for another next
hop self), so the work is O(units + members), not their product.

A member that joins (a session just Established) or asks for a route refresh needs the whole table.
The group keeps its table as encoded units in an `UpdateHistory`: a base (the table at some moment)
followed by every delta since. Replaying them in order leaves the peer in the group's state, so a
joiner costs a copy of bytes, not a new encoding. When the deltas outgrow the base, the history is
dropped and rebuilt from the table the next time someone needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from bgpd.rib.path import Advert, NextHop, PeerInfo
from proto.bgp.constants import AfiSafi
from proto.bgp.model import Negotiated, PathAttributes, RouteRefresh

Chunk = bytes | memoryview  # what a member is given to send: whole UPDATE messages


class Packer(Protocol):
    """`proto.bgp.packing`, as a parameter so tests can watch the grouping."""

    def pack_announcements(self, family: AfiSafi, attrs: PathAttributes, next_hop: NextHop,
                           prefixes: Sequence[bytes], negotiated: Negotiated) -> list[bytes]: ...

    def pack_withdrawals(self, family: AfiSafi, prefixes: Sequence[bytes],
                         negotiated: Negotiated) -> list[bytes]: ...

    def end_of_rib(self, family: AfiSafi) -> bytes: ...


def default_packer() -> Packer:
    from proto.bgp import packing

    return packing  # type: ignore[return-value]


def encode_refresh_message(family: AfiSafi, subtype: int, negotiated: Negotiated) -> bytes:
    from proto.bgp.codec import encode_message

    return encode_message(RouteRefresh(family[0], family[1], subtype), negotiated)


class Unit(NamedTuple):
    """Encoded UPDATEs of one family; `owner`, when set, is the member that must not get them."""

    family: AfiSafi
    data: bytes
    owner: PeerInfo | None
    count: int  # messages in `data`
    hop: NextHop | None = None  # only for members whose own address (next hop self) this is


class Output:
    """What one member must send after a flush: chunks of whole messages, in order, and how many."""

    __slots__ = ("chunks", "refreshes", "updates")

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.updates = 0
        self.refreshes = 0  # BoRR / EoRR (ROUTE-REFRESH messages), sent in line with the UPDATEs

    def __repr__(self) -> str:
        return f"Output({self.updates} UPDATEs, {self.refreshes} refreshes, {sum(map(len, self.chunks))} octets)"


def encode_units(packer: Packer, negotiated: Negotiated, family: AfiSafi, withdrawals: list[bytes],
                 groups: Mapping[tuple[Advert, PeerInfo | None, NextHop | None], list[bytes]],
                 withdrawals_by_hop: Mapping[NextHop, list[bytes]] | None = None) -> list[Unit]:
    """Withdrawals and announcements bucketed by (attribute set, owner, next hop self) as units."""
    units: list[Unit] = []
    if withdrawals:
        messages = packer.pack_withdrawals(family, withdrawals, negotiated)
        units.append(Unit(family, b"".join(messages), None, len(messages)))
    for hop, prefixes in (withdrawals_by_hop or {}).items():
        messages = packer.pack_withdrawals(family, prefixes, negotiated)
        units.append(Unit(family, b"".join(messages), None, len(messages), hop))
    for (a, owner, hop), prefixes in groups.items():
        messages = packer.pack_announcements(family, a.attrs, a.next_hop, prefixes, negotiated)
        units.append(Unit(family, b"".join(messages), owner, len(messages), hop))
    return units


class UpdateHistory:
    """The table as encoded units: a base, then every delta since (`units`; None: none kept)."""

    __slots__ = ("_base_size", "_size", "hops", "units")

    def __init__(self) -> None:
        self.units: list[Unit] | None = None
        # hops with units in the history; kept when the units are dropped, until the next base
        self.hops: set[tuple[AfiSafi, NextHop]] = set()
        self._size = 0
        self._base_size = 0

    def rebase(self, units: list[Unit]) -> list[Unit]:
        """The table encoded afresh: the new base."""
        self.units = units
        self.hops = {(u.family, u.hop) for u in units if u.hop is not None}
        self._base_size = self._size = sum(len(u.data) for u in units)
        return units

    def extend(self, delta: Sequence[Unit]) -> None:
        """A delta sent to the members in step: appended while a history is kept."""
        units = self.units
        if units is None:
            return
        units.extend(delta)
        self.hops.update((u.family, u.hop) for u in delta if u.hop is not None)
        self._size += sum(len(u.data) for u in delta)
        if self._size > 2 * self._base_size + 65536:
            self.units = None  # replaying the deltas would cost more than a new base

    def drop(self) -> None:
        self.units = None


class Receiver(Protocol):
    """What `distribute` reads of a member: who it is, and our address on its session per family."""

    info: PeerInfo
    hops: dict[AfiSafi, NextHop]


def distribute(units: Sequence[Unit], members: Iterable[Receiver], out: dict[PeerInfo, Output]) -> None:
    """Give each member the units' bytes except the ones it owns and the ones for another next hop
    self: one buffer for everyone, sliced around a member's exceptions, so the work is O(units +
    members) (units tagged with a next hop are our own routes: a handful)."""
    members = list(members)
    if not units or not members:
        return
    whole: bytes = units[0].data if len(units) == 1 else b"".join([u.data for u in units])
    total = sum(u.count for u in units)
    holes: dict[PeerInfo, list[tuple[int, int, int]]] = {}
    hop_units: list[tuple[int, int, int, AfiSafi, NextHop]] = []
    pos = 0
    for u in units:
        end = pos + len(u.data)
        if u.owner is not None:
            holes.setdefault(u.owner, []).append((pos, end, u.count))
        if u.hop is not None:
            hop_units.append((pos, end, u.count, u.family, u.hop))
        pos = end
    view: memoryview | None = None
    for m in members:
        o = out.get(m.info)
        if o is None:
            o = out[m.info] = Output()
        spans = holes.get(m.info)
        if hop_units:
            hops = m.hops
            other = [(a, b, n) for a, b, n, f, h in hop_units if hops.get(f) != h]
            if other:
                spans = sorted(set((spans or []) + other))
        if not spans:
            if whole:
                o.chunks.append(whole)
                o.updates += total
            continue
        if view is None:
            view = memoryview(whole)
        start = 0
        count = total
        for a, b, n in spans:
            if a > start:
                o.chunks.append(view[start:a])
            if b > start:
                start = b
                count -= n
        if start < len(whole):
            o.chunks.append(view[start:])
        o.updates += count
