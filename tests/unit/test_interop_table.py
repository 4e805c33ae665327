"""scripts/interop_table.py renders docs/interop.md from one interop run's results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN = {
    "date": "2026-12-07 16:31", "commit": "abc123def456", "command": "pytest tests/interop -q", "load": [1.0, 2.0, 3.0],
    "results": [
        {"scenario": "ibgp-mesh", "daemon": "bird2", "status": "pass", "reason": "", "test": "t1"},
        {"scenario": "ibgp-mesh", "daemon": "gobgp", "status": "FAIL", "reason": "boom", "test": "t2"},
        {"scenario": "refresh-daemon-asks", "daemon": "gobgp", "status": "skip", "reason": "GoBGP 3.10 ...",
         "test": "t3"},
    ],
}


def test_the_table_is_one_run_with_its_date_and_commit(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RUN))
    doc = tmp_path / "interop.md"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "interop_table.py"), str(results), str(doc)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = doc.read_text()
    assert "Run: 2026-12-07 16:31 UTC, commit abc123def456, `pytest tests/interop -q`, load average 1.0" in text
    assert "| ibgp-mesh | - | pass | **FAIL** [1] | - |" in text
    assert "| refresh-daemon-asks | - | - | skip [2] | - |" in text
    assert "1. ibgp-mesh / GoBGP 3.10: boom" in text


def test_no_run_recorded_is_an_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "interop_table.py"), str(tmp_path / "none.json"),
                           str(tmp_path / "interop.md")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no interop run recorded" in proc.stderr
    assert not (tmp_path / "interop.md").exists()
