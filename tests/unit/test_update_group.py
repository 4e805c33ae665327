"""Update groups: grouping by attribute set, coalescing in the window, End-of-RIB, route refresh,
one encoding for every member, and no route back to the member it came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from bgpd.export_policy import ExportPolicy, ExportTarget
from bgpd.group_key import EncodingKey, GroupKey
from bgpd.identity import Identity
from bgpd.pool_set import PoolSet
from bgpd.rib.path import NextHop, PeerInfo
from bgpd.rib.rib import Rib
from bgpd.update_group import UpdateGroup
from bgpd.update_stream import Output
from proto.bgp.constants import IPV4_UNICAST, IPV6_UNICAST, AfiSafi, RefreshSubtype
from proto.bgp.model import Negotiated, PathAttributes, RouteRefresh, Update
from proto.bgp.prefix import prefix_from_network

AS = 64512
V4, V6 = IPV4_UNICAST, IPV6_UNICAST
ME = Identity(AS, "10.0.0.1", addresses=frozenset({"10.0.0.1"}))
POOLS = {V4: PoolSet(["192.168.0.0/16"], V4), V6: PoolSet(["fd00:10::/48"], V6)}
NODE_A = PeerInfo("node-a", "10.0.0.2", AS, AS, "10.0.0.2", mesh=True)
NODE_B = PeerInfo("node-b", "10.0.0.3", AS, AS, "10.0.0.3", mesh=True)
TOR = PeerInfo("tor", "10.0.0.254", 65001, AS, "10.0.0.254", next_hop_self={V4: ("10.0.0.1",)})
WINDOW = 0.02


class RecordingPacker:
    """Stands in for proto.bgp.packing so the tests see the groups; one "message" per call."""

    def __init__(self) -> None:
        self.log: list[tuple] = []

    def pack_announcements(
        self,
        family: AfiSafi,
        attrs: PathAttributes,
        next_hop: NextHop,
        prefixes: Sequence[bytes],
        negotiated: Negotiated,
    ) -> list[bytes]:
        self.log.append(("announce", family, attrs, next_hop, tuple(prefixes)))
        return [b"announce"]

    def pack_withdrawals(
        self, family: AfiSafi, prefixes: Sequence[bytes], negotiated: Negotiated
    ) -> list[bytes]:
        self.log.append(("withdraw", family, tuple(prefixes)))
        return [b"withdraw"]

    def end_of_rib(self, family: AfiSafi) -> bytes:
        self.log.append(("eor", family))
        return b"eor"


def pfx(text: str) -> bytes:
    return prefix_from_network(text)


def mesh_attrs(next_hop: str) -> PathAttributes:
    # a community per sender, so the attribute sets still differ after eBGP rewriting (next hop self)
    return PathAttributes(
        origin=0, as_path=(), next_hop=next_hop, local_pref=100, communities=(int(next_hop.split(".")[-1]),)
    )


@pytest.fixture
def rib() -> Rib:
    rib = Rib(ME, POOLS)
    rib.add_peer(NODE_A)
    rib.add_peer(NODE_B)
    return rib


class Out:
    """One member's view of a group, in the shape the Adj-RIB-Out tests were written in."""

    def __init__(self, group: UpdateGroup, member: PeerInfo) -> None:
        self.group = group
        self.member = member

    @property
    def advertised(self) -> dict:
        return self.group.advertised

    def next_deadline(self) -> float | None:
        return self.group.next_deadline()

    def changes(self, family: AfiSafi, changes: list, now: float) -> None:
        self.group.changes(family, changes, now)

    def route_refresh(self, family: AfiSafi, now: float) -> None:
        self.group.refresh(self.member, family, now)

    def flush(self, now: float) -> list[bytes]:
        out = self.group.flush(now).get(self.member, Output())
        return [bytes(c) for c in out.chunks]

    def __len__(self) -> int:
        return len(self.group)


