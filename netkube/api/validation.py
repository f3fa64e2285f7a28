"""Object validation worded as upstream's field errors (apimachinery validation messages)."""

from __future__ import annotations

import re
from typing import Any

from .selectors import match_label_selector
from .status import FieldError

Obj = dict[str, Any]

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

# upstream wording, including its double space after 'my-name',
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
PORT_MSG = "must be between 1 and 65535, inclusive"


def name_errors(kind: str, name: str, field: str = "metadata.name") -> list[FieldError]:
    if kind == "Namespace":
        rx, msg, limit = _LABEL, LABEL_MSG, 63
    elif kind == "Service":
        rx, msg, limit = _DNS1035, DNS1035_MSG, 63
    else:
        rx, msg, limit = _SUBDOMAIN, SUBDOMAIN_MSG, 253
    errs = []
    if len(name) > limit:
        errs.append(FieldError(field, "FieldValueInvalid", name, f"must be no more than {limit} characters"))
    if not rx.match(name):
        errs.append(FieldError(field, "FieldValueInvalid", name, msg))
    return errs


def _port(value: Any, field: str, errs: list[FieldError], required: bool = True) -> None:
    if value is None:
        if required:
            errs.append(FieldError(field, "FieldValueRequired"))
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        errs.append(FieldError(field, "FieldValueInvalid", value, PORT_MSG))


def pod_spec(spec: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return [FieldError(path, "FieldValueRequired")]
    containers = spec.get("containers")
    if not containers or not isinstance(containers, list):
        errs.append(FieldError(f"{path}.containers", "FieldValueRequired"))
        return errs
    seen: set[str] = set()
    for i, c in enumerate(containers):
        cp = f"{path}.containers[{i}]"
        if not isinstance(c, dict):
            errs.append(FieldError(cp, "FieldValueInvalid", str(c), "must be an object"))
            continue
        name = c.get("name")
        if not name:
            errs.append(FieldError(f"{cp}.name", "FieldValueRequired"))
        elif not isinstance(name, str) or not _LABEL.match(name) or len(name) > 63:
            errs.append(FieldError(f"{cp}.name", "FieldValueInvalid", str(name), LABEL_MSG))
        elif name in seen:
            errs.append(FieldError(f"{cp}.name", "FieldValueDuplicate", name))
        else:
            seen.add(name)
        if not c.get("image"):
            errs.append(FieldError(f"{cp}.image", "FieldValueRequired"))
        for j, p in enumerate(c.get("ports") or []):
            if isinstance(p, dict):
                _port(p.get("containerPort"), f"{cp}.ports[{j}].containerPort", errs)
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in ("Always", "OnFailure", "Never"):
        errs.append(FieldError(f"{path}.restartPolicy", "FieldValueNotSupported", rp,
                               'supported values: "Always", "OnFailure", "Never"'))
    return errs


def _workload(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("spec", "FieldValueRequired")]
    errs: list[FieldError] = []
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        errs.append(FieldError("spec.replicas", "FieldValueInvalid", replicas,
                               "must be greater than or equal to 0"))
    sel = spec.get("selector")
    tpl = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    labels = (tpl.get("metadata") or {}).get("labels") or {}
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errs.append(FieldError("spec.selector", "FieldValueRequired"))
        if isinstance(sel, dict):
            errs.append(FieldError("spec.selector", "FieldValueInvalid", "null", "empty selector is invalid for deployment"))
    elif not match_label_selector(sel, labels):
        errs.append(FieldError("spec.template.metadata.labels", "FieldValueInvalid", labels,
                               "`selector` does not match template `labels`"))
    errs += pod_spec(tpl.get("spec"), "spec.template.spec")
    rp = (tpl.get("spec") or {}).get("restartPolicy") if isinstance(tpl.get("spec"), dict) else None
    if rp not in (None, "Always"):
        errs.append(FieldError("spec.template.spec.restartPolicy", "FieldValueNotSupported", rp, 'supported values: "Always"'))
    return errs


def _service(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("spec", "FieldValueRequired")]
    errs: list[FieldError] = []
    stype = spec.get("type", "ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        errs.append(FieldError("spec.type", "FieldValueNotSupported", stype,
                               'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not ports and stype != "ExternalName" and not headless:
        errs.append(FieldError("spec.ports", "FieldValueRequired"))
    if not isinstance(ports, list):
        return errs + [FieldError("spec.ports", "FieldValueInvalid", str(ports), "must be a list")]
    names: set[str] = set()
    for i, p in enumerate(ports):
        pp = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            errs.append(FieldError(pp, "FieldValueInvalid", str(p), "must be an object"))
            continue
        if len(ports) > 1 and not p.get("name"):
            errs.append(FieldError(f"{pp}.name", "FieldValueRequired"))
        elif p.get("name"):
            if p["name"] in names:
                errs.append(FieldError(f"{pp}.name", "FieldValueDuplicate", p["name"]))
            names.add(p["name"])
        _port(p.get("port"), f"{pp}.port", errs)
        tp = p.get("targetPort")
        if isinstance(tp, int):
            _port(tp, f"{pp}.targetPort", errs)
        proto = p.get("protocol", "TCP")
        if proto not in ("TCP", "UDP", "SCTP"):
            errs.append(FieldError(f"{pp}.protocol", "FieldValueNotSupported", proto,
                                   'supported values: "SCTP", "TCP", "UDP"'))
        if "nodePort" in p and stype == "ClusterIP":
            errs.append(FieldError(f"{pp}.nodePort", "FieldValueForbidden", detail="may not be used when `type` is 'ClusterIP'"))
    return errs


VALIDATORS = {
    "Pod": lambda o: pod_spec(o.get("spec"), "spec"),
    "Deployment": _workload,
    "ReplicaSet": _workload,
    "Service": _service,
}


def validate(kind: str, obj: Obj) -> list[FieldError]:
    md = obj.get("metadata") or {}
    errs: list[FieldError] = []
    name = md.get("name")
    if not name:
        errs.append(FieldError("metadata.name", "FieldValueRequired", detail="name or generateName is required"))
    else:
        errs += name_errors(kind, str(name))
    for v in (md.get("labels") or {}).values():
        if not isinstance(v, str) or len(v) > 63 or (v and not re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", v)):
            errs.append(FieldError("metadata.labels", "FieldValueInvalid", str(v),
                                   "a valid label must be an empty string or consist of alphanumeric characters, "
                                   "'-', '_' or '.', and must start and end with an alphanumeric character "
                                   "(e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                                   "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"))
    fn = VALIDATORS.get(kind)
    if fn is not None:
        errs += fn(obj)
    return errs
