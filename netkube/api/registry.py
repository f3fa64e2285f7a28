"""Object lifecycle rules over the Store: defaults, validation, allocation, graceful delete, cascade."""

from __future__ import annotations

import asyncio
import copy
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ..config import ClusterConfig
from . import defaults, validation
from .resources import BY_KIND, KINDS, NAMESPACES, Kind
from .selectors import label_selector_string
from .service_alloc import ServiceAllocations
from .status import ApiStatusError, already_exists, bad_request, conflict, forbidden, invalid, not_found
from .store import KeyExists, KeyLocks, KeyMissing, RevisionMismatch, Store
from .strict import json_type
from .tables.age import now_rfc3339

Obj = dict[str, Any]
GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's generateName alphabet (no vowels)
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
WITH_STATUS = {"Pod", "Service", "Deployment", "ReplicaSet", "Namespace", "Node", "DaemonSet", "StatefulSet",
               "Job", "CronJob"}
WITH_GENERATION = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "CronJob"}


def _strip_volatile(o: Obj) -> Obj:
    o = copy.deepcopy(o)
    o.get("metadata", {}).pop("resourceVersion", None)
    # managedFields count: a write that only changes ownership (kubectl's CSA->SSA migration) is stored
    return o


def _qos(spec: Obj) -> str:
    res = [c.get("resources") or {} for c in spec.get("containers") or [] if isinstance(c, dict)]
    if not any(r.get("requests") or r.get("limits") for r in res):
        return "BestEffort"
    for r in res:
        lim = r.get("limits") or {}
        req = r.get("requests") or lim
        if not (lim.get("cpu") and lim.get("memory")) or req != lim:
            return "Burstable"
    return "Guaranteed"


