"""Many hosts restarting at once, in memory: four speakers in a mesh, three of them restarted together
(a crash: graceful restart, restarting speakers; and a clean stop: Cease, no graceful restart), at
once or at staggered moments. Each host's
felixd is stood in for by felixd's own route table (felixd.feed_table.FeedTable) fed by the
speaker's route feed, so what is checked is what felixd would keep in the kernel:

- after a crash no host ever loses a route to a block that stayed valid (restarting hosts keep theirs
  through their own restart and their peers', because the feed's snapshot ends only when every peer's
  End-of-RIB is in, restarting peers included: bgpd/feed_hold.py); after a clean stop the stopped
  hosts' routes leave their peers (a Cease), but nothing a restarted host's felixd kept goes when its
  new bgpd starts;
- every host is whole (every block, nothing stale) within 5 s of its sessions coming up, with no wait
  for End-of-RIB from peers that are restarting themselves (RFC 4724 4.1), and no speaker defers or
  holds longer than that;
- after its restart a speaker's later OPENs no longer carry the Restart State bit.
"""

from __future__ import annotations

import pytest

from bgpd.feed_out import FeedReader
from bgpd.fsm import State
from bgpd.speaker import Speaker
from felixd.feed_table import FeedTable
from proto import prefix as pf
from proto.bgp import GracefulRestartCap
from proto.feed_wire import WireDecoder
from tests.unit.speaker_net import Net, topology
from tests.unit.test_speaker import mesh_yaml

NAMES = ["n1", "n2", "n3", "n4"]
TEXT = mesh_yaml(4)
BLOCK = {f"n{i}": f"10.200.{i}.0/26" for i in range(1, 5)}


class Felix:
    """A host's felixd: its route table, fed from whichever bgpd runs on the host."""

    def __init__(self) -> None:
        self.table = FeedTable(stale_time=120.0)
        self.speaker: Speaker | None = None
        self.reader: FeedReader | None = None
        self.decoder = WireDecoder()
        self.lost: list[tuple[float, str]] = []  # (when, prefix) a valid route left the table

    def attach(self, sp: Speaker, now: float) -> None:
        if self.speaker is not None:
            self.table.disconnected(now)
        self.speaker, self.reader, self.decoder = sp, sp.feed.add_reader(), WireDecoder()

    def detach(self, now: float) -> None:
        self.table.disconnected(now)
        self.speaker = self.reader = None

    def pump(self, now: float, valid: set[str]) -> None:
        sp, reader = self.speaker, self.reader
        if sp is None or reader is None:
            return
        data = b""
        if not reader.started and not sp.deferring:  # bgpd's feed_ready: no snapshot while deferring
            data += b"".join(sp.feed.snapshot(reader, 1))
        if reader.started:
            while sp.feed.has_output(reader):
                data += sp.feed.drain(reader)
        if data:
            self.decoder.receive_data(data)
            changed: dict[pf.Prefix, pf.Address | None] = {}
            self.table.receive(self.decoder.frames(), changed)
            gone = {pf.text(p) for p in changed if p not in self.table.routes}
            self.lost += [(now, p) for p in gone if p in valid]

    def whole(self, want: set[str]) -> bool:
        return self.prefixes() == want and not self.table.stale and self.table.synced

    def prefixes(self) -> set[str]:
        return {pf.text(p) for p in self.table.routes}


def run_restart(abrupt: bool, starts: dict[str, float]) -> None:
    net = Net()
    sp: dict[str, Speaker] = {}
    felix = {n: Felix() for n in NAMES}
    for n in NAMES:
        topo, model = topology(TEXT, n)
        sp[n] = net.add(topo, model=model)
        felix[n].attach(sp[n], net.now)
    want = {n: {BLOCK[o] for o in NAMES if o != n} for n in NAMES}
    valid = set(BLOCK.values())

    def pump() -> None:
        for n in NAMES:
            felix[n].pump(net.now, valid)

    def step(until: float, done: object = None) -> bool:
        return net.run(until, lambda: (pump(), done is not None and done())[1])  # type: ignore[operator]

    assert step(60, lambda: all(felix[n].whole(want[n]) for n in NAMES))
    restarted = sorted(starts)
    for n in restarted:
        net.remove(sp[n], abrupt=abrupt)
        felix[n].detach(net.now)
    t0 = net.now
    up_at: dict[str, float] = {}
    pending = dict(starts)
    while pending or len(up_at) < len(NAMES):
        for n, at in list(pending.items()):
            if net.now >= t0 + at:
                topo, model = topology(TEXT, n)
                sp[n] = net.add(topo, model=model, restarting=abrupt)  # a crash leaves bgpd.running behind
                felix[n].attach(sp[n], net.now)
                del pending[n]
        for n in NAMES:
            if n not in up_at and n not in pending and all(p.state == State.ESTABLISHED for p in sp[n].peers.values()):
                up_at[n] = net.now
        nxt = min([t0 + a for a in pending.values()], default=net.now + 0.05)
        step(max(nxt, net.now + 0.01))
        assert net.now - t0 < 120, (up_at, pending)
    last_up = max(up_at.values())
    assert step(last_up + 5.0, lambda: all(felix[n].whole(want[n]) for n in NAMES)), \
        {n: (sorted(felix[n].prefixes()), sorted(map(pf.text, felix[n].table.stale)), sp[n].deferring, sp[n].feed.holding)
         for n in NAMES}
    for n in NAMES:
        assert net.now - up_at[n] <= 5.0 + max(up_at.values()) - up_at[n]
        assert not sp[n].deferring and not sp[n].feed.holding
    if abrupt:
        # nothing valid ever left a felixd table: the survivor kept the crashed hosts' routes (graceful
        # restart), and the restarted hosts kept everything through their own restart and each other's
        for n in NAMES:
            assert not felix[n].lost, (n, felix[n].lost)
    else:
        # a clean stop is a Cease: peers withdraw the stopping hosts' routes at once (no graceful
        # restart), so the survivor loses them until they are back. What a restarted host's felixd
        # kept must not go when its new bgpd starts (the feed's end waits for the peers' tables).
        for n in restarted:
            restart = t0 + starts[n]
            assert not [x for x in felix[n].lost if x[0] >= restart], (n, felix[n].lost)
    for n in restarted:
        for peer in sp[n].peers.values():
            open_ = peer.session.local_open
            cap = open_.capability(GracefulRestartCap)
            assert isinstance(cap, GracefulRestartCap) and not cap.restarting, (n, peer.key)


@pytest.mark.parametrize("starts", [
    {"n1": 0.0, "n2": 0.0, "n3": 0.0},
    {"n1": 0.0, "n2": 1.5, "n3": 4.0},  # staggered: n1 is whole long before n3 is back
    {"n2": 0.3, "n3": 0.0, "n4": 2.5},
], ids=["together", "staggered", "staggered-other-three"])
def test_three_of_four_crash_and_restart(starts: dict[str, float]) -> None:
    run_restart(abrupt=True, starts=starts)


@pytest.mark.parametrize("starts", [{"n1": 0.0, "n2": 0.0, "n3": 0.0}, {"n1": 0.0, "n2": 1.5, "n3": 4.0}],
                         ids=["together", "staggered"])
def test_three_of_four_stop_cleanly_and_restart(starts: dict[str, float]) -> None:
    run_restart(abrupt=False, starts=starts)
