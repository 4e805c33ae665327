"""The chaos tier's parts that run without namespaces: the prober over loopback (real UDP sockets),
the event plan, the broken cluster files, the chaos table and the summary's chaos line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.chaos import BREAKAGES, HOST_KINDS, bad_config, plan
from proto.resources import load_model
from proto.resources.errors import ValidationError
from scripts import chaos_table
from scripts import test_summary as summary

REPO = Path(__file__).resolve().parents[2]
CHAOS_CLUSTER = REPO / "configs" / "chaos-cluster.yaml"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prober_counts_answers_and_losses_over_loopback() -> None:
    """A prober aimed at itself (its own echo answers) and at a port where nothing listens: the first
    pair loses nothing, every probe to the second is reported lost, and both are sent at the rate."""
    port, dead = free_udp_port(), free_udp_port()
    proc = subprocess.Popen([sys.executable, "-m", "lab.prober", "--port", str(port), "--rate", "40",
                             "--timeout", "0.3", "self=127.0.0.1", f"void=127.0.0.1:{dead}"],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    totals: dict[str, tuple[float, int, int]] = {}
    lost: dict[str, list[int]] = {"self": [], "void": []}
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        start = time.monotonic()
        for line in proc.stdout:  # the prober writes a T line per target every 0.1 s: this ends
            kind, name, *rest = line.split()
            if kind == "L":
                lost[name].append(int(rest[0]))
            elif kind == "T":
                totals[name] = (float(rest[0]), int(rest[1]), int(rest[2]))
            if totals.get("self", (0, 0, 0))[2] >= 40 and len(lost["void"]) >= 20:
                break
            assert time.monotonic() - start < 30, (totals, lost)
        elapsed = time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert lost["self"] == []
    assert lost["void"] == list(range(1, len(lost["void"]) + 1)), "every probe to void lost, in order"
    assert totals["void"][2] == 0
    for name in ("self", "void"):
        assert totals[name][1] >= 40 * elapsed * 0.8, f"{name}: {totals[name][1]} sent in {elapsed:.2f} s"


def test_plan_every_host_or_one_per_kind() -> None:
    hosts = ["a", "b", "c"]
    every = plan(hosts, HOST_KINDS, True)
    assert len(every) == len(hosts) * len(HOST_KINDS)
    for h in hosts:
        mine = [k for k, host in every if host == h]
        assert mine == list(HOST_KINDS) and mine[-1] == "rogue-peer"  # the rogue's hold-down comes last
    short = plan(hosts, HOST_KINDS, False)
    assert [k for k, _ in short] == list(HOST_KINDS)
    assert {h for _, h in short} == set(hosts)


@pytest.mark.parametrize("index", range(len(BREAKAGES)))
def test_every_bad_cluster_file_is_refused_with_its_line(index: int) -> None:
    good = CHAOS_CLUSTER.read_bytes()
    load_model(good.decode(), str(CHAOS_CLUSTER))
    bad = bad_config(good, index)
    with pytest.raises(ValidationError) as err:
        load_model(bad.decode(), str(CHAOS_CLUSTER))
    assert "line" in str(err.value), str(err.value)


EVENT = {"kind": "link-flap", "target": "worker-1", "lost": 120, "lost_pairs": {"pod-1>pod-2": 60, "pod-2>pod-1": 60},
         "sent": 900, "whole_s": 0.04, "action_s": 2.0, "goal": "other hosts 0 lost", "met": True, "detail": ""}
RUN = {"started": "2026-12-07 19:40 UTC", "commit": "abc1234", "machine": "m, 2 cores", "load": "9.0 8.0 7.0",
       "command": "make chaos", "datastore": "file", "rate": 25.0, "pods": ["pod-1", "pod-2"], "events": [EVENT]}


def test_chaos_table_replaces_only_its_part(tmp_path: Path) -> None:
    doc = tmp_path / "reliability.md"
    doc.write_text(f"# before\n\n{chaos_table.BEGIN}\nold numbers\n{chaos_table.END}\n\n## after\n")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"every_host": True, "runs": [RUN]}))
    assert chaos_table.main([str(results), str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# before\n") and text.endswith("## after\n") and "old numbers" not in text
    assert "| link-flap | worker-1 | 120 | 900 | 0.04 s |" in text
    assert "commit `abc1234`" in text and "Goals missed: none." in text
    missed = dict(RUN, events=[dict(EVENT, met=False, whole_s=None)])
    results.write_text(json.dumps({"every_host": False, "runs": [missed]}))
    chaos_table.main([str(results), str(doc)])
    assert "Goals missed: link-flap on worker-1." in doc.read_text()
    assert doc.read_text().count(chaos_table.BEGIN) == 1


def test_summary_reports_chaos_events_and_refuses_a_tier_without_any(tmp_path: Path) -> None:
    (tmp_path / "chaos.exit").write_text("0\n")
    tests = [{"id": "tests/chaos/test_chaos.py::test_event[x]", "outcome": "passed", "reason": "", "chaos": EVENT}]
    (tmp_path / "chaos.json").write_text(json.dumps({"tier": "chaos", "tests": tests}))
    tier = summary.judge("chaos", tmp_path, True, [])
    assert tier.ok and "1 events, 120 probes lost, longest to whole 0.04 s" in tier.note
    (tmp_path / "chaos.json").write_text(json.dumps({"tier": "chaos", "tests": [dict(tests[0], chaos=None)]}))
    tier = summary.judge("chaos", tmp_path, True, [])
    assert "no chaos event ran" in tier.problems
