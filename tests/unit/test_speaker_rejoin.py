"""A reflector's clients whose sessions drop and come back get the whole table again (bench/scale.py's
reflector with 1,000 clients left a few clients holding only the routes that arrived after their
last re-establishment). Speakers joined in memory (tests/unit/speaker_net.py), no sockets."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest

from bgpd.fsm import State
from bgpd.speaker import Speaker
from proto import prefix as pf
from proto.bgp import GracefulRestartCap
from tests.unit.speaker_net import Link, Net, topology
from tests.unit.test_speaker import HEAD, blocks_of, mesh_yaml, reflector_yaml, start


def _half_close(net: Net, link: Link, client: Speaker, later: list[tuple[float, Speaker, object]],
                delay: float) -> None:
    """The client's end of the connection is gone (it reset it); the reflector reads the reset only
    `delay` seconds later (a busy reflector), after the client may have connected again."""
    link.open = False
    net.links.remove(link)
    for sp, s in ((link.a, link.sa), (link.b, link.sb)):
        if sp is client:
            if s.connected:
                sp.connection_lost(s, net.now, "connection reset")
        else:
            later.append((net.now + delay, sp, s))


def learned(sp: Speaker) -> set[str]:
    """Prefixes of the learned best routes that are not stale (graceful restart keeps stale ones
    only until End-of-RIB or its timer: a client that never got the table again must not pass)."""
    return {pf.text(key) for loc in sp.rib.loc.values() for key, best in loc.best.items()
            if not best.source.local and not best.stale}


class SlowNet(Net):
    """Bytes wait in the sender's queue for a random while (a busy reflector reads and writes late),
    so connections, resets and table transfers interleave as they do under load."""

    def __init__(self, seed: int, lag: float) -> None:
        super().__init__(seed=seed)
        self.lag = lag
        self.rng = random.Random(seed)

    def _held(self, link: Link, src: Speaker) -> bool:
        return self.rng.random() < self.lag

    def _chunk(self) -> int | None:
        return self.rng.choice([None, 200, 4096])


def _links_of(net: Net, client: Speaker) -> list[Link]:
    return [lk for lk in net.links if client in (lk.a, lk.b)]


def _graceful_restart_aware(sp: Speaker) -> None:
    """BIRD's default, `graceful restart aware`: the capability without families (a peer that
    restarts keeps none of its routes; the reflector log says "peer restarted" without "stale")."""
    for peer in sp.peers.values():
        session = peer.neighbor.session
        caps = tuple(dataclasses.replace(c, families=()) if isinstance(c, GracefulRestartCap) else c
                     for c in session.local_open.capabilities)
        session.local_open = dataclasses.replace(session.local_open, capabilities=caps)


@pytest.mark.parametrize("lag", [0.0, 0.7])
@pytest.mark.parametrize("graceful", [True, False])
@pytest.mark.parametrize("seed", [1])
def test_flapping_clients_get_the_whole_table_again(seed: int, graceful: bool, lag: float) -> None:
    n = 16
    text = reflector_yaml(n)
    net = SlowNet(seed, lag)
    names = ["rr", *(f"c{i}" for i in range(1, n + 1))]
    sp = start(net, text, names)
    if not graceful:
        for i in range(1, n + 1):
            _graceful_restart_aware(sp[f"c{i}"])
    rr = sp["rr"]
    rng = random.Random(seed)
    later: list[tuple[float, Speaker, object]] = []
    # a storm of resets while the sessions come up and the tables go out
    end = net.now + 30
    while net.now < end:
        step = net.now + rng.uniform(0.001, 0.3)
        net.run(step)
        net.now = max(net.now, step)
        for at, s, session in [x for x in later if x[0] <= net.now]:
            later.remove((at, s, session))
            s.connection_lost(session, net.now, "connection reset by peer")  # type: ignore[arg-type]
        net.settle()
        client = sp[f"c{rng.randint(1, n)}"]
        links = _links_of(net, client)
        if not links or rng.random() < 0.5:
            continue
        link = rng.choice(links)
        kind = rng.random()
        if kind < 0.4:
            net._close(link, lost_by=None)  # type: ignore[arg-type]  # both ends see it at once
        else:
            _half_close(net, link, client, later, rng.uniform(0.0, 3.0))
        net.settle()
    net.lag = 0.0  # the storm is over: the reflector catches up
    for at, s, session in later:
        net.now = max(net.now, at)
        s.connection_lost(session, net.now, "connection reset by peer")  # type: ignore[arg-type]
    net.settle()
    every = {b for i in range(1, n + 1) for b in blocks_of(text, f"c{i}")}

    def converged() -> bool:
        return all(learned(sp[f"c{i}"]) == every - blocks_of(text, f"c{i}") for i in range(1, n + 1))

    net.run(net.now + 300, converged)
    short = {f"c{i}": len(learned(sp[f"c{i}"])) for i in range(1, n + 1)
             if learned(sp[f"c{i}"]) != every - blocks_of(text, f"c{i}")}
    assert not short, (short, {p.key: p.state for p in rr.peers.values() if p.state != State.ESTABLISHED})


class RuledNet(Net):
    """A net that holds back the bytes `hold(link, sender)` says (for one step of a collision)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: Callable[[Link, Speaker], bool] = lambda _link, _src: False

    def _held(self, link: Link, src: Speaker) -> bool:
        return self.hold(link, src)


