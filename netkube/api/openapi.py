"""Minimal OpenAPI v3 documents: enough for kubectl to see server-side field validation support
and for `kubectl explain` to describe the main fields (schemas in openapi_schemas.py).

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
from .openapi_schemas import components
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
            "paths": paths, "components": {"schemas": components(group, ver, [k.kind for k in kinds])}}


def _pb_str(field: int, value: str) -> bytes:
    data = value.encode()
    assert len(data) < 128
    return bytes([field << 3 | 2, len(data)]) + data


def v2_protobuf() -> bytes:
    """GET /openapi/v2 (Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf).

    A gnostic openapi_v2.Document with no definitions: kubectl's client-side validation (used for
    `kind: List` files, whose GVK has no server-side fieldValidation path) then finds no schema and
    skips validation, as upstream does for unknown kinds, and apply patches still come from
    kubectl's built-in types (no PATCH consumes either).
    """
    info = _pb_str(1, "Kubernetes") + _pb_str(2, GIT_VERSION)  # Info{title=1, version=2}
    return _pb_str(1, "2.0") + bytes([2 << 3 | 2, len(info)]) + info  # Document{swagger=1, info=2}


def v2_json() -> Obj:
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": GIT_VERSION}, "paths": {}, "definitions": {}}


def root() -> Obj:
    out: Obj = {}
    for group, ver in GROUP_VERSIONS:
        doc = json.dumps(gv_document(group, ver), sort_keys=True).encode()
        digest = hashlib.sha512(doc).hexdigest()[:64].upper()
        out[_gv_path(group, ver)] = {"serverRelativeURL": f"/openapi/v3/{_gv_path(group, ver)}?hash={digest}"}
    return {"paths": out}
