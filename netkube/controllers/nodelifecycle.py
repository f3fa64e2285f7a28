"""Node lifecycle: silent nodes go Ready=Unknown, condition taints follow Ready, NoExecute evicts."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from netkube.client import NODES, PODS, ApiError, Obj
from netkube.controllers.base import Informers, clone, now_rfc3339, parse_time, pod_is_ready
from netkube.controllers.events import EventRecorder
from netkube.controllers.taints import UNREACHABLE_TAINT, condition_taints, eviction_time, merge_taints

__all__ = ["NodeLifecycleController", "UNREACHABLE_TAINT", "settings"]
log = logging.getLogger(__name__)
NODE_MONITOR_GRACE_PERIOD = 40.0  # seconds, upstream --node-monitor-grace-period default
NODE_MONITOR_PERIOD = 5.0  # seconds between checks (upstream --node-monitor-period)
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def settings(extra: dict[str, str] | None) -> tuple[float, float]:
    """(grace, period) from ClusterConfig.extra or NETKUBE_NODE_MONITOR_GRACE_PERIOD / _PERIOD (seconds),
    so tests and demos can lose a node in seconds instead of 40."""
    extra = extra or {}
    grace = extra.get("node-monitor-grace-period") or os.environ.get("NETKUBE_NODE_MONITOR_GRACE_PERIOD")
    period = extra.get("node-monitor-period") or os.environ.get("NETKUBE_NODE_MONITOR_PERIOD")
    g = float(str(grace).rstrip("s")) if grace else NODE_MONITOR_GRACE_PERIOD
    p = float(str(period).rstrip("s")) if period else min(NODE_MONITOR_PERIOD, max(0.05, g / 8))
    return g, p


def last_heartbeat(node: Obj, lease: Obj | None) -> float:
    """The newest sign of life: Ready's lastHeartbeatTime, the node Lease renewal, or creation."""
    times = [parse_time(c.get("lastHeartbeatTime")) for c in node.get("status", {}).get("conditions") or []
             if c.get("type") == "Ready"]
    if lease:
        times.append(parse_time(lease.get("spec", {}).get("renewTime")))
    times.append(parse_time(node["metadata"].get("creationTimestamp")))
    return max((t for t in times if t is not None), default=0.0)


def mark_unknown(node: Obj) -> tuple[list[Obj], bool]:
    """Conditions with every kubelet-owned one set to Unknown; bool says whether anything changed."""
    now = now_rfc3339()
    conds = clone(node.get("status", {}).get("conditions") or [])
    changed = False
    seen = {c.get("type") for c in conds}
    for c in conds:
        if c.get("type") in KUBELET_CONDITIONS and c.get("status") != "Unknown":
            c.update({"status": "Unknown", "reason": "NodeStatusUnknown",
                      "message": "Kubelet stopped posting node status.", "lastTransitionTime": now})
            changed = True
    if "Ready" not in seen:
        conds.append({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                      "message": "Kubelet never posted node status.", "lastHeartbeatTime": None,
                      "lastTransitionTime": now})
        changed = True
    return conds, changed


def ready_status(node: Obj) -> str | None:
    for c in node.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status")  # type: ignore[no-any-return]
    return None


class NodeLifecycleController:
    def __init__(self, client: object, informers: Informers, grace: float = NODE_MONITOR_GRACE_PERIOD,
                 period: float = NODE_MONITOR_PERIOD) -> None:
        self.client = client
        self.inf = informers
        self.grace = grace
        self.period = period
        self.recorder = EventRecorder(client, "node-controller")  # type: ignore[arg-type]
        self.evictor = EventRecorder(client, "taint-eviction-controller")  # type: ignore[arg-type]
        self._evicted: set[str] = set()

    def register(self) -> None:
        pass  # time-driven: a missing heartbeat produces no event to react to

    async def run(self) -> None:
        while True:
            try:
                await self.check(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node lifecycle check failed; retrying")
            await asyncio.sleep(self.period)

    async def check(self, now: float) -> None:
        for node in self.inf.nodes.items():
            try:
                await self._check_node(node, now)
            except ApiError as e:
                if e.code not in (404, 409):
                    raise

    async def _check_node(self, node: Obj, now: float) -> None:
        name = node["metadata"]["name"]
        lease = self.inf.leases.get(name, "kube-node-lease")
        ready = ready_status(node)
        if now - last_heartbeat(node, lease) > self.grace:
            conds, changed = mark_unknown(node)
            if changed:
                await self.client.patch(NODES, name, {"status": {"conditions": conds}}, sub="status")  # type: ignore[attr-defined]
                await self.recorder.normal(node, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
                await self._mark_pods_not_ready(name)
            ready = "Unknown"
        taints = node.get("spec", {}).get("taints") or []
        want = merge_taints(taints, condition_taints(ready, now_rfc3339()))
        if want != taints:
            await self.client.patch(NODES, name, {"spec": {"taints": want or None}})  # type: ignore[attr-defined]
        await self._evict(name, want, now)

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """MarkPodsNotReady: pods of a lost node stop being Ready, so endpoints drop them."""
        for pod in self.inf.pods.items():
            if pod.get("spec", {}).get("nodeName") != node_name or not pod_is_ready(pod):
                continue
            conds = [dict(c, status="False", lastTransitionTime=now_rfc3339()) if c.get("type") == "Ready" else c
                     for c in pod.get("status", {}).get("conditions") or []]
            md = pod["metadata"]
            await self.client.patch(PODS, md["name"], {"status": {"conditions": conds}},  # type: ignore[attr-defined]
                                    md["namespace"], sub="status")

    async def _evict(self, node_name: str, taints: list[Obj], now: float) -> None:
        if not any(t.get("effect") == "NoExecute" for t in taints):
            return
        for pod in self.inf.pods.items():
            md = pod["metadata"]
            if pod.get("spec", {}).get("nodeName") != node_name or md.get("deletionTimestamp"):
                continue
            due = eviction_time(pod, taints)
            if due is None or due > now or md["uid"] in self._evicted:
                continue
            self._evicted.add(md["uid"])
            await self.evictor.normal(pod, "TaintManagerEviction", f"Marking for deletion Pod {md['namespace']}/{md['name']}")
            try:
                await self.client.delete(PODS, md["name"], md["namespace"])  # type: ignore[attr-defined]
            except ApiError as e:
                if e.code != 404:
                    raise
