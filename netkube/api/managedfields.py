"""Field sets as server-side apply tracks them: paths, FieldsV1 encoding, list kinds, diffs.

A path is a tuple of elements: ("f", name) a field, ("k", '{"name":"c"}') a keyed list item,
("v", '"x"') a set member, ("i", 3) an atomic-free list item by index. Which lists are keyed
follows the +listType/+listMapKey markers of k8s.io/api; unknown lists are atomic.
"""

from __future__ import annotations

import json
from typing import Any

Obj = dict[str, Any]
Elem = tuple[str, Any]
Path = tuple[Elem, ...]
FieldSet = set[Path]
MISSING = object()

# list field -> map keys (context-free ones); ports depend on where they are
MAP_LISTS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",), "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",), "hostAliases": ("ip",), "conditions": ("type",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"), "ownerReferences": ("uid",),
    "resourceClaims": ("name",), "schedulingGates": ("name",),
}
SET_LISTS = {"finalizers"}
ATOMIC_FIELDS = {"selector", "nodeSelector", "managedFields"}  # LabelSelector and mapType=atomic
KEY_DEFAULTS = {"protocol": "TCP"}
# fields a zero Go object already has (non-pointer structs, lists without omitempty): being
# filled in modifies them rather than adding them, so no '.' marker of their own
ZERO_PRESENT = {"metadata", "spec", "status", "template", "strategy", "containers"}
# never owned by anyone: identity and server-set metadata
STRIPPED: set[Path] = {(("f", "apiVersion"),), (("f", "kind"),)} | {
    (("f", "metadata"), ("f", f)) for f in ("name", "namespace", "uid", "resourceVersion", "generation",
                                             "creationTimestamp", "managedFields", "selfLink",
                                             "deletionTimestamp", "deletionGracePeriodSeconds")}


def list_keys(path: Path, name: str) -> tuple[str, ...] | None:
    """Map keys of the list at path (ending in field name); () for a set; None when atomic."""
    if name == "ports":
        fields = [e[1] for e in path if e[0] == "f"]
        if "containers" in fields or "initContainers" in fields or "ephemeralContainers" in fields:
            return ("containerPort", "protocol")
        if fields == ["spec"]:  # a Service's spec.ports
            return ("port", "protocol")
        return None
    if name in SET_LISTS:
        return ()
    return MAP_LISTS.get(name)


def item_key(item: Any, keys: tuple[str, ...]) -> str | None:
    """The k:{...} JSON of a keyed list item (key fields sorted, defaults filled), None if unkeyable."""
    if not isinstance(item, dict):
        return None
    out = {}
    for k in sorted(keys):
        v = item.get(k, KEY_DEFAULTS.get(k, MISSING))
        if v is MISSING:
            if len(keys) == 1:
                return None
            continue
        if isinstance(v, dict | list):
            return None
        out[k] = v
    return json.dumps(out, separators=(",", ":")) if out else None


def elem_for(list_path: Path, item: Any, index: int) -> Elem:
    """The path element of a list item; list_path ends with the list's own field."""
    keys = list_keys(list_path[:-1], list_path[-1][1]) if list_path else None
    if keys == ():
        return ("v", json.dumps(item, separators=(",", ":")))
    key = item_key(item, keys) if keys else None
    return ("k", key) if key is not None else ("i", index)


def is_atomic(path: Path, name: str, value: Any) -> bool:
    if name in ATOMIC_FIELDS:
        return True
    if isinstance(value, list):
        keys = list_keys(path, name)
        if keys is None:
            return True
        return keys != () and any(item_key(i, keys) is None for i in value)
    return False


def field_set(obj: Any, path: Path = ()) -> FieldSet:
    """The fields an applied configuration sets (upstream's ToFieldSet): leaves, atomic values,
    empty objects and every list item (its '.' marker)."""
    out: FieldSet = set()
    if not isinstance(obj, dict):
        return out
    for k, v in obj.items():
        p = (*path, ("f", k))
        if is_atomic(path, k, v) or not isinstance(v, dict | list):
            out.add(p)
        elif isinstance(v, dict):
            if not v:
                out.add(p)
            out |= field_set(v, p)
        else:
            for i, item in enumerate(v):
                ip = (*p, elem_for(p, item, i))
                out.add(ip)
                out |= field_set(item, ip)
    return out


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for i, (kind, x) in enumerate(path):
        if kind == "f":
            if not isinstance(cur, dict) or x not in cur:
                return MISSING
            cur = cur[x]
            continue
        if not isinstance(cur, list):
            return MISSING
        found = MISSING
        for j, item in enumerate(cur):
            if elem_for(path[:i], item, j) == (kind, x):
                found = item
                break
        if found is MISSING:
            return MISSING
        cur = found
    return cur


