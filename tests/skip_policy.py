"""A skip is a failure where skipping would hide a tier, unless tests/skip-allowlist.yaml allows it.

Strict (skips fail) when:
  - CI is set (any value but "", "0", "false"): always, nothing turns it off;
  - or running as root on a machine `make test` set up: scripts/setup.sh, run as root, installed the
    system packages and left `.venv/.tortie-system-setup`. TORTIE_STRICT_SKIPS=0 turns it off there
    (a developer exploring), TORTIE_STRICT_SKIPS=1 turns it on anywhere.
Otherwise skips are allowed, and printed with their reasons as usual (`-ra`).

Inside the VM tier's guest the host judges the guest's results, so nothing is converted there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ALLOWLIST = REPO / "tests" / "skip-allowlist.yaml"
SETUP_MARKER = REPO / ".venv" / ".tortie-system-setup"


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no")


def strict_mode(env: dict[str, str] | None = None, root: bool | None = None,
                marker: Path = SETUP_MARKER) -> tuple[bool, str]:
    """(strict, why) for this process."""
    env = dict(os.environ) if env is None else env
    if env.get("TORTIE_IN_VM") == "1":
        return False, "inside the VM tier's guest (the host judges its results)"
    if _truthy(env.get("CI")):
        return True, f"CI={env['CI']}"
    override = env.get("TORTIE_STRICT_SKIPS")
    if override is not None and override.strip() in ("0", "1"):
        return override.strip() == "1", f"TORTIE_STRICT_SKIPS={override.strip()}"
    root = (os.geteuid() == 0) if root is None else root
    if root and marker.exists():
        return True, "root on a machine `make test` set up"
    if not root:
        return False, "not root (a developer's run)"
    return False, "scripts/setup.sh has not set this machine up as root"


@dataclass(frozen=True)
class Allowed:
    tier: str
    pattern: re.Pattern[str]
    why: str


def load_allowlist(path: Path = ALLOWLIST) -> list[Allowed]:
    entries = yaml.safe_load(path.read_text()) or []
    out = []
    for i, e in enumerate(entries, start=1):
        if not isinstance(e, dict) or not {"tier", "match", "why"} <= e.keys() or not str(e["why"]).strip():
            raise ValueError(f"{path}: entry {i} needs tier, match and why")
        out.append(Allowed(str(e["tier"]), re.compile(str(e["match"])), str(e["why"])))
    return out


def allowed(reason: str, tier: str, allowlist: list[Allowed]) -> Allowed | None:
    for entry in allowlist:
        if entry.tier == tier and entry.pattern.search(reason):
            return entry
    return None


def tier_of(path: Path) -> str:
    """The tier a test belongs to: its directory under tests/ (tests/vm/inside counts as vm)."""
    try:
        rel = path.resolve().relative_to(REPO / "tests")
    except ValueError:
        return ""
    return rel.parts[0] if len(rel.parts) > 1 else ""


def skip_reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipPolicy:
    def __init__(self, strict: bool, why: str, allowlist: list[Allowed]) -> None:
        self.strict = strict
        self.why = why
        self.allowlist = allowlist

    def verdict(self, reason: str, tier: str) -> str | None:
        """None when the skip may stand, else the failure text."""
        if not self.strict or allowed(reason, tier, self.allowlist) is not None:
            return None
        return (f"skipped where skips fail ({self.why}): {reason}\n"
                f"A skip here hides a tier. Make the test run (scripts/setup.sh installs what tests need), "
                f"or, if the skip is right, add a reviewed entry to {ALLOWLIST.relative_to(REPO)}.")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        text = self.verdict(skip_reason(report.longrepr), tier_of(item.path))
        if text is not None:
            report.outcome = "failed"
            report.longrepr = text

    @pytest.hookimpl(hookwrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Iterator[None]:
        outcome = yield
        report: pytest.CollectReport = outcome.get_result()  # type: ignore[attr-defined]
        if not report.skipped:
            return
        path = getattr(collector, "path", None)
        text = self.verdict(skip_reason(report.longrepr), tier_of(path) if path else "")
        if text is not None:
            report.outcome = "failed"
            report.longrepr = text

    def pytest_report_header(self) -> str:
        state = "skips FAIL unless allowlisted" if self.strict else "skips allowed"
        return f"skip policy: {state} ({self.why})"


def register(config: pytest.Config) -> None:
    strict, why = strict_mode()
    config.pluginmanager.register(SkipPolicy(strict, why, load_allowlist()), "tortie-skip-policy")
