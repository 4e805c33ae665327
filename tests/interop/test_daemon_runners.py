"""The daemon runners of lab/daemons/ against each other: each brings a real session up.

Every runner (BIRD 2, BIRD 1.6, GoBGP, FRR) is paired with another one in two namespaces joined by a
veth: the session reaches Established on both sides, a prefix from each side arrives at the other,
a withdrawal leaves, and an administrative shutdown takes the peer's session down. The interop
scenarios of tortie-bgpd build on these runners, so they are proven here first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.daemons import RUNNERS, Bird2, Bird16, Daemon, DaemonError, DaemonNeighbor, Frr, GoBgp, Route
from lab.netns import Netns, NetnsSet
from tests.conftest import require_root

pytestmark = [pytest.mark.root, pytest.mark.daemons]

PREFIX = "to"


def require_runner(kind: type[Daemon]) -> None:
    missing = kind.missing()
    if missing:
        pytest.skip(f"{kind.kind}: missing {', '.join(missing)}")


@dataclass
class Link:
    nsset: NetnsSet
    a: Netns
    b: Netns
    work: Path


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    require_root()
    with NetnsSet(prefix=PREFIX) as nsset:
        a, b = nsset.add("a"), nsset.add("b")
        for ns in (a, b):
            ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        nsset.veth(a, "vetha", b, "vethb")
        a.ip("addr", "add", "10.0.0.1/24", "dev", "vetha")
        b.ip("addr", "add", "10.0.0.2/24", "dev", "vethb")
        a.ip("addr", "add", "fd00::1/64", "dev", "vetha", "nodad")
        b.ip("addr", "add", "fd00::2/64", "dev", "vethb", "nodad")
        yield Link(nsset, a, b, tmp_path)


# (A kind, B kind, A's AS, B's AS, families, extra neighbor options)
PAIRS = {
    "bird2-gobgp-ibgp": ("bird2", "gobgp", 65000, 65000, ("ipv4", "ipv6"),
                         {"add_path": "both", "graceful_restart": True}),
    "frr-bird2-ebgp-4octet": ("frr", "bird2", 4200000001, 65000, ("ipv4", "ipv6"), {"graceful_restart": True}),
    # Calico's profile: ADD-PATH, graceful restart, TCP MD5, one side passive
    "bird16-bird2-calico": ("bird16", "bird2", 64512, 64512, ("ipv4",),
                            {"add_path": "both", "graceful_restart": True, "password": "calico-md5"}),
    "gobgp-frr-ebgp": ("gobgp", "frr", 65001, 65002, ("ipv4", "ipv6"), {}),
    "bird16-gobgp-md5": ("bird16", "gobgp", 64512, 64512, ("ipv4",), {"password": "s3cret", "graceful_restart": True}),
}


def routes_for(side: int, families: tuple[str, ...], kind: str) -> list[Route]:
    out = [Route(f"10.{side}.0.0/24", communities=((65000, side),), large_communities=((65000, side, 1),)),
           Route(f"10.{side}.1.0/24")]
    if "ipv6" in families:
        out.append(Route(f"fd0{side}::/64"))
    if kind == "gobgp":
        # GoBGP announces what it is given; give it its own address as next hop
        own = {1: ("10.0.0.1", "fd00::1"), 2: ("10.0.0.2", "fd00::2")}[side]
        out = [Route(r.prefix, next_hop=own[r.family == "ipv6"], communities=r.communities,
                     large_communities=r.large_communities) for r in out]
    return out


def make(kind: str, ns: Netns, link: Link, side: int, asn: int, peer_asn: int, families: tuple[str, ...],
         extra: dict[str, object]) -> Daemon:
    cls = RUNNERS[kind]
    peer = "10.0.0.2" if side == 1 else "10.0.0.1"
    # the higher address waits for the lower one to connect, as in Calico's mesh
    neighbor = DaemonNeighbor(peer, peer_asn, passive=side == 2, families=families, **extra)  # type: ignore[arg-type]
    return cls(ns, link.work / f"{kind}-{side}", router_id=f"10.0.0.{side}", asn=asn, neighbors=[neighbor],
               routes=routes_for(side, families, kind), owner=link.nsset)


@pytest.mark.parametrize("pair", list(PAIRS))
def test_runner_pair_exchanges_routes(link: Link, pair: str) -> None:
    kind_a, kind_b, as_a, as_b, families, extra = PAIRS[pair]
    require_runner(RUNNERS[kind_a])
    require_runner(RUNNERS[kind_b])
    a = make(kind_a, link.a, link, 1, as_a, as_b, families, extra)
    b = make(kind_b, link.b, link, 2, as_b, as_a, families, extra)
    try:
        a.start()
        b.start()
        a.wait_established("10.0.0.2", 40)
        b.wait_established("10.0.0.1", 40)
        b.wait_prefixes([r.prefix for r in a.routes], 20)
        a.wait_prefixes([r.prefix for r in b.routes], 20)
        # withdrawals both ways
        a.withdraw_route("10.1.1.0/24")
        b.withdraw_route("10.2.1.0/24")
        b.wait_prefixes(["10.1.1.0/24"], 20, present=False)
        a.wait_prefixes(["10.2.1.0/24"], 20, present=False)
        assert "10.1.0.0/24" in b.rib_prefixes()
        # a route added while the session is up arrives too
        a.add_route(routes_for(1, families, kind_a)[1])
        b.wait_prefixes(["10.1.1.0/24"], 20)
        # administrative shutdown: the other side's session leaves Established and the routes go
        a.shutdown_neighbor("10.0.0.2", "runner test shutdown")
        b.wait_prefixes(["10.1.0.0/24"], 20, present=False)
        assert not b.established("10.0.0.1")
    except DaemonError as e:
        pytest.fail(f"{pair}: {e}\n--- {kind_a} ---\n{a.diagnostics()}\n--- {kind_b} ---\n{b.diagnostics()}")
    finally:
        a.stop()
        b.stop()
    assert not a.running and not b.running


def test_password_mismatch_never_establishes(link: Link) -> None:
    """The wait gives up at its deadline and says why, with the daemons' own view attached."""
    require_runner(Bird2)
    require_runner(GoBgp)
    a = Bird2(link.a, link.work / "bird2", router_id="10.0.0.1", asn=65000, owner=link.nsset,
              neighbors=[DaemonNeighbor("10.0.0.2", 65000, password="one")])
    b = GoBgp(link.b, link.work / "gobgp", router_id="10.0.0.2", asn=65000, owner=link.nsset,
              neighbors=[DaemonNeighbor("10.0.0.1", 65000, password="two", passive=True)])
    try:
        a.start()
        b.start()
        with pytest.raises(DaemonError) as err:
            a.wait_established("10.0.0.2", 6)
        assert "not Established" in str(err.value) and "show protocols all" in str(err.value)
        assert not b.established("10.0.0.1")
    finally:
        a.stop()
        b.stop()


