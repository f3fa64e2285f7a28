"""Field validation (?fieldValidation=Strict|Warn|Ignore) against netkube's own OpenAPI schemas.

Upstream decodes a body into Go structs: unknown fields are dropped (Ignore), dropped with a
`Warning: 299` header each (Warn, the default) or refused with 400 BadRequest (Strict); a JSON
value of the wrong type is refused in every mode. Duplicate keys count like unknown fields. The
schemas (openapi_schemas.py + openapi_fields.py) say which fields exist: an object schema with
properties is closed, one with additionalProperties is a map, one with neither is opaque, and
x-kubernetes-preserve-unknown-fields keeps what it does not declare.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from .openapi_schemas import components, schema_name
from .resources import Kind
from .status import ApiStatusError, bad_request

Obj = dict[str, Any]
Path = tuple[str | int, ...]
DIRECTIVES = ("Ignore", "Warn", "Strict")
INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class Dups(dict):  # type: ignore[type-arg]
    """A decoded JSON/YAML object that had repeated keys (the last value wins, as upstream)."""

    dups: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) == len(pairs):
        return d
    out = Dups(d)
    seen: set[str] = set()
    out.dups = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    return out


def loads_json(raw: bytes | str) -> Any:
    return json.loads(raw, object_pairs_hook=_pairs)


class _DupLoader(yaml.SafeLoader):
    """SafeLoader that remembers repeated mapping keys with their line (for apply patches)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        out = super().construct_mapping(node, deep=deep)
        seen: set[Any] = set()
        dups = []
        for k_node, _ in node.value:
            k = self.construct_object(k_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(k, str) and k in seen:
                dups.append(f'line {k_node.start_mark.line + 1}: key "{k}" already set in map')
            seen.add(k)
        if dups:
            marked = Dups(out)
            marked.dups = dups
            return marked
        return out


_DupLoader.add_constructor("tag:yaml.org,2002:map", _DupLoader.construct_mapping)  # type: ignore[arg-type]


def load_yaml(raw: bytes | str) -> Any:
    return yaml.load(raw, Loader=_DupLoader)  # noqa: S506 - a SafeLoader subclass


def duplicate_fields(value: Any, path: str = "") -> list[str]:
    """`duplicate field "spec.replicas"` texts for every repeated key, in document order."""
    out: list[str] = []
    if isinstance(value, dict):
        for k in getattr(value, "dups", []):
            out.append(f'duplicate field "{path}{k}"')
        for k, v in value.items():
            out += duplicate_fields(v, f"{path}{k}.")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += duplicate_fields(v, f"{path[:-1]}[{i}]." if path else f"[{i}].")
    return out


def yaml_duplicates(value: Any) -> list[str]:
    out: list[str] = []
    if isinstance(value, dict):
        out += getattr(value, "dups", [])
        for v in value.values():
            out += yaml_duplicates(v)
    elif isinstance(value, list):
        for v in value:
            out += yaml_duplicates(v)
    return out


def directive(query: Any) -> str:
    got = query.get("fieldValidation", "") or "Warn"
    if got not in DIRECTIVES:
        raise bad_request(f'fieldValidation: Unsupported value: "{got}": supported values: "Ignore", "Strict", "Warn"')
    return got


# --- the schema walk --------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _kind_schemas(group: str, version: str, kind: str) -> tuple[Obj, Obj]:
    comps = components(group, version, [kind])
    return comps[schema_name(group, kind)], comps


@dataclass
class Findings:
    unknown: list[Path] = field(default_factory=list)
    mistyped: str | None = None  # the first type error, worded as Go's encoding/json


def _resolve(node: Obj, comps: Obj) -> tuple[Obj, str | None]:
    """Follow allOf/$ref; returns the schema and its Go type name when it is a named one."""
    for _ in range(8):
        ref = node.get("$ref")
        if ref is None and isinstance(node.get("allOf"), list) and node["allOf"]:
            ref = node["allOf"][0].get("$ref")
        if not isinstance(ref, str):
            return node, None
        name = ref.rsplit("/", 1)[-1]
        target = comps.get(name)
        if target is None:
            return {}, None
        if "$ref" not in target and "allOf" not in target:
            return target, name
        node = target
    return node, None


def json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def _go_type(node: Obj, name: str | None, comps: Obj) -> str:
    if name is not None:
        return "intstr.IntOrString" if name.endswith("IntOrString") else f"v1.{name.rsplit('.', 1)[-1]}"
    typ = node.get("type")
    if typ == "integer":
        return str(node.get("format", "int64"))
    if typ == "boolean":
        return "bool"
    if typ == "array":
        item, iname = _resolve(node.get("items") or {}, comps)
        return "[]" + _go_type(item, iname, comps)
    if typ == "object":
        return "map[string]string" if "additionalProperties" in node else "struct"
    return str(typ or "interface {}")


def _type_ok(node: Obj, value: Any) -> bool:
    typ = node.get("type")
    if value is None or typ is None:
        return True
    if node.get("format") == "int-or-string":
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    if typ == "object":
        return isinstance(value, dict)
    if typ == "array":
        return isinstance(value, list)
    if typ == "string":
        return isinstance(value, str)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        lo, hi = INT_RANGE.get(node.get("format", "int64"), INT_RANGE["int64"])
        return lo <= value <= hi
    if typ == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


class _Walker:
    def __init__(self, comps: Obj, prune: bool) -> None:
        self.comps, self.prune, self.found = comps, prune, Findings()

    def walk(self, node: Obj, value: Any, path: Path, struct: str) -> None:
        node, name = _resolve(node, self.comps)
        if not _type_ok(node, value):
            if self.found.mistyped is None:
                what = json_type(value)
                if what == "number" and node.get("type") == "integer":
                    what = f"number {value}"
                gopath = ".".join(p for p in path if isinstance(p, str))
                self.found.mistyped = (f"json: cannot unmarshal {what} into Go struct field {struct}.{gopath} "
                                       f"of type {_go_type(node, name, self.comps)}")
            return
        inner = name.rsplit(".", 1)[-1] if name else struct
        if isinstance(value, list):
            items = node.get("items")
            if isinstance(items, dict):
                for i, v in enumerate(value):
                    self.walk(items, v, (*path, i), inner)
            return
        if not isinstance(value, dict) or node.get("type") != "object":
            return
        props, extra = node.get("properties"), node.get("additionalProperties")
        keep = bool(node.get("x-kubernetes-preserve-unknown-fields"))
        if isinstance(props, dict):
            for k in list(value):
                if k in props:
                    self.walk(props[k], value[k], (*path, k), inner)
                elif not keep:
                    self.found.unknown.append((*path, k))
                    if self.prune:
                        del value[k]
        elif isinstance(extra, dict):
            for k, v in value.items():
                self.walk(extra, v, (*path, k), inner)


def walk(kind: Kind, obj: Any, prune: bool) -> Findings:
    """Check obj against kind's schema; with prune, unknown fields are removed from obj in place."""
    root, comps = _kind_schemas(kind.group, kind.version, kind.kind)
    w = _Walker(comps, prune)
    w.walk(root, obj, (), kind.kind)
    return w.found


def dotted(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# --- what the handlers call -------------------------------------------------------------------
def check_object(kind: Kind, body: Obj, mode: str) -> list[str]:
    """A create/update body: raise as upstream's decoder would, prune unknown fields, return warnings."""
    found = walk(kind, body, prune=True)
    prefix = f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
    if found.mistyped:
        raise bad_request(prefix + found.mistyped)
    if mode == "Ignore":
        return []
    errs = duplicate_fields(body) + [f'unknown field "{dotted(p)}"' for p in found.unknown]
    if errs and mode == "Strict":
        raise bad_request(prefix + "strict decoding error: " + ", ".join(errs))
    return errs


def check_patched(kind: Kind, patch: Any, patched: Obj, mode: str) -> list[str]:
    """A json/merge/strategic patch: duplicates come from the patch, unknown fields from the result."""
    found = walk(kind, patched, prune=True)
    if found.mistyped:
        # upstream: errors.NewInvalid(schema.GroupKind{}, "", field.Invalid("patch", ...))
        raise ApiStatusError(422, "Invalid", f' "" is invalid: patch: Invalid value: '
                             f'"{json.dumps(patch)[:200]}": {found.mistyped}',
                             {"name": "", "group": "", "kind": "",
                              "causes": [{"reason": "FieldValueInvalid", "field": "patch", "message": found.mistyped}]})
    if mode == "Ignore":
        return []
    errs = (duplicate_fields(patch) if isinstance(patch, dict) else []) + \
        [f'unknown field "{dotted(p)}"' for p in found.unknown]
    if errs and mode == "Strict":
        raise bad_request("strict decoding error: " + ", ".join(errs))
    return errs


def check_apply_yaml(patch: Obj, mode: str) -> list[str]:
    """Repeated keys in an apply patch: upstream re-reads the YAML strictly after applying."""
    dups = yaml_duplicates(patch)
    if not dups or mode == "Ignore":
        return []
    text = "error converting YAML to JSON: yaml: unmarshal errors:\n  " + "\n  ".join(dups)
    if mode == "Strict":
        raise bad_request(f"error strict decoding YAML: {text}")
    return [text]


def warning_headers(warnings: list[str]) -> list[tuple[str, str]]:
    """One `Warning: 299 - "<text>"` header per warning (RFC 7234 warn-text, quotes escaped)."""
    out = []
    for w in warnings:
        text = w.replace("\\", "\\\\").replace('"', '\\"')
        # a header carries printable ASCII only: field names from a body may hold anything
        text = "".join(c if " " <= c <= "~" else f"\\u{ord(c):04x}" for c in text)
        out.append(("Warning", f'299 - "{text}"'))
    return out
