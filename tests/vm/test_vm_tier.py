"""Host side of the VM tier: each in-VM test module's results, from one VM boot per session.

A module passes when every one of its tests passed (or some skipped) inside the VM, fails with the
guest's messages and console when any failed, and is skipped with their reasons when all skipped.
"""

from __future__ import annotations

import pytest

from tests.vm.conftest import VM_TIMEOUT, TierRun, in_vm_modules

pytestmark = [pytest.mark.vm, pytest.mark.root, pytest.mark.timeout(VM_TIMEOUT + 120)]


def test_guest_ran_pytest_to_the_end(vm_tier: TierRun) -> None:
    r = vm_tier.result
    if r.timed_out:
        pytest.fail(f"VM hard timeout ({VM_TIMEOUT:.0f} s) hit; console tail:\n{vm_tier.console_tail()}")
    # pytest exits 0 (all passed) or 1 (some failed); anything else is a crash or a usage error.
    assert r.returncode in (0, 1), (f"guest pytest exit {r.returncode}; console tail:\n"
                                   f"{vm_tier.console_tail()}")
    assert not vm_tier.junit_problem, f"{vm_tier.junit_problem}; console tail:\n{vm_tier.console_tail()}"


@pytest.mark.parametrize("module", in_vm_modules())
def test_in_vm_module(vm_tier: TierRun, module: str) -> None:
    cases = vm_tier.module_cases(module)
    if not cases:
        pytest.fail(f"{module}: no results from the guest ({vm_tier.junit_problem or 'not collected'}); "
                    f"console tail:\n{vm_tier.console_tail()}")
    bad = [c for c in cases if c.outcome in ("failed", "error")]
    if bad:
        details = "\n\n".join(f"{c.outcome.upper()} {c.name}\n{c.message}" for c in bad)
        pytest.fail(f"{len(bad)} of {len(cases)} failed inside the VM:\n{details}", pytrace=False)
    if all(c.outcome == "skipped" for c in cases):
        pytest.skip("all skipped inside the VM: " + "; ".join(sorted({c.message for c in cases})))
