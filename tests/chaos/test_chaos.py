"""Chaos with traffic on the lab on its cluster file: every pair of pods probed (lab.prober) while
daemons are killed and restarted, uplinks flap, a broken cluster file arrives and a rogue peer
floods one host, one event at a time (lab.chaos). Each event's goal is asserted: 0 probes lost for
restarts, bad configuration and the rogue; for a link flap the other hosts lose nothing and the
flapped host is whole within 1 s of its link's return."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from lab.chaos import FLAP_WHOLE, HOST_KINDS, Chaos, ChaosRun, plan
from lab.topology import scenario_from_model
from proto.resources import load_model
from tests.chaos.conftest import CHAOS_CLUSTER, EVERY_HOST, chaos_lab

HOSTS = [h.name for h in scenario_from_model(load_model(CHAOS_CLUSTER.read_text(), str(CHAOS_CLUSTER))).hosts]
MIN_RATE = 20.0  # probes a second per pair, the floor


@pytest.fixture(scope="module")
def lab_chaos(tmp_path_factory: pytest.TempPathFactory, chaos_runs: list[ChaosRun]) -> Iterator[tuple[Chaos, ChaosRun]]:
    yield from chaos_lab(Path(tmp_path_factory.mktemp("chaos-file")), chaos_runs, "file")


@pytest.mark.parametrize(("kind", "host"), plan(HOSTS, HOST_KINDS, EVERY_HOST))
def test_event(lab_chaos: tuple[Chaos, ChaosRun], kind: str, host: str,
               record_property: Callable[[str, object], None]) -> None:
    chaos, run = lab_chaos
    result = chaos.run(kind, host)
    run.events.append(result)
    record_property("chaos", asdict(result))
    if kind == "link-flap" and result.whole_s is not None:
        # The host's neighbour entries for its subnet are flushed when its carrier goes, made again
        # (INCOMPLETE) by the traffic of the outage, and solicited every second, three times, while
        # the carrier is gone; when the outage outlasts the third solicit (2 s down plus a slow `ip`
        # under load) they stay INCOMPLETE until they fail, 3 s after the carrier went: up to 1 s after
        # its return (Linux's neighbour timers, not tortie; docs/reliability.md). The table keeps the
        # 1 s goal (met or not, the tier's summary line names a miss); the test allows the probe
        # interval and scheduling under load on top of it.
        assert chaos.others_lost(result) == 0, f"other hosts lost probes: {result.row()}"
        assert result.whole_s <= FLAP_WHOLE + 0.25, f"{host} not whole in time: {result.row()}"
        return
    assert result.met, f"{kind} on {host} missed its goal ({result.goal}): {result.row()}"


def test_every_pair_was_probed_at_the_rate(lab_chaos: tuple[Chaos, ChaosRun]) -> None:
    chaos, _ = lab_chaos
    m = chaos.matrix
    elapsed = time.monotonic() - m.started
    with m.lock:
        slow = {pair: st.sent / elapsed for pair, st in m.pairs.items() if st.sent / elapsed < MIN_RATE * 0.95}
    assert len(m.pairs) == len(m.pods) * (len(m.pods) - 1)
    assert not slow, f"pairs probed under {MIN_RATE}/s: {slow}"
