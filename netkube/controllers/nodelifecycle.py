"""Node lifecycle (simple): a node that stops heartbeating goes Ready=Unknown and gets tainted."""

from __future__ import annotations

import asyncio
import logging
import time

from netkube.client import NODES, ApiError, Obj
from netkube.controllers.base import Informers, clone, now_rfc3339, parse_time
from netkube.controllers.events import EventRecorder

log = logging.getLogger(__name__)
NODE_MONITOR_GRACE_PERIOD = 40.0  # seconds, upstream --node-monitor-grace-period default
NODE_MONITOR_PERIOD = 5.0  # seconds between checks (upstream --node-monitor-period)
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


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
            name = node["metadata"]["name"]
            lease = self.inf.leases.get(name, "kube-node-lease")
            taints = node.get("spec", {}).get("taints") or []
            tainted = any(t.get("key") == UNREACHABLE_TAINT for t in taints)
            try:
                if now - last_heartbeat(node, lease) > self.grace:
                    conds, changed = mark_unknown(node)
                    if changed:
                        await self.client.patch(NODES, name, {"status": {"conditions": conds}},  # type: ignore[attr-defined]
                                                sub="status")
                        await self.recorder.normal(node, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
                    if not tainted:
                        taint = {"key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": now_rfc3339()}
                        await self.client.patch(NODES, name, {"spec": {"taints": taints + [taint]}})  # type: ignore[attr-defined]
                elif tainted and ready_status(node) == "True":
                    rest = [t for t in taints if t.get("key") != UNREACHABLE_TAINT]
                    await self.client.patch(NODES, name, {"spec": {"taints": rest or None}})  # type: ignore[attr-defined]
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
