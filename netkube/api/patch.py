"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch for built-in kinds."""

from __future__ import annotations

import copy
from typing import Any

from .status import ApiStatusError, bad_request

Obj = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"json patch path {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise bad_request(f"json patch: index {p!r} out of range") from None
        elif isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            raise bad_request(f"json patch: path element {p!r} does not exist")
    return cur, parts[-1]


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent, last = _parent(doc, parts)
    try:
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    except (ValueError, IndexError, KeyError, TypeError):
        raise bad_request(f"json patch: path {path!r} does not exist") from None


def _remove(doc: Any, path: str) -> Any:
    parent, last = _parent(doc, _pointer(path))
    try:
        return parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)
    except (ValueError, IndexError, KeyError, TypeError):
        raise bad_request(f"json patch: unable to remove nonexistent key {path!r}") from None


def _add(doc: Any, path: str, value: Any, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts)
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
            return doc
        try:
            i = int(last)
        except ValueError:
            raise bad_request(f"json patch: bad list index {last!r}") from None
        if not 0 <= i <= len(parent) - (1 if replace else 0):
            raise bad_request(f"json patch: index {i} out of range")
        if replace:
            parent[i] = value
        else:
            parent.insert(i, value)
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise bad_request(f"json patch: replace of missing key {path!r}")
        parent[last] = value
    else:
        raise bad_request(f"json patch: cannot add to {path!r}")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations such as [{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":2}]")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"json patch operation {op!r} needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "replace":
            doc = _add(doc, path, copy.deepcopy(op.get("value")), replace=True)
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "move":
            value = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op.get("from", ""))))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ApiStatusError(422, "Invalid", f"json patch test operation failed at {path!r}")
        else:
            raise bad_request(f"json patch: unknown op {kind!r}")
    return doc


# patchMergeKey per list field, as in the Go API types' struct tags
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "volumes": "name", "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "imagePullSecrets": "name", "hostAliases": "ip", "topologySpreadConstraints": "topologyKey",
    "conditions": "type", "ownerReferences": "uid", "resourceClaims": "name",
    "ports": None,  # containerPort in containers, port in services: chosen by content
    "finalizers": "", "tolerations": None,
}
REPLACE_LISTS = {"tolerations"}


def _ports_key(items: list[Any]) -> str:
    return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"


def strategic_merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            out[field] = [x for x in out.get(field) or [] if x not in (v or [])]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and k in MERGE_KEYS and k not in REPLACE_LISTS:
            out[k] = _merge_list(out.get(k) or [], v, k)
        elif isinstance(v, dict):
            merged = strategic_merge(out.get(k), v)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        else:
            out[k] = copy.deepcopy(v)
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(current: list[Any], patch: list[Any], field: str) -> list[Any]:
    key = MERGE_KEYS[field]
    if key == "":  # primitive list with merge strategy (finalizers): union in order
        out = list(current)
        out.extend(x for x in patch if x not in out)
        return out
    if key is None:
        key = _ports_key(current + patch)
    if not all(isinstance(i, dict) and key in i for i in patch if not (isinstance(i, dict) and "$patch" in i)):
        return copy.deepcopy(patch)  # no merge key present: replace, as upstream does for atomic lists
    out = copy.deepcopy(current)
    for item in patch:
        idx = next((i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge({}, item))
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out
