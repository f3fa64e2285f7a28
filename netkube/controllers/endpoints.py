"""Endpoints and EndpointSlice controller: every Service with a selector gets both, kept current."""

from __future__ import annotations

import logging
from datetime import datetime

from netkube.client import ENDPOINTS, ENDPOINTSLICES, ApiError, Obj
from netkube.controllers.base import Informers, clone, owner_reference, split_key
from netkube.controllers.endpoints_render import render_slices, render_subsets
from netkube.controllers.hashing import random_suffix
from netkube.controllers.triggertime import TriggerTimeTracker, stamp
from netkube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
HEADLESS = "service.kubernetes.io/headless"


def service_labels(svc: Obj) -> dict[str, str]:
    labels = dict(svc["metadata"].get("labels") or {})
    if svc.get("spec", {}).get("clusterIP") == "None":
        labels[HEADLESS] = ""
    return labels


def selected_pods(pods: list[Obj], svc: Obj) -> list[Obj]:
    sel = svc.get("spec", {}).get("selector") or {}
    ns = svc["metadata"]["namespace"]
    return [p for p in pods if p["metadata"].get("namespace") == ns
            and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]


class EndpointsController:
    def __init__(self, client: object, informers: Informers) -> None:
        self.client = client
        self.inf = informers
        self.queue = WorkQueue("endpoints")
        self._recent: dict[str, Obj] = {}  # slices we created that the informer may not show yet
        self.triggers = TriggerTimeTracker()

    def register(self) -> None:
        self.inf.services.add_handler(lambda t, s, o: self.queue.add(f"{s['metadata']['namespace']}/{s['metadata']['name']}"))
        self.inf.pods.add_handler(self._on_pod)
        self.inf.endpoints.add_handler(self._on_owned)
        self.inf.endpointslices.add_handler(self._on_slice)

    def _on_pod(self, etype: str, pod: Obj, old: Obj | None) -> None:
        ns = pod["metadata"].get("namespace")
        for svc in self.inf.services.items():
            if svc["metadata"].get("namespace") != ns or not svc.get("spec", {}).get("selector"):
                continue
            if selected_pods([pod], svc) or (old is not None and selected_pods([old], svc)):
                self.queue.add(f"{ns}/{svc['metadata']['name']}")

    def _on_owned(self, etype: str, obj: Obj, old: Obj | None) -> None:
        self.queue.add(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")

    def _on_slice(self, etype: str, obj: Obj, old: Obj | None) -> None:
        labels = obj["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY) == SLICE_CONTROLLER and labels.get(SERVICE_NAME):
            self.queue.add(f"{obj['metadata']['namespace']}/{labels[SERVICE_NAME]}")

    async def run(self) -> None:
        await self.queue.run(self.sync)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        assert ns is not None
        svc = self.inf.services.get(name, ns)
        if svc is None or not svc.get("spec", {}).get("selector"):
            if svc is None:
                self.triggers.forget(ns, name)
                await self._delete_all(ns, name)
            return  # a Service without selector: its Endpoints belong to the user
        pods = selected_pods(self.inf.pods.items(), svc)
        when = self.triggers.compute(svc, pods)
        await self._sync_endpoints(svc, pods, when)
        await self._sync_slices(svc, pods, when)

    async def _sync_endpoints(self, svc: Obj, pods: list[Obj], when: datetime | None = None) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        subsets = render_subsets(svc, pods)
        labels = service_labels(svc)
        cur = self.inf.endpoints.get(name, ns)
        if cur is not None and (cur.get("subsets") or []) == subsets and (cur["metadata"].get("labels") or {}) == labels:
            return
        ep: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                   "metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": subsets}
        # A 409 (our cache lags behind a write) propagates; the queue retries with fresher data.
        if cur is not None:
            ep["metadata"] = {**clone(cur["metadata"]), "labels": labels}
        stamp(ep["metadata"], when)
        if cur is None:
            await self.client.create(ENDPOINTS, ep, ns)  # type: ignore[attr-defined]
        else:
            await self.client.update(ENDPOINTS, ep)  # type: ignore[attr-defined]

    def _existing_slices(self, ns: str, name: str) -> list[Obj]:
        seen = {}
        for s in self.inf.endpointslices.items():
            labels = s["metadata"].get("labels") or {}
            if s["metadata"].get("namespace") == ns and labels.get(SERVICE_NAME) == name \
                    and labels.get(MANAGED_BY) == SLICE_CONTROLLER:
                seen[s["metadata"]["name"]] = s
                self._recent.pop(f"{ns}/{s['metadata']['name']}", None)
        for k, s in list(self._recent.items()):
            if k.startswith(f"{ns}/") and (s["metadata"].get("labels") or {}).get(SERVICE_NAME) == name:
                seen.setdefault(s["metadata"]["name"], s)
        return sorted(seen.values(), key=lambda s: s["metadata"]["name"])

    async def _sync_slices(self, svc: Obj, pods: list[Obj], when: datetime | None = None) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        labels = {**service_labels(svc), SERVICE_NAME: name, MANAGED_BY: SLICE_CONTROLLER}
        desired = render_slices(svc, pods)
        existing = self._existing_slices(ns, name)
        # Pair desired groups with existing slices holding the same ports, then reuse the rest.
        unmatched = list(existing)
        plan: list[tuple[Obj | None, list[Obj], list[Obj]]] = []
        for ports, eps in desired:
            match = next((s for s in unmatched if (s.get("ports") or []) == ports), None)
            if match is not None:
                unmatched.remove(match)
            plan.append((match, ports, eps))
        plan = [(cur if cur is not None else (unmatched.pop(0) if unmatched else None), p, e) for cur, p, e in plan]
        for cur, ports, eps in plan:
            await self._write_slice(svc, cur, labels, ports, eps, when)
        for extra in unmatched:
            try:
                await self.client.delete(ENDPOINTSLICES, extra["metadata"]["name"], ns)  # type: ignore[attr-defined]
            except ApiError as e:
                if e.code != 404:
                    raise
            self._recent.pop(f"{ns}/{extra['metadata']['name']}", None)

    async def _write_slice(self, svc: Obj, cur: Obj | None, labels: dict[str, str], ports: list[Obj],
                           eps: list[Obj], when: datetime | None = None) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        if cur is not None and (cur.get("endpoints") or []) == eps and (cur.get("ports") or []) == ports \
                and (cur["metadata"].get("labels") or {}) == labels:
            return  # unchanged: no write
        body: Obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                     "endpoints": eps, "ports": ports}
        if cur is None:
            body["metadata"] = {"name": f"{name}-{random_suffix()}", "generateName": f"{name}-", "namespace": ns,
                                "labels": labels, "ownerReferences": [owner_reference(svc)]}
            stamp(body["metadata"], when)
            made = await self.client.create(ENDPOINTSLICES, body, ns)  # type: ignore[attr-defined]
            self._recent[f"{ns}/{made['metadata']['name']}"] = made
        else:
            body["metadata"] = {**clone(cur["metadata"]), "labels": labels}
            stamp(body["metadata"], when)
            made = await self.client.update(ENDPOINTSLICES, body)  # type: ignore[attr-defined]
            if f"{ns}/{made['metadata']['name']}" in self._recent:
                self._recent[f"{ns}/{made['metadata']['name']}"] = made

    async def _delete_all(self, ns: str, name: str) -> None:
        targets = [(ENDPOINTS, name)] if self.inf.endpoints.get(name, ns) else []
        targets += [(ENDPOINTSLICES, s["metadata"]["name"]) for s in self._existing_slices(ns, name)]
        for res, obj_name in targets:
            try:
                await self.client.delete(res, obj_name, ns)  # type: ignore[attr-defined]
            except ApiError as e:
                if e.code != 404:
                    raise
            self._recent.pop(f"{ns}/{obj_name}", None)
