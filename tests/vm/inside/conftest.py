"""Tests that need a kernel this machine lacks: they run only inside the VM tier's Debian kernel.

`scripts/vm/run.py` sets TORTIE_IN_VM=1 in the guest; anywhere else these tests are deselected (not
skipped: they do run, in the guest, and `tests/vm/test_vm_tier.py` reports each module's guest
results on the host), and the header says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IN_VM = os.environ.get("TORTIE_IN_VM") == "1"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_VM:
        return
    guest = [item for item in items if HERE in item.path.parents]
    if guest:
        items[:] = [item for item in items if HERE not in item.path.parents]
        config.hook.pytest_deselected(items=guest)


def pytest_report_header(config: pytest.Config) -> str | None:
    if IN_VM:
        return None
    return ("tests/vm/inside: deselected on the host; they run inside the VM tier's Debian kernel "
            "(tests/vm/test_vm_tier.py boots it and reports their results)")
