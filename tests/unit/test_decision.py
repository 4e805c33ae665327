"""The decision process: each step with a pair of paths that differ only in that step."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.rib.decision import DEFAULT_DECISION, ONLY_PATH, DecisionConfig, decide
from bgpd.rib.path import PeerInfo, as_path_length, path
from proto.bgp.constants import Origin, SegmentType
from proto.bgp.model import AsPathSegment, PathAttributes

OWN_AS = 64512
SEQ, SET, CSEQ, CSET = (
    SegmentType.AS_SEQUENCE,
    SegmentType.AS_SET,
    SegmentType.AS_CONFED_SEQUENCE,
    SegmentType.AS_CONFED_SET,
)


def ibgp(name: str, address: str, router_id: str | None = None) -> PeerInfo:
    return PeerInfo(name, address, OWN_AS, OWN_AS, router_id or address)


def ebgp(name: str, address: str, asn: int = 65001, router_id: str | None = None) -> PeerInfo:
    return PeerInfo(name, address, asn, OWN_AS, router_id or address)


A = ibgp("a", "10.0.0.2")
B = ibgp("b", "10.0.0.3")


def attrs(**kw: object) -> PathAttributes:
    base: dict[str, object] = {
        "origin": Origin.IGP,
        "as_path": (AsPathSegment(SEQ, (65001,)),),
        "next_hop": "10.9.9.9",
        "local_pref": 100,
    }
    base.update(kw)
    return PathAttributes(**base)  # type: ignore[arg-type]


def check(winner, loser, reason: str, config: DecisionConfig = DEFAULT_DECISION) -> None:  # type: ignore[no-untyped-def]
    for order in ([winner, loser], [loser, winner]):
        best, why = decide(order, config)
        assert best is winner, why
        assert reason in why


def test_single_path() -> None:
    p = path(A, attrs(), ("10.9.9.9",))
    assert decide([p]) == (p, ONLY_PATH)


def test_local_route_beats_learned() -> None:
    local = PeerInfo.local_source(OWN_AS, "10.0.0.1")
    mine = path(local, PathAttributes(origin=Origin.IGP, as_path=(), local_pref=100), ())
    # the learned one would win every later step
    learned = path(A, attrs(local_pref=500, as_path=()), ("10.9.9.9",))
    check(mine, learned, "locally originated")


def test_highest_local_pref() -> None:
    check(path(A, attrs(local_pref=200), ("10.9.9.9",)), path(B, attrs(), ("10.9.9.9",)), "LOCAL_PREF (200)")


def test_missing_local_pref_is_default() -> None:
    check(
        path(A, attrs(local_pref=101), ("10.9.9.9",)),
        path(B, attrs(local_pref=None), ("10.9.9.9",)),
        "LOCAL_PREF",
    )


def test_shortest_as_path() -> None:
    short = path(B, attrs(as_path=(AsPathSegment(SEQ, (65001,)),)), ("10.9.9.9",))
    long = path(A, attrs(as_path=(AsPathSegment(SEQ, (65001, 65002)),)), ("10.9.9.9",))
    check(short, long, "shortest AS_PATH (1)")


def test_as_set_counts_one_and_confederation_zero() -> None:
    assert as_path_length((AsPathSegment(SEQ, (1, 2)), AsPathSegment(SET, (3, 4, 5)))) == 3
    assert (
        as_path_length((AsPathSegment(CSEQ, (7, 8)), AsPathSegment(CSET, (9,)), AsPathSegment(SEQ, (1,))))
        == 1
    )
    with_set = path(
        B, attrs(as_path=(AsPathSegment(SEQ, (65001,)), AsPathSegment(SET, (1, 2, 3)))), ("10.9.9.9",)
    )
    three = path(A, attrs(as_path=(AsPathSegment(SEQ, (65001, 65002, 65003)),)), ("10.9.9.9",))
    check(with_set, three, "shortest AS_PATH (2)")
    confed = path(
        B, attrs(as_path=(AsPathSegment(CSEQ, (1, 2, 3)), AsPathSegment(SEQ, (65001,)))), ("10.9.9.9",)
    )
    two = path(A, attrs(as_path=(AsPathSegment(SEQ, (65001, 65002)),)), ("10.9.9.9",))
    check(confed, two, "shortest AS_PATH (1)")


def test_lowest_origin() -> None:
    check(
        path(B, attrs(origin=Origin.EGP), ("10.9.9.9",)),
        path(A, attrs(origin=Origin.INCOMPLETE), ("10.9.9.9",)),
        "lowest ORIGIN (EGP)",
    )


def test_lowest_med_same_neighbour_as() -> None:
    check(path(B, attrs(med=10), ("10.9.9.9",)), path(A, attrs(med=20), ("10.9.9.9",)), "lowest MED")


def test_missing_med_is_lowest() -> None:
    check(path(B, attrs(med=None), ("10.9.9.9",)), path(A, attrs(med=5), ("10.9.9.9",)), "lowest MED")


def test_med_not_compared_across_neighbour_as_unless_configured() -> None:
    high_med = path(A, attrs(med=50, as_path=(AsPathSegment(SEQ, (65001,)),)), ("10.9.9.9",))
    low_med = path(B, attrs(med=5, as_path=(AsPathSegment(SEQ, (65002,)),)), ("10.9.9.9",))
    # different neighbour AS: MED is skipped, the lower router id (A, 10.0.0.2) wins
    check(high_med, low_med, "lowest router id (10.0.0.2)")
    check(low_med, high_med, "always compared", DecisionConfig(always_compare_med=True))


def test_ebgp_over_ibgp() -> None:
    external = path(ebgp("e", "10.0.0.9"), attrs(), ("10.0.0.9",))
    internal = path(A, attrs(), ("10.9.9.9",))  # lower router id than the eBGP peer
    check(external, internal, "eBGP over iBGP")


def test_lowest_router_id() -> None:
    check(path(A, attrs(), ("10.9.9.9",)), path(B, attrs(), ("10.9.9.9",)), "lowest router id (10.0.0.2)")


def test_originator_id_stands_in_for_router_id() -> None:
    via_high = path(ibgp("rr1", "10.0.0.50", "10.0.0.50"), attrs(originator_id="10.0.0.7"), ("10.9.9.9",))
    plain = path(ibgp("c", "10.0.0.8", "10.0.0.8"), attrs(), ("10.9.9.9",))
    check(via_high, plain, "lowest ORIGINATOR_ID (10.0.0.7)")


def test_shorter_cluster_list() -> None:
    rr1 = ibgp("rr1", "10.0.0.50")
    rr2 = ibgp("rr2", "10.0.0.51")
    one = path(rr2, attrs(originator_id="10.0.0.7", cluster_list=("1.1.1.1",)), ("10.9.9.9",))
    two = path(rr1, attrs(originator_id="10.0.0.7", cluster_list=("2.2.2.2", "1.1.1.1")), ("10.9.9.9",))
    check(one, two, "shortest CLUSTER_LIST (1)")


def test_lowest_peer_address() -> None:
    same_id_1 = ibgp("x", "10.0.0.20", "10.0.0.99")
    same_id_2 = ibgp("y", "10.0.0.3", "10.0.0.99")
    check(
        path(same_id_2, attrs(), ("10.9.9.9",)),
        path(same_id_1, attrs(), ("10.9.9.9",)),
        "lowest peer address (10.0.0.3)",
    )


def test_add_path_identifier_last() -> None:
    a1 = path(A, attrs(), ("10.9.9.9",), b"\0\0\0\1")
    a2 = path(A, attrs(), ("10.9.9.9",), b"\0\0\0\2")
    check(a1, a2, "ADD-PATH")


meds = st.sampled_from([None, 0, 5, 10])
neighbours = st.sampled_from([65001, 65002, 65003])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(meds, neighbours, st.integers(1, 3), st.integers(2, 60)), min_size=2, max_size=5))
def test_winner_does_not_depend_on_order(specs: list[tuple[int | None, int, int, int]]) -> None:
    """The MED step is not a total order: elimination over the set must still give one answer."""
    paths = []
    for i, (med, nas, length, rid) in enumerate(specs):
        peer = ibgp(f"p{i}", f"10.1.0.{i + 1}", f"10.0.0.{rid}")
        seq = (nas, *range(65100, 65100 + length - 1))
        paths.append(path(peer, attrs(med=med, as_path=(AsPathSegment(SEQ, seq),)), ("10.9.9.9",)))
    winners = {decide(list(order))[0] for order in itertools.islice(itertools.permutations(paths), 24)}
    assert len(winners) == 1


@pytest.mark.parametrize("always", [False, True])
def test_med_elimination_example(always: bool) -> None:
    """RFC 4271 9.1.2.2 c: (AS1, MED 10), (AS1, MED 5), (AS2, MED 0): per neighbour AS first."""
    p1 = path(
        ibgp("p1", "10.1.0.1", "10.0.0.1"), attrs(med=10, as_path=(AsPathSegment(SEQ, (1,)),)), ("10.9.9.9",)
    )
    p2 = path(
        ibgp("p2", "10.1.0.2", "10.0.0.3"), attrs(med=5, as_path=(AsPathSegment(SEQ, (1,)),)), ("10.9.9.9",)
    )
    p3 = path(
        ibgp("p3", "10.1.0.3", "10.0.0.2"), attrs(med=0, as_path=(AsPathSegment(SEQ, (2,)),)), ("10.9.9.9",)
    )
    best, _ = decide([p1, p2, p3], DecisionConfig(always_compare_med=always))
    # per neighbour AS: p1 is out (p2 has a lower MED from AS1); p3 then wins on router id
    # always compared: p3 has the lowest MED outright
    assert best is p3
    best, _ = decide([p1, p2], DecisionConfig(always_compare_med=always))
    assert best is p2


peer_pool = [
    ibgp("i1", "10.2.0.1", "10.0.0.5"),
    ibgp("i2", "10.2.0.2", "10.0.0.5"),
    ebgp("e1", "10.3.0.1", 65001),
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),  # peer
            st.sampled_from([100, 200]),  # LOCAL_PREF
            meds,
            neighbours,
            st.integers(1, 2),  # AS_PATH length
            st.sampled_from([None, "10.0.0.4", "10.0.0.6"]),  # ORIGINATOR_ID
            st.integers(0, 2),  # CLUSTER_LIST length
            st.integers(0, 2),  # ADD-PATH id
        ),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
)
def test_fast_best_path_equals_decide(specs: list, always: bool) -> None:  # type: ignore[type-arg]
    from bgpd.rib.decision import best_path

    config = DecisionConfig(always_compare_med=always)
    paths = []
    for pi, lp, med, nas, length, orig, clen, pid in specs:
        a = attrs(
            local_pref=lp,
            med=med,
            as_path=(AsPathSegment(SEQ, (nas, *range(65100, 65099 + length))),),
            originator_id=orig,
            cluster_list=tuple(f"1.1.1.{i}" for i in range(clen)) or None,
        )
        p = path(peer_pool[pi], a, ("10.9.9.9",), pid.to_bytes(4, "big"))
        if p not in paths:
            paths.append(p)
    assert best_path(paths, config) is decide(paths, config)[0]
