"""Label and field selectors in the query-string syntax kubectl sends (labelSelector, fieldSelector)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from netkube.labels import SelectorError, parse_label_selector, selector_matches, selector_to_string

from .status import bad_request

Obj = dict[str, Any]
Matcher = Callable[[Obj], bool]

def parse_labels(expr: str | None) -> Matcher:
    try:
        reqs = parse_label_selector(expr)
    except SelectorError:
        part = expr or ""
        raise bad_request(f"unable to parse requirement: found '{part.strip()}', expected: valid label selector") from None
    return lambda labels: all(r.matches(labels) for r in reqs)


def label_selector_string(sel: Obj | None) -> str:
    """metav1.LabelSelector -> 'a=b,c in (d)' as kubectl prints SELECTOR columns."""
    return (selector_to_string(sel) if sel else "") or "<none>"


def match_label_selector(sel: Obj, labels: dict[str, str]) -> bool:
    """Evaluate a metav1.LabelSelector object against labels."""
    return selector_matches(sel, labels)


# field labels each kind supports, as upstream's GetAttrs functions (others answer 400)
COMMON_FIELDS = {"metadata.name", "metadata.namespace"}
FIELDS: dict[str, set[str]] = {
    "pods": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"},
    "events": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
    "nodes": {"spec.unschedulable"},
    "namespaces": {"status.phase"},
    "secrets": {"type"},
    "replicasets": {"status.replicas"},
}


def _field_value(obj: Obj, path: str) -> str:
    if path == "source":
        return str((obj.get("source") or {}).get("component", ""))
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def parse_fields(expr: str | None, plural: str) -> Matcher:
    if not expr or not expr.strip():
        return lambda obj: True
    allowed = COMMON_FIELDS | FIELDS.get(plural, set())
    reqs: list[Matcher] = []
    for part in expr.split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise bad_request(f"invalid field selector: {part!r}: use key=value, key==value or key!=value")
        key, op, val = m.groups()
        if key not in allowed:
            raise bad_request(f'field label not supported: {key}')
        if op == "!=":
            reqs.append(lambda o, k=key, v=val: _field_value(o, k) != v)
        else:
            reqs.append(lambda o, k=key, v=val: _field_value(o, k) == v)
    return lambda obj: all(r(obj) for r in reqs)
