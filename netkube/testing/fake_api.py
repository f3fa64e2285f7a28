"""FakeApiClient: an in-memory apiserver with ApiClient's async methods, for unit tests.

It follows the real server's REST semantics closely enough that netkube.client.Informer runs
against it unchanged: a global resourceVersion, list + watch from a resourceVersion, optimistic
concurrency (409 Conflict on a stale resourceVersion), status subresources, merge patch,
generateName/uid/creationTimestamp filling, the pod binding subresource, graceful pod deletion
(deletionTimestamp while a kubelet finishes), ClusterIP/NodePort allocation, label/field selectors.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from netkube import client as api
from netkube.api.defaults import default_tolerations
from netkube.api.patch import merge_patch
from netkube.client import ApiError, Obj, Resource
from netkube.controllers.kinds import WORKLOADS
from netkube.labels import SelectorError, fields_match, labels_match

# The apiserver's generateName suffix: 5 characters from this alphabet (no vowels, no 0/1/3).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Kinds whose main-resource writes ignore .status and whose /status writes ignore everything else.
_STATUS_SPLIT = {"pods", "nodes", "services", "deployments", "replicasets", "namespaces", "daemonsets",
                 "statefulsets", "jobs", "cronjobs"}
_GENERATION = {"deployments", "replicasets", "daemonsets", "statefulsets", "jobs", "cronjobs"}

KNOWN_RESOURCES = [
    api.NAMESPACES, api.NODES, api.PODS, api.SERVICES, api.ENDPOINTS, api.EVENTS, api.CONFIGMAPS,
    api.DEPLOYMENTS, api.REPLICASETS, api.ENDPOINTSLICES, api.LEASES, *WORKLOADS,
]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_error(code: int, reason: str, message: str, res: Resource | None = None, name: str = "") -> ApiError:
    details: Obj = {"name": name}
    if res is not None:
        details["kind"] = res.plural
        if res.group_version != "v1":
            details["group"] = res.group_version.split("/")[0]
    return ApiError(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": reason, "details": details, "code": code})


def _gr(res: Resource) -> str:
    """Group-qualified resource as the apiserver writes it in messages ("deployments.apps")."""
    return res.plural if res.group_version == "v1" else f"{res.plural}.{res.group_version.split('/')[0]}"


@dataclass
class _Watcher:
    res: Resource
    namespace: str | None
    label_selector: str | None
    field_selector: str | None
    queue: asyncio.Queue[tuple[str, Obj]] = field(default_factory=asyncio.Queue)

    def sees(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace and obj["metadata"].get("namespace") != self.namespace:
            return False
        return labels_match(self.label_selector, obj["metadata"].get("labels")) and fields_match(
            self.field_selector, obj
        )


class FakeApiClient:
    """Drop-in for ApiClient in tests. Objects handed out are deep copies, never the stored ones."""

    def __init__(self, service_cidr: str = "10.96.0.0/12", node_port_range: tuple[int, int] = (30000, 32767),
                 graceful_pod_delete: bool = True, history: int = 10000) -> None:
        self.store: dict[tuple[str, str, str], Obj] = {}  # (plural, namespace, name) -> object
        self.rv = 0
        self.service_net = ipaddress.IPv4Network(service_cidr)
        self.node_ports = node_port_range
        self.graceful_pod_delete = graceful_pod_delete
        self._watchers: list[_Watcher] = []
        self._log: list[tuple[int, str, str, Obj]] = []  # (rv, plural, type, object) for watch resume
        self._history = history
        self.calls: list[tuple[str, str]] = []  # (verb, plural) of every write, for write-storm checks
        self._resources = {(r.group_version, r.plural): r for r in KNOWN_RESOURCES}

    # --- helpers -------------------------------------------------------------------------------
    def register(self, res: Resource) -> None:
        self._resources[(res.group_version, res.plural)] = res

    def objects(self, res: Resource, namespace: str | None = None) -> list[Obj]:
        """Synchronous peek at stored objects (copies), for test assertions."""
        return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.store.items())
                if p == res.plural and (namespace is None or ns == namespace)]

    def _key(self, res: Resource, name: str, namespace: str | None) -> tuple[str, str, str]:
        return (res.plural, (namespace or "") if res.namespaced else "", name)

    def _bump(self, obj: Obj) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def _notify(self, res: Resource, etype: str, obj: Obj, old: Obj | None) -> None:
        self._log.append((self.rv, res.plural, etype, copy.deepcopy(obj)))
        del self._log[: max(0, len(self._log) - self._history)]
        for w in self._watchers:
            if w.res.plural != res.plural:
                continue
            new_seen, old_seen = w.sees(obj) if etype != "DELETED" else False, w.sees(old)
            # As the real watch cache does: leaving the selector is a DELETED, entering an ADDED.
            if etype == "DELETED" and old_seen:
                w.queue.put_nowait(("DELETED", copy.deepcopy(obj)))
            elif new_seen and not old_seen:
                w.queue.put_nowait(("ADDED", copy.deepcopy(obj)))
            elif new_seen and old_seen:
                w.queue.put_nowait(("MODIFIED", copy.deepcopy(obj)))
            elif old_seen and not new_seen:
                w.queue.put_nowait(("DELETED", copy.deepcopy(obj)))

    def _stored(self, res: Resource, name: str, namespace: str | None) -> Obj:
        obj = self.store.get(self._key(res, name, namespace))
        if obj is None:
            raise status_error(404, "NotFound", f'{_gr(res)} "{name}" not found', res, name)
        return obj

    def _write(self, res: Resource, obj: Obj, old: Obj | None) -> Obj:
        md = obj["metadata"]
        self._bump(obj)
        self.store[self._key(res, md["name"], md.get("namespace"))] = obj
        self._notify(res, "MODIFIED" if old is not None else "ADDED", obj, old)
        self.calls.append(("update" if old is not None else "create", res.plural))
        return copy.deepcopy(obj)

    def _remove(self, res: Resource, obj: Obj) -> Obj:
        md = obj["metadata"]
        del self.store[self._key(res, md["name"], md.get("namespace"))]
        self._bump(obj)
        self._notify(res, "DELETED", obj, obj)
        self.calls.append(("delete", res.plural))
        return copy.deepcopy(obj)

    def _allocate_service(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            used = {o["spec"].get("clusterIP") for (p, _, _), o in self.store.items() if p == "services"}
            for index in range(10, self.service_net.num_addresses - 1):
                ip = str(self.service_net[index])
                if ip not in used:
                    spec["clusterIP"] = ip
                    break
        if spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec["type"] in ("NodePort", "LoadBalancer"):
            used_ports = {p.get("nodePort") for (k, _, _), o in self.store.items() if k == "services"
                          for p in o["spec"].get("ports", [])}
            for port in spec.get("ports", []):
                if not port.get("nodePort"):
                    port["nodePort"] = next(n for n in range(self.node_ports[0], self.node_ports[1] + 1)
                                            if n not in used_ports)
                    used_ports.add(port["nodePort"])

    # --- ApiClient verbs -----------------------------------------------------------------------
    async def close(self) -> None:
        for w in self._watchers:
            w.queue.put_nowait(("CLOSE", {}))

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> Obj:
        return copy.deepcopy(self._stored(res, name, namespace))

    async def list(self, res: Resource, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None) -> Obj:
        w = _Watcher(res, namespace, label_selector, field_selector)
        try:
            items = [copy.deepcopy(o) for o in self.objects(res) if w.sees(o)]
        except SelectorError as e:
            raise status_error(400, "BadRequest", str(e)) from None
        for o in items:
            o.pop("kind", None)
            o.pop("apiVersion", None)
        return {"kind": f"{res.kind}List", "apiVersion": res.group_version,
                "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    async def create(self, res: Resource, obj: Obj, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        if res.namespaced:
            md["namespace"] = namespace or md.get("namespace") or "default"
        else:
            md.pop("namespace", None)
        if not md.get("name"):
            if not md.get("generateName"):
                raise status_error(422, "Invalid", f"{res.kind}.{res.group_version} is invalid: metadata.name: "
                                   "Required value: name or generateName is required", res)
            md["name"] = md["generateName"] + "".join(random.choices(NAME_ALPHABET, k=5))
        if self._key(res, md["name"], md.get("namespace")) in self.store:
            raise status_error(409, "AlreadyExists", f'{_gr(res)} "{md["name"]}" already exists', res, md["name"])
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        for k in ("resourceVersion", "deletionTimestamp"):
            md.pop(k, None)
        obj["kind"], obj["apiVersion"] = res.kind, res.group_version
        if res.plural in _GENERATION:
            md["generation"] = 1
        if res.plural == "services":
            self._allocate_service(obj)
        if res.plural == "pods":
            obj.setdefault("status", {}).setdefault("phase", "Pending")
            obj.setdefault("spec", {}).setdefault("schedulerName", "default-scheduler")
            default_tolerations(obj["spec"])  # as the real apiserver's admission does
        return self._write(res, obj, None)

    def _check_rv(self, res: Resource, obj: Obj, stored: Obj) -> None:
        rv = obj["metadata"].get("resourceVersion")
        if rv and rv != stored["metadata"]["resourceVersion"]:
            name = stored["metadata"]["name"]
            raise status_error(409, "Conflict", f'Operation cannot be fulfilled on {_gr(res)} "{name}": the object '
                               "has been modified; please apply your changes to the latest version and try again",
                               res, name)

    def _merge_update(self, res: Resource, stored: Obj, new: Obj, sub: str | None) -> Obj:
        old = stored
        new = copy.deepcopy(new)
        for k in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"):
            if k in old["metadata"]:
                new["metadata"][k] = old["metadata"][k]
        new["kind"], new["apiVersion"] = res.kind, res.group_version
        if sub == "status":
            result = copy.deepcopy(old)
            result["status"] = new.get("status", {})
            return result
        if res.plural in _STATUS_SPLIT:
            new["status"] = copy.deepcopy(old.get("status", {}))
        if res.plural in _GENERATION:
            gen = old["metadata"].get("generation", 1)
            new["metadata"]["generation"] = gen + (1 if new.get("spec") != old.get("spec") else 0)
        return new

    async def update(self, res: Resource, obj: Obj, sub: str | None = None) -> Obj:
        md = obj["metadata"]
        stored = self._stored(res, md["name"], md.get("namespace"))
        self._check_rv(res, obj, stored)
        return self._finish_update(res, stored, self._merge_update(res, stored, obj, sub))

    def _finish_update(self, res: Resource, stored: Obj, new: Obj) -> Obj:
        # An object being deleted whose last finalizer went away is removed, as the real server does.
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") and res.plural != "pods":
            return self._remove(res, new)
        return self._write(res, new, stored)

    async def update_status(self, res: Resource, obj: Obj) -> Obj:
        return await self.update(res, obj, sub="status")

    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None,
                    sub: str | None = None, patch_type: str = "application/merge-patch+json") -> Obj:
        if patch_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise status_error(415, "UnsupportedMediaType", f"the fake supports merge patches, not {patch_type}")
        stored = self._stored(res, name, namespace)
        patched = merge_patch(stored, patch)
        patched.setdefault("metadata", {})
        self._check_rv(res, patched, stored)
        return self._finish_update(res, stored, self._merge_update(res, stored, patched, sub))

    async def delete(self, res: Resource, name: str, namespace: str | None = None,
                     grace_period: int | None = None) -> Obj:
        stored = self._stored(res, name, namespace)
        md = stored["metadata"]
        graceful = (res.plural == "pods" and self.graceful_pod_delete and grace_period != 0
                    and stored.get("spec", {}).get("nodeName"))
        if md.get("deletionTimestamp") and grace_period == 0 and not md.get("finalizers"):
            return self._remove(res, copy.deepcopy(stored))  # the kubelet's final force delete
        if graceful or md.get("finalizers"):
            if md.get("deletionTimestamp"):
                return copy.deepcopy(stored)  # already terminating: nothing changes
            new = copy.deepcopy(stored)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            grace = 30 if grace_period is None else grace_period
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            return self._write(res, new, stored)
        return self._remove(res, copy.deepcopy(stored))

    async def bind(self, pod: Obj, node: str) -> Obj:
        md = pod["metadata"]
        stored = self._stored(api.PODS, md["name"], md["namespace"])
        if stored["spec"].get("nodeName"):
            raise status_error(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{md["name"]}": '
                               f"pod {md['name']} is already assigned to node \"{stored['spec']['nodeName']}\"",
                               api.PODS, md["name"])
        new = copy.deepcopy(stored)
        new["spec"]["nodeName"] = node
        conds = [c for c in new.setdefault("status", {}).get("conditions", []) if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": now_rfc3339()})
        new["status"]["conditions"] = conds
        self._write(api.PODS, new, stored)
        return {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}

    async def watch(self, res: Resource, namespace: str | None = None, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int = 300) -> AsyncIterator[tuple[str, Obj]]:
        w = _Watcher(res, namespace, label_selector, field_selector)
        if resource_version and resource_version != "0":
            since = int(resource_version)
            if self._log and since < self._log[0][0] - 1 and since < self.rv:
                raise status_error(410, "Expired", f"too old resource version: {since} ({self._log[0][0]})")
            for rv, plural, etype, obj in list(self._log):
                # Replay is simplified to per-event selector checks (the object as it was then).
                if rv > since and plural == res.plural and w.sees(obj):
                    w.queue.put_nowait((etype, copy.deepcopy(obj)))
        self._watchers.append(w)
        try:
            while True:
                etype, obj = await w.queue.get()
                if etype == "CLOSE":
                    return
                yield etype, obj
        finally:
            self._watchers.remove(w)

    async def request(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
                      content_type: str = "application/json") -> Obj:
        """Route a raw REST path to the verbs above (for the few callers that use paths)."""
        res, namespace, name, sub = self._parse_path(path)
        params = params or {}
        if method == "GET" and name:
            return await self.get(res, name, namespace)
        if method == "GET":
            return await self.list(res, namespace, params.get("labelSelector"), params.get("fieldSelector"))
        if method == "POST" and sub == "binding":
            return await self.bind({"metadata": {"name": name, "namespace": namespace}}, body["target"]["name"])
        if method == "POST":
            return await self.create(res, body, namespace)
        if method == "PUT" and name:
            return await self.update(res, body, sub)
        if method == "PATCH" and name:
            return await self.patch(res, name, body, namespace, sub, content_type)
        if method == "DELETE" and name:
            grace = (body or {}).get("gracePeriodSeconds")
            return await self.delete(res, name, namespace, grace)
        raise status_error(405, "MethodNotAllowed", f"{method} {path} is not supported by the fake")

    def _parse_path(self, path: str) -> tuple[Resource, str | None, str | None, str | None]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts[:2] == ["api", "v1"]:
            gv, rest = "v1", parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 3:
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            raise status_error(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        elif len(rest) == 2 and rest[0] == "namespaces" and gv == "v1":
            return api.NAMESPACES, None, rest[1], None
        res = self._resources.get((gv, rest[0])) if rest else None
        if res is None:
            raise status_error(404, "NotFound", f"the server could not find the requested resource ({path})")
        return res, namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
