"""ReplicaSet controller: keep spec.replicas active pods per ReplicaSet and report its status."""

from __future__ import annotations

import asyncio
import logging
import time

from netkube.client import PODS, REPLICASETS, ApiError, Informer, Obj
from netkube.controllers.base import (
    Informers,
    clone,
    controller_ref,
    ns_key,
    owner_reference,
    parse_time,
    pod_is_active,
    pod_is_ready,
    split_key,
)
from netkube.controllers.events import EventRecorder
from netkube.controllers.expectations import Expectations
from netkube.controllers.hashing import random_suffix
from netkube.controllers.podorder import pods_to_delete
from netkube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)
BURST = 500  # upstream's burstReplicas: most pods created or deleted in one sync


def owned_pods(pods: Informer, rs: Obj) -> list[Obj]:
    ns, uid = rs["metadata"]["namespace"], rs["metadata"]["uid"]
    return [p for p in pods.items() if p["metadata"].get("namespace") == ns
            and (controller_ref(p) or {}).get("uid") == uid]


def pod_is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    if not pod_is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            since = parse_time(c.get("lastTransitionTime"))
            return since is not None and since + min_ready_seconds <= now
    return False


def until_available(pods: list[Obj], min_ready_seconds: int, now: float) -> float | None:
    """Seconds until the next ready pod passes minReadySeconds, or None if none is waiting."""
    waits = []
    for p in pods:
        if min_ready_seconds > 0 and pod_is_ready(p) and not pod_is_available(p, min_ready_seconds, now):
            since = next((parse_time(c.get("lastTransitionTime")) for c in p["status"].get("conditions") or []
                          if c.get("type") == "Ready"), None) or now
            waits.append(max(0.05, since + min_ready_seconds - now + 0.05))
    return min(waits, default=None)


def replicaset_status(rs: Obj, active: list[Obj], now: float) -> Obj:
    labels = rs["spec"].get("template", {}).get("metadata", {}).get("labels") or {}
    mrs = rs["spec"].get("minReadySeconds", 0)
    status = clone(rs.get("status") or {})
    status.update({
        "replicas": len(active),
        "fullyLabeledReplicas": sum(1 for p in active if all(
            (p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())),
        "readyReplicas": sum(1 for p in active if pod_is_ready(p)),
        "availableReplicas": sum(1 for p in active if pod_is_available(p, mrs, now)),
        "observedGeneration": rs["metadata"].get("generation", 1),
    })
    return status


class ReplicaSetController:
    def __init__(self, client: object, informers: Informers) -> None:
        self.client = client
        self.inf = informers
        self.queue = WorkQueue("replicaset")
        self.expectations = Expectations()
        self.recorder = EventRecorder(client, "replicaset-controller")  # type: ignore[arg-type]

    def register(self) -> None:
        self.inf.replicasets.add_handler(self._on_rs)
        self.inf.pods.add_handler(self._on_pod)

    def _on_rs(self, etype: str, rs: Obj, old: Obj | None) -> None:
        self.queue.add(ns_key(rs))

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        ref = controller_ref(pod) or (controller_ref(old) if old else None)
        if not ref or ref.get("kind") != "ReplicaSet":
            return
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        name = pod["metadata"]["name"]
        if etype == "ADDED":
            self.expectations.observe_add(key, name)
        if etype == "DELETED" or pod["metadata"].get("deletionTimestamp"):
            self.expectations.observe_delete(key, name)
        self.queue.add(key)

    async def run(self) -> None:
        await self.queue.run(self.sync)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        rs = self.inf.replicasets.get(name, ns)
        if rs is None:
            self.expectations.forget(key)
            return
        active = [p for p in owned_pods(self.inf.pods, rs) if pod_is_active(p)]
        if self.expectations.satisfied(key) and not rs["metadata"].get("deletionTimestamp"):
            await self._manage(key, rs, active)
        await self._update_status(rs, active)

    async def _manage(self, key: str, rs: Obj, active: list[Obj]) -> None:
        want = rs["spec"].get("replicas", 1)
        diff = len(active) - want
        if diff < 0:
            names = {f"{rs['metadata']['name']}-{random_suffix()}" for _ in range(min(-diff, BURST))}
            self.expectations.expect(key, adds=names)
            await asyncio.gather(*(self._create_pod(key, rs, n) for n in sorted(names)))
        elif diff > 0:
            victims = pods_to_delete(active, min(diff, BURST))
            self.expectations.expect(key, dels={p["metadata"]["name"] for p in victims})
            await asyncio.gather(*(self._delete_pod(key, rs, p) for p in victims))

    async def _create_pod(self, key: str, rs: Obj, name: str) -> None:
        tmpl = rs["spec"].get("template") or {}
        tmd = tmpl.get("metadata") or {}
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "generateName": f"{rs['metadata']['name']}-", "namespace": rs["metadata"]["namespace"],
                "labels": clone(tmd.get("labels") or {}), "annotations": clone(tmd.get("annotations") or {}),
                "ownerReferences": [owner_reference(rs)],
            },
            "spec": clone(tmpl.get("spec") or {}),
        }
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        try:
            await self.client.create(PODS, pod, rs["metadata"]["namespace"])  # type: ignore[attr-defined]
        except ApiError as e:
            self.expectations.observe_add(key, name)  # it will never arrive
            if e.code == 409:
                self.queue.add(key)  # name collision: the next sync picks a new suffix
                return
            await self.recorder.warning(rs, "FailedCreate", f"Error creating: {e}")
            raise
        await self.recorder.normal(rs, "SuccessfulCreate", f"Created pod: {name}")

    async def _delete_pod(self, key: str, rs: Obj, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        try:
            await self.client.delete(PODS, name, pod["metadata"]["namespace"])  # type: ignore[attr-defined]
        except ApiError as e:
            self.expectations.observe_delete(key, name)
            if e.code == 404:
                return
            await self.recorder.warning(rs, "FailedDelete", f"Error deleting: {e}")
            raise
        await self.recorder.normal(rs, "SuccessfulDelete", f"Deleted pod: {name}")

    async def _update_status(self, rs: Obj, active: list[Obj]) -> None:
        now = time.time()
        wait = until_available(active, rs["spec"].get("minReadySeconds", 0), now)
        if wait is not None:
            self.queue.add_after(ns_key(rs), wait)  # availability changes with time alone
        status = replicaset_status(rs, active, now)
        if status == (rs.get("status") or {}):
            return  # no write storms: only real changes are written
        new = clone(rs)
        new["status"] = status
        try:
            await self.client.update_status(REPLICASETS, new)  # type: ignore[attr-defined]
        except ApiError as e:
            if e.code == 404:
                return
            raise  # 409: our cache is stale; the queue retries after the informer catches up
