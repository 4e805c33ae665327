"""Tests that need a kernel this machine lacks: they run only inside the VM tier's Debian kernel.

`scripts/vm/run.py` sets TORTIE_IN_VM=1 in the guest; anywhere else these tests are collected and
skipped, so `pytest tests` stays green and says where they run. `tests/vm/test_vm_tier.py` boots the
VM and runs them there.
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
    skip = pytest.mark.skip(reason="runs only inside the VM tier's Debian kernel (TORTIE_IN_VM unset): "
                                   "tests/vm/test_vm_tier.py boots it")
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)
