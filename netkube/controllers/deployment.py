"""Deployment controller: one ReplicaSet per pod template, RollingUpdate and Recreate, status."""

from __future__ import annotations

import logging
import time

from netkube.client import DEPLOYMENTS, ApiError, Obj
from netkube.controllers.base import Informers, clone, controller_ref, ns_key, split_key
from netkube.controllers.deployment_rs import ReplicaSetWriter
from netkube.controllers.deployment_status import (
    calculate_status,
    complete,
    condition,
    has_deadline,
    new_condition,
    requeue_after,
    rollout_status,
    set_condition,
)
from netkube.controllers.events import EventRecorder
from netkube.controllers.rollout import (
    DESIRED_REPLICAS,
    RolloutError,
    by_creation,
    desired,
    fenceposts,
    is_rolling,
    new_rs_replicas,
    old_scale_down_plan,
    proportional_sizes,
    spec_replicas,
    st,
    template_without_hash,
)
from netkube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)


def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """FindNewReplicaSet: the oldest ReplicaSet whose template equals the Deployment's (hash aside);
    after `rollout undo` this is an old ReplicaSet, which then becomes the new one again."""
    want = template_without_hash(d["spec"].get("template") or {})
    matching = [rs for rs in by_creation(rss) if template_without_hash(rs["spec"].get("template") or {}) == want]
    return matching[0] if matching else None


def is_scaling_event(d: Obj, rss: list[Obj]) -> bool:
    for rs in rss:
        if spec_replicas(rs) > 0:
            want = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
            if want is not None and want != str(desired(d)):
                return True
    return False