def group_for(rib: Rib, target: PeerInfo, families: Sequence[AfiSafi], packer: object,
              negotiated: Negotiated | None = None) -> UpdateGroup:
    key = GroupKey(ExportTarget.of(target), EncodingKey.of(negotiated or Negotiated()), tuple(families))
    return UpdateGroup(key, ExportPolicy(ME, POOLS), rib.loc, packer=packer, window=WINDOW)  # type: ignore[arg-type]


def started(rib: Rib, now: float = 0.0, families: Sequence[AfiSafi] = (V4, V6),
            enhanced: bool = False) -> tuple[Out, RecordingPacker]:
    packer = RecordingPacker()
    group = group_for(rib, TOR, families, packer)
    group.join(TOR, now, enhanced)
    return Out(group, TOR), packer


def feed(out: Out, result_changes: dict, now: float) -> None:
    for family, changes in result_changes.items():
        out.changes(family, changes, now)


def test_initial_table_grouped_then_end_of_rib(rib: Rib) -> None:
    a = [pfx(f"192.168.{i}.0/26") for i in range(3)]
    b = [pfx(f"192.168.{i}.64/26") for i in range(2)]
    rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.2"), nlri=a))
    rib.receive_update(NODE_B, Update(attributes=mesh_attrs("10.0.0.3"), nlri=b))
    rib.originate(V4, [pfx("192.168.100.0/26")])
    out, packer = started(rib)
    assert out.next_deadline() == WINDOW  # a join waits for the window too: a storm shares one flush
    msgs = out.flush(WINDOW)
    announces = [e for e in packer.log if e[0] == "announce"]
    # three attribute sets (A's, B's, our own), one packing call each, every prefix once
    assert len(announces) == 3
    assert sorted(p for e in announces for p in e[4]) == sorted([*a, *b, pfx("192.168.100.0/26")])
    assert {e[4] for e in announces} >= {tuple(a), tuple(b)}
    # End-of-RIB of every family, after the table (an empty IPv6 table gets one too)
    assert packer.log[-2:] == [("eor", V4), ("eor", V6)]
    assert msgs[-2:] == [b"eor", b"eor"]
    assert out.next_deadline() is None
    # End-of-RIB is only sent once
    packer.log.clear()
    feed(out, rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.9"), nlri=a[:1])).changes, 1.0)
    out.flush(2.0)
    assert [e[0] for e in packer.log] == ["announce"]


def test_nothing_without_members(rib: Rib) -> None:
    packer = RecordingPacker()
    group = group_for(rib, TOR, [V4], packer)
    out = Out(group, TOR)
    feed(
        out,
        rib.receive_update(
            NODE_A, Update(attributes=mesh_attrs("10.0.0.2"), nlri=[pfx("192.168.1.0/26")])
        ).changes,
        0,
    )
    assert out.next_deadline() is None and out.flush(10.0) == [] and packer.log == []
    assert group.advertised == {} and group.pending == {}  # no table kept for nobody


def test_changes_wait_for_the_window(rib: Rib) -> None:
    out, packer = started(rib)
    out.flush(WINDOW)
    packer.log.clear()
    block = pfx("192.168.1.0/26")
    feed(
        out, rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.2"), nlri=[block])).changes, 5.0
    )
    assert out.next_deadline() == pytest.approx(5.0 + WINDOW)
    assert out.flush(5.0 + WINDOW / 2) == []
    out.flush(5.0 + WINDOW)
    assert packer.log == [("announce", V4, out.advertised[V4][block].attrs, ("10.0.0.1",), (block,))]
    assert out.advertised[V4][block].attrs.as_path[0].asns == (AS,)


def test_announce_then_withdraw_in_window_is_nothing(rib: Rib) -> None:
    out, packer = started(rib)
    out.flush(WINDOW)
    packer.log.clear()
    block = pfx("192.168.1.0/26")
    feed(
        out, rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.2"), nlri=[block])).changes, 1.0
    )
    feed(out, rib.receive_update(NODE_A, Update(withdrawn=[block])).changes, 1.005)
    assert out.flush(1.0 + WINDOW) == []
    assert packer.log == []
    assert block not in out.advertised[V4]


def test_several_changes_in_window_become_one(rib: Rib) -> None:
    out, packer = started(rib)
    out.flush(WINDOW)
    packer.log.clear()
    block = pfx("192.168.1.0/26")
    for i, hop in enumerate(["10.0.0.2", "10.0.0.7", "10.0.0.8"]):
        feed(
            out,
            rib.receive_update(NODE_A, Update(attributes=mesh_attrs(hop), nlri=[block])).changes,
            1.0 + i * 0.001,
        )
    out.flush(1.0 + WINDOW)
    assert len(packer.log) == 1 and packer.log[0][0] == "announce" and packer.log[0][4] == (block,)
    # withdraw then re-announce the same thing: nothing to send
    packer.log.clear()
    feed(out, rib.receive_update(NODE_A, Update(withdrawn=[block])).changes, 2.0)
    feed(
        out,
        rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.8"), nlri=[block])).changes,
        2.001,
    )
    assert out.flush(3.0) == [] and packer.log == []


def test_withdrawals_packed_together(rib: Rib) -> None:
    blocks = [pfx(f"192.168.{i}.0/26") for i in range(5)]
    rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.2"), nlri=blocks))
    out, packer = started(rib)
    out.flush(WINDOW)
    packer.log.clear()
    feed(out, rib.receive_update(NODE_A, Update(withdrawn=blocks[:4])).changes, 1.0)
    out.flush(2.0)
    assert packer.log == [("withdraw", V4, tuple(blocks[:4]))]
    assert list(out.advertised[V4]) == [blocks[4]]


def test_route_refresh_resends_the_table(rib: Rib) -> None:
    blocks = [pfx(f"192.168.{i}.0/26") for i in range(4)]
    rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.2"), nlri=blocks[:2]))
    rib.receive_update(NODE_B, Update(attributes=mesh_attrs("10.0.0.3"), nlri=blocks[2:]))
    out, packer = started(rib)
    first = out.flush(WINDOW)
    assert [e[0] for e in packer.log] == ["announce", "announce", "eor", "eor"]  # one per attribute set
    packer.log.clear()
    out.route_refresh(V4, 7.0)
    assert out.next_deadline() == 7.0 + WINDOW
    msgs = out.flush(7.0 + WINDOW)
    # the table again, without End-of-RIB, replayed from what was encoded the first time
    assert packer.log == []
    assert msgs == [b"announceannounce"] and first[0] == b"announceannounce"


def test_enhanced_route_refresh_between_borr_and_eorr(rib: Rib) -> None:
    from proto.bgp.codec import decode_message

    blocks = [pfx(f"192.168.{i}.0/26") for i in range(3)]
    rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.2"), nlri=blocks))
    out, _packer = started(rib, families=[V4], enhanced=True)
    out.flush(WINDOW)
    # a change pending when the refresh comes in goes first, then the table again
    feed(out, rib.receive_update(NODE_A, Update(withdrawn=blocks[:1])).changes, 1.0)
    out.route_refresh(V4, 1.001)
    msgs = out.flush(1.0 + WINDOW)
    negotiated = Negotiated()
    assert msgs[0] == b"withdraw"
    assert decode_message(msgs[1], negotiated) == RouteRefresh(1, 1, RefreshSubtype.BORR)
    assert decode_message(msgs[-1], negotiated) == RouteRefresh(1, 1, RefreshSubtype.EORR)
    # the table as history: the first announcement and the withdrawal since (replayed in order)
    assert b"".join(msgs[2:-1]) == b"announce" + b"withdraw"


def test_last_member_leaving_forgets_what_was_sent(rib: Rib) -> None:
    rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.2"), nlri=[pfx("192.168.1.0/26")]))
    out, packer = started(rib, families=[V4])
    out.flush(WINDOW)
    assert len(out) == 1
    out.group.leave(TOR)
    assert len(out) == 0 and out.next_deadline() is None
    out.group.join(TOR, 5.0)
    packer.log.clear()
    out.flush(5.0 + WINDOW)
    assert [e[0] for e in packer.log] == ["announce", "eor"]


def test_with_the_real_packer(rib: Rib) -> None:
    from proto.bgp import packing
    from proto.bgp.codec import decode_message

    blocks = [pfx(f"192.168.{i >> 2}.{(i & 3) * 64}/26") for i in range(600)]
    rib.receive_update(NODE_A, Update(attributes=mesh_attrs("10.0.0.2"), nlri=blocks))
    negotiated = Negotiated()
    group = group_for(rib, TOR, [V4], packing, negotiated)
    group.join(TOR, 0.0)
    out = group.flush(WINDOW)[TOR]
    data = b"".join(bytes(c) for c in out.chunks)
    msgs = split_messages(data)
    assert out.updates == len(msgs)
    assert 1 < len(msgs) < 10  # packed, not one UPDATE per prefix
    decoded = [decode_message(m, negotiated) for m in msgs]
    got = [p for d in decoded[:-1] for p in d.nlri]  # type: ignore[union-attr]
    assert sorted(got) == sorted(blocks)
    assert decoded[-1].end_of_rib() == V4  # type: ignore[union-attr]


def test_with_the_real_packer_ipv6_and_withdrawals(rib: Rib) -> None:
    from proto.bgp import packing
    from proto.bgp.codec import decode_message

    mesh_target = PeerInfo(
        "node-c", "10.0.0.4", AS, AS, "10.0.0.4", mesh=True, next_hop_self={V6: ("fd00::1",)}
    )
    blocks = [prefix_from_network(f"fd00:10:0:{i:x}::/122") for i in range(300)]
    rib.originate(V6, blocks)
    negotiated = Negotiated()
    group = group_for(rib, mesh_target, [V6], packing, negotiated)
    group.join(mesh_target, 0.0)
    out = Out(group, mesh_target)
    decoded = [decode_message(m, negotiated) for m in split_messages(b"".join(out.flush(WINDOW)))]
    announced = [p for d in decoded[:-1] for p in d.mp_reach.nlri]  # type: ignore[union-attr]
    assert sorted(announced) == sorted(blocks)
    assert {d.mp_reach.next_hop for d in decoded[:-1]} == {("fd00::1",)}  # type: ignore[union-attr]
    assert decoded[-1].end_of_rib() == V6  # type: ignore[union-attr]
    out.changes(V6, rib.originate(V6, blocks[100:]), 1.0)
    decoded = [decode_message(m, negotiated) for m in split_messages(b"".join(out.flush(2.0)))]
    withdrawn = [p for d in decoded for p in d.mp_unreach.withdrawn]  # type: ignore[union-attr]
    assert sorted(withdrawn) == sorted(blocks[:100]) and len(decoded) == 1


def split_messages(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 16 : pos + 18], "big")
        out.append(data[pos : pos + length])
        pos += length
    return out