def test_bird16_runs_bird6_for_ipv6(link: Link) -> None:
    """BIRD 1.6 keeps IPv6 in a separate daemon (bird6), as Calico runs it."""
    require_runner(Bird16)
    require_runner(Bird2)
    a = Bird16(link.a, link.work / "bird6", router_id="10.0.0.1", asn=64512, owner=link.nsset, ipv6=True,
               neighbors=[DaemonNeighbor("fd00::2", 64512)], routes=[Route("fd01::/64")])
    b = Bird2(link.b, link.work / "bird2", router_id="10.0.0.2", asn=64512, owner=link.nsset,
              neighbors=[DaemonNeighbor("fd00::1", 64512, passive=True, families=("ipv6",))], routes=[Route("fd02::/64")])
    try:
        a.start()
        b.start()
        a.wait_established("fd00::2", 40)
        b.wait_prefixes(["fd01::/64"], 20)
        a.wait_prefixes(["fd02::/64"], 20)
    except DaemonError as e:
        pytest.fail(f"{e}\n{a.diagnostics()}\n{b.diagnostics()}")
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("kind", list(RUNNERS))
def test_every_neighbor_option_is_accepted(link: Link, kind: str) -> None:
    """A config using every option the runners offer is one the daemon accepts and runs with."""
    cls = RUNNERS[kind]
    require_runner(cls)
    families = ("ipv4",) if kind == "bird16" else ("ipv4", "ipv6")
    neighbors = [
        DaemonNeighbor("10.0.0.2", 65000, passive=True, password="pw", add_path="both", graceful_restart=True,
                 restart_time=90, rr_client=True, next_hop_self=True, hold_time=30, families=families,
                 extended_next_hop=kind in ("bird2", "frr"), four_octet_as=kind not in ("bird2", "bird16")),
        DaemonNeighbor("10.0.0.3", 65001, add_path="rx", multihop=True, local_address="10.0.0.1", families=families),
    ]
    routes = routes_for(1, families, kind)
    daemon = cls(link.a, link.work / kind, router_id="10.0.0.1", asn=65000, neighbors=neighbors, routes=routes,
                 cluster_id="1.1.1.1", owner=link.nsset)
    try:
        daemon.start()
        assert daemon.running
        # its own routes are in its RIB, ready to be announced
        daemon.wait_prefixes([r.prefix for r in routes], 10)
        assert not daemon.established("10.0.0.2")
        assert "10.0.0.2" in daemon.diagnostics()
    finally:
        daemon.stop()
    assert not daemon.running


def test_frr_runner_refuses_a_config_line_frr_skipped(link: Link) -> None:
    """FRR runs on past config lines it cannot parse; the runner must not."""
    require_runner(Frr)

    class BrokenFrr(Frr):
        def write_config(self) -> None:
            super().write_config()
            conf = self.rundir / "bgpd.conf"
            conf.write_text(conf.read_text().replace(" no bgp ebgp-requires-policy",
                                                     " no bgp ebgp-requires-policy\n frobnicate the bgp"))

    daemon = BrokenFrr(link.a, link.work / "frr", router_id="10.0.0.1", asn=65000, owner=link.nsset,
                       neighbors=[DaemonNeighbor("10.0.0.2", 65000)])
    with pytest.raises(DaemonError, match="frobnicate"):
        daemon.start()
    assert not daemon.running
