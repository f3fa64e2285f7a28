"""The default-scheduler loop: watch unscheduled pods, filter and score nodes, bind."""

from __future__ import annotations

import logging

from netkube.client import NODES, PODS, ApiError, Informer, Obj
from netkube.controllers.base import now_rfc3339, split_key
from netkube.controllers.events import EventRecorder
from netkube.controllers.workqueue import WorkQueue
from netkube.scheduler.filters import fit_error_message, node_fit_reasons, preemption_verdict
from netkube.scheduler.scoring import rank_nodes

log = logging.getLogger(__name__)
SCHEDULER_NAME = "default-scheduler"
NO_NODES = "no nodes available to schedule pods"


def needs_scheduling(pod: Obj) -> bool:
    spec = pod.get("spec", {})
    return (not spec.get("nodeName") and not pod["metadata"].get("deletionTimestamp")
            and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
            and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"))


class Scheduler:
    def __init__(self, client: object) -> None:
        self.client = client
        self.pods = Informer(client, PODS)  # type: ignore[arg-type]
        self.nodes = Informer(client, NODES)  # type: ignore[arg-type]
        self.queue = WorkQueue("scheduler")
        self.recorder = EventRecorder(client, SCHEDULER_NAME)  # type: ignore[arg-type]
        self.assumed: dict[str, tuple[str, Obj]] = {}  # bound by us, not yet seen bound in the cache
        self.unschedulable: set[str] = set()

    def register(self) -> None:
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        if etype == "DELETED" or pod.get("spec", {}).get("nodeName"):
            self.assumed.pop(key, None)
            self.unschedulable.discard(key)
            if etype == "DELETED" and self.unschedulable:
                self._retry_unschedulable()  # freed capacity elsewhere may help (cheap to re-check)
            return
        if needs_scheduling(pod):
            self.queue.add(key)

    def _on_node(self, etype: str, node: Obj, old: Obj | None) -> None:
        # A cluster change may make an unschedulable pod fit: retry them (upstream's requeue on events).
        if old is None or etype == "DELETED" or _sched_view(node) != _sched_view(old):
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        for key in list(self.unschedulable):
            self.queue.add(key)

    async def run(self) -> None:
        await self.queue.run(self.sync, workers=1)  # one at a time, so each decision sees the last

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        pod = self.pods.get(name, ns)
        if pod is None or not needs_scheduling(pod) or key in self.assumed:
            self.unschedulable.discard(key)
            return
        nodes = sorted(self.nodes.items(), key=lambda n: n["metadata"]["name"])
        by_name = {n["metadata"]["name"]: n for n in nodes}
        placed = [(p["spec"]["nodeName"], p) for p in self.pods.items()
                  if p.get("spec", {}).get("nodeName") and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
        seen = {f"{p['metadata'].get('namespace')}/{p['metadata']['name']}" for _, p in placed}
        placed += [a for k, a in self.assumed.items() if k not in seen]
        with_nodes = [(by_name[n], p) for n, p in placed if n in by_name]
        reasons: dict[str, int] = {}
        verdicts: dict[str, int] = {}
        feasible = []
        for node in nodes:
            why = node_fit_reasons(pod, node, with_nodes)
            if not why:
                feasible.append(node["metadata"]["name"])
                continue
            for r in why:
                reasons[r] = reasons.get(r, 0) + 1
            v = preemption_verdict(why)
            verdicts[v] = verdicts.get(v, 0) + 1
        if not feasible:
            await self._fail(pod, key, fit_error_message(len(nodes), reasons, verdicts) if nodes else NO_NODES)
            return
        target = rank_nodes(pod, feasible, placed, by_name)[0]
        try:
            await self.client.bind(pod, target)  # type: ignore[attr-defined]
        except ApiError as e:
            if e.code in (404, 409):
                return  # deleted, or bound meanwhile (our cache lagged)
            raise
        self.assumed[key] = (target, pod)
        self.unschedulable.discard(key)
        await self.recorder.normal(pod, "Scheduled", f"Successfully assigned {ns}/{name} to {target}")

    async def _fail(self, pod: Obj, key: str, message: str) -> None:
        self.unschedulable.add(key)
        conds = [c for c in pod.get("status", {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
        old = next((c for c in pod.get("status", {}).get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        if not (old and old.get("status") == "False" and old.get("message") == message):
            conds.append({"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339(), "reason": "Unschedulable", "message": message})
            try:
                await self.client.patch(PODS, pod["metadata"]["name"],  # type: ignore[attr-defined]
                                        {"status": {"conditions": conds}}, pod["metadata"]["namespace"], sub="status")
            except ApiError as e:
                if e.code != 404:
                    raise
        await self.recorder.warning(pod, "FailedScheduling", message)


def _sched_view(node: Obj) -> tuple[object, ...]:
    """The parts of a Node that scheduling depends on (heartbeats alone do not requeue)."""
    ready = next((c.get("status") for c in node.get("status", {}).get("conditions") or []
                  if c.get("type") == "Ready"), None)
    spec = node.get("spec", {})
    return (ready, spec.get("unschedulable"), repr(spec.get("taints")), repr(node["metadata"].get("labels")))