def test_a_member_that_flaps_costs_no_new_encoding_and_never_gets_its_own_routes() -> None:
    rr = Identity(AS, "10.0.0.1", cluster_id="244.0.0.1", addresses=frozenset({"10.0.0.1"}))
    a = PeerInfo("a", "10.0.1.1", AS, AS, "10.0.1.1", rr_client=True, next_hop_self={V4: ("10.0.0.1",)})
    b = PeerInfo("b", "10.0.1.2", AS, AS, "10.0.1.2", rr_client=True, next_hop_self={V4: ("10.0.0.1",)})
    c = PeerInfo("c", "10.0.1.3", AS, AS, "10.0.1.3", rr_client=True, next_hop_self={V4: ("10.0.0.1",)})
    rib = Rib(rr, POOLS)
    for p in (a, b, c):
        rib.add_peer(p)
    mine = [pfx("192.168.1.0/26"), pfx("192.168.1.64/26")]
    theirs = [pfx("192.168.2.0/26")]
    attrs = PathAttributes(origin=0, as_path=(), next_hop="10.0.1.1", local_pref=100)
    rib.receive_update(a, Update(attributes=attrs, nlri=mine))
    rib.receive_update(b, Update(attributes=replace(attrs, next_hop="10.0.1.2"), nlri=theirs))
    packer = RecordingPacker()
    key = GroupKey(ExportTarget.of(a), EncodingKey.of(Negotiated()), (V4,))
    group = UpdateGroup(key, ExportPolicy(rr, POOLS), rib.loc, packer=packer, window=WINDOW)  # type: ignore[arg-type]
    for p in (a, b, c):
        group.join(p, 0.0)
    first = group.flush(WINDOW)
    encoded = len([e for e in packer.log if e[0] == "announce"])
    assert encoded == 2  # a's routes once, b's route once
    # each got the others' routes only (plus End-of-RIB); c, who sent nothing, got both units
    assert first[a].updates == first[b].updates == 2 and first[c].updates == 3
    group.leave(a)
    group.join(a, 1.0)
    again = group.flush(1.0 + WINDOW)
    assert len([e for e in packer.log if e[0] == "announce"]) == encoded  # replayed, not encoded again
    assert again[a].updates == 2  # b's route and End-of-RIB, never its own
    assert b not in again and c not in again


