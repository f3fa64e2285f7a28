"""meta.k8s.io/v1 Table rendering: kubectl's columns, computed server-side as upstream printers do."""

from __future__ import annotations

from typing import Any

from .columns import PRINTERS, Printer, default_printer

Obj = dict[str, Any]


def _partial(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(kind: str, objs: list[Obj], rv: str, include: str = "Metadata", headers: bool = True) -> Obj:
    printer: Printer = PRINTERS.get(kind, default_printer)
    rows = []
    for o in objs:
        row: Obj = {"cells": printer.cells(o)}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = _partial(o)
        rows.append(row)
    out: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}, "rows": rows}
    out["columnDefinitions"] = printer.columns() if headers else []
    return out
