#!/usr/bin/env python3
"""The end of `make test`: one table of every tier's results, and the verdict.

    scripts/test_summary.py [--reports DIR] TIER ...     # the tiers that were meant to run, in order

Each tier left DIR/TIER.exit (its command's exit status) and, for pytest tiers and the fuzz step,
DIR/TIER.json (every test's outcome and skip or failure reason: tests/tier_report.py, fuzz/run.py).
A tier fails when its command failed, it left no report, a test in it failed, or, where skips fail
(tests/skip_policy.py: under CI, or as root on a machine `make test` set up), it ran no test at
all, a skip in it is not on tests/skip-allowlist.yaml, or (the VM tier) its guest did not run the
in-guest tests (at least one passed, none failed, no skip that is not allowed), or (the chaos tier) ran
no event; the chaos tier's line says how many events ran, the probes lost and which missed a goal.
The exit status is 1
if any tier failed. The last line reads `total: N passed, N failed, N skipped`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.skip_policy import allowed, load_allowlist, strict_mode  # noqa: E402

REPORTS = REPO / "build" / "test-reports"


@dataclass
class Tier:
    name: str
    exit: int | None = None
    report: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"passed": 0, "failed": 0, "skipped": 0})
    problems: list[str] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def judge(name: str, reports: Path, strict: bool, allowlist: list[Any]) -> Tier:
    tier = Tier(name)
    exit_file, json_file = reports / f"{name}.exit", reports / f"{name}.json"
    if not exit_file.exists():
        tier.problems.append("did not run (no exit status recorded)")
        return tier
    tier.exit = int(exit_file.read_text().strip() or "1")
    if json_file.exists():
        tier.report = json.loads(json_file.read_text())
    tests = tier.report["tests"] if tier.report else []
    for t in tests:
        outcome = t["outcome"]
        if outcome in ("failed", "error"):
            tier.counts["failed"] += 1
            tier.failures.append(f"{t['id']}: {t.get('reason', '')}")
        elif outcome == "skipped":
            tier.counts["skipped"] += 1
            entry = allowed(t.get("reason", ""), name, allowlist)
            mark = "allowed" if entry else ("NOT ALLOWED" if strict else "allowed outside CI")
            tier.skips.append(f"{t['id']}: {t.get('reason', '')} [{mark}]")
            if strict and entry is None:
                # the pytest plugin already failed these; this catches a report written without it
                tier.problems.append(f"skip not on the allowlist: {t['id']}")
        else:
            tier.counts["passed"] += 1
    if tier.exit not in (0, 5):
        tier.problems.append(f"exit status {tier.exit}")
    if tier.counts["failed"]:
        tier.problems.append(f"{tier.counts['failed']} failed")
    if tier.report is None and name != "lint":
        tier.problems.append("no report (the run broke before its end?)")
    if strict and tier.report is not None and not tests:
        tier.problems.append("ran no test")
    if name == "vm" and tier.report is not None:
        judge_guest(tier, tests, strict, allowlist)
    if name == "chaos" and tier.report is not None:
        judge_chaos(tier, tests, strict)
    return tier


def judge_chaos(tier: Tier, tests: list[dict[str, Any]], strict: bool) -> None:
    """The chaos tier's events (each test's "chaos" entry): how many ran, probes lost, the longest
    time to a whole matrix, and which missed their goal. Where skips fail, it must have run events."""
    events = [t["chaos"] for t in tests if isinstance(t.get("chaos"), dict)]
    lost = sum(int(e.get("lost", 0)) for e in events)
    wholes = [float(e["whole_s"]) for e in events if e.get("whole_s") is not None]
    missed = [f"{e.get('kind')} on {e.get('target')}" for e in events if not e.get("met")]
    tier.note = (f"{len(events)} events, {lost} probes lost, longest to whole "
                 f"{max(wholes) if wholes else 0:.2f} s" + (f"; goal missed: {', '.join(missed)}" if missed else ""))
    if strict and not events:
        tier.problems.append("no chaos event ran")


def judge_guest(tier: Tier, tests: list[dict[str, Any]], strict: bool, allowlist: list[Any]) -> None:
    guest: dict[str, dict[str, str]] = {}
    for t in tests:
        for case in t.get("guest", []):
            guest[case["id"]] = case
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in guest.values():
        outcome = {"error": "failed"}.get(case["outcome"], case["outcome"])
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "skipped":
            entry = allowed(case.get("reason", ""), "vm", allowlist)
            tier.skips.append(f"(guest) {case['id']}: {case.get('reason', '')} "
                              f"[{'allowed' if entry or not strict else 'NOT ALLOWED'}]")
            if strict and entry is None:
                tier.problems.append(f"guest skip not on the allowlist: {case['id']}")
    tier.note = f"guest: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    if strict and not counts["passed"]:
        tier.problems.append("the VM guest ran no test (the in-guest tests must run, not be skipped)")


def render(tiers: list[Tier], strict: bool, why: str) -> str:
    lines = ["", f"=== test summary ({'skips fail unless allowlisted' if strict else 'skips allowed'}: {why})",
             f"{'tier':<10} {'passed':>7} {'failed':>7} {'skipped':>8}  result"]
    for t in tiers:
        result = "ok" if t.ok else "FAILED: " + "; ".join(t.problems)
        if t.note:
            result += f" ({t.note})"
        if t.name == "lint" and t.report is None:
            lines.append(f"{t.name:<10} {'-':>7} {'-':>7} {'-':>8}  {result}")
            continue
        c = t.counts
        lines.append(f"{t.name:<10} {c['passed']:>7} {c['failed']:>7} {c['skipped']:>8}  {result}")
    skips = [(t.name, s) for t in tiers for s in t.skips]
    if skips:
        lines += ["", "skipped (with reasons):"] + [f"  {name}: {s}" for name, s in skips]
    failures = [(t.name, f) for t in tiers for f in t.failures]
    if failures:
        lines += ["", "failed:"] + [f"  {name}: {f}" for name, f in failures[:60]]
        if len(failures) > 60:
            lines.append(f"  ... and {len(failures) - 60} more")
    total = {k: sum(t.counts[k] for t in tiers) for k in ("passed", "failed", "skipped")}
    bad = [t.name for t in tiers if not t.ok]
    lines += ["", f"verdict: {'FAILED (' + ', '.join(bad) + ')' if bad else 'all tiers passed'}",
              f"total: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tiers", nargs="+")
    ap.add_argument("--reports", type=Path, default=REPORTS)
    ap.add_argument("--quiet", action="store_true", help="one line per tier, no totals (a single tier's verdict)")
    args = ap.parse_args(argv)
    strict, why = strict_mode()
    allowlist = load_allowlist()
    tiers = [judge(name, args.reports, strict, allowlist) for name in args.tiers]
    if args.quiet:
        for t in tiers:
            c = t.counts
            state = "ok" if t.ok else "FAILED: " + "; ".join(t.problems)
            print(f"=== tier {t.name}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped: {state}"
                  + (f" ({t.note})" if t.note else ""))
    else:
        print(render(tiers, strict, why))
    return 0 if all(t.ok for t in tiers) else 1


if __name__ == "__main__":
    sys.exit(main())
