"""Deleting a namespace deletes its objects one at a time under the same per-object lock the API's
writes hold: an object being written when the namespace goes is deleted after that write, not beside it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from netkube.api.registry import Registry
from netkube.api.resources import BY_KIND, NAMESPACES
from netkube.api.sqlite_store import SqliteStore
from netkube.config import ClusterConfig

CONFIGMAPS = BY_KIND["ConfigMap"]


async def test_namespace_finisher_waits_for_a_write_in_flight(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "db"))
    reg = Registry(store, ClusterConfig())
    await store.create(NAMESPACES.key(None, "x"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    for n in ("held", "free"):
        await store.create(CONFIGMAPS.key("x", n), {"apiVersion": "v1", "kind": "ConfigMap",
                                                    "metadata": {"name": n, "namespace": "x"}})
    held = CONFIGMAPS.key("x", "held")
    async with reg.locks.hold(held):  # a PUT of that ConfigMap is in flight
        await reg.delete(NAMESPACES, None, "x", {})
        await asyncio.sleep(0.3)
        assert store.get(held) is not None  # the finisher waits for the write to end
        obj = store.get(held)
        assert obj is not None
        obj["data"] = {"k": "v"}
        await store.update(held, obj)  # the write completes
    await asyncio.wait_for(asyncio.gather(*reg.tasks), timeout=10)
    assert store.get(held) is None and store.get(CONFIGMAPS.key("x", "free")) is None
    assert store.get(NAMESPACES.key(None, "x")) is None
