"""Mesh start storms (issue 12 item 4): speakers of a full mesh that start together, in a random order
over a few seconds as interpreters do on a loaded host, converge without connection collisions or
session restarts, and retry back-off does not dominate: a speaker that came up early and was refused
connects within `connect_hold_max` (plus jitter) of its peer starting. In memory (speaker_net); the
real-socket version is bench/scale_mesh.py, which counts the same collisions over 100 processes."""

from __future__ import annotations

import random
from dataclasses import fields

from bgpd.session_config import SessionConfig
from bgpd.timers import JITTER_HIGH
from tests.unit.speaker_net import Net, established, learned
from tests.unit.test_speaker import mesh_yaml, topology

N = 30


def test_a_mesh_starting_in_a_storm_converges_without_collisions() -> None:
    text = mesh_yaml(N)
    names = [f"n{i}" for i in range(1, N + 1)]
    order = random.Random(12).sample(names, N)
    starts = sorted(random.Random(13).uniform(0.0, 8.0) for _ in names)
    net = Net()
    speakers = {}
    for name, at in zip(order, starts, strict=True):
        net.run(at)  # the earlier speakers keep trying meanwhile: refused, back-off, retry
        topo, model = topology(text, name)
        speakers[name] = net.add(topo, model=model)
    last = starts[-1]
    hold_max = next(f.default for f in fields(SessionConfig) if f.name == "connect_hold_max")
    bound = last + float(hold_max) * JITTER_HIGH + 1.0  # type: ignore[arg-type]
    assert net.run(bound, lambda: all(established(s) for s in speakers.values())), [
        (n, sum(p.state.name == "ESTABLISHED" for p in s.peers.values())) for n, s in speakers.items()]
    assert net.run(net.now + 5, lambda: all(len(learned(s)) == N - 1 for s in speakers.values()))
    assert len(net.links) == N * (N - 1) // 2  # one connection per pair: one side of each is passive
    for s in speakers.values():
        for peer in s.peers.values():
            assert peer.neighbor.collisions == 0
            assert peer.established_count == 1  # no session had to start over
            assert not peer.notifications_sent
