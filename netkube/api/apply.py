"""Server-side apply and managedFields bookkeeping (structured-merge-diff's rules, in small).

Every write records who set what: an Update entry per (manager, apiVersion) takes the fields the
write changed from everyone else; an Apply entry per manager holds exactly the fields of its last
applied configuration. Applying merges the configuration into the live object (keyed lists by
their keys), refuses with 409 when a field another manager owns would change (unless force,
which takes the field), and removes the fields this manager applied before and no longer does,
when nobody else owns them.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any

from . import managedfields as mf
from . import strict
from .managedfields import FieldSet, Path
from .resources import Kind
from .status import ApiStatusError, bad_request

Obj = dict[str, Any]


@dataclass
class Entry:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    fields: FieldSet
    time: str = ""
    subresource: str = ""

    def same(self, other: Entry) -> bool:
        if (self.manager, self.operation, self.subresource) != (other.manager, other.operation, other.subresource):
            return False
        return self.operation == "Apply" or self.api_version == other.api_version

    def who(self) -> str:
        """printManager: how a conflict names this entry."""
        out = f'"{self.manager}"'
        if self.subresource:
            out += f' with subresource "{self.subresource}"'
        return f"{out} using {self.api_version}" if self.operation == "Update" else out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def decode_entries(raw: Any) -> list[Entry] | None:
    """metadata.managedFields as Entries; None if it is not a well-formed list."""
    if not isinstance(raw, list):
        return None
    out = []
    for e in raw:
        if not isinstance(e, dict) or not isinstance(e.get("manager", ""), str):
            return None
        op = e.get("operation")
        if op not in ("Apply", "Update"):
            return None
        out.append(Entry(e.get("manager", ""), op, str(e.get("apiVersion", "")), mf.decode(e.get("fieldsV1")),
                         str(e.get("time", "")), str(e.get("subresource", ""))))
    return out


def encode_entries(entries: list[Entry]) -> list[Obj]:
    # upstream's order: Apply before Update, then by time, manager, apiVersion, subresource
    keep = sorted((e for e in entries if e.fields),
                  key=lambda e: (e.operation, e.time, e.manager, e.api_version, e.subresource))
    out = []
    for e in keep:
        d: Obj = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                  "time": e.time or now(), "fieldsType": "FieldsV1", "fieldsV1": mf.encode(e.fields)}
        if e.subresource:
            d["subresource"] = e.subresource
        out.append(d)
    return out


def base_entries(live: Obj | None, sent: Obj | None, subresource: str | None) -> list[Entry]:
    """decodeLiveOrNew: a request's own managedFields win when well-formed and non-empty
    (`[{}]` resets them); otherwise the live object's are kept."""
    live_raw = ((live or {}).get("metadata") or {}).get("managedFields")
    if sent is not None and not subresource:
        raw = (sent.get("metadata") or {}).get("managedFields") if isinstance(sent.get("metadata"), dict) else None
        if raw == [{}]:
            return []
        got = decode_entries(raw)
        if got:
            return got
    return decode_entries(live_raw) or []


def _find(entries: list[Entry], want: Entry) -> Entry:
    for e in entries:
        if e.same(want):
            return e
    entries.append(want)
    return want


def record_update(entries: list[Entry], old: Obj, new: Obj, manager: str, api_version: str,
                  status_sub: bool, subresource: str | None = None) -> list[Obj]:
    """managedFields after a create/update/patch by manager: it takes the fields it changed."""
    touched, gone = mf.changed(old, new)
    touched = mf.strip(touched, status_sub, subresource)
    gone = mf.strip(gone, status_sub, subresource)
    mine = Entry(manager, "Update", api_version, set(), subresource=subresource or "")
    for e in entries:
        e.fields = mf.without_under(e.fields, gone)
        if not e.same(mine):
            e.fields -= touched
    if touched:
        me = _find(entries, mine)
        me.fields |= touched
        me.time = now()
    return encode_entries(entries)


# --- merging ----------------------------------------------------------------------------------
def _merge_into(target: Obj, applied: Obj, path: Path) -> None:
    for k, v in applied.items():
        p = (*path, ("f", k))
        cur = target.get(k)
        if v is None:
            target.pop(k, None)
        elif mf.is_atomic(path, k, v) or not isinstance(v, dict | list) or type(cur) is not type(v):
            if isinstance(v, dict):
                target[k] = {}
                _merge_into(target[k], v, p)
            else:
                target[k] = copy.deepcopy(v)
        elif isinstance(v, dict):
            _merge_into(cur, v, p)
        else:
            _merge_list(cur, v, p, k)


def _merge_list(cur: list[Any], applied: list[Any], p: Path, name: str) -> None:
    keys = mf.list_keys(p[:-1], name)
    if keys == ():
        cur.extend(copy.deepcopy(x) for x in applied if x not in cur)
        return
    assert keys is not None  # is_atomic sent unkeyed lists to the replace branch
    index = {mf.item_key(item, keys): i for i, item in enumerate(cur)}
    for item in applied:
        i = index.get(mf.item_key(item, keys))
        if i is None or not isinstance(cur[i], dict):
            cur.append(copy.deepcopy(item))
        else:
            _merge_into(cur[i], item, (*p, ("k", mf.item_key(item, keys))))


def merge(live: Obj, applied: Obj) -> Obj:
    out = copy.deepcopy(live)
    _merge_into(out, applied, ())
    return out


