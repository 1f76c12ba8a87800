"""Shared pytest set-up for every test package."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Not deselected by default: CI runs every test, slow ones included (`-m "not slow"` skips them).
    config.addinivalue_line(
        "markers", "slow: long checks (full per-element finite differences); run by default and in CI")
