"""StatefulSet controller: ordinal pods with stable names, ordered or parallel, partitioned updates."""

from __future__ import annotations

import re

from netkube.client import ApiError, Obj
from netkube.controllers.base import clone, controller_ref, ns_key, owner_reference, pod_is_ready, split_key
from netkube.controllers.events import EventRecorder
from netkube.controllers.hashing import compute_hash
from netkube.controllers.kinds import CONTROLLERREVISIONS, STATEFULSETS
from netkube.controllers.workload import create_pod, delete_pod, is_terminal, owned, pod_from_template
from netkube.controllers.workqueue import WorkQueue

REVISION_LABEL = "controller-revision-hash"


def ordinal(sts: Obj, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(sts["metadata"]["name"]) + r"-(\d+)", pod["metadata"]["name"])
    return int(m.group(1)) if m else None


def revision_hash(sts: Obj) -> str:
    return f"{sts['metadata']['name']}-{compute_hash(sts['spec'].get('template') or {})}"


def build_pod(sts: Obj, i: int, rev: str) -> Obj:
    name = f"{sts['metadata']['name']}-{i}"
    pod = pod_from_template(sts, sts["spec"].get("template") or {}, {
        REVISION_LABEL: rev, "statefulset.kubernetes.io/pod-name": name, "apps.kubernetes.io/pod-index": str(i)},
        name=name)
    # Stable network identity: <pod>.<serviceName>.<ns>.svc through the headless Service.
    pod["spec"]["hostname"] = name
    if sts["spec"].get("serviceName"):
        pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
    # No persistent volumes here: each claim becomes an emptyDir so the pod's mounts still resolve.
    vols = pod["spec"].setdefault("volumes", [])
    for claim in sts["spec"].get("volumeClaimTemplates") or []:
        cname = (claim.get("metadata") or {}).get("name")
        if cname and not any(v.get("name") == cname for v in vols):
            vols.append({"name": cname, "emptyDir": {}})
    return pod


def plan(sts: Obj, pods: dict[int, Obj], rev: str) -> tuple[list[int], list[int]]:
    """(ordinals to create, ordinals to delete) for one sync, following podManagementPolicy and the
    update strategy: OrderedReady goes one at a time and waits for Running+Ready; deletions go from
    the highest ordinal; RollingUpdate replaces ordinals >= partition, highest first."""
    replicas = sts["spec"].get("replicas", 1)
    ordered = sts["spec"].get("podManagementPolicy", "OrderedReady") != "Parallel"
    create, delete = [], []
    for i in range(replicas):
        if i not in pods:
            create.append(i)
            if ordered:
                return create, delete
        elif ordered and not (pod_is_ready(pods[i]) and not pods[i]["metadata"].get("deletionTimestamp")):
            return create, delete  # wait for this one before touching the next
    extra = sorted((i for i in pods if i >= replicas), reverse=True)
    if extra:
        if ordered and any(p["metadata"].get("deletionTimestamp") for p in pods.values()):
            return create, delete
        return create, extra[:1] if ordered else extra
    strategy = sts["spec"].get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        partition = (strategy.get("rollingUpdate") or {}).get("partition", 0) or 0
        if any(p["metadata"].get("deletionTimestamp") or not pod_is_ready(p) for p in pods.values()):
            return create, delete
        stale = [i for i in sorted(pods, reverse=True)
                 if i >= partition and (pods[i]["metadata"].get("labels") or {}).get(REVISION_LABEL) != rev]
        delete = stale[:1]
    return create, delete


