"""Shared test set-up: skip reasons for missing root, tools, kernel features; the skip policy
(tests/skip_policy.py: where a skip is a failure) and the tier report `make test` summarises
(tests/tier_report.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from lab.netns import have_root, missing_tools
from tests import skip_policy, tier_report


def pytest_configure(config: pytest.Config) -> None:
    skip_policy.register(config)
    tier_report.register(config)


def require_root() -> None:
    if not have_root():
        pytest.skip("needs root (network namespaces)")


def require_tools(*tools: str) -> None:
    missing = missing_tools(*tools)
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll `check` until it is true; the seconds it took. AssertionError naming `what` at the deadline."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start
