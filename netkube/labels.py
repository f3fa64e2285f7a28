"""Label and field selectors: the query-string form and metav1.LabelSelector objects, for every component."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


class SelectorError(ValueError):
    """A selector string the apiserver would reject (400 BadRequest)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return has and value == self.values[0]
        if self.op == "!=":
            return not has or value != self.values[0]
        if self.op == "in":
            return has and value in self.values
        if self.op == "notin":
            return not has or value not in self.values
        if self.op == "exists":
            return has
        return not has  # "!"


_SET_RE = re.compile(r"^\s*([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses (set-based values contain commas)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    reqs = []
    for part in _split_top(text):
        m = _SET_RE.match(part)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(2), values))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(Requirement(k.strip(), "!=", (v.strip(),)))
        elif "==" in part or "=" in part:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            reqs.append(Requirement(k.strip(), "=", (v.strip(),)))
        elif part.startswith("!"):
            reqs.append(Requirement(part[1:].strip(), "!"))
        elif re.fullmatch(r"[A-Za-z0-9._/-]+", part):
            reqs.append(Requirement(part, "exists"))
        else:
            raise SelectorError(f"unable to parse requirement {part!r}: use key=value, key!=value, key in (a,b)")
    return reqs


def labels_match(text: str | None, labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in parse_label_selector(text))


def _field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    return "" if cur is None else str(cur)


def fields_match(text: str | None, obj: Obj) -> bool:
    """Field selectors as the apiserver supports them: =, ==, != on dotted paths, comma-ANDed."""
    if not text:
        return True
    for part in _split_top(text):
        if "!=" in part:
            k, v = part.split("!=", 1)
            if _field_value(obj, k.strip()) == v.strip():
                return False
        elif "=" in part:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            if _field_value(obj, k.strip()) != v.strip():
                return False
        else:
            raise SelectorError(f"invalid field selector {part!r}: use field=value or field!=value")
    return True


def selector_matches(selector: Obj | None, labels: dict[str, str] | None) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions). An empty selector matches all."""
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(expr.get("operator", ""))
        if op is None:
            return False
        if not Requirement(expr["key"], op, tuple(expr.get("values") or ())).matches(labels):
            return False
    return True


def selector_to_string(selector: Obj) -> str:
    """Render a LabelSelector in query-string form (as kubectl and controllers send it)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, vals = expr["operator"], expr["key"], ",".join(expr.get("values") or [])
        parts.append({"In": f"{key} in ({vals})", "NotIn": f"{key} notin ({vals})",
                      "Exists": key, "DoesNotExist": f"!{key}"}[op])
    return ",".join(parts)
