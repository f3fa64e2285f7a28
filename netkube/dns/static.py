"""Fill an index from a file of objects (a kubectl `List`) instead of an apiserver: benches and tests."""

from __future__ import annotations

import json

import yaml

from netkube.dns.index import Index
from netkube.dns.model import trim_service, trim_slice
from netkube.dns.watch import pod_ips


def load_objects(index: Index, objects: list[dict]) -> Index:
    """Namespace, Service, EndpointSlice and Pod objects into `index`, which is then marked synced."""
    for obj in objects:
        kind, md = obj.get("kind"), obj.get("metadata") or {}
        if kind == "Namespace":
            index.set_namespace(md["name"])
        elif kind == "Service":
            index.set_service(trim_service(obj))
        elif kind == "EndpointSlice":
            sl = trim_slice(obj)
            if sl is not None:
                index.set_slice(sl)
        elif kind == "Pod":
            index.set_pod(md.get("namespace", "default"), md["name"], pod_ips(obj))
    index.mark_synced()
    return index


def load_file(path: str, index: Index | None = None) -> Index:
    """A JSON or YAML file holding a List (`items`) or a plain list of objects."""
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = yaml.safe_load(text)
    items = data.get("items", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a List with items or a list of objects")
    return load_objects(index or Index(), items)