def remove_path(obj: Obj, p: Path) -> None:
    """Remove the field or list item at p; a map or list it leaves empty goes too (upstream's
    omitempty fields vanish once empty)."""
    parent = mf.value_at(obj, p[:-1]) if len(p) > 1 else obj
    kind, x = p[-1]
    if kind == "f":
        if not isinstance(parent, dict) or x not in parent:
            return
        parent.pop(x)
    elif isinstance(parent, list):
        hit = [j for j, item in enumerate(parent) if mf.elem_for(p[:-1], item, j) == (kind, x)]
        if not hit:
            return
        del parent[hit[0]]
    else:
        return
    if not parent and len(p) > 1 and p[-2][0] == "f":
        remove_path(obj, p[:-1])


def typed_path(obj: Any, path: tuple[str | int, ...]) -> str:
    """A strict.walk path (names and indexes) as structured-merge-diff prints it: keyed items."""
    fields: Path = ()
    cur = obj
    for x in path:
        if isinstance(x, int) and isinstance(cur, list) and fields:
            item = cur[x]
            fields = (*fields, mf.elem_for(fields, item, x))
            cur = item
        else:
            fields = (*fields, ("f", str(x)))
            cur = cur.get(str(x)) if isinstance(cur, dict) else None
    return mf.path_text(fields)


def patch_options_invalid(field: str, what: str, detail: str) -> ApiStatusError:
    """A 422 for the query of a PATCH, worded as upstream's PatchOptions validation."""
    reason = {"Required value": "FieldValueRequired", "Forbidden": "FieldValueForbidden"}[what]
    return ApiStatusError(422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: {field}: {what}: {detail}',
                          {"name": "", "group": "meta.k8s.io", "kind": "PatchOptions",
                           "causes": [{"reason": reason, "message": f"{what}: {detail}", "field": field}]})


def check_configuration(kind: Kind, ns: str | None, name: str, applied: Obj) -> None:
    """Refuse what structured-merge-diff cannot type: managedFields, undeclared fields, wrong types."""
    md = applied.get("metadata")
    if isinstance(md, dict) and md.get("managedFields") is not None:
        raise bad_request(f"managed fields must be nil but was {json.dumps(md['managedFields'])[:200]}")
    found = strict.walk(kind, applied, prune=False)
    if not found.mistyped and not found.unknown:
        return
    what = found.mistyped or "\n  ".join(f"{typed_path(applied, p)}: field not declared in schema"
                                         for p in found.unknown)
    if len(found.unknown) > 1 and not found.mistyped:
        what = "errors:\n  " + what
    # upstream answers this with a 500 (kubernetes#122480); a client's mistake is a 400 here
    raise bad_request(f"failed to create typed patch object ({ns or ''}/{name}; {kind.group}/{kind.version}, "
                      f"Kind={kind.kind}): {what}")


# --- apply ------------------------------------------------------------------------------------
def conflict_error(found: list[tuple[Entry, Path]]) -> ApiStatusError:
    causes = [{"type": "FieldManagerConflict", "message": f"conflict with {e.who()}", "field": mf.path_text(p)}
              for e, p in found]
    if len(found) == 1:
        e, p = found[0]
        msg = f"Apply failed with 1 conflict: conflict with {e.who()}: {mf.path_text(p)}"
    else:
        by: dict[str, list[str]] = {}
        for e, p in found:
            by.setdefault(e.who(), []).append(mf.path_text(p))
        lines = []
        for who in sorted(by):
            lines.append(f"conflicts with {who}:")
            lines += [f"- {t}" for t in by[who]]
        msg = f"Apply failed with {len(found)} conflicts: " + "\n".join(lines)
    return ApiStatusError(409, "Conflict", msg, {"causes": causes})


def applied_on_create(applied: Obj, manager: str, api_version: str, status_sub: bool) -> list[Obj]:
    """managedFields of an object an apply creates: the applier owns its configuration's fields."""
    fields = mf.strip(mf.field_set(applied), status_sub, None)
    return encode_entries([Entry(manager, "Apply", api_version, fields, now())])


def apply(live: Obj, applied: Obj, entries: list[Entry], manager: str, api_version: str, force: bool,
          status_sub: bool, subresource: str | None = None) -> tuple[Obj, list[Obj]]:
    """The object after manager applies `applied` to `live`, and its managedFields."""
    new_set = mf.strip(mf.field_set(applied), status_sub, subresource)
    merged = merge(live, applied)
    touched, gone = mf.changed(live, merged)
    touched |= gone
    me = Entry(manager, "Apply", api_version, set(), subresource=subresource or "")
    others = [e for e in entries if not e.same(me)]
    found = [(e, p) for e in others for p in sorted(e.fields & touched, key=mf.path_text)]
    if found and not force:
        raise conflict_error(found)
    for e, p in found:
        e.fields.discard(p)
    mine = _find(entries, me)
    owned_by_others: FieldSet = set().union(*(e.fields for e in others)) if others else set()
    dropped = [p for p in mine.fields - new_set
               if not mf.has_under(owned_by_others, p) and not mf.has_under(new_set, p)]
    for p in sorted(dropped, key=len):  # items before their fields: an item is found by its key
        remove_path(merged, p)
    if mine.fields != new_set or not mine.time:
        mine.time = now()
    mine.fields = new_set
    mine.api_version = api_version
    return merged, encode_entries(entries)