@pytest.mark.parametrize("aware", [False, True])
def test_a_connection_that_replaces_an_established_second_session_gets_the_table(aware: bool) -> None:
    """The reflector's primary session loses its connection in OpenSent (to Active, not Idle) while
    the second connection goes on to Established: the second becomes the peer's session (it used to
    stay a sibling of a primary shown as Active, which took the next connection). The client then
    resets that one and connects again, its OPEN and KEEPALIVE reach the reflector in one read, and
    the new session is Established in the same call that ends the old one (RFC 4724: a
    graceful-restart peer's new connection replaces its session): the client gets the whole table
    and End-of-RIB on it."""
    n = 3
    text = reflector_yaml(n)
    net = RuledNet()
    sp = start(net, text, ["rr", *(f"c{i}" for i in range(1, n + 1))])
    rr, c1 = sp["rr"], sp["c1"]
    if aware:
        _graceful_restart_aware(c1)
    every = {b for i in range(1, n + 1) for b in blocks_of(text, f"c{i}")}
    want = every - blocks_of(text, "c1")
    assert net.run(60, lambda: all(learned(sp[f"c{i}"]) == every - blocks_of(text, f"c{i}")
                                   for i in range(1, n + 1)))
    (peer,) = [p for p in rr.peers.values() if p.key == "10.77.0.2"]

    def new_link() -> Link | None:
        return next(iter(_links_of(net, c1)), None)

    # the client's connection closes; it connects again, but its OPEN waits
    net._close(_links_of(net, c1)[0], lost_by=None)  # type: ignore[arg-type]
    net.hold = lambda _link, src: src is c1  # the client's bytes wait
    assert net.run(net.now + 30, lambda: new_link() is not None)
    first = new_link()
    assert first is not None and peer.session.state == State.OPENSENT
    # the client gives up on it; the reflector reads that only later
    pending: list[tuple[float, Speaker, object]] = []
    _half_close(net, first, c1, pending, 0.0)
    net.hold = lambda _link, _src: False
    assert net.run(net.now + 30, lambda: peer.neighbor.second is not None
                   and peer.neighbor.second.state == State.ESTABLISHED)
    second = peer.neighbor.second
    assert net.run(net.now + 5, lambda: learned(c1) == want)
    ((_, s, session),) = pending
    s.connection_lost(session, net.now, "connection reset by peer")  # type: ignore[arg-type]
    net.settle()
    # the primary went to Active (no Idle, no SessionDown): the Established second is the peer's
    # session now, not a sibling of a primary shown as Active
    assert peer.session is second and peer.neighbor.second is None and peer.state == State.ESTABLISHED
    # the client resets the Established connection too, and connects again: OPEN and KEEPALIVE
    # reach the reflector together
    (link,) = _links_of(net, c1)
    pending.clear()
    net.hold = lambda _link, src: src is c1  # the client's bytes wait
    _half_close(net, link, c1, pending, 0.0)
    assert net.run(net.now + 30, lambda: new_link() is not None)
    net.hold = lambda _link, _src: False
    net.settle()
    assert peer.established is not None and peer.established is not second
    assert peer.established.state == State.ESTABLISHED
    (client_peer,) = c1.peers.values()
    assert client_peer.state == State.ESTABLISHED
    # the table again, and End-of-RIB: nothing stale left at the client
    assert net.run(net.now + 10, lambda: learned(c1) == want), sorted(want - learned(c1))


def test_a_collision_won_against_an_established_sibling_sends_the_table() -> None:
    """Both speakers connect (peers that are not one mesh); one connection gets to Established while
    the other's OPEN is late. When it arrives, with the KEEPALIVE behind it, the higher identifier
    keeps the connection it opened (RFC 4271 6.8): the Established sibling is dumped and the winner is
    Established in the same call. The winner must get the whole table and End-of-RIB."""
    cfg = f"{HEAD}kind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{nodeToNodeMeshEnabled: false}}\n"
    peers = [f"{HEAD}kind: BGPPeer\nmetadata: {{name: p{i}}}\nspec: {{node: n{i}, peerIP: 10.77.0.{3 - i}, "
             "asNumber: 64512}\n" for i in (1, 2)]
    text = "---\n".join([mesh_yaml(2), cfg, *peers])
    net = RuledNet()
    sp = {}
    for name in ("n2", "n1"):  # n2 connects first: its connection is the primary at both ends
        topo, model = topology(text, name)
        active = {k: dataclasses.replace(p, passive=False) for k, p in topo.peers.items()}
        sp[name] = net.add(dataclasses.replace(topo, peers=active), model=model, connect_delay=0.0)
    n1, n2 = sp["n1"], sp["n2"]
    (p2,) = n2.peers.values()
    # the connection n2 opened is silent both ways while n1's (the second at both ends) gets to
    # Established
    net.hold = lambda link, _src: link.a is n2
    assert net.run(10, lambda: p2.neighbor.second is not None and p2.neighbor.second.state == State.ESTABLISHED)
    dumped = p2.neighbor.second
    assert net.run(net.now + 5, lambda: learned(n1) == blocks_of(text, "n2"))  # its table went out
    assert p2.session.state == State.OPENSENT and dumped.state == State.ESTABLISHED
    # now n2's connection speaks; n1's Cease on its own connection is still on the way
    net.hold = lambda link, src: link.a is n1 and src is n1
    net.settle()
    assert dumped.state == State.IDLE
    assert p2.established is p2.session and p2.session.state == State.ESTABLISHED
    net.hold = lambda _link, _src: False
    assert net.run(net.now + 10, lambda: learned(n1) == blocks_of(text, "n2")
                   and learned(n2) == blocks_of(text, "n1")), (learned(n1), learned(n2))
