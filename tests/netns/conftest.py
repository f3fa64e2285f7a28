"""Root tier: tests that build real namespaces. Skipped (with a reason) when not root."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root for network namespaces (run `sudo scripts/test`)")
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(skip)