class DeploymentController:
    def __init__(self, client: object, informers: Informers) -> None:
        self.client = client
        self.inf = informers
        self.queue = WorkQueue("deployment")
        self.recorder = EventRecorder(client, "deployment-controller")  # type: ignore[arg-type]
        self.rs = ReplicaSetWriter(client, self.recorder)

    def register(self) -> None:
        self.inf.deployments.add_handler(lambda t, d, o: self.queue.add(ns_key(d)))
        self.inf.replicasets.add_handler(self._on_rs)
        self.inf.pods.add_handler(self._on_pod)

    def _on_rs(self, etype: str, rs: Obj, old: Obj | None) -> None:
        ref = controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            self.queue.add(f"{rs['metadata']['namespace']}/{ref['name']}")

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        # Recreate waits for old pods to be gone, so their deletion must wake the Deployment.
        ref = controller_ref(pod)
        if etype != "DELETED" or not ref or ref.get("kind") != "ReplicaSet":
            return
        rs = self.inf.replicasets.get(ref["name"], pod["metadata"]["namespace"])
        if rs is not None:
            self._on_rs("MODIFIED", rs, None)

    async def run(self) -> None:
        await self.queue.run(self.sync)

    def _owned(self, d: Obj) -> list[Obj]:
        ns, uid = d["metadata"]["namespace"], d["metadata"]["uid"]
        return [rs for rs in self.inf.replicasets.items() if rs["metadata"].get("namespace") == ns
                and (controller_ref(rs) or {}).get("uid") == uid]

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        cached = self.inf.deployments.get(name, ns)
        if cached is None or cached["metadata"].get("deletionTimestamp"):
            return
        d = clone(cached)
        d.setdefault("status", {})
        try:
            fenceposts(d)
        except RolloutError as e:
            await self.recorder.warning(d, "InvalidStrategy", f"spec.strategy.rollingUpdate: {e}")
            return
        self._paused_condition(d)
        rss = self._owned(d)
        if d["spec"].get("paused") or is_scaling_event(d, rss):
            status = await self._sync_scale(d, rss)
        elif is_rolling(d):
            status = await self._rolling(d, rss)
        else:
            status = await self._recreate(d, rss)
        if status is not None:
            await self._write_status(d, cached, status)

    def _paused_condition(self, d: Obj) -> None:
        """checkPausedConditions: Progressing=Unknown while paused, and once when resumed."""
        if not has_deadline(d):
            return
        cond = condition(d["status"], "Progressing")
        if d["spec"].get("paused") and (cond is None or cond.get("reason") != "DeploymentPaused"):
            set_condition(d["status"], new_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"))
        elif not d["spec"].get("paused") and cond is not None and cond.get("reason") == "DeploymentPaused":
            set_condition(d["status"], new_condition("Progressing", "Unknown", "DeploymentResumed",
                                                     "Deployment is resumed"))

    async def _new_and_old(self, d: Obj, rss: list[Obj], create: bool) -> tuple[Obj | None, list[Obj]]:
        new_rs = find_new_rs(d, rss)
        old = [r for r in rss if new_rs is None or r["metadata"]["uid"] != new_rs["metadata"]["uid"]]
        if new_rs is not None:
            new_rs = await self.rs.sync_existing(d, new_rs, old)
        elif create:
            new_rs = await self.rs.create(d, old, new_rs_replicas(d, old, None))
        if new_rs is not None:
            await self.rs.set_deployment_revision(d, new_rs)
        return new_rs, old

    async def _sync_scale(self, d: Obj, rss: list[Obj]) -> Obj:
        """dc.sync(): a pause or a plain replica-count change; no new ReplicaSet is made."""
        new_rs, old = await self._new_and_old(d, rss, create=False)
        all_rss = await self._proportional(d, new_rs, old)
        if d["spec"].get("paused"):
            all_rss = await self.rs.cleanup(d, all_rss, new_rs)
        new_rs = next((r for r in all_rss if new_rs and r["metadata"]["uid"] == new_rs["metadata"]["uid"]), None)
        return calculate_status(d, all_rss, new_rs)

    async def _proportional(self, d: Obj, new_rs: Obj | None, old: list[Obj]) -> list[Obj]:
        all_rss = old + ([new_rs] if new_rs else [])
        active = [r for r in all_rss if spec_replicas(r) > 0]
        target: Obj | None = None
        if len(active) == 1:
            target = active[0]
        elif not active:
            target = new_rs or (by_creation(old)[-1] if old else None)
        if target is not None:
            return [await self.rs.scale(d, r, desired(d)) if r is target else r for r in all_rss]
        if new_rs is not None and spec_replicas(new_rs) == desired(d) and st(new_rs, "availableReplicas") == desired(d) \
                and (new_rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS) == str(desired(d)):
            return [await self.rs.scale(d, r, 0) if r in old and spec_replicas(r) else r for r in all_rss]
        if not is_rolling(d):
            return all_rss
        sizes, op = proportional_sizes(d, all_rss)
        return [await self.rs.scale(d, r, sizes[r["metadata"]["name"]], op) if r["metadata"]["name"] in sizes else r
                for r in all_rss]

    async def _rolling(self, d: Obj, rss: list[Obj]) -> Obj | None:
        new_rs, old = await self._new_and_old(d, rss, create=True)
        if new_rs is None:
            return None  # a name collision bumped collisionCount; the next sync retries
        # Scale up if we can; otherwise scale down if we can (one step per sync, as upstream).
        if spec_replicas(new_rs) != desired(d):
            count = desired(d) if spec_replicas(new_rs) > desired(d) else new_rs_replicas(d, old + [new_rs], new_rs)
            if count != spec_replicas(new_rs):
                new_rs = await self.rs.scale(d, new_rs, count)
                return rollout_status(d, old + [new_rs], new_rs, time.time())
        plan = old_scale_down_plan(d, [r for r in old if spec_replicas(r) > 0], new_rs)
        if plan:
            old = [await self.rs.scale(d, r, plan[r["metadata"]["name"]]) if r["metadata"]["name"] in plan else r
                   for r in old]
            return rollout_status(d, old + [new_rs], new_rs, time.time())
        if complete(d, d["status"]):
            old = await self.rs.cleanup(d, old, new_rs)
        return rollout_status(d, old + [new_rs], new_rs, time.time())

    async def _recreate(self, d: Obj, rss: list[Obj]) -> Obj | None:
        new_rs, old = await self._new_and_old(d, rss, create=False)
        scaled = [await self.rs.scale(d, r, 0) if spec_replicas(r) else r for r in old]
        if any(spec_replicas(r) for r in old) or self._old_pods_running(old):
            return rollout_status(d, scaled + ([new_rs] if new_rs else []), new_rs, time.time())
        if new_rs is None:
            new_rs, old = await self._new_and_old(d, rss, create=True)
            if new_rs is None:
                return None
        new_rs = await self.rs.scale(d, new_rs, desired(d))
        if complete(d, d["status"]):
            old = await self.rs.cleanup(d, old, new_rs)
        return rollout_status(d, old + [new_rs], new_rs, time.time())

    def _old_pods_running(self, old: list[Obj]) -> bool:
        """Recreate starts nothing while an old pod (even a terminating one) is not finished."""
        if any(st(r, "replicas") for r in old):
            return True
        uids = {r["metadata"]["uid"] for r in old}
        return any((controller_ref(p) or {}).get("uid") in uids
                   and p.get("status", {}).get("phase") not in ("Succeeded", "Failed") for p in self.inf.pods.items())

    async def _write_status(self, d: Obj, cached: Obj, status: Obj) -> None:
        delay = requeue_after(d, status, time.time())
        if delay is not None:
            self.queue.add_after(ns_key(d), delay)  # wake up to judge the progress deadline
        if status == (cached.get("status") or {}):
            return
        # A merge patch of the status: no conflict with the revision annotation written just before.
        old = cached.get("status") or {}
        body = {"status": {**{k: None for k in old if k not in status}, **status}}
        try:
            await self.client.patch(DEPLOYMENTS, d["metadata"]["name"], body,  # type: ignore[attr-defined]
                                    d["metadata"]["namespace"], sub="status")
        except ApiError as e:
            if e.code != 404:
                raise
