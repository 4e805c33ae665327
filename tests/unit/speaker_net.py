"""Speakers joined in memory: connections are pairs of sessions, bytes are moved by hand, time is
stepped from deadline to deadline. No sockets, no sleeps (aioquic's and h11's way of testing).

BFD datagrams move the same way (UDP 3784, TTL 255). `reachable(src, dst)` decides whether packets
get through: a cut path refuses new connections, holds a connection's bytes (TCP retransmits them
once the path is back) and loses datagrams; `tamper` may rewrite or drop a datagram in flight."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from bgpd.fsm import State
from bgpd.ownership import BlockOwners
from bgpd.session import Session
from bgpd.speaker import ConnectTo, Disconnect, Speaker
from bgpd.speaker_settings import pools_from_networks
from bgpd.topology import Topology, build
from proto.resources import ClusterModel, load_model


@dataclass
class Link:
    """One TCP connection: a session at each end."""

    a: Speaker
    sa: Session
    b: Speaker
    sb: Session
    addr_a: str = ""
    addr_b: str = ""
    open: bool = True

    def other(self, session: Session) -> tuple[Speaker, Session]:
        return (self.b, self.sb) if session is self.sa else (self.a, self.sa)


@dataclass
class Net:
    now: float = 0.0
    speakers: dict[str, Speaker] = field(default_factory=dict)  # by each of its addresses
    links: list[Link] = field(default_factory=list)
    reachable: Callable[[str, str], bool] = lambda _src, _dst: True
    seed: int = 1
    # a datagram in flight: (source, destination, bytes) -> the bytes delivered (None: lost)
    tamper: Callable[[str, str, bytes], bytes | None] | None = None
    datagrams: int = 0  # BFD datagrams delivered

    def add(self, topo: Topology, *, restarting: bool = False, model: ClusterModel | None = None,
            **options: float) -> Speaker:
        pools = pools_from_networks(p.cidr for p in model.pools) if model is not None else pools_from_networks([])
        owners = BlockOwners.from_model(model) if model is not None else None
        sp = Speaker(topo, pools, self.now, restarting=restarting, rng=random.Random(self.seed + len(self.speakers)),
                     owners=owners, **options)  # type: ignore[arg-type]
        for addr in topo.addresses:
            self.speakers[str(addr)] = sp
        return sp

    def remove(self, sp: Speaker, *, abrupt: bool) -> None:
        """Take a speaker away: with `abrupt`, as a killed process (its connections just close)."""
        if not abrupt:
            sp.stop(self.now)
            self._events(sp)
            self._move()
        for link in list(self.links):
            if sp in (link.a, link.b):
                self._close(link, lost_by=sp)
        for addr in [a for a, s in self.speakers.items() if s is sp]:
            del self.speakers[addr]

    # ------------------------------------------------------------ moving things

    def _address_of(self, sp: Speaker, family_of: str) -> str:
        v6 = ":" in family_of
        return next(str(a) for a in sp.topology.addresses if (":" in str(a)) == v6)

    def _events(self, sp: Speaker) -> bool:
        moved = False
        while (ev := sp.next_event()) is not None:
            moved = True
            if isinstance(ev, ConnectTo):
                target = self.speakers.get(ev.peer.peer_address)
                source = ev.peer.source_address or self._address_of(sp, ev.peer.peer_address)
                if target is None or not self.reachable(source, ev.peer.peer_address):
                    sp.connection_failed(ev.session, self.now, "Socket: no route to host")
                    continue
                sb = target.accept(source, self.now, ev.peer.peer_address)
                if sb is None:
                    sp.connection_failed(ev.session, self.now, "Socket: connection reset by peer")
                    continue
                sa = sp.connection_made(ev.session, self.now, source)
                link = Link(sp, sa, target, sb, source, ev.peer.peer_address) if sa is not None else None
                if link is None:
                    target.connection_lost(sb, self.now, "connection closed by peer")
                else:
                    self.links.append(link)
            elif isinstance(ev, Disconnect):
                for link in list(self.links):
                    if ev.session in (link.sa, link.sb):
                        other, osession = link.other(ev.session)
                        data = ev.session.data_to_send(max_bytes=0)
                        if data:
                            other.receive_data(osession, data, self.now)
                        self._close(link, lost_by=sp)
        return moved

    def _close(self, link: Link, lost_by: Speaker) -> None:
        if not link.open:
            return
        link.open = False
        self.links.remove(link)
        for sp, s in ((link.a, link.sa), (link.b, link.sb)):
            if sp is not lost_by and s.connected:
                sp.connection_lost(s, self.now, "connection closed by peer")

    def _datagrams(self) -> bool:
        moved = False
        for sp in list(dict.fromkeys(self.speakers.values())):
            for s in sp.bfd_with_output():
                for data in s.data_to_send():
                    moved = True
                    target = self.speakers.get(s.remote)
                    if target is None or not self.reachable(s.local, s.remote):
                        continue
                    if self.tamper is not None:
                        got = self.tamper(s.local, s.remote, data)
                        if got is None:
                            continue
                        data = got
                    self.datagrams += 1
                    target.bfd_receive(data, s.local, s.remote, 255, self.now, s.multihop)
        return moved

    def _move(self) -> bool:
        moved = self._datagrams()
        for link in list(self.links):
            if link.addr_a and not self.reachable(link.addr_a, link.addr_b):
                continue  # the path is cut: TCP holds the bytes until it is back
            for src, s, dst, d in ((link.a, link.sa, link.b, link.sb), (link.b, link.sb, link.a, link.sa)):
                if not link.open:
                    break
                if self._held(link, src):
                    continue
                data = s.data_to_send(max_bytes=self._chunk(), now=self.now)
                if data:
                    moved = True
                    dst.receive_data(d, data, self.now)
                src.sessions_with_output()
        return moved

    def _held(self, link: Link, src: Speaker) -> bool:
        """Whether `src`'s bytes on `link` wait this step (a lagging or ruled net says so)."""
        return False

    def _chunk(self) -> int | None:
        """How many bytes a sender may write in one step (None: all it has)."""
        return None

    def settle(self) -> None:
        """Deliver everything in flight, act on every event, until nothing moves."""
        for _ in range(10_000):
            moved = False
            for sp in list(dict.fromkeys(self.speakers.values())):
                moved = self._events(sp) or moved
            moved = self._move() or moved
            if not moved:
                return
        raise AssertionError("the speakers keep talking")

    def run(self, until: float, done: Callable[[], bool] | None = None) -> bool:
        """Step time from deadline to deadline up to `until`; True as soon as `done()` holds."""
        self.settle()
        while True:
            if done is not None and done():
                return True
            deadlines = [d for sp in dict.fromkeys(self.speakers.values())
                         if (d := sp.next_deadline()) is not None]
            if not deadlines or min(deadlines) > until:
                self.now = max(self.now, until)
                return done() if done is not None else False
            self.now = max(self.now, min(deadlines))
            for sp in list(dict.fromkeys(self.speakers.values())):
                sp.handle_timer(self.now)
            self.settle()


def established(sp: Speaker) -> bool:
    return all(p.state == State.ESTABLISHED for p in sp.peers.values())


def learned(sp: Speaker) -> dict[str, str]:
    """prefix text -> next hop of every learned best route."""
    from proto import prefix as pf

    out = {}
    for loc in sp.rib.loc.values():
        for key, best in loc.best.items():
            if not best.source.local:
                out[pf.text(key)] = best.next_hop[0]
    return out


_models: dict[str, ClusterModel] = {}


def topology(yaml_text: str, node: str) -> tuple[Topology, ClusterModel]:
    """The node's topology in a cluster file (each file parsed once: a model is read-only)."""
    model = _models.get(yaml_text)
    if model is None:
        if len(_models) > 32:
            _models.clear()
        model = _models[yaml_text] = load_model(yaml_text)
    return build(model, node), model
