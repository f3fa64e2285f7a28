"""Container env as upstream's makeEnvironmentVariables: envFrom, valueFrom, $(VAR) expansion."""

from __future__ import annotations

import base64
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from netkube.client import CONFIGMAPS, ApiError, Resource

Obj = dict[str, Any]
SECRETS = Resource("v1", "secrets", "Secret")
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": 1e-3}


class EnvError(Exception):
    """The container cannot start: CreateContainerConfigError with this message, as upstream."""


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined variables are replaced, $$ escapes, the rest stays."""
    def sub(m: re.Match[str]) -> str:
        return "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, value)


def quantity(q: Any) -> float:
    """A resource.Quantity such as 500m, 128Mi, 1.5, 2G as a number of base units."""
    s = str(q).strip()
    for suf in sorted(_SUFFIX, key=len, reverse=True):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * _SUFFIX[suf]
    return float(s)


@dataclass
class Sources:
    """ConfigMaps and Secrets of the pod's namespace the container refers to (None = not found)."""

    configmaps: dict[str, Obj | None] = field(default_factory=dict)
    secrets: dict[str, Obj | None] = field(default_factory=dict)


def referenced(container: Obj) -> tuple[set[str], set[str]]:
    cms, secs = set(), set()
    for src in container.get("envFrom") or []:
        if "configMapRef" in src:
            cms.add(src["configMapRef"]["name"])
        if "secretRef" in src:
            secs.add(src["secretRef"]["name"])
    for e in container.get("env") or []:
        vf = e.get("valueFrom") or {}
        if "configMapKeyRef" in vf:
            cms.add(vf["configMapKeyRef"]["name"])
        if "secretKeyRef" in vf:
            secs.add(vf["secretKeyRef"]["name"])
    return cms, secs


async def fetch(client: Any, namespace: str, container: Obj) -> Sources:
    cms, secs = referenced(container)
    out = Sources()
    for res, names, into in ((CONFIGMAPS, cms, out.configmaps), (SECRETS, secs, out.secrets)):
        for n in sorted(names):
            try:
                into[n] = await client.get(res, n, namespace)
            except ApiError as e:
                if e.code != 404:
                    raise
                into[n] = None
    return out


def _data(obj: Obj | None, secret: bool) -> dict[str, str]:
    if obj is None:
        return {}
    if secret:
        out = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
        out.update(obj.get("stringData") or {})
        return out
    return dict(obj.get("data") or {})


def _key_ref(ref: Obj, objs: dict[str, Obj | None], secret: bool) -> str | None:
    kind = "secret" if secret else "configmap"
    name, key, optional = ref["name"], ref["key"], bool(ref.get("optional"))
    obj = objs.get(name)
    if obj is None:
        if optional:
            return None
        raise EnvError(f'{kind} "{name}" not found')
    data = _data(obj, secret)
    if key not in data:
        if optional:
            return None
        raise EnvError(f"couldn't find key {key} in {'Secret' if secret else 'ConfigMap'} {obj['metadata'].get('namespace')}/{name}")
    return data[key]


_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_ref(path: str, pod: Obj, host_ip: str, pod_ip: str) -> str:
    md, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": host_ip, "status.hostIPs": host_ip, "status.podIP": pod_ip, "status.podIPs": pod_ip,
    }
    if path in simple:
        return str(simple[path])
    m = _FIELD.match(path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = md.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise EnvError(f"unsupported fieldRef fieldPath: {path}")


def node_allocatable() -> dict[str, float]:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cpu": float(os.cpu_count() or 1), "memory": float(pages), "ephemeral-storage": 0.0}


def resource_ref(ref: Obj, container: Obj, alloc: dict[str, float]) -> str:
    """Upstream ExtractContainerResourceValue: limits default to node allocatable, ceil(value/divisor)."""
    res = ref["resource"]
    section, _, name = res.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(section) or {}).get(name)
    if raw is None and section == "requests":
        raw = (resources.get("limits") or {}).get(name)
    value = quantity(raw) if raw is not None else alloc.get(name, 0.0)
    divisor = quantity(ref.get("divisor") or "1")
    return str(math.ceil(value / divisor - 1e-9)) if divisor else "0"


def resolve(pod: Obj, container: Obj, service_env: dict[str, str], sources: Sources, host_ip: str, pod_ip: str,
            alloc: dict[str, float] | None = None) -> dict[str, str]:
    """The container's variables in upstream order: envFrom, then env (each expanded with what is
    defined so far plus the service variables), then the service variables not overridden."""
    out: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        ref, secret = (src["secretRef"], True) if "secretRef" in src else (src.get("configMapRef") or {}, False)
        objs = sources.secrets if secret else sources.configmaps
        obj = objs.get(ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise EnvError(f'{"secret" if secret else "configmap"} "{ref.get("name")}" not found')
        for k, v in _data(obj, secret).items():
            out[prefix + k] = v
    for e in container.get("env") or []:
        name, vf = e["name"], e.get("valueFrom")
        if vf is None:
            value: str | None = expand(str(e.get("value", "")), {**service_env, **out})
        elif "fieldRef" in vf:
            value = field_ref(vf["fieldRef"]["fieldPath"], pod, host_ip, pod_ip)
        elif "resourceFieldRef" in vf:
            value = resource_ref(vf["resourceFieldRef"], container, alloc or node_allocatable())
        elif "configMapKeyRef" in vf:
            value = _key_ref(vf["configMapKeyRef"], sources.configmaps, False)
        elif "secretKeyRef" in vf:
            value = _key_ref(vf["secretKeyRef"], sources.secrets, True)
        else:
            raise EnvError(f"env {name}: unsupported valueFrom {sorted(vf)}")
        if value is not None:
            out[name] = value
    return {**service_env, **out}


def expanded_container(container: Obj, env: dict[str, str]) -> Obj:
    """A copy whose command/args have $(VAR) expanded with the full env and no env entries left for
    the image layer to expand with again (only a literal "$$" surviving expansion is then changed)."""
    c = dict(container)
    for k in ("command", "args"):
        if c.get(k):
            c[k] = [expand(str(s), env) for s in c[k]]
    c["env"] = []
    return c
