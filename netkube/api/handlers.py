"""HTTP handlers for resource paths: parse the URL, decode the body, call the Registry, encode."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web
from multidict import CIMultiDict

from . import apply as ssa
from . import defaults, paging, protobuf, strict
from . import patch as patches
from .podproxy import PodProxy
from .registry import Registry
from .resources import BY_PATH, Kind
from .selectors import parse_fields, parse_labels
from .status import ApiStatusError, bad_request, method_not_allowed, too_large
from .store import TooOld, Watch
from .tables import table
from .watch import WatchStream

Obj = dict[str, Any]
LIST_KINDS_DEFAULT_TIMEOUT = 1800.0


@dataclass
class Target:
    kind: Kind
    namespace: str | None
    name: str | None
    sub: str | None


def parse_path(group: str, version: str, rest: list[str]) -> Target:
    """rest is what follows /api/v1 or /apis/<g>/<v>; upstream's RequestInfo in small."""
    def kind_for(plural: str) -> Kind:
        k = BY_PATH.get((group, version, plural))
        if k is None:
            raise ApiStatusError(404, "NotFound", "the server could not find the requested resource",
                                 {"group": group, "kind": plural})
        return k

    if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in BY_PATH:
        k = kind_for(rest[2])
        if not k.namespaced:
            raise ApiStatusError(404, "NotFound", "the server could not find the requested resource")
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else None
        return _checked(Target(k, rest[1], name, sub), len(rest) > 5)
    k = kind_for(rest[0])
    return _checked(Target(k, None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None),
                    len(rest) > 3)


def _checked(t: Target, too_long: bool) -> Target:
    if too_long or (t.sub is not None and t.sub not in t.kind.subresources):
        raise ApiStatusError(404, "NotFound", "the server could not find the requested resource")
    return t


