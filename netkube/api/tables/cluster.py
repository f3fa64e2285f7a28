"""Node, Namespace, Event, ConfigMap, Secret, ServiceAccount and Lease columns."""

from __future__ import annotations

from .age import age
from .printer import AGE, NAME, Col, Obj, Printer, created, name, or_none


def _node(o: Obj) -> list[object]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    labels = o.get("metadata", {}).get("labels") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    if "Ready" in conds:
        status = ["Ready" if conds["Ready"] == "True" else "NotReady"]
    else:
        status = ["Unknown"]
    if spec.get("unschedulable"):
        status.append("SchedulingDisabled")
    roles = sorted(
        {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]}
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    addrs = st.get("addresses") or []
    internal = [a["address"] for a in addrs if a.get("type") == "InternalIP"]
    external = [a["address"] for a in addrs if a.get("type") == "ExternalIP"]
    info = st.get("nodeInfo") or {}
    return [name(o), ",".join(status), ",".join(roles) or "<none>", created(o), info.get("kubeletVersion", ""),
            or_none(",".join(internal)), or_none(",".join(external)), info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>")]


NODES = Printer(
    (NAME, Col("Status"), Col("Roles"), AGE, Col("Version"), Col("Internal-IP", priority=1),
     Col("External-IP", priority=1), Col("OS-Image", priority=1), Col("Kernel-Version", priority=1),
     Col("Container-Runtime", priority=1)),
    _node,
)

NAMESPACES = Printer(
    (NAME, Col("Status"), AGE),
    lambda o: [name(o), (o.get("status") or {}).get("phase", "Active"), created(o)],
)


def _event(o: Obj) -> list[object]:
    inv = o.get("involvedObject") or {}
    seen = o.get("lastTimestamp") or o.get("eventTime") or o.get("firstTimestamp") \
        or o.get("metadata", {}).get("creationTimestamp")
    first = o.get("firstTimestamp") or o.get("eventTime") or seen
    src = o.get("source") or {}
    source = src.get("component", "") + (f", {src['host']}" if src.get("host") else "")
    return [age(seen), o.get("type", ""), o.get("reason", ""), f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}",
            o.get("message", ""), inv.get("fieldPath", ""), source or o.get("reportingComponent", ""),
            age(first), o.get("count", 1), name(o)]


EVENTS = Printer(
    (Col("Last Seen"), Col("Type"), Col("Reason"), Col("Object"), Col("Message"),
     Col("Subobject", priority=1), Col("Source", priority=1), Col("First Seen", priority=1),
     Col("Count", "integer", priority=1), Col("Name", priority=1)),
    _event,
)

CONFIGMAPS = Printer(
    (NAME, Col("Data", "integer"), AGE),
    lambda o: [name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}), created(o)],
)
SECRETS = Printer(
    (NAME, Col("Type"), Col("Data", "integer"), AGE),
    lambda o: [name(o), o.get("type", "Opaque"), len(o.get("data") or {}) + len(o.get("stringData") or {}), created(o)],
)
SERVICEACCOUNTS = Printer(
    (NAME, Col("Secrets", "integer"), AGE),
    lambda o: [name(o), len(o.get("secrets") or []), created(o)],
)
LEASES = Printer(
    (NAME, Col("Holder"), AGE),
    lambda o: [name(o), (o.get("spec") or {}).get("holderIdentity", ""), created(o)],
)