def client(name: str, address: str, reaches_us_on: str) -> PeerInfo:
    """A reflector client, and the reflector's address it connects to (its next hop self)."""
    return PeerInfo(name, address, AS, AS, address, rr_client=True, next_hop_self={V4: (reaches_us_on,)})


def reflector_rib(addresses: frozenset[str], clients: Sequence[PeerInfo]) -> tuple[Rib, bytes]:
    """A reflector on `addresses` with these clients, originating its own block (returned)."""
    rib = Rib(Identity(AS, "10.0.0.1", cluster_id="244.0.0.1", addresses=addresses), POOLS)
    for p in clients:
        rib.add_peer(p)
    own = pfx("192.168.100.0/26")
    rib.originate(V4, [own])
    return rib, own


def announced(out: Output, negotiated: Negotiated) -> dict[bytes, str]:
    """Prefix -> next hop, from a member's encoded output."""
    from proto.bgp.codec import decode_message

    got = {}
    for m in split_messages(b"".join(bytes(x) for x in out.chunks)):
        u = decode_message(m, negotiated)
        for p in u.nlri:  # type: ignore[union-attr]
            got[p] = u.attributes.next_hop  # type: ignore[union-attr]
    return got


def test_members_on_different_local_addresses_share_the_group_and_get_their_own_next_hop() -> None:
    """A reflector reached on two addresses: learned routes are shared, our own block goes to each
    member with the address it reaches us on."""
    from proto.bgp import packing
    from proto.bgp.codec import decode_message

    a, b, c = client("a", "10.0.1.1", "10.0.0.1"), client("b", "10.0.9.2", "10.0.9.1"), client("c", "10.0.1.3", "10.0.0.1")
    rib, own = reflector_rib(frozenset({"10.0.0.1", "10.0.9.1"}), (a, b, c))
    learned = pfx("192.168.3.0/26")
    rib.receive_update(c, Update(attributes=PathAttributes(origin=0, as_path=(), next_hop="10.0.1.3",
                                                           local_pref=100), nlri=[learned]))
    target = replace(ExportTarget.of(a), next_hop_self=())  # the speaker's key for an iBGP group
    negotiated = Negotiated()
    group = UpdateGroup(GroupKey(target, EncodingKey.of(negotiated), (V4,)), ExportPolicy(rib.identity, POOLS), rib.loc,
                        packer=packing, window=WINDOW)  # type: ignore[arg-type]
    for p in (a, b, c):
        group.join(p, 0.0)
    out = group.flush(WINDOW)

    assert announced(out[a], negotiated) == {own: "10.0.0.1", learned: "10.0.1.3"}
    assert announced(out[b], negotiated) == {own: "10.0.9.1", learned: "10.0.1.3"}
    assert announced(out[c], negotiated) == {own: "10.0.0.1"}  # never its own route back
    assert group.advertised_to(b, V4)[own].next_hop == ("10.0.9.1",)
    owned = group.owned_counts(V4)
    assert owned == {c: 1}  # the learned route is c's
    for p in (a, b, c):  # the count the metrics and `neighbors` use, without building the table
        assert group.advertised_count(p, V4, owned) == len(group.advertised_to(p, V4))
    # the block withdrawn: each member is told once, with nothing for the other address
    rib_changes = rib.originate(V4, [])
    group.changes(V4, rib_changes, 1.0)
    gone = group.flush(2.0)
    for info in (a, b, c):
        withdrawn = [p for m in split_messages(b"".join(bytes(x) for x in gone[info].chunks))
                     for p in decode_message(m, negotiated).withdrawn]  # type: ignore[union-attr]
        assert withdrawn == [own], info


