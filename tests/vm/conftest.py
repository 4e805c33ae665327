"""The VM tier's host side: one boot of Debian's kernel per session, running `tests/vm/inside` there.

The guest runs pytest on the in-VM tests with a JUnit report written to the shared job directory;
the host tests read it. `pytest -s` streams the guest's console as it runs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tools

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.vm.image import GUEST_JOB_DIR, Image, ImageError, KernelUnavailable, ensure_image  # noqa: E402
from scripts.vm.run import QEMU, Result, accelerator, run_in_vm  # noqa: E402

INSIDE = Path(__file__).parent / "inside"
INSIDE_PACKAGE = "tests.vm.inside"
# Hard limit for the whole guest run; under software emulation on a busy machine Python runs 15-30x
# slower than on the host, so this is generous. The in-VM per-test limit keeps one hang from using it.
VM_TIMEOUT = float(os.environ.get("TORTIE_VM_TIMEOUT", "1200"))
IN_VM_TEST_TIMEOUT = 180
JUNIT = "junit.xml"


@dataclass(frozen=True)
class Case:
    name: str  # pytest node id inside the guest
    outcome: str  # passed, failed, error, skipped
    message: str = ""


@dataclass
class TierRun:
    image: Image
    result: Result
    cases: list[Case] = field(default_factory=list)
    junit_problem: str = ""

    def module_cases(self, module: str) -> list[Case]:
        dotted = f"{INSIDE_PACKAGE}.{module}"
        return [c for c in self.cases if c.name == dotted or c.name.startswith((f"{dotted}.", f"{dotted}::"))]

    def console_tail(self, lines: int = 150) -> str:
        return "\n".join(self.result.output.splitlines()[-lines:])


def in_vm_modules() -> list[str]:
    return sorted(p.stem for p in INSIDE.glob("test_*.py"))


def _parse_junit(path: Path) -> list[Case]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        node = f"{classname}::{name}" if classname else name
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (child.get("message") or "") + ("\n" + child.text if child.text else "")
                break
        cases.append(Case(node, outcome, message.strip()))
    return cases


def guest_pytest_command() -> list[str]:
    # The guest's PATH has Debian's python3 without our packages: the venv's interpreter by full path.
    # Read-only root: no cache provider. The serial console looks like a terminal: no colour.
    return [sys.executable, "-m", "pytest", str(INSIDE.relative_to(REPO)), "-q", "-rA", "--color=no",
            "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:xdist.looponfail",
            # its plugin imports all of hypothesis (15 s under emulation); no in-VM test uses it
            "-p", "no:hypothesispytest",
            "--durations=5", "-o", f"timeout={IN_VM_TEST_TIMEOUT}", f"--junitxml={GUEST_JOB_DIR}/{JUNIT}"]


_STASH_RUN = pytest.StashKey[TierRun]()


@pytest.fixture(scope="session")
def vm_tier(pytestconfig: pytest.Config) -> TierRun:
    if os.environ.get("TORTIE_IN_VM") == "1":
        pytest.skip("already inside the VM: the VM tier boots from the host")
    require_root()
    require_tools(QEMU)
    try:
        image = ensure_image()
    except KernelUnavailable as exc:
        pytest.skip(f"Debian's kernel package cannot be fetched: {exc}")
    except ImageError as exc:
        pytest.fail(f"VM image: {exc}")
    streaming = pytestconfig.getoption("capture") == "no"
    with tempfile.TemporaryDirectory(prefix="tortie-vm-") as tmp:
        result = run_in_vm(guest_pytest_command(), cwd=REPO, timeout=VM_TIMEOUT, image=image,
                           job_dir=Path(tmp), on_line=(lambda line: print(line, flush=True)) if streaming else None)
        run = TierRun(image, result)
        junit = Path(tmp) / JUNIT
        if junit.exists():
            try:
                run.cases = _parse_junit(junit)
            except ET.ParseError as exc:
                run.junit_problem = f"unreadable JUnit report: {exc}"
        else:
            run.junit_problem = "no JUnit report from the guest"
    pytestconfig.stash[_STASH_RUN] = run
    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Every guest case rides on the host tests' reports, for the tier report (tests/tier_report.py):
    `make test`'s summary refuses a VM tier whose guest ran nothing."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    run = item.config.stash.get(_STASH_RUN, None)
    if report.when == "call" and run is not None and "vm_tier" in getattr(item, "fixturenames", ()):
        report.user_properties.append(("guest", [
            {"id": c.name, "outcome": c.outcome, "reason": c.message.splitlines()[0] if c.message else ""}
            for c in run.cases]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    run = config.stash.get(_STASH_RUN, None)
    if run is None:
        return
    r = run.result
    boot = f"{r.boot_seconds:.1f} s" if r.boot_seconds is not None else "never reached the command"
    counts: dict[str, int] = {}
    for case in run.cases:
        counts[case.outcome] = counts.get(case.outcome, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no results"
    terminalreporter.write_line(
        f"vm tier: kernel {run.image.version} ({accelerator()[1]}), boot {boot}, "
        f"guest run {r.total_seconds:.1f} s, exit {r.returncode}: {summary}")