async def read_body(request: web.Request, required: bool = True) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large() from None
    if not raw.strip():
        if required:
            raise bad_request("the request body is empty; send a JSON object")
        return None
    ctype = request.content_type
    if ctype == "application/vnd.kubernetes.protobuf":
        return protobuf.decode_object(raw)
    try:
        if "yaml" in ctype:
            return strict.load_yaml(raw)  # these two remember repeated keys for fieldValidation
        return strict.loads_json(raw)
    except (ValueError, yaml.YAMLError, RecursionError) as e:
        # upstream: "couldn't get version/kind; json parse error: ..." with 400 BadRequest
        raise bad_request(f"couldn't get version/kind; json parse error: {str(e).splitlines()[0]}") from None


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def respond(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = CIMultiDict(strict.warning_headers(warnings)) if warnings else None
    return web.Response(status=status, text=json.dumps(obj, separators=(",", ":")), content_type="application/json",
                        headers=headers)


class ResourceHandlers:
    def __init__(self, registry: Registry, watches: set[Watch]) -> None:
        self.registry = registry
        self.watches = watches
        self.pods = PodProxy(registry, registry.cluster)
        self.locks = registry.locks

    async def dispatch(self, request: web.Request, t: Target) -> web.StreamResponse:
        m = request.method
        if t.name is None:
            if m == "GET":
                return await self.list_or_watch(request, t)
            if m == "POST":
                return await self.create(request, t)
            if m == "DELETE":
                return await self.delete_collection(request, t)
            raise method_not_allowed()
        if t.sub in ("log", "exec", "attach", "portforward"):
            return await self._proxied(request, t)
        if m == "GET" and t.sub != "eviction":
            return self.get(request, t)
        # one write per object at a time: each reads the object, changes it and compares-and-swaps,
        # and with etcd several writes are in flight at once (an unconditional PATCH must not 409)
        async with self.locks.hold(t.kind.key(t.namespace, t.name)):
            return await self._write_named(request, t)

    async def _write_named(self, request: web.Request, t: Target) -> web.StreamResponse:
        m = request.method
        if t.sub == "eviction":
            if m != "POST":
                raise method_not_allowed()
            return await self.evict(request, t)
        if m == "PUT":
            return await self.put(request, t)
        if m == "PATCH":
            return await self.patch(request, t)
        if m == "DELETE":
            return await self.delete(request, t)
        if m == "POST" and t.sub == "binding":
            body = await read_body(request)
            return respond(await self.registry.bind(t.namespace or "", t.name or "", body), 201)
        raise method_not_allowed()

    async def _proxied(self, request: web.Request, t: Target) -> web.StreamResponse:
        """Subresources served by the pod's kubelet (GET log; GET or POST exec/attach/portforward)."""
        ns, name = t.namespace or "", t.name or ""
        if t.sub == "log" and request.method == "GET":
            return await self.pods.logs(request, ns, name)
        if t.sub in ("exec", "attach") and request.method in ("GET", "POST"):
            return await self.pods.stream(request, ns, name, t.sub)
        if t.sub == "portforward" and request.method in ("GET", "POST"):
            return await self.pods.portforward(request, ns, name)
        raise method_not_allowed()

    # --- reads ------------------------------------------------------------------------------
    def _render_one(self, request: web.Request, t: Target, obj: Obj) -> web.Response:
        if t.sub == "scale":
            return respond(self.registry.scale_of(t.kind, obj))
        if wants_table(request):
            rv = obj["metadata"].get("resourceVersion", "")
            return respond(table(t.kind.kind, [obj], rv, request.query.get("includeObject", "Metadata")))
        return respond(obj)

    def get(self, request: web.Request, t: Target) -> web.Response:
        return self._render_one(request, t, self.registry.get(t.kind, t.namespace, t.name or ""))

    def _matcher(self, request: web.Request, t: Target) -> Any:
        labels = parse_labels(request.query.get("labelSelector"))
        fields = parse_fields(request.query.get("fieldSelector"), t.kind.plural)
        return lambda o: labels(o.get("metadata", {}).get("labels") or {}) and fields(o)

    async def list_or_watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        match = self._matcher(request, t)
        q = request.query
        include = q.get("includeObject", "Metadata")
        if q.get("watch") in ("true", "1"):
            try:
                timeout = float(q.get("timeoutSeconds", LIST_KINDS_DEFAULT_TIMEOUT))
            except ValueError:
                raise bad_request("timeoutSeconds must be a number of seconds") from None
            rv = q.get("resourceVersion")
            if rv not in (None, "") and not rv.isdigit():
                raise bad_request(f"invalid resource version {rv!r}: use a value from a list response")
            stream = WatchStream(self.registry.store, t.kind, t.kind.prefix(t.namespace), match,
                                 wants_table(request), include, q.get("allowWatchBookmarks") == "true",
                                 timeout, self.watches)
            return await stream.serve(request, rv)
        return await self._list(request, t, match, include)

    async def _list(self, request: web.Request, t: Target, match: Any, include: str) -> web.Response:
        """A LIST, whole or (?limit=N&continue=TOKEN) one chunk read at one revision, as kubectl get
        (500 at a time) and informers page through big collections. Unfiltered JSON lists splice the
        stored JSON texts (decoding and re-encoding 1000 pods was most of a LIST's time)."""
        q = request.query
        limit = paging.parse_limit(q.get("limit"))
        prefix = t.kind.prefix(t.namespace)
        start, rev = prefix, None
        if q.get("continue"):
            if q.get("resourceVersion") not in (None, "", "0"):
                raise bad_request("specifying resource version is not allowed when using continue")
            token_rev, rel = paging.decode(q["continue"])
            start, rev = prefix + rel, (token_rev if token_rev > 0 else None)
        filtered = bool(q.get("labelSelector") or q.get("fieldSelector"))
        keep = (lambda text: bool(match(json.loads(text)))) if filtered else None
        try:
            page = await self.registry.store.list_page(prefix, start, limit, rev, keep)
        except TooOld:
            raise paging.ContinueExpired(start[len(prefix):]) from None
        meta: Obj = {"resourceVersion": str(page.rev)}
        if page.last_key is not None:
            meta["continue"] = paging.encode(page.rev, page.last_key[len(prefix):] + "\x00")
            if not filtered:  # upstream counts the rest only when no selector filters it
                meta["remainingItemCount"] = page.remaining
        if wants_table(request):
            out = table(t.kind.kind, [json.loads(x) for x in page.items], str(page.rev), include)
            out["metadata"] = meta
            return respond(out)
        head = json.dumps({"kind": f"{t.kind.kind}List", "apiVersion": t.kind.api_version, "metadata": meta},
                          separators=(",", ":"))
        return web.Response(text=f'{head[:-1]},"items":[{",".join(page.items)}]}}', content_type="application/json")

    # --- writes -----------------------------------------------------------------------------
    def _dry(self, request: web.Request) -> bool:
        return request.query.get("dryRun") == "All"

    async def create(self, request: web.Request, t: Target) -> web.Response:
        body = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object describing one resource")
        self._check_type(body, t.kind)
        warnings = strict.check_object(t.kind, body, strict.directive(request.query))
        self._record(request, t, None, body)
        return respond(await self.registry.create(t.kind, t.namespace, body, self._dry(request)), 201, warnings)

    @staticmethod
    def _manager(request: web.Request) -> str:
        # upstream's default for non-apply writes: the User-Agent up to its first '/'
        return request.query.get("fieldManager") or request.headers.get("User-Agent", "").split("/", 1)[0][:128]

    def _scale_managed(self, request: web.Request, t: Target, scale: Any) -> list[Obj] | None:
        """managedFields after a write to /scale: its writer owns .spec.replicas (subresource scale)."""
        spec = scale.get("spec") if isinstance(scale, dict) else None
        replicas = spec.get("replicas") if isinstance(spec, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            return None  # set_scale refuses it
        live = self.registry.get(t.kind, t.namespace, t.name or "")
        after = copy.deepcopy(live)
        after.setdefault("spec", {})["replicas"] = replicas
        return ssa.record_update(ssa.base_entries(live, None, "scale"), live, after, self._manager(request),
                                 t.kind.api_version, "status" in t.kind.subresources, "scale")

    def _record(self, request: web.Request, t: Target, old: Obj | None, new: Obj) -> None:
        """Set new's managedFields for an Update-operation write (create, PUT, non-apply PATCH)."""
        if "force" in request.query:
            raise ssa.patch_options_invalid("force", "Forbidden", "may not be specified for non-apply patch")
        if t.sub or not isinstance(new.get("metadata", {}), dict):
            return  # a subresource write keeps the stored metadata (registry.update)
        entries = ssa.base_entries(old, new, t.sub)
        manager = self._manager(request)
        filled = copy.deepcopy(new)
        filled.setdefault("metadata", {})
        defaults.apply(t.kind.kind, filled)  # upstream defaults before recording: the writer owns them
        managed = ssa.record_update(entries, old or {}, filled, manager, t.kind.api_version,
                                    "status" in t.kind.subresources)
        md = new.setdefault("metadata", {})
        if managed:
            md["managedFields"] = managed
        else:
            md.pop("managedFields", None)

    def _check_type(self, body: Obj, kind: Kind) -> None:
        av, k = body.get("apiVersion"), body.get("kind")
        if av and av != kind.api_version:
            raise bad_request(f"the API version in the data ({av}) does not match the expected API version ({kind.api_version})")
        if k and k != kind.kind:
            raise bad_request(f"the kind in the data ({k}) does not match the expected kind ({kind.kind})")

    async def put(self, request: web.Request, t: Target) -> web.Response:
        body = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object describing one resource")
        name = t.name or ""
        if t.sub == "scale":
            return respond(await self.registry.set_scale(t.kind, t.namespace or "", name, body,
                                                         self._scale_managed(request, t, body)))
        if t.sub in ("finalize",):
            return respond(self.registry.get(t.kind, t.namespace, name))
        self._check_type(body, t.kind)
        warnings = strict.check_object(t.kind, body, strict.directive(request.query))
        self._record(request, t, self.registry.get(t.kind, t.namespace, name), body)
        return respond(await self.registry.update(t.kind, t.namespace, name, body, t.sub, self._dry(request)), 200,
                       warnings)

    async def patch(self, request: web.Request, t: Target) -> web.Response:
        body = await read_body(request)
        ctype = request.content_type
        name = t.name or ""
        reg = self.registry
        mode = strict.directive(request.query)
        warnings: list[str] = []
        if ctype == "application/apply-patch+yaml":
            if not isinstance(body, dict):
                raise bad_request("an apply patch must be one object")
            try:
                current = reg.get(t.kind, t.namespace, name)
            except ApiStatusError as e:
                if e.code != 404 or t.sub:
                    raise
                body.setdefault("metadata", {})["name"] = name
                new, warnings = self._applied(request, t, None, body, mode)
                return respond(await reg.create(t.kind, t.namespace, new, self._dry(request)), 201, warnings)
            if t.sub == "scale":  # a Scale has no managed fields here: its applied fields simply win
                new = patches.strategic_merge(reg.scale_of(t.kind, current), body)
            else:
                new, warnings = self._applied(request, t, current, body, mode)
        else:
            current = reg.get(t.kind, t.namespace, name)
            base = reg.scale_of(t.kind, current) if t.sub == "scale" else current
            if ctype == "application/json-patch+json":
                new = patches.json_patch(base, body)
            elif ctype == "application/merge-patch+json":
                if not isinstance(body, dict):
                    raise bad_request("a merge patch must be a JSON object")
                new = patches.merge_patch(base, body)
            elif ctype == "application/strategic-merge-patch+json":
                if not isinstance(body, dict):
                    raise bad_request("a strategic merge patch must be a JSON object")
                new = patches.strategic_merge(base, body)
            else:
                raise ApiStatusError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ctype})")
            if isinstance(new, dict) and t.sub != "scale":
                warnings = strict.check_patched(t.kind, body, new, mode)
                self._record(request, t, current, new)
        if not isinstance(new, dict) or not isinstance(new.get("metadata", {}), dict):
            raise bad_request("the patch did not produce an object")
        if t.sub == "scale":
            managed = None if ctype == "application/apply-patch+yaml" else self._scale_managed(request, t, new)
            return respond(await reg.set_scale(t.kind, t.namespace or "", name, new, managed))
        # a patch carrying metadata.resourceVersion is a precondition, otherwise unconditional
        patched_rv = new.get("metadata", {}).get("resourceVersion")
        if patched_rv == current["metadata"].get("resourceVersion"):
            new["metadata"].pop("resourceVersion", None)
        return respond(await reg.update(t.kind, t.namespace, name, new, t.sub, self._dry(request)), 200, warnings)

    def _applied(self, request: web.Request, t: Target, live: Obj | None, body: Obj, mode: str) -> tuple[Obj, list[str]]:
        """Server-side apply (apply.py): the object to write, with managedFields, and warnings."""
        manager = request.query.get("fieldManager")
        if not manager:
            raise ssa.patch_options_invalid("fieldManager", "Required value", "is required for apply patch")
        ssa.check_configuration(t.kind, t.namespace, name=t.name or "", applied=body)
        warnings = strict.check_apply_yaml(body, mode)
        status_sub = "status" in t.kind.subresources
        if live is None:
            new = copy.deepcopy(body)
            new["metadata"]["managedFields"] = ssa.applied_on_create(body, manager, t.kind.api_version, status_sub)
            return new, warnings
        new, managed = ssa.apply(live, body, ssa.base_entries(live, None, t.sub), manager, t.kind.api_version,
                                 request.query.get("force") == "true", status_sub, t.sub)
        new.setdefault("metadata", {})["managedFields"] = managed
        return new, warnings

    async def _delete_options(self, request: web.Request) -> Obj:
        body = await read_body(request, required=False)
        opts: Obj = body if isinstance(body, dict) else {}
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError:
                raise bad_request("gracePeriodSeconds must be an integer") from None
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if q.get("dryRun") == "All":
            opts["dryRun"] = ["All"]
        pol = opts.get("propagationPolicy")
        if pol not in (None, "Orphan", "Background", "Foreground"):
            raise bad_request(f"propagationPolicy {pol!r} is not supported: use Orphan, Background or Foreground")
        return opts

    async def evict(self, request: web.Request, t: Target) -> web.Response:
        """POST pods/<name>/eviction (policy/v1 Eviction), as `kubectl drain` sends it.

        netkube has no PodDisruptionBudgets, so every eviction is allowed: upstream then deletes
        the pod with the Eviction's deleteOptions and answers 201 with a Success Status.
        """
        body = await read_body(request)
        if not isinstance(body, dict) or body.get("kind", "Eviction") != "Eviction":
            raise bad_request("the body of an eviction must be a policy/v1 Eviction")
        name = (body.get("metadata") or {}).get("name")
        if name and name != t.name:
            raise bad_request("name in URL does not match name in Eviction object")
        opts = dict(body.get("deleteOptions") or {})
        if request.query.get("dryRun") == "All":
            opts["dryRun"] = ["All"]
        pod = self.registry.get(t.kind, t.namespace, t.name or "")  # 404 for a missing pod
        if pod["metadata"].get("deletionTimestamp") is None:
            await self.registry.delete(t.kind, t.namespace, t.name or "", opts)
        return respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        if t.sub:
            raise method_not_allowed()
        opts = await self._delete_options(request)
        return respond(await self.registry.delete(t.kind, t.namespace, t.name or "", opts))

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        match = self._matcher(request, t)
        items, _ = self.registry.list(t.kind, t.namespace)
        out = []
        for o in items:
            if not match(o):
                continue
            md = o["metadata"]
            try:
                out.append(await self.registry.delete(t.kind, md.get("namespace"), md["name"], dict(opts)))
            except ApiStatusError as e:
                if e.code != 404:
                    raise
        return respond({"kind": f"{t.kind.kind}List", "apiVersion": t.kind.api_version,
                        "metadata": {"resourceVersion": str(self.registry.store.revision())}, "items": out})


