"""Deployment controller: one ReplicaSet per pod template, RollingUpdate and Recreate, status."""

from __future__ import annotations

import logging

from netkube.client import DEPLOYMENTS, REPLICASETS, ApiError, Obj
from netkube.controllers.base import (
    Informers,
    clone,
    controller_ref,
    ns_key,
    owner_reference,
    parse_time,
    split_key,
)
from netkube.controllers.deployment_status import deployment_status
from netkube.controllers.events import EventRecorder
from netkube.controllers.hashing import compute_hash
from netkube.controllers.rollout import (
    DESIRED_REPLICAS,
    HASH_LABEL,
    MAX_REPLICAS,
    REVISION,
    RolloutError,
    fenceposts,
    new_rs_replicas,
    revision,
    spec_replicas,
    template_without_hash,
)
from netkube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)


class DeploymentController:
    def __init__(self, client: object, informers: Informers) -> None:
        self.client = client
        self.inf = informers
        self.queue = WorkQueue("deployment")
        self.recorder = EventRecorder(client, "deployment-controller")  # type: ignore[arg-type]

    def register(self) -> None:
        self.inf.deployments.add_handler(lambda t, d, o: self.queue.add(ns_key(d)))
        self.inf.replicasets.add_handler(self._on_rs)

    def _on_rs(self, etype: str, rs: Obj, old: Obj | None) -> None:
        ref = controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            self.queue.add(f"{rs['metadata']['namespace']}/{ref['name']}")

    async def run(self) -> None:
        await self.queue.run(self.sync)

    # --- sync ------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        d = self.inf.deployments.get(name, ns)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        uid = d["metadata"]["uid"]
        rss = [rs for rs in self.inf.replicasets.items() if rs["metadata"].get("namespace") == ns
               and (controller_ref(rs) or {}).get("uid") == uid]
        want = template_without_hash(d["spec"].get("template") or {})
        matching = [rs for rs in rss if template_without_hash(rs["spec"].get("template") or {}) == want]
        new_rs = min(matching, key=lambda r: r["metadata"].get("creationTimestamp", "")) if matching else None
        old = [rs for rs in rss if rs is not new_rs]
        try:
            fenceposts(d)
        except RolloutError as e:
            await self.recorder.warning(d, "InvalidStrategy", f"spec.strategy.rollingUpdate: {e}")
            return
        created = False
        if not d["spec"].get("paused"):
            if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
                new_rs, old, created = await self._recreate(d, new_rs, old)
            else:
                new_rs, old, created = await self._rolling(d, new_rs, old)
            old = await self._cleanup(d, old)
        all_rss = old + ([new_rs] if new_rs else [])
        status = deployment_status(d, all_rss, new_rs, created)
        if status != (d.get("status") or {}):
            new = clone(d)
            new["status"] = status
            try:
                await self.client.update_status(DEPLOYMENTS, new)  # type: ignore[attr-defined]
            except ApiError as e:
                if e.code != 404:
                    raise

    async def _rolling(self, d: Obj, new_rs: Obj | None, old: list[Obj]) -> tuple[Obj | None, list[Obj], bool]:
        created = False
        desired = d["spec"].get("replicas", 1)
        if new_rs is None:
            count = new_rs_replicas(d, old, None)
            new_rs, created = await self._create_rs(d, old, count)
            if new_rs is None:
                return None, old, False
        elif not any(spec_replicas(o) for o in old):
            new_rs = await self._scale(d, new_rs, desired)  # a plain scaling event, no rollout
        else:
            new_rs = await self._scale(d, new_rs, new_rs_replicas(d, old + [new_rs], new_rs))
        old = await self._scale_down_old(d, new_rs, old)
        return new_rs, old, created

    async def _scale_down_old(self, d: Obj, new_rs: Obj, old: list[Obj]) -> list[Obj]:
        desired = d["spec"].get("replicas", 1)
        _, max_unavailable = fenceposts(d)
        min_available = desired - max_unavailable
        all_rss = old + [new_rs]
        new_unavailable = spec_replicas(new_rs) - int((new_rs.get("status") or {}).get("availableReplicas", 0))
        budget = sum(spec_replicas(r) for r in all_rss) - min_available - new_unavailable
        if budget <= 0:
            return old
        out = []
        available = sum(int((r.get("status") or {}).get("availableReplicas", 0)) for r in all_rss)
        avail_budget = available - min_available
        for rs in sorted(old, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            cur = spec_replicas(rs)
            # First the old replicas that are not available anyway, then available ones within budget.
            unhealthy = max(0, cur - int((rs.get("status") or {}).get("availableReplicas", 0)))
            down = min(budget, unhealthy)
            healthy_down = min(max(0, avail_budget), cur - down, budget - down)
            down += healthy_down
            avail_budget -= healthy_down
            budget -= down
            out.append(await self._scale(d, rs, cur - down) if down > 0 else rs)
        return out

    async def _recreate(self, d: Obj, new_rs: Obj | None, old: list[Obj]) -> tuple[Obj | None, list[Obj], bool]:
        old = [await self._scale(d, rs, 0) if spec_replicas(rs) else rs for rs in old]
        # Recreate waits until every old pod is gone before the new ones start.
        if any(int((rs.get("status") or {}).get("replicas", 0)) for rs in old):
            return new_rs, old, False
        desired = d["spec"].get("replicas", 1)
        if new_rs is None:
            new_rs, created = await self._create_rs(d, old, desired)
            return new_rs, old, created
        return await self._scale(d, new_rs, desired), old, False

    # --- writes ----------------------------------------------------------------------------------
    def _annotations(self, d: Obj, rs_annotations: dict[str, str], rev: int) -> dict[str, str]:
        desired = d["spec"].get("replicas", 1)
        surge = fenceposts(d)[0] if (d["spec"].get("strategy") or {}).get("type") != "Recreate" else 0
        out = dict(rs_annotations)
        out.update({DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(desired + surge), REVISION: str(rev)})
        return out

    async def _create_rs(self, d: Obj, old: list[Obj], count: int) -> tuple[Obj | None, bool]:
        md = d["metadata"]
        collision = (d.get("status") or {}).get("collisionCount")
        tmpl = clone(d["spec"].get("template") or {})
        h = compute_hash(tmpl, collision)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = clone(d["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        rev = max((revision(r) for r in old), default=0) + 1
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{md['name']}-{h}", "namespace": md["namespace"],
                         "labels": dict(tmpl["metadata"]["labels"]),
                         "annotations": self._annotations(d, {}, rev), "ownerReferences": [owner_reference(d)]},
            "spec": {"replicas": count, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                     "selector": selector, "template": tmpl},
        }
        try:
            created = await self.client.create(REPLICASETS, rs, md["namespace"])  # type: ignore[attr-defined]
        except ApiError as e:
            if e.code != 409:
                raise
            existing = await self.client.get(REPLICASETS, rs["metadata"]["name"], md["namespace"])  # type: ignore[attr-defined]
            if ((controller_ref(existing) or {}).get("uid") == md["uid"]
                    and template_without_hash(existing["spec"]["template"]) == template_without_hash(tmpl)):
                return existing, False  # our informer had not seen it yet
            # A foreign object holds the name: bump collisionCount so the next hash differs.
            new = clone(d)
            new.setdefault("status", {})["collisionCount"] = (collision or 0) + 1
            await self.client.update_status(DEPLOYMENTS, new)  # type: ignore[attr-defined]
            return None, False
        if count > 0:
            await self.recorder.normal(d, "ScalingReplicaSet",
                                       f"Scaled up replica set {created['metadata']['name']} from 0 to {count}")
        return created, True

    async def _scale(self, d: Obj, rs: Obj, count: int) -> Obj:
        old_count = spec_replicas(rs)
        anns = rs["metadata"].get("annotations") or {}
        rev = revision(rs)
        want_anns = self._annotations(d, anns, rev) if count > 0 or old_count > 0 else anns
        if old_count == count and want_anns == anns:
            return rs
        new = clone(rs)
        new["spec"]["replicas"] = count
        new["metadata"]["annotations"] = want_anns
        updated = await self.client.update(REPLICASETS, new)  # type: ignore[attr-defined]
        if old_count != count:
            verb = "up" if count > old_count else "down"
            await self.recorder.normal(d, "ScalingReplicaSet",
                                       f"Scaled {verb} replica set {rs['metadata']['name']} from {old_count} to {count}")
        return updated  # type: ignore[no-any-return]

    async def _cleanup(self, d: Obj, old: list[Obj]) -> list[Obj]:
        """Delete idle old ReplicaSets beyond spec.revisionHistoryLimit (default 10), oldest first."""
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = [r for r in old if spec_replicas(r) == 0 and not int((r.get("status") or {}).get("replicas", 0))]
        excess = len(idle) - limit
        if excess <= 0:
            return old
        doomed = sorted(idle, key=lambda r: (revision(r), parse_time(r["metadata"].get("creationTimestamp")) or 0))
        gone = set()
        for rs in doomed[:excess]:
            try:
                await self.client.delete(REPLICASETS, rs["metadata"]["name"], rs["metadata"]["namespace"])  # type: ignore[attr-defined]
            except ApiError as e:
                if e.code != 404:
                    raise
            gone.add(rs["metadata"]["uid"])
        return [r for r in old if r["metadata"]["uid"] not in gone]