class StatefulSetController:
    def __init__(self, client: object, informers: object) -> None:
        self.client = client
        self.inf = informers
        self.queue = WorkQueue("statefulset")
        self.recorder = EventRecorder(client, "statefulset-controller")  # type: ignore[arg-type]
        self._warned: set[str] = set()

    def register(self) -> None:
        self.inf.statefulsets.add_handler(lambda t, s, o: self.queue.add(ns_key(s)))  # type: ignore[attr-defined]
        self.inf.pods.add_handler(self._on_pod)  # type: ignore[attr-defined]

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "StatefulSet":
            self.queue.add(f"{pod['metadata']['namespace']}/{ref['name']}")

    async def run(self) -> None:
        await self.queue.run(self.sync)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        sts = self.inf.statefulsets.get(name, ns)  # type: ignore[attr-defined]
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        if sts["spec"].get("volumeClaimTemplates") and sts["metadata"]["uid"] not in self._warned:
            self._warned.add(sts["metadata"]["uid"])
            await self.recorder.warning(sts, "VolumeClaimTemplatesIgnored", "netkube has no persistent volumes: "
                                        "volumeClaimTemplates are ignored and each claim is an emptyDir volume")
        rev = revision_hash(sts)
        revisions = await self._revisions(sts, rev)
        pods: dict[int, Obj] = {}
        for p in owned(self.inf.pods, sts):  # type: ignore[attr-defined]
            i = ordinal(sts, p)
            if i is not None:
                if is_terminal(p) and not p["metadata"].get("deletionTimestamp"):
                    await delete_pod(self.client, self.recorder, sts, p, f"delete Pod {{name}} in StatefulSet {name} successful")
                    continue  # a failed pod is recreated under the same name
                pods[i] = p
        create, delete = plan(sts, pods, rev)
        for i in create:
            await create_pod(self.client, self.recorder, sts, build_pod(sts, i, rev),
                             f"create Pod {{name}} in StatefulSet {name} successful")
        for i in delete:
            await delete_pod(self.client, self.recorder, sts, pods[i], f"delete Pod {{name}} in StatefulSet {name} successful")
        await self._status(sts, pods, rev, revisions)

    async def _revisions(self, sts: Obj, rev: str) -> list[Obj]:
        """ControllerRevisions hold each template seen, numbered as `kubectl rollout history` shows."""
        mine = owned(self.inf.controllerrevisions, sts)  # type: ignore[attr-defined]
        if any(r["metadata"]["name"] == rev for r in mine):
            return mine
        number = max((int(r.get("revision", 0)) for r in mine), default=0) + 1
        cr = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
              "metadata": {"name": rev, "namespace": sts["metadata"]["namespace"],
                           "labels": {**(sts["spec"].get("selector", {}).get("matchLabels") or {}),
                                      REVISION_LABEL: rev.rsplit("-", 1)[-1]},
                           "ownerReferences": [owner_reference(sts)]},
              "data": {"spec": {"template": clone(sts["spec"].get("template") or {})}}, "revision": number}
        try:
            made = await self.client.create(CONTROLLERREVISIONS, cr, sts["metadata"]["namespace"])  # type: ignore[attr-defined]
        except ApiError as e:
            if e.code != 409:
                raise
            return mine
        return mine + [made]

    async def _status(self, sts: Obj, pods: dict[int, Obj], rev: str, revisions: list[Obj]) -> None:
        live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
        updated = sum(1 for p in live if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == rev)
        old = sts.get("status") or {}
        current_rev = old.get("currentRevision") or rev
        if updated == sts["spec"].get("replicas", 1) == len(live):
            current_rev = rev  # the rollout is complete
        ready = sum(1 for p in live if pod_is_ready(p))
        status = {"observedGeneration": sts["metadata"].get("generation", 1), "replicas": len(live),
                  "readyReplicas": ready, "availableReplicas": ready,
                  "currentReplicas": sum(1 for p in live if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == current_rev),
                  "updatedReplicas": updated, "currentRevision": current_rev, "updateRevision": rev,
                  "collisionCount": old.get("collisionCount", 0)}
        if status != old:
            md = sts["metadata"]
            body = {"status": {**{k: None for k in old if k not in status}, **status}}
            await self.client.patch(STATEFULSETS, md["name"], body, md["namespace"], sub="status")  # type: ignore[attr-defined]
