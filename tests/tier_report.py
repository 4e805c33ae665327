"""The tier report `make test`'s summary reads (scripts/test_summary.py): every test's outcome and
skip or failure reason, written as JSON to $TORTIE_TIER_REPORT at the end of the run (by the
controller under pytest-xdist, which receives every worker's reports).

A test's outcome is the worst of its phases: a failure in setup or teardown is an error, a skip in
setup or call a skip. Entries a test adds to its report's user_properties under the key "guest"
(the VM tier: the in-guest results) are kept as that test's guest cases, and under "chaos" (the
chaos tier: the event's lost probes and time to whole) as its chaos event.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.skip_policy import skip_reason, strict_mode

RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def _failure_text(report: pytest.TestReport | pytest.CollectReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return " ".join(text.split())[:400]


class TierReport:
    def __init__(self, path: Path, tier: str) -> None:
        self.path = path
        self.tier = tier
        self.tests: dict[str, dict[str, Any]] = {}
        self.started = dt.datetime.now(dt.UTC)

    def _set(self, nodeid: str, outcome: str, reason: str) -> None:
        entry = self.tests.setdefault(nodeid, {"id": nodeid, "outcome": "passed", "reason": ""})
        if RANK[outcome] > RANK[entry["outcome"]]:
            entry["outcome"], entry["reason"] = outcome, reason

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.passed:
            self._set(report.nodeid, "passed", "")
        elif report.skipped:
            self._set(report.nodeid, "skipped", skip_reason(report.longrepr))
        else:
            self._set(report.nodeid, "failed" if report.when == "call" else "error", _failure_text(report))
        for key, value in report.user_properties:
            if key in ("guest", "chaos"):
                self.tests[report.nodeid][key] = value

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._set(report.nodeid or "<collection>", "error", _failure_text(report))
        elif report.skipped:
            self._set(report.nodeid, "skipped", skip_reason(report.longrepr))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(session.config, "workerinput"):
            return
        strict, why = strict_mode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({
            "tier": self.tier, "started": self.started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "exitstatus": int(exitstatus), "strict": strict, "strict_why": why,
            "tests": sorted(self.tests.values(), key=lambda t: t["id"]),
        }, indent=1))
        tmp.replace(self.path)


def register(config: pytest.Config) -> None:
    path = os.environ.get("TORTIE_TIER_REPORT")
    # the VM tier's guest has a read-only root and is reported through the host's tests
    if path and not hasattr(config, "workerinput") and os.environ.get("TORTIE_IN_VM") != "1":
        config.pluginmanager.register(TierReport(Path(path), os.environ.get("TORTIE_TIER", "")),
                                      "tortie-tier-report")
