"""Minimal OpenAPI v3 documents: enough for kubectl to see server-side field validation support.

kubectl (>= 1.27) asks /openapi/v3/<gv> whether each kind's PATCH operation takes the
`fieldValidation` query parameter; if it does, kubectl skips client-side schema validation and
sends ?fieldValidation=Strict. With no schemas, kubectl builds apply patches from its built-in
types (its own fallback), which know the strategic-merge keys of every kind served here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .discovery import GIT_VERSION
from .resources import GROUP_VERSIONS, kinds_in

Obj = dict[str, Any]


def _gv_path(group: str, ver: str) -> str:
    return f"apis/{group}/{ver}" if group else f"api/{ver}"


def gv_document(group: str, ver: str) -> Obj | None:
    kinds = kinds_in(group, ver)
    if not kinds:
        return None
    paths: Obj = {}
    base = "/" + _gv_path(group, ver)
    for k in kinds:
        gvk = {"group": group, "version": ver, "kind": k.kind}
        item = f"{base}/namespaces/{{namespace}}/{k.plural}/{{name}}" if k.namespaced else f"{base}/{k.plural}/{{name}}"
        params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                  for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
        op = {"operationId": f"patch{k.kind}", "parameters": params,
              "responses": {"200": {"description": "OK"}},
              "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk}
        paths[item] = {"patch": op}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths, "components": {"schemas": {}}}


def root() -> Obj:
    out: Obj = {}
    for group, ver in GROUP_VERSIONS:
        doc = json.dumps(gv_document(group, ver), sort_keys=True).encode()
        digest = hashlib.sha512(doc).hexdigest()[:64].upper()
        out[_gv_path(group, ver)] = {"serverRelativeURL": f"/openapi/v3/{_gv_path(group, ver)}?hash={digest}"}
    return {"paths": out}
