"""tests/vm runs only inside the VM scripts/vm-test boots (NETKUBE_VM=1, a kernel with IPVS)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("NETKUBE_VM") == "1":
        return
    skip = pytest.mark.skip(reason="VM tier: run scripts/vm-test (boots a kernel with IPVS)")
    for item in items:
        item.add_marker(skip)
