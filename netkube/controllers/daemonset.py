"""DaemonSet controller: one pod per eligible node, following nodes and rolling by maxUnavailable."""

from __future__ import annotations

from netkube.client import Obj
from netkube.controllers.base import clone, controller_ref, ns_key, pod_is_ready, split_key
from netkube.controllers.events import EventRecorder
from netkube.controllers.hashing import compute_hash
from netkube.controllers.kinds import DAEMONSETS
from netkube.controllers.rollout import scaled_value
from netkube.controllers.workload import create_pod, delete_pod, is_terminal, owned, pod_from_template
from netkube.controllers.workqueue import WorkQueue
from netkube.scheduler.filters import filter_node_affinity, untolerated_taint

# Upstream AddOrUpdateDaemonPodTolerations: daemons survive node trouble and cordons.
AUTO_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def daemon_pod_spec(ds: Obj, node_name: str) -> Obj:
    """The template plus the automatic tolerations and a required affinity to exactly this node."""
    tmpl = clone(ds["spec"].get("template") or {})
    spec = tmpl.setdefault("spec", {})
    tols = spec.setdefault("tolerations", [])
    extra = AUTO_TOLERATIONS + ([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
    tols += [t for t in extra if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tols)]
    spec.setdefault("affinity", {})["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}
    return tmpl


def should_run(ds: Obj, node: Obj) -> bool:
    """nodeSelector/affinity match and no untolerated NoSchedule/NoExecute taint (auto tolerations count)."""
    probe = {"metadata": {}, "spec": daemon_pod_spec(ds, node["metadata"]["name"])["spec"]}
    probe["spec"].pop("affinity", None)
    probe["spec"]["affinity"] = (ds["spec"].get("template") or {}).get("spec", {}).get("affinity")
    if filter_node_affinity(probe, node) is not None:
        return False
    return untolerated_taint(probe, node.get("spec", {}).get("taints") or []) is None


class DaemonSetController:
    def __init__(self, client: object, informers: object) -> None:
        self.client = client
        self.inf = informers
        self.queue = WorkQueue("daemonset")
        self.recorder = EventRecorder(client, "daemonset-controller")  # type: ignore[arg-type]

    def register(self) -> None:
        self.inf.daemonsets.add_handler(lambda t, d, o: self.queue.add(ns_key(d)))  # type: ignore[attr-defined]
        self.inf.pods.add_handler(self._on_pod)  # type: ignore[attr-defined]
        self.inf.nodes.add_handler(lambda t, n, o: [self.queue.add(ns_key(d)) for d in self.inf.daemonsets.items()])  # type: ignore[attr-defined]

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "DaemonSet":
            self.queue.add(f"{pod['metadata']['namespace']}/{ref['name']}")

    async def run(self) -> None:
        await self.queue.run(self.sync)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        ds = self.inf.daemonsets.get(name, ns)  # type: ignore[attr-defined]
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        rev = compute_hash(ds["spec"].get("template") or {})
        nodes = {n["metadata"]["name"]: n for n in self.inf.nodes.items()}  # type: ignore[attr-defined]
        by_node: dict[str, list[Obj]] = {}
        for p in owned(self.inf.pods, ds):  # type: ignore[attr-defined]
            if is_terminal(p) and not p["metadata"].get("deletionTimestamp"):
                await delete_pod(self.client, self.recorder, ds, p)  # failed daemons are replaced
                continue
            target = _target_node(p)
            by_node.setdefault(target, []).append(p)
        eligible = [n for n, node in sorted(nodes.items()) if should_run(ds, node)]
        for n in eligible:
            if not by_node.get(n):
                pod = pod_from_template(ds, daemon_pod_spec(ds, n), {"controller-revision-hash": rev,
                                        "pod-template-generation": str(ds["metadata"].get("generation", 1))})
                await create_pod(self.client, self.recorder, ds, pod)
        for n, pods in by_node.items():
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            doomed = live if n not in eligible else live[1:]
            for p in doomed:
                await delete_pod(self.client, self.recorder, ds, p)
        await self._roll(ds, rev, by_node, eligible)
        await self._status(ds, rev, by_node, eligible)

    async def _roll(self, ds: Obj, rev: str, by_node: dict[str, list[Obj]], eligible: list[str]) -> None:
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return  # OnDelete: new pods come only when the user deletes old ones
        budget = scaled_value((strategy.get("rollingUpdate") or {}).get("maxUnavailable"), len(eligible), True, "1")
        current = [by_node[n][0] for n in eligible if by_node.get(n)]
        unavailable = len(eligible) - sum(1 for p in current if pod_is_ready(p) and not p["metadata"].get("deletionTimestamp"))
        for p in current:
            if unavailable >= max(budget, 1):
                break
            if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != rev and not p["metadata"].get("deletionTimestamp"):
                await delete_pod(self.client, self.recorder, ds, p)
                unavailable += 1

    async def _status(self, ds: Obj, rev: str, by_node: dict[str, list[Obj]], eligible: list[str]) -> None:
        scheduled = [n for n in by_node if any(not p["metadata"].get("deletionTimestamp") for p in by_node[n])]
        pods = [by_node[n][0] for n in scheduled if n in eligible]
        ready = sum(1 for p in pods if pod_is_ready(p))
        status = {"desiredNumberScheduled": len(eligible), "currentNumberScheduled": len([n for n in scheduled if n in eligible]),
                  "numberMisscheduled": len([n for n in scheduled if n not in eligible]), "numberReady": ready,
                  "numberAvailable": ready, "numberUnavailable": max(0, len(eligible) - ready),
                  "updatedNumberScheduled": sum(1 for p in pods if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == rev),
                  "observedGeneration": ds["metadata"].get("generation", 1)}
        if not status["numberUnavailable"]:
            status.pop("numberUnavailable")
        old = ds.get("status") or {}
        if status != old:
            body = {"status": {**{k: None for k in old if k not in status}, **status}}
            await self.client.patch(DAEMONSETS, ds["metadata"]["name"], body, ds["metadata"]["namespace"], sub="status")  # type: ignore[attr-defined]


def _target_node(pod: Obj) -> str:
    if pod.get("spec", {}).get("nodeName"):
        return str(pod["spec"]["nodeName"])
    terms = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for t in terms:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return ""
