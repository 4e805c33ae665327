"""The skip policy (tests/skip_policy.py), the tier report (tests/tier_report.py) and the summary
`make test` ends with (scripts/test_summary.py): where skips fail, only allowlisted ones pass, and
the VM tier counts only when its guest ran its tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.skip_policy import ALLOWLIST, Allowed, SkipPolicy, allowed, load_allowlist, strict_mode, tier_of

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import test_summary as summary  # noqa: E402

pytest_plugins = ["pytester"]


def test_strict_mode_sources(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    assert strict_mode({"CI": "true"}, root=False, marker=marker)[0]
    # CI cannot be talked out of it
    assert strict_mode({"CI": "1", "TORTIE_STRICT_SKIPS": "0"}, root=True, marker=marker)[0]
    assert not strict_mode({"CI": "false"}, root=False, marker=marker)[0]
    assert not strict_mode({}, root=True, marker=marker)[0]  # root, but set-up never ran as root
    marker.touch()
    assert strict_mode({}, root=True, marker=marker) == (True, "root on a machine `make test` set up")
    assert not strict_mode({}, root=False, marker=marker)[0]  # a developer, not root
    assert not strict_mode({"TORTIE_STRICT_SKIPS": "0"}, root=True, marker=marker)[0]
    assert strict_mode({"TORTIE_STRICT_SKIPS": "1"}, root=False, marker=marker)[0]
    assert not strict_mode({"CI": "true", "TORTIE_IN_VM": "1"}, root=True, marker=marker)[0]


def test_the_allowlist_is_short_and_says_why() -> None:
    entries = load_allowlist()
    assert 1 <= len(entries) <= 5, "the allowlist is meant to stay short: review before growing it"
    assert all(len(e.why) > 40 for e in entries)
    reasons = {
        "kernel": "this kernel has no IP-in-IP: the IPIP route shape is tested in the VM tier",
        "interop": "GoBGP 3.10 sends no ROUTE-REFRESH: `gobgp neighbor X softresetin` (and `softreset`) ...",
    }
    for tier, reason in reasons.items():
        assert allowed(reason, tier, entries) is not None
    # an entry holds for its own tier only, and nothing else gets through
    assert allowed(reasons["kernel"], "unit", entries) is None
    assert allowed("needs root (network namespaces)", "kernel", entries) is None
    assert allowed("missing tools: gobgpd", "interop", entries) is None


def test_allowlist_entries_need_a_reason(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- tier: kernel\n  match: anything\n")
    with pytest.raises(ValueError, match="needs tier, match and why"):
        load_allowlist(bad)


def test_tier_of() -> None:
    assert tier_of(REPO / "tests" / "kernel" / "test_x.py") == "kernel"
    assert tier_of(REPO / "tests" / "vm" / "inside" / "test_ipip.py") == "vm"
    assert tier_of(Path("/elsewhere/test_x.py")) == ""


TESTS = '''
import pytest

pytestmark = []

def test_passes():
    pass

def test_unlisted_skip():
    pytest.skip("missing tools: gobgpd")

def test_listed_skip():
    pytest.skip("GoBGP 3.10 has no such thing")

@pytest.fixture
def needs_root():
    pytest.skip("needs root (network namespaces)")

def test_skip_in_setup(needs_root):
    pass

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
'''


def _policy(strict: bool) -> SkipPolicy:
    import re

    # tier "" is what tests outside tests/ (pytester's directory) belong to
    return SkipPolicy(strict, "test", [Allowed("", re.compile(r"GoBGP 3\.10 has"), "an example")])


@pytest.fixture(autouse=True)
def _ini(request: pytest.FixtureRequest) -> None:
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester").makeini(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def test_strict_policy_turns_unlisted_skips_into_failures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", plugins=[_policy(True)])
    result.assert_outcomes(passed=1, skipped=1, failed=1, errors=1, xfailed=1)
    result.stdout.fnmatch_lines(["*skipped where skips fail (test): missing tools: gobgpd*"])


def test_lenient_policy_keeps_skips(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", plugins=[_policy(False)])
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)


def test_a_module_level_skip_fails_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gone='import pytest\npytest.importorskip("no_such_module_here")\n')
    result = pytester.runpytest("-p", "no:cacheprovider", plugins=[_policy(True)])
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*skipped where skips fail*no_such_module_here*"])


# ---------------------------------------------------------------- the summary


def _reports(tmp_path: Path, tiers: dict[str, tuple[int, list[dict[str, object]] | None]]) -> Path:
    for name, (code, tests) in tiers.items():
        (tmp_path / f"{name}.exit").write_text(f"{code}\n")
        if tests is not None:
            (tmp_path / f"{name}.json").write_text(json.dumps({"tier": name, "tests": tests}))
    return tmp_path


def _t(id_: str, outcome: str, reason: str = "", **kw: object) -> dict[str, object]:
    return {"id": id_, "outcome": outcome, "reason": reason, **kw}


GUEST_OK = [{"id": "tests.vm.inside.test_ipip::test_x", "outcome": "passed", "reason": ""}]


def test_summary_passes_a_clean_run(tmp_path: Path) -> None:
    reports = _reports(tmp_path, {
        "lint": (0, None),
        "kernel": (0, [_t("k::a", "passed"), _t("k::ipip", "skipped", "this kernel has no IP-in-IP: see VM")]),
        "vm": (0, [_t("vm::mod", "passed", guest=GUEST_OK)]),
    })
    allow = load_allowlist(ALLOWLIST)
    tiers = [summary.judge(n, reports, True, allow) for n in ("lint", "kernel", "vm")]
    assert all(t.ok for t in tiers), [t.problems for t in tiers]
    text = summary.render(tiers, True, "CI=true")
    assert text.splitlines()[-1] == "total: 2 passed, 0 failed, 1 skipped"
    assert "this kernel has no IP-in-IP: see VM [allowed]" in text


@pytest.mark.parametrize(("tiers", "problem"), [
    ({"unit": (1, [_t("u::a", "failed", "boom")])}, "1 failed"),
    ({"unit": (0, [_t("u::a", "skipped", "missing tools: x")])}, "skip not on the allowlist"),
    ({"unit": (0, [])}, "ran no test"),
    ({"unit": (2, None)}, "no report"),
    ({"vm": (0, [_t("vm::mod", "skipped", "all skipped inside the VM: ...", guest=[])])}, "guest ran no test"),
    ({"vm": (0, [_t("vm::mod", "passed", guest=[{"id": "g", "outcome": "skipped", "reason": "no ipip"}])])},
     "guest skip not on the allowlist"),
])
def test_summary_refuses(tmp_path: Path, tiers: dict[str, tuple[int, list[dict[str, object]] | None]],
                         problem: str) -> None:
    reports = _reports(tmp_path, tiers)
    (name,) = tiers
    tier = summary.judge(name, reports, True, load_allowlist(ALLOWLIST))
    assert not tier.ok
    assert any(problem in p for p in tier.problems), tier.problems


def test_summary_refuses_a_tier_that_never_ran(tmp_path: Path) -> None:
    assert summary.main(["--reports", str(tmp_path), "unit"]) == 1
    assert summary.judge("unit", tmp_path, False, []).problems == ["did not run (no exit status recorded)"]


def test_outside_ci_skips_and_empty_tiers_pass(tmp_path: Path) -> None:
    reports = _reports(tmp_path, {"interop": (0, [_t("i::a", "skipped", "needs root (network namespaces)")]),
                                  "e2e": (5, [])})
    tiers = [summary.judge(n, reports, False, []) for n in ("interop", "e2e")]
    assert all(t.ok for t in tiers)
    assert "[allowed outside CI]" in summary.render(tiers, False, "not root")