class Registry:
    def __init__(self, store: Store, cluster: ClusterConfig) -> None:
        self.store = store
        self.cluster = cluster
        self.services = ServiceAllocations(cluster)
        self.tasks: set[asyncio.Task[None]] = set()
        # One write per object at a time (held by the API handlers around each named write, and by
        # the namespace finisher around each delete): each reads, changes and compares-and-swaps.
        self.locks = KeyLocks()

    def load(self) -> None:
        """Rebuild allocator state from stored Services (called once at startup)."""
        svc_kind = BY_KIND["Service"]
        items, _ = self.store.list(svc_kind.prefix(None))
        self.services.rebuild(items)

    # --- reads ------------------------------------------------------------------------------
    def get(self, kind: Kind, ns: str | None, name: str) -> Obj:
        obj = self.store.get(kind.key(ns, name))
        if obj is None:
            raise not_found(kind.plural, name, kind.group)
        return obj

    def list(self, kind: Kind, ns: str | None) -> tuple[list[Obj], int]:
        return self.store.list(kind.prefix(ns))

    # --- create -----------------------------------------------------------------------------
    def _check_namespace(self, kind: Kind, ns: str | None, name: str) -> None:
        if not kind.namespaced:
            return
        nsobj = self.store.get(NAMESPACES.key(None, ns or ""))
        if nsobj is None:
            raise not_found("namespaces", ns or "")
        if nsobj.get("metadata", {}).get("deletionTimestamp"):
            raise forbidden(kind.plural, name, f"unable to create new content in namespace {ns} because it is being terminated", kind.group)

    async def create(self, kind: Kind, ns: str | None, body: Obj, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(body)
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if kind.namespaced:
            if md.get("namespace") and ns and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            md["name"] = str(md["generateName"]) + "".join(random.choice(GEN_ALPHABET) for _ in range(5))
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        defaults.apply(kind.kind, obj)
        errs = validation.validate(kind.kind, obj)
        if errs:
            raise invalid(kind.kind, str(md.get("name") or md.get("generateName") or ""), kind.group, errs)
        name = md["name"]
        self._check_namespace(kind, ns, name)
        # managedFields stay: the handler computed them (netkube/api/apply.py), as upstream keeps a create's
        for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(f, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if kind.kind in WITH_GENERATION:
            md["generation"] = 1
        self._reset_status(kind, obj)
        key = kind.key(ns, name)
        if self.store.get(key) is not None:
            raise already_exists(kind.plural, name, kind.group)
        taken: list[tuple[str, Any]] = []
        if kind.kind == "Service":
            taken = self.services.allocate(obj)
            defaults.service_ip_family(obj["spec"])
        if dry_run:
            self.services.rollback(taken)
            return obj
        try:
            return await self.store.create(key, obj)
        except KeyExists:
            self.services.rollback(taken)
            raise already_exists(kind.plural, name, kind.group) from None

    def _reset_status(self, kind: Kind, obj: Obj) -> None:
        if kind.kind == "Pod":
            obj["status"] = {"phase": "Pending", "qosClass": _qos(obj.get("spec") or {})}
        elif kind.kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "CronJob"):
            obj["status"] = {}
        elif kind.kind == "Service":
            obj["status"] = {"loadBalancer": {}}
        elif kind.kind == "Namespace":
            obj["status"] = {"phase": "Active"}

    # --- update -----------------------------------------------------------------------------
    async def update(self, kind: Kind, ns: str | None, name: str, body: Obj, sub: str | None = None,
               dry_run: bool = False) -> Obj:
        old = self.get(kind, ns, name)
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise bad_request("the body must be a JSON object with metadata")
        md = body.setdefault("metadata", {})
        if md.get("name") and md["name"] != name:
            raise bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
        if kind.namespaced and md.get("namespace") and md["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        expect = md.get("resourceVersion")
        if expect and expect != old["metadata"].get("resourceVersion"):
            raise conflict(kind.plural, name, kind.group)
        if sub == "status":
            new = copy.deepcopy(old)
            new["status"] = body.get("status", {})
        else:
            new = copy.deepcopy(body)
            new["kind"], new["apiVersion"] = kind.kind, kind.api_version
            nmd = new["metadata"]
            for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if f in old["metadata"]:
                    nmd[f] = old["metadata"][f]
                else:
                    nmd.pop(f, None)
            nmd["name"] = name
            if kind.namespaced:
                nmd["namespace"] = ns
            if kind.kind in WITH_STATUS and kind.kind != "Node":
                new["status"] = old.get("status", {})
            defaults.apply(kind.kind, new)
            errs = validation.validate(kind.kind, new)
            if errs:
                raise invalid(kind.kind, name, kind.group, errs)
            if kind.kind == "Pod":
                self._check_pod_update(old, new)
            if kind.kind in WITH_GENERATION and new.get("spec") != old.get("spec"):
                nmd["generation"] = int(old["metadata"].get("generation", 1)) + 1
        taken: list[tuple[str, Any]] = []
        if kind.kind == "Service" and sub != "status":
            taken = self.services.allocate(new, old)
            defaults.service_ip_family(new["spec"])
        if _strip_volatile(new) == _strip_volatile(old) or dry_run:
            self.services.rollback(taken)
            if dry_run:  # upstream's dry-run answer carries the stored resourceVersion (kubectl diff)
                new["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
                return new
            return old  # a no-op update does not bump the revision, as upstream
        try:
            out = await self._write_update(kind, old, new)
        except BaseException:
            self.services.rollback(taken)
            raise
        if kind.kind == "Service":
            self.services.release_dropped(old, new)
        return out

    def _check_pod_update(self, old: Obj, new: Obj) -> None:
        # upstream allows only image, activeDeadlineSeconds, tolerations (additions) etc. to change
        o, n = copy.deepcopy(old.get("spec") or {}), copy.deepcopy(new.get("spec") or {})
        for s in (o, n):
            for c in s.get("containers") or []:
                c.pop("image", None)
            s.pop("activeDeadlineSeconds", None)
            s.pop("tolerations", None)
        if o != n:
            from .status import FieldError
            raise invalid("Pod", old["metadata"]["name"], "", [FieldError(
                "spec", "FieldValueForbidden",
                detail="pod updates may not change fields other than `spec.containers[*].image`, "
                       "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                       "(only additions to existing tolerations), `spec.terminationGracePeriodSeconds` "
                       "(allow it to be set to 1 if it was previously negative)")])

    async def _write_update(self, kind: Kind, old: Obj, new: Obj) -> Obj:
        key = kind.key(old["metadata"].get("namespace"), old["metadata"]["name"])
        md = new["metadata"]
        # the last finalizer removed from an object being deleted completes the deletion
        if md.get("deletionTimestamp") and not md.get("finalizers") and kind.kind != "Namespace":
            if kind.kind != "Pod" or md.get("deletionGracePeriodSeconds", 0) == 0:
                return await self._remove(kind, key, new)
        try:
            return await self.store.update(key, new, old["metadata"].get("resourceVersion"))
        except RevisionMismatch:
            raise conflict(kind.plural, old["metadata"]["name"], kind.group) from None
        except KeyMissing:
            raise not_found(kind.plural, old["metadata"]["name"], kind.group) from None

    async def _remove(self, kind: Kind, key: str, obj: Obj) -> Obj:
        try:
            out = await self.store.delete(key)
        except KeyMissing:
            raise not_found(kind.plural, obj["metadata"]["name"], kind.group) from None
        if kind.kind == "Service":
            self.services.release(out)
        return out

    # --- subresources -----------------------------------------------------------------------
    async def bind(self, ns: str, name: str, binding: Obj) -> Obj:
        pods = BY_KIND["Pod"]
        pod = self.get(pods, ns, name)
        target = (binding.get("target") or {}).get("name") if isinstance(binding, dict) else None
        if not target:
            raise invalid("Binding", name, "", [validation.FieldError("target.name", "FieldValueRequired")])
        if pod["metadata"].get("deletionTimestamp"):
            raise conflict("pods/binding", name, why=f"pod {name} is being deleted, cannot be assigned to a host")
        if pod["spec"].get("nodeName"):
            raise conflict("pods/binding", name,
                           why=f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"')
        pod["spec"]["nodeName"] = target
        conds = [c for c in pod.setdefault("status", {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": now_rfc3339()})
        pod["status"]["conditions"] = conds
        await self._write_update(pods, self.get(pods, ns, name), pod)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def scale_of(self, kind: Kind, obj: Obj) -> Obj:
        md = obj["metadata"]
        spec = obj.get("spec") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
                "spec": {"replicas": spec.get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": label_selector_string(spec.get("selector")).replace("<none>", "")}}

    async def set_scale(self, kind: Kind, ns: str, name: str, scale: Obj, managed: list[Obj] | None = None) -> Obj:
        """managed: the object's managedFields after this write (the handler records the scale writer)."""
        for part, go_type in (("metadata", "v1.ObjectMeta"), ("spec", "v1.ScaleSpec")):
            if scale.get(part) is not None and not isinstance(scale[part], dict):
                raise bad_request(f'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal '
                                  f'{json_type(scale[part])} into Go struct field Scale.{part} of type {go_type}')
        obj = self.get(kind, ns, name)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"].get("resourceVersion"):
            raise conflict(kind.plural, name, kind.group)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid("Scale", name, "autoscaling", [validation.FieldError(
                "spec.replicas", "FieldValueInvalid", replicas, "must be greater than or equal to 0")])
        obj["spec"]["replicas"] = replicas
        obj["metadata"].pop("resourceVersion", None)
        if managed is not None:
            obj["metadata"]["managedFields"] = managed
        return self.scale_of(kind, await self.update(kind, ns, name, obj))

    # --- delete -----------------------------------------------------------------------------
    async def delete(self, kind: Kind, ns: str | None, name: str, opts: Obj) -> Obj:
        obj = self.get(kind, ns, name)
        md = obj["metadata"]
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != md.get("uid"):
            raise conflict(kind.plural, name, kind.group,
                           f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {md.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
            raise conflict(kind.plural, name, kind.group)
        if opts.get("dryRun"):
            return obj
        key = kind.key(ns, name)
        if kind.kind == "Namespace":
            return await self._delete_namespace(obj)
        grace = opts.get("gracePeriodSeconds")
        if kind.kind == "Pod":
            spec, phase = obj.get("spec") or {}, (obj.get("status") or {}).get("phase")
            if grace is None:
                grace = spec.get("terminationGracePeriodSeconds", 30)
            if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                grace = 0  # nothing runs it: upstream deletes unscheduled/finished pods at once
            grace = max(int(grace), 0)
            current = md.get("deletionGracePeriodSeconds")
            if grace > 0 and (current is None or grace < current):
                # graceful: mark and keep, the kubelet stops containers and deletes with grace 0
                md["deletionTimestamp"] = (datetime.now(UTC) + timedelta(seconds=grace)).strftime("%Y-%m-%dT%H:%M:%SZ")
                md["deletionGracePeriodSeconds"] = grace
                return await self.store.update(key, obj)
            if grace > 0:
                return obj
        if md.get("finalizers"):
            if not md.get("deletionTimestamp"):
                md["deletionTimestamp"] = now_rfc3339()
                md["deletionGracePeriodSeconds"] = 0
                return await self.store.update(key, obj)
            if kind.kind == "Pod" and md.get("deletionGracePeriodSeconds"):
                md["deletionGracePeriodSeconds"] = 0
                return await self.store.update(key, obj)
            return obj
        out = await self._remove(kind, key, obj)
        await self._cascade(out, opts.get("propagationPolicy") or "Background")
        return out

    async def _cascade(self, owner: Obj, policy: str) -> None:
        """Delete (or orphan) dependents by ownerReferences; a stand-in for upstream's GC controller."""
        uid, ns = owner["metadata"].get("uid"), owner["metadata"].get("namespace")
        if not ns:
            return
        for k in KINDS:
            if not k.namespaced:
                continue
            for dep in self.store.list(k.prefix(ns))[0]:
                refs = dep["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == uid for r in refs):
                    continue
                try:
                    if policy == "Orphan":
                        dep["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                        await self.store.update(k.key(ns, dep["metadata"]["name"]), dep)
                    else:
                        await self.delete(k, ns, dep["metadata"]["name"], {"propagationPolicy": policy})
                except (ApiStatusError, KeyMissing):
                    continue

    async def _delete_namespace(self, obj: Obj) -> Obj:
        name = obj["metadata"]["name"]
        if name in PROTECTED_NAMESPACES:
            raise forbidden("namespaces", name, "this namespace may not be deleted")
        if obj["metadata"].get("deletionTimestamp"):
            return obj
        obj["metadata"]["deletionTimestamp"] = now_rfc3339()
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        obj.setdefault("status", {})["phase"] = "Terminating"
        out = await self.store.update(NAMESPACES.key(None, name), obj)
        task = asyncio.get_running_loop().create_task(self._finish_namespace(name))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return out

    async def _finish_namespace(self, name: str, pod_wait: float = 35.0) -> None:
        """Namespace controller in small: delete all content, wait for pods, then the namespace."""
        pods = BY_KIND["Pod"]
        for k in KINDS:
            if k.namespaced:
                for o in self.store.list(k.prefix(name))[0]:
                    try:
                        async with self.locks.hold(k.key(name, o["metadata"]["name"])):
                            await self.delete(k, name, o["metadata"]["name"], {"propagationPolicy": "Background"})
                    except ApiStatusError:
                        pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + pod_wait
        while self.store.list(pods.prefix(name))[0] and loop.time() < deadline:
            await asyncio.sleep(0.5)
        for o in self.store.list(pods.prefix(name))[0]:  # kubelet never finished: force
            try:
                async with self.locks.hold(pods.key(name, o["metadata"]["name"])):
                    await self.store.delete(pods.key(name, o["metadata"]["name"]))
            except KeyMissing:
                pass
        try:
            await self.store.delete(NAMESPACES.key(None, name))
        except KeyMissing:
            pass


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
