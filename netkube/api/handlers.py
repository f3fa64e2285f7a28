"""HTTP handlers for resource paths: parse the URL, decode the body, call the Registry, encode."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from . import patch as patches
from . import protobuf
from .podproxy import PodProxy
from .registry import Registry
from .resources import BY_PATH, Kind
from .selectors import parse_fields, parse_labels
from .status import ApiStatusError, bad_request, method_not_allowed, too_large
from .store import Watch
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
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as e:
        # upstream: "couldn't get version/kind; json parse error: ..." with 400 BadRequest
        raise bad_request(f"couldn't get version/kind; json parse error: {str(e).splitlines()[0]}") from None


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def respond(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(obj, separators=(",", ":")), content_type="application/json")


class ResourceHandlers:
    def __init__(self, registry: Registry, watches: set[Watch]) -> None:
        self.registry = registry
        self.watches = watches
        self.pods = PodProxy(registry, registry.cluster)

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
        if t.sub == "eviction":
            if m != "POST":
                raise method_not_allowed()
            return await self.evict(request, t)
        if m == "GET":
            return self.get(request, t)
        if m == "PUT":
            return await self.put(request, t)
        if m == "PATCH":
            return await self.patch(request, t)
        if m == "DELETE":
            return await self.delete(request, t)
        if m == "POST" and t.sub == "binding":
            body = await read_body(request)
            return respond(self.registry.bind(t.namespace or "", t.name, body), 201)
        raise method_not_allowed()

    async def _proxied(self, request: web.Request, t: Target) -> web.StreamResponse:
        """Subresources served by the pod's kubelet (GET log; GET or POST exec/attach)."""
        ns, name = t.namespace or "", t.name or ""
        if t.sub == "log" and request.method == "GET":
            return await self.pods.logs(request, ns, name)
        if t.sub in ("exec", "attach") and request.method in ("GET", "POST"):
            return await self.pods.stream(request, ns, name, t.sub)
        if t.sub == "portforward" and request.method in ("GET", "POST"):
            self.registry.get(t.kind, ns, name)  # a missing pod is still a 404
            # kubectl 1.32 tunnels SPDY frames inside the WebSocket for port-forward; no SPDY here yet.
            raise bad_request("port-forward is not implemented by netkube yet (kubectl tunnels SPDY/3.1 "
                              "over WebSocket for it); use `netkube exec` or a Service instead")
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
        if not wants_table(request) and not q.get("labelSelector") and not q.get("fieldSelector"):
            fast = self._list_json(t)
            if fast is not None:
                return fast
        items, rev = self.registry.list(t.kind, t.namespace)
        items = [o for o in items if match(o)]
        if wants_table(request):
            return respond(table(t.kind.kind, items, str(rev), include))
        return respond({"kind": f"{t.kind.kind}List", "apiVersion": t.kind.api_version,
                        "metadata": {"resourceVersion": str(rev)}, "items": items})

    def _list_json(self, t: Target) -> web.Response | None:
        """An unfiltered LIST from the store's JSON texts, spliced without decoding each object
        (decode + re-encode of 1000 pods was most of a LIST's time); None if the store cannot."""
        list_json = getattr(self.registry.store, "list_json", None)
        got = list_json(t.kind.prefix(t.namespace)) if list_json is not None else None
        if got is None:
            return None
        texts, rev = got
        head = json.dumps({"kind": f"{t.kind.kind}List", "apiVersion": t.kind.api_version,
                           "metadata": {"resourceVersion": str(rev)}}, separators=(",", ":"))
        body = f'{head[:-1]},"items":[{",".join(texts)}]}}'
        return web.Response(text=body, content_type="application/json")

    # --- writes -----------------------------------------------------------------------------
    def _dry(self, request: web.Request) -> bool:
        return request.query.get("dryRun") == "All"

    async def create(self, request: web.Request, t: Target) -> web.Response:
        body = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object describing one resource")
        self._check_type(body, t.kind)
        return respond(self.registry.create(t.kind, t.namespace, body, self._dry(request)), 201)

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
            return respond(self.registry.set_scale(t.kind, t.namespace or "", name, body))
        if t.sub in ("finalize",):
            return respond(self.registry.get(t.kind, t.namespace, name))
        self._check_type(body, t.kind)
        return respond(self.registry.update(t.kind, t.namespace, name, body, t.sub, self._dry(request)))

    async def patch(self, request: web.Request, t: Target) -> web.Response:
        body = await read_body(request)
        ctype = request.content_type
        name = t.name or ""
        reg = self.registry
        if ctype == "application/apply-patch+yaml":
            if not isinstance(body, dict):
                raise bad_request("an apply patch must be one object")
            try:
                current = reg.get(t.kind, t.namespace, name)
            except ApiStatusError as e:
                if e.code != 404 or t.sub:
                    raise
                body.setdefault("metadata", {})["name"] = name
                return respond(reg.create(t.kind, t.namespace, body, self._dry(request)), 201)
            # server-side apply, approximated: the applied fields win, others are kept
            base = reg.scale_of(t.kind, current) if t.sub == "scale" else current
            new = patches.strategic_merge(base, body)
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
        if not isinstance(new, dict):
            raise bad_request("the patch did not produce an object")
        if t.sub == "scale":
            return respond(reg.set_scale(t.kind, t.namespace or "", name, new))
        # a patch carrying metadata.resourceVersion is a precondition, otherwise unconditional
        patched_rv = new.get("metadata", {}).get("resourceVersion")
        if patched_rv == current["metadata"].get("resourceVersion"):
            new["metadata"].pop("resourceVersion", None)
        return respond(reg.update(t.kind, t.namespace, name, new, t.sub, self._dry(request)))

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
            self.registry.delete(t.kind, t.namespace, t.name or "", opts)
        return respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        if t.sub:
            raise method_not_allowed()
        opts = await self._delete_options(request)
        return respond(self.registry.delete(t.kind, t.namespace, t.name or "", opts))

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
                out.append(self.registry.delete(t.kind, md.get("namespace"), md["name"], dict(opts)))
            except ApiStatusError as e:
                if e.code != 404:
                    raise
        return respond({"kind": f"{t.kind.kind}List", "apiVersion": t.kind.api_version,
                        "metadata": {"resourceVersion": str(self.registry.store.revision())}, "items": out})