def changed(old: Any, new: Any, path: Path = ()) -> tuple[FieldSet, FieldSet]:
    """(paths added or modified in new, paths removed from old), compared leaf by leaf; an object
    or list item new in `new` contributes its own path too (its '.' marker)."""
    touched: FieldSet = set()
    gone: FieldSet = set()
    if not isinstance(new, dict):
        return touched, gone
    old = old if isinstance(old, dict) else {}
    for k in old:
        if k not in new:
            gone.add((*path, ("f", k)))
    for k, v in new.items():
        p = (*path, ("f", k))
        ov = old.get(k, MISSING)
        if is_atomic(path, k, v) or not isinstance(v, dict | list):
            if ov != v:
                touched.add(p)
            continue
        if isinstance(v, dict):
            if ov is MISSING and k not in ZERO_PRESENT:
                touched.add(p)
            t, g = changed(ov if isinstance(ov, dict) else {}, v, p)
            touched |= t
            gone |= g
            continue
        olds = {elem_for(p, it, i): it for i, it in enumerate(ov)} if isinstance(ov, list) else {}
        if (ov is MISSING and k not in ZERO_PRESENT) or (ov is not MISSING and ov is not None
                                                         and not isinstance(ov, list)):
            touched.add(p)
        news = {}
        for i, item in enumerate(v):
            e = elem_for(p, item, i)
            news[e] = item
            ip = (*p, e)
            if e not in olds:
                touched.add(ip)
            t, g = changed(olds.get(e, {}), item, ip)
            touched |= t
            gone |= g
        gone |= {(*p, e) for e in olds if e not in news}
    return touched, gone


def strip(s: FieldSet, status_sub: bool, subresource: str | None) -> FieldSet:
    """Drop identity fields; the main resource of a kind with a status subresource never owns
    status, and the status subresource owns nothing else (upstream's reset fields)."""
    out = {p for p in s if p not in STRIPPED and p != (("f", "metadata"),)}
    if subresource == "status":
        return {p for p in out if p[:1] == (("f", "status"),)}
    if status_sub:
        out = {p for p in out if p[:1] != (("f", "status"),)}
    return out


def has_under(s: FieldSet, path: Path) -> bool:
    n = len(path)
    return any(p[:n] == path for p in s)


def without_under(s: FieldSet, paths: FieldSet) -> FieldSet:
    return {p for p in s if not any(p[:len(q)] == q for q in paths)}


# --- FieldsV1 ---------------------------------------------------------------------------------
def _elem_text(e: Elem) -> str:
    return f"{e[0]}:{e[1]}"


def encode(s: FieldSet) -> Obj:
    root: Obj = {}
    parents = {q[:i] for q in s for i in range(1, len(q))}
    for p in s:
        node = root
        for e in p:
            node = node.setdefault(_elem_text(e), {})
        if p in parents:  # the path itself is owned, not only what lies under it
            node["."] = {}
    return _sorted(root)


def _sorted(node: Obj) -> Obj:
    return {k: _sorted(node[k]) for k in sorted(node)}


def decode(fields: Any, path: Path = ()) -> FieldSet:
    out: FieldSet = set()
    if not isinstance(fields, dict):
        return out
    for k, v in fields.items():
        if k == ".":
            if path:
                out.add(path)
            continue
        kind, _, rest = str(k).partition(":")
        if kind not in ("f", "k", "v", "i") or not _:
            continue
        e: Elem = (kind, int(rest)) if kind == "i" and rest.lstrip("-").isdigit() else (kind, rest)
        p = (*path, e)
        if isinstance(v, dict) and v:
            out |= decode(v, p)
        else:
            out.add(p)
    return out


def path_text(p: Path) -> str:
    """fieldpath.Path.String(): .spec.containers[name="c"].image, [containerPort=80,protocol="TCP"]."""
    out = ""
    for kind, x in p:
        if kind == "f":
            out += f".{x}"
        elif kind == "i":
            out += f"[{x}]"
        elif kind == "v":
            out += f"[={x}]"
        else:
            try:
                key = json.loads(x)
                out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
            except ValueError:
                out += f"[{x}]"
    return out
