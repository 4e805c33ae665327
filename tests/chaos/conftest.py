"""The chaos tier (`make test-chaos`: each kind of event once, on a rotating host; `make chaos`: every
kind on every host, then docs/reliability.md's table from that run).

TORTIE_CHAOS_HOSTS=all runs every event on every host; TORTIE_CHAOS_RATE sets the probes a second
per pair of pods (default 25); results go to TORTIE_CHAOS_RESULTS (default build/chaos/results.json),
one entry per lab the tier ran (file datastore, etcd)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.chaos import Chaos, ChaosRun, new_run
from lab.cluster import Lab
from lab.topology import REPO
from tests.conftest import require_root, require_tools

CHAOS_CLUSTER = REPO / "configs" / "chaos-cluster.yaml"
EVERY_HOST = os.environ.get("TORTIE_CHAOS_HOSTS", "") == "all"
RATE = float(os.environ.get("TORTIE_CHAOS_RATE", "25"))
RESULTS = Path(os.environ.get("TORTIE_CHAOS_RESULTS", REPO / "build" / "chaos" / "results.json"))


@pytest.fixture(scope="session")
def chaos_runs() -> Iterator[list[ChaosRun]]:
    runs: list[ChaosRun] = []
    yield runs
    if runs:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"every_host": EVERY_HOST, "runs": [r.to_json() for r in runs]}, indent=1))


def chaos_lab(tmp: Path, runs: list[ChaosRun], datastore: str) -> Iterator[tuple[Chaos, ChaosRun]]:
    require_root()
    require_tools("ip", "nft", "curl", "bird", "birdc")
    lab = Lab(tmp, prefix=f"tc{secrets.token_hex(2)}-")
    chaos = None
    try:
        lab.up(CHAOS_CLUSTER, datastore=datastore)
        chaos = Chaos(lab, rate=RATE)
        converged = chaos.start()
        print(f"\nchaos lab on {datastore}: whole after {converged:.1f} s")
        run = new_run(lab, chaos, "make chaos (TORTIE_CHAOS_HOSTS=all)" if EVERY_HOST else "make test-chaos")
        runs.append(run)
        yield chaos, run
    finally:
        if chaos is not None:
            chaos.stop()
        lab.down()
