"""A table printer: column definitions plus a function from object to cells."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .age import age

Obj = dict[str, Any]


@dataclass(frozen=True)
class Col:
    name: str
    type: str = "string"
    priority: int = 0
    format: str = ""

    def definition(self) -> Obj:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.name, "priority": self.priority}


@dataclass(frozen=True)
class Printer:
    cols: tuple[Col, ...]
    fn: Callable[[Obj], list[Any]]

    def columns(self) -> list[Obj]:
        return [c.definition() for c in self.cols]

    def cells(self, obj: Obj) -> list[Any]:
        try:
            return self.fn(obj)
        except Exception:  # a malformed stored object must not break listing the others
            md = obj.get("metadata", {})
            return [md.get("name", "")] + ["<unknown>"] * (len(self.cols) - 1)


NAME = Col("Name", format="name")
AGE = Col("Age")


def name(o: Obj) -> str:
    return str(o.get("metadata", {}).get("name", ""))


def created(o: Obj) -> str:
    return age(o.get("metadata", {}).get("creationTimestamp"))


def or_none(v: Any) -> str:
    return str(v) if v not in (None, "", []) else "<none>"


def more(items: list[str], total: int, empty: str = "<none>") -> str:
    if not items:
        return empty
    out = ",".join(items)
    return out + (f" + {total - len(items)} more..." if total > len(items) else "")


default_printer = Printer((NAME, AGE), lambda o: [name(o), created(o)])
