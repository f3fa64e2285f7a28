"""Garbage collector: delete objects whose controlling owner no longer exists (Background propagation)."""

from __future__ import annotations

import logging

from netkube import client as api
from netkube.client import ApiError, Informer, Obj, Resource
from netkube.controllers import kinds
from netkube.controllers.base import Informers, controller_ref
from netkube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)
OWNER_KINDS: dict[str, Resource] = {"Deployment": api.DEPLOYMENTS, "ReplicaSet": api.REPLICASETS,
                                    "Service": api.SERVICES, "Node": api.NODES, "Job": kinds.JOBS,
                                    "CronJob": kinds.CRONJOBS, "DaemonSet": kinds.DAEMONSETS,
                                    "StatefulSet": kinds.STATEFULSETS}


class GarbageCollector:
    def __init__(self, client: object, informers: Informers) -> None:
        self.client = client
        self.inf = informers
        self.queue = WorkQueue("garbage-collector")
        # Dependents we watch: (informer, resource).
        self.dependents: list[tuple[Informer, Resource]] = [
            (informers.replicasets, api.REPLICASETS), (informers.pods, api.PODS),
            (informers.endpointslices, api.ENDPOINTSLICES), (informers.jobs, kinds.JOBS),
            (informers.controllerrevisions, kinds.CONTROLLERREVISIONS),
        ]
        self._owner_informers = {"Deployment": informers.deployments, "ReplicaSet": informers.replicasets,
                                 "Service": informers.services, "Node": informers.nodes, "Job": informers.jobs,
                                 "CronJob": informers.cronjobs, "DaemonSet": informers.daemonsets,
                                 "StatefulSet": informers.statefulsets}

    def register(self) -> None:
        for inf, res in self.dependents:
            inf.add_handler(lambda t, o, old, res=res: self._on_dependent(t, o, res))
        for inf in self._owner_informers.values():
            inf.add_handler(self._on_owner)

    def _on_dependent(self, etype: str, obj: Obj, res: Resource) -> None:
        if etype != "DELETED" and controller_ref(obj):
            self.queue.add(self._key(res, obj))

    def _on_owner(self, etype: str, owner: Obj, old: Obj | None) -> None:
        if etype != "DELETED":
            return
        uid = owner["metadata"].get("uid")
        for inf, res in self.dependents:
            for obj in inf.items():
                if (controller_ref(obj) or {}).get("uid") == uid:
                    self.queue.add(self._key(res, obj))

    @staticmethod
    def _key(res: Resource, obj: Obj) -> str:
        return f"{res.plural}|{obj['metadata'].get('namespace', '')}|{obj['metadata']['name']}"

    async def run(self) -> None:
        await self.queue.run(self.sync)

    async def sync(self, key: str) -> None:
        plural, ns, name = key.split("|")
        inf, res = next((i, r) for i, r in self.dependents if r.plural == plural)
        obj = inf.get(name, ns or None)
        ref = controller_ref(obj) if obj else None
        if obj is None or ref is None or ref.get("kind") not in OWNER_KINDS:
            return
        owner_inf = self._owner_informers[ref["kind"]]
        owner_ns = ns if OWNER_KINDS[ref["kind"]].namespaced else None
        cached = owner_inf.get(ref["name"], owner_ns)
        if cached is not None and cached["metadata"].get("uid") == ref["uid"]:
            return
        # The cache may lag behind a just-created owner: ask the apiserver before deleting anything.
        try:
            live = await self.client.get(OWNER_KINDS[ref["kind"]], ref["name"], owner_ns)  # type: ignore[attr-defined]
            if live["metadata"].get("uid") == ref["uid"]:
                return
        except ApiError as e:
            if e.code != 404:
                raise
        log.info("garbage-collector: deleting %s %s/%s, its owner %s %s is gone", res.kind, ns, name,
                 ref["kind"], ref["name"])
        try:
            await self.client.delete(res, name, ns or None)  # type: ignore[attr-defined]
        except ApiError as e:
            if e.code != 404:
                raise
