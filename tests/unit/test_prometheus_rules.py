"""contrib/prometheus: promtool accepts the configuration and the rules, and its rule unit tests (one
firing case for every alert, a not-yet case before each `for:`) pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import require_tools

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
ALERTS = CONTRIB / "rules" / "tortie-alerts.yml"
TESTS = CONTRIB / "tests" / "tortie-rules.test.yml"
# what the issue asks alerts for, by name
REQUIRED = {"TortieDaemonDown", "TortieBGPPeerDown", "TortieBGPNoEstablishedPeer", "TortieBGPSessionFlapping",
            "TortieBGPPrefixLimitExceeded", "TortieFelixFeedDisconnected", "TortieStaleRoutesPastRestartTime",
            "TortieFelixNetlinkErrors", "TortieFelixKernelDrift"}


def promtool(*args: str, cwd: Path = CONTRIB) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_summary_a_runbook_and_a_severity() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == REQUIRED
    for r in rules:
        assert r["annotations"]["summary"] and len(r["annotations"]["runbook"]) > 150, r["alert"]
        assert r["labels"]["severity"] in ("critical", "warning")


def test_every_alert_has_a_firing_unit_test() -> None:
    fired = {case["alertname"] for t in yaml.safe_load(TESTS.read_text())["tests"]
             for case in t.get("alert_rule_test", []) if case["exp_alerts"]}
    assert fired == REQUIRED


def test_promtool_check_config_and_rules() -> None:
    require_tools("promtool")
    proc = promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = promtool("check", "rules", "rules/tortie-recording.yml", "rules/tortie-alerts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_rule_unit_tests() -> None:
    require_tools("promtool")
    proc = promtool("test", "rules", TESTS.name, cwd=TESTS.parent)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr
