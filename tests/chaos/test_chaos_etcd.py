"""Chaos with traffic on the lab on etcd: each member killed and restarted, then every member
stopped and started again, with every pair of pods probed: 0 probes lost."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from lab.chaos import Chaos, ChaosRun
from lab.etcd import etcd_missing
from tests.chaos.conftest import EVERY_HOST, chaos_lab

MEMBERS = ["m1", "m2", "m3"] if EVERY_HOST else ["m1"]


@pytest.fixture(scope="module")
def etcd_chaos(tmp_path_factory: pytest.TempPathFactory, chaos_runs: list[ChaosRun]) -> Iterator[tuple[Chaos, ChaosRun]]:
    why = etcd_missing()
    if why:
        pytest.skip(why)
    yield from chaos_lab(Path(tmp_path_factory.mktemp("chaos-etcd")), chaos_runs, "etcd")


@pytest.mark.parametrize(("kind", "member"), [*(("etcd-kill", m) for m in MEMBERS), ("etcd-all", "all")])
def test_etcd_event(etcd_chaos: tuple[Chaos, ChaosRun], kind: str, member: str,
                    record_property: Callable[[str, object], None]) -> None:
    chaos, run = etcd_chaos
    result = chaos.run(kind, member)
    run.events.append(result)
    record_property("chaos", asdict(result))
    assert result.met, f"{kind} ({member}) missed its goal ({result.goal}): {result.row()}"
