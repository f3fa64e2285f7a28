"""Root tier: tests that build real namespaces. Skipped (with a reason) when not root."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root for network namespaces (run `sudo scripts/test`)")
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    """Two fresh, empty network namespaces of the test's own, deleted afterwards."""
    tag = secrets.token_hex(3)
    made: list[str] = []
    try:
        for ns in (f"nkt-pair-{tag}a", f"nkt-pair-{tag}b"):
            subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=20)
            made.append(ns)
        yield made[0], made[1]
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