class CountingPacker:
    """The real packer, counting the attribute sets it encodes."""

    def __init__(self) -> None:
        from proto.bgp import packing

        self.packing = packing
        self.announced: list[tuple[str, ...]] = []

    def pack_announcements(self, family: AfiSafi, attrs: PathAttributes, next_hop: NextHop,
                           prefixes: Sequence[bytes], negotiated: Negotiated) -> list[bytes]:
        self.announced.append(next_hop)  # type: ignore[arg-type]
        return self.packing.pack_announcements(family, attrs, next_hop, prefixes, negotiated)

    def pack_withdrawals(self, family: AfiSafi, prefixes: Sequence[bytes], negotiated: Negotiated) -> list[bytes]:
        return self.packing.pack_withdrawals(family, prefixes, negotiated)

    def end_of_rib(self, family: AfiSafi) -> bytes:
        return self.packing.end_of_rib(family)


def test_a_member_on_a_new_local_address_costs_its_own_routes_not_the_table() -> None:
    """A reflector whose clients each reach it on their own address (issue 12's benchmark: 3,000 of
    them): a joiner on a new address gets the shared history and our own routes encoded for its
    address, not a new encoding of everything; a departed address that comes back after our routes
    changed gets a rebuilt table, never the stale units."""

    a, b, d = client("a", "10.0.1.1", "10.0.0.1"), client("b", "10.0.9.3", "10.0.9.1"), client("d", "10.0.9.4", "10.0.9.2")
    rib, own = reflector_rib(frozenset({"10.0.0.1", "10.0.9.1", "10.0.9.2"}), (a, b, d))
    learned = [pfx(f"192.168.{i}.0/26") for i in range(1, 21)]
    for i, p in enumerate(learned):  # 20 attribute sets (one per next hop), as from 20 clients
        rib.receive_update(a, Update(attributes=PathAttributes(origin=0, as_path=(), next_hop=f"10.0.2.{i + 1}",
                                                               local_pref=100), nlri=[p]))
    packer = CountingPacker()
    target = replace(ExportTarget.of(a), next_hop_self=())
    negotiated = Negotiated()
    group = UpdateGroup(GroupKey(target, EncodingKey.of(negotiated), (V4,)), ExportPolicy(rib.identity, POOLS), rib.loc,
                        packer=packer, window=WINDOW)  # type: ignore[arg-type]
    group.join(a, 0.0)
    group.join(b, 0.0)
    group.flush(WINDOW)
    assert len(packer.announced) == 20 + 2  # the learned sets once, our block once per address

    before = len(packer.announced)
    group.join(d, 1.0)
    out = group.flush(1.0 + WINDOW)
    assert packer.announced[before:] == [("10.0.9.2",)]  # only our block, for d's address
    assert announced(out[d], negotiated) == {own: "10.0.9.2", **{p: f"10.0.2.{i + 1}" for i, p in enumerate(learned)}}
    assert out[a].updates == out[b].updates == 0  # nothing for the others: the unit is for 10.0.9.2
    # b (the only member on 10.0.9.1) leaves, our block goes away meanwhile, and b comes back:
    # the history's units for 10.0.9.1 announce the block, so they must not be replayed
    group.leave(b)
    group.changes(V4, rib.originate(V4, []), 2.0)
    group.flush(2.0 + WINDOW)
    group.join(b, 3.0)
    back = group.flush(3.0 + WINDOW)
    assert own not in announced(back[b], negotiated) and len(announced(back[b], negotiated)) == 20
