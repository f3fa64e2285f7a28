"""The deployment controller's ReplicaSet writes: create, adopt as new, scale, prune history."""

from __future__ import annotations

from netkube.client import DEPLOYMENTS, REPLICASETS, ApiError, Obj
from netkube.controllers.base import clone, controller_ref, owner_reference
from netkube.controllers.deployment_status import condition, has_deadline, new_condition, set_condition
from netkube.controllers.events import EventRecorder
from netkube.controllers.hashing import compute_hash
from netkube.controllers.rollout import (
    HASH_LABEL,
    REVISION,
    new_rs_annotations,
    replicas_annotations,
    revision,
    spec_replicas,
    st,
    template_without_hash,
)


class ReplicaSetWriter:
    def __init__(self, client: object, recorder: EventRecorder) -> None:
        self.client = client
        self.recorder = recorder

    async def create(self, d: Obj, old: list[Obj], count: int) -> Obj | None:
        md = d["metadata"]
        collision = d["status"].get("collisionCount")
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
                         "annotations": new_rs_annotations(d, {}, rev, exists=False),
                         "ownerReferences": [owner_reference(d)]},
            "spec": {"replicas": count, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                     "selector": selector, "template": tmpl},
        }
        try:
            created = await self.client.create(REPLICASETS, rs, md["namespace"])  # type: ignore[attr-defined]
        except ApiError as e:
            if e.code != 409:
                msg = f'Failed to create new replica set "{rs["metadata"]["name"]}": {e}'
                if has_deadline(d):
                    set_condition(d["status"], new_condition("Progressing", "False", "ReplicaSetCreateError", msg))
                await self.recorder.warning(d, "ReplicaSetCreateError", msg)
                raise
            return await self._collision(d, rs, collision)
        if count > 0:
            await self.recorder.normal(d, "ScalingReplicaSet",
                                       f"Scaled up replica set {created['metadata']['name']} to {count}")
        if has_deadline(d):
            set_condition(d["status"], new_condition("Progressing", "True", "NewReplicaSetCreated",
                                                     f'Created new replica set "{created["metadata"]["name"]}"'))
        return created  # type: ignore[no-any-return]

    async def _collision(self, d: Obj, rs: Obj, collision: int | None) -> Obj | None:
        md = d["metadata"]
        existing = await self.client.get(REPLICASETS, rs["metadata"]["name"], md["namespace"])  # type: ignore[attr-defined]
        if ((controller_ref(existing) or {}).get("uid") == md["uid"]
                and template_without_hash(existing["spec"]["template"]) == template_without_hash(rs["spec"]["template"])):
            return existing  # type: ignore[no-any-return]  # our informer had not seen it yet
        # A foreign object holds the name: bump collisionCount so the next hash differs.
        await self.client.patch(DEPLOYMENTS, md["name"],  # type: ignore[attr-defined]
                                {"status": {"collisionCount": (collision or 0) + 1}}, md["namespace"], sub="status")
        return None

    async def sync_existing(self, d: Obj, rs: Obj, old: list[Obj]) -> Obj:
        """The ReplicaSet matching the template: give it the newest revision and the Deployment's
        annotations (change-cause), as getNewReplicaSet does when it already exists."""
        rev = max((revision(r) for r in old), default=0) + 1
        anns = rs["metadata"].get("annotations") or {}
        want = new_rs_annotations(d, anns, rev, exists=True)
        mrs = d["spec"].get("minReadySeconds", 0)
        if has_deadline(d) and condition(d["status"], "Progressing") is None:
            set_condition(d["status"], new_condition("Progressing", "True", "FoundNewReplicaSet",
                                                     f'Found new replica set "{rs["metadata"]["name"]}"'))
        if want == anns and rs["spec"].get("minReadySeconds", 0) == mrs:
            return rs
        new = clone(rs)
        new["metadata"]["annotations"] = want
        new["spec"]["minReadySeconds"] = mrs
        return await self.client.update(REPLICASETS, new)  # type: ignore[attr-defined, no-any-return]

    async def set_deployment_revision(self, d: Obj, new_rs: Obj) -> None:
        """The Deployment carries its new ReplicaSet's revision (kubectl describe shows it)."""
        rev = (new_rs["metadata"].get("annotations") or {}).get(REVISION)
        if rev is None or (d["metadata"].get("annotations") or {}).get(REVISION) == rev:
            return
        md = d["metadata"]
        try:
            await self.client.patch(DEPLOYMENTS, md["name"], {"metadata": {"annotations": {REVISION: rev}}},  # type: ignore[attr-defined]
                                    md["namespace"])
        except ApiError as e:
            if e.code != 404:
                raise

    async def scale(self, d: Obj, rs: Obj, count: int, op: str = "") -> Obj:
        """scaleReplicaSet: write size and desired/max annotations; an event only when the size changed."""
        old_count = spec_replicas(rs)
        anns = rs["metadata"].get("annotations") or {}
        want = {**anns, **replicas_annotations(d)}
        if old_count == count and want == anns:
            return rs
        new = clone(rs)
        new["spec"]["replicas"] = count
        new["metadata"]["annotations"] = want
        updated = await self.client.update(REPLICASETS, new)  # type: ignore[attr-defined]
        if old_count != count:
            verb = op or ("up" if count > old_count else "down")
            await self.recorder.normal(d, "ScalingReplicaSet",
                                       f"Scaled {verb} replica set {rs['metadata']['name']} to {count} from {old_count}")
        return updated  # type: ignore[no-any-return]

    async def cleanup(self, d: Obj, old: list[Obj], new_rs: Obj | None) -> list[Obj]:
        """cleanupDeployment: keep revisionHistoryLimit old ReplicaSets, deleting the lowest revisions
        first, and never one that still has replicas."""
        limit = d["spec"].get("revisionHistoryLimit", 10)
        if limit is None:
            return old
        keep_uid = (new_rs or {}).get("metadata", {}).get("uid")
        alive = [r for r in old if not r["metadata"].get("deletionTimestamp") and r["metadata"]["uid"] != keep_uid]
        excess = len(alive) - limit
        if excess <= 0:
            return old
        gone = set()
        for rs in sorted(alive, key=lambda r: (revision(r), r["metadata"].get("creationTimestamp", "")))[:excess]:
            if spec_replicas(rs) or st(rs, "replicas") or \
                    rs["metadata"].get("generation", 1) > (rs.get("status") or {}).get("observedGeneration", 0):
                continue
            try:
                await self.client.delete(REPLICASETS, rs["metadata"]["name"], rs["metadata"]["namespace"])  # type: ignore[attr-defined]
            except ApiError as e:
                if e.code != 404:
                    raise
            gone.add(rs["metadata"]["uid"])
        return [r for r in old if r["metadata"]["uid"] not in gone]
