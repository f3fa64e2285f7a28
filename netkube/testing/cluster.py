"""A whole fake control plane (controllers, scheduler, fake kubelet) on one FakeApiClient, for flow tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from netkube import client as api
from netkube.client import Obj
from netkube.config import ClusterConfig
from netkube.controllers import run_controllers
from netkube.scheduler import run_scheduler
from netkube.testing.fake_api import FakeApiClient
from netkube.testing.helpers import FakeKubelet, node, renew_leases

CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


@asynccontextmanager
async def fake_cluster(nodes: list[Obj] | None = None, ready: bool | Callable[[Obj], bool] = True,
                       extra: dict[str, str] | None = None) -> AsyncIterator[FakeApiClient]:
    """node1 (control plane, tainted), node2, node3 unless nodes are given; yields the fake apiserver."""
    fake = FakeApiClient()
    if nodes is None:
        nodes = [node("node1", taints=[CP_TAINT]), node("node2"), node("node3")]
    for i, n in enumerate(nodes):
        n.setdefault("spec", {}).setdefault("podCIDR", f"10.244.{i}.0/24")
        await fake.create(api.NODES, n)
    cfg = ClusterConfig(extra=dict(extra or {}))
    kubelet = FakeKubelet(fake, ready)
    tasks = [asyncio.create_task(run_controllers(fake, cfg)),  # type: ignore[arg-type]
             asyncio.create_task(run_scheduler(fake, cfg)),  # type: ignore[arg-type]
             asyncio.create_task(kubelet.run()),
             asyncio.create_task(renew_leases(fake, [n["metadata"]["name"] for n in nodes], kubelet.dead))]
    fake.kubelet = kubelet  # type: ignore[attr-defined]  # tests stop a node with fake.kubelet.dead.add(...)
    try:
        yield fake
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def events(fake: FakeApiClient, source: str, reason: str | None = None) -> list[str]:
    """Event messages of one component in the order they were first recorded."""
    evs = sorted(fake.objects(api.EVENTS), key=lambda e: (e["firstTimestamp"], e["metadata"]["name"]))
    return [e["message"] for e in evs if e["source"]["component"] == source and (reason is None or e["reason"] == reason)]


def live_pods(fake: FakeApiClient, prefix: str, namespace: str = "default") -> list[Obj]:
    return [p for p in fake.objects(api.PODS, namespace)
            if p["metadata"]["name"].startswith(prefix) and not p["metadata"].get("deletionTimestamp")]
