"""Builders and a tiny fake kubelet for control-plane tests on FakeApiClient."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from netkube import client as api
from netkube.client import ApiError, Obj
from netkube.testing.fake_api import FakeApiClient, now_rfc3339


def node(name: str, ready: bool = True, labels: dict[str, str] | None = None,
         taints: list[Obj] | None = None, unschedulable: bool = False) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                   "lastHeartbeatTime": now_rfc3339(), "reason": "KubeletReady"}]},
    }


def deployment(name: str, replicas: int = 3, labels: dict[str, str] | None = None, image: str = "web:1",
               ports: list[Obj] | None = None, namespace: str = "default", strategy: Obj | None = None) -> Obj:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                 **({"strategy": strategy} if strategy else {}),
                 "template": {"metadata": {"labels": dict(labels)},
                              "spec": {"containers": [{"name": "web", "image": image, "ports": ports or []}]}}},
    }


def service(name: str, selector: dict[str, str] | None, ports: list[Obj], namespace: str = "default",
            cluster_ip: str | None = None) -> Obj:
    spec: Obj = {"ports": ports}
    if selector is not None:
        spec["selector"] = selector
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll check() until it returns a truthy value; raise AssertionError with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (AssertionError, KeyError, ApiError) as e:
            last = e
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")


async def set_pod_ready(fake: FakeApiClient, name: str, ready: bool, namespace: str = "default",
                        ip: str | None = None) -> Obj:
    pod = await fake.get(api.PODS, name, namespace)
    st = pod.setdefault("status", {})
    st["phase"] = "Running"
    if ip:
        st["podIP"], st["podIPs"] = ip, [{"ip": ip}]
    conds = [c for c in st.get("conditions", []) if c.get("type") != "Ready"]
    conds.append({"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now_rfc3339()})
    st["conditions"] = conds
    return await fake.update_status(api.PODS, pod)


class FakeKubelet:
    """Marks bound pods Running and Ready with an IP from the node's CIDR, and finishes deletions."""

    def __init__(self, fake: FakeApiClient, ready: bool | Callable[[Obj], bool] = True) -> None:
        self.fake = fake
        self.ready = ready  # or a function of the pod, e.g. "images ending :bad never get ready"
        self._next: dict[str, int] = {}
        self.dead: set[str] = set()  # nodes whose kubelet is gone: their pods are left as they are

    async def run(self) -> None:
        async for etype, pod in self.fake.watch(api.PODS):
            try:
                await self._handle(etype, pod)
            except ApiError:
                pass  # the pod moved on meanwhile; the next event brings it back

    async def _handle(self, etype: str, pod: Obj) -> None:
        md, node_name = pod["metadata"], pod.get("spec", {}).get("nodeName")
        if etype == "DELETED" or not node_name or node_name in self.dead:
            return
        if md.get("deletionTimestamp"):
            await self.fake.delete(api.PODS, md["name"], md["namespace"], grace_period=0)
            return
        if pod.get("status", {}).get("podIP"):
            return
        n = await self.fake.get(api.NODES, node_name)
        cidr = ipaddress.IPv4Network(n["spec"].get("podCIDR") or "10.244.99.0/24")
        self._next[node_name] = self._next.get(node_name, 1) + 1
        ready = self.ready(pod) if callable(self.ready) else self.ready
        await set_pod_ready(self.fake, md["name"], ready, md["namespace"], str(cidr[self._next[node_name]]))


async def renew_leases(fake: FakeApiClient, nodes: list[str], dead: set[str], interval: float = 0.1) -> None:
    """Kubelet heartbeats: renew each live node's Lease in kube-node-lease every interval."""
    while True:
        for name in nodes:
            if name in dead:
                continue
            # renewTime is a MicroTime: sub-second precision matters with sub-second grace periods.
            renew = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew}
            try:
                await fake.patch(api.LEASES, name, {"spec": spec}, "kube-node-lease")
            except ApiError:
                await fake.create(api.LEASES, {"metadata": {"name": name}, "spec": spec}, "kube-node-lease")
        await asyncio.sleep(interval)
