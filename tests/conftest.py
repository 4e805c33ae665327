"""Shared test set-up: skip reasons for missing root, tools, kernel features."""

from __future__ import annotations

import pytest

from lab.netns import have_root, missing_tools


def require_root() -> None:
    if not have_root():
        pytest.skip("needs root (network namespaces)")


def require_tools(*tools: str) -> None:
    missing = missing_tools(*tools)
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")
