"""Service, Endpoints and EndpointSlice columns as upstream's printers compute them."""

from __future__ import annotations

from .printer import AGE, NAME, Col, Obj, Printer, created, more, name


def _ports(spec: Obj) -> str:
    out = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol", "TCP")
        if p.get("nodePort"):
            out.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            out.append(f"{p.get('port')}/{proto}")
    return ",".join(out) or "<none>"


def _external(o: Obj) -> str:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    stype = spec.get("type", "ClusterIP")
    ext = list(spec.get("externalIPs") or [])
    if stype == "ExternalName":
        return spec.get("externalName", "<none>")
    if stype == "LoadBalancer":
        ing = [i.get("ip") or i.get("hostname") for i in (st.get("loadBalancer") or {}).get("ingress") or []]
        ips = [x for x in ing if x] + ext
        return ",".join(ips) if ips else "<pending>"
    return ",".join(ext) if ext else "<none>"


def _svc(o: Obj) -> list[object]:
    spec = o.get("spec") or {}
    sel = spec.get("selector") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"
    cip = spec.get("clusterIP") or "<none>"
    return [name(o), spec.get("type", "ClusterIP"), cip, _external(o), _ports(spec), created(o), selector]


SERVICES = Printer(
    (NAME, Col("Type"), Col("Cluster-IP"), Col("External-IP"), Col("Port(s)"), AGE, Col("Selector", priority=1)),
    _svc,
)


def _endpoints(o: Obj) -> list[object]:
    items: list[str] = []
    total = 0
    for ss in o.get("subsets") or []:
        addrs = [a.get("ip", "") for a in ss.get("addresses") or []]
        ports = ss.get("ports") or []
        if not ports:
            pairs = addrs
        else:
            pairs = [f"{a}:{p.get('port')}" for p in ports for a in addrs]
        for p in pairs:
            total += 1
            if len(items) < 3:
                items.append(p)
    return [name(o), more(items, total), created(o)]


ENDPOINTS = Printer((NAME, Col("Endpoints"), AGE), _endpoints)


def _slice(o: Obj) -> list[object]:
    ports = o.get("ports") or []
    pnames = [str(p["port"]) if p.get("port") is not None else "<unset>" for p in ports]
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    return [name(o), o.get("addressType", ""), more(pnames[:3], len(pnames), "<unset>"),
            more(addrs[:3], len(addrs), "<unset>"), created(o)]


ENDPOINTSLICES = Printer((NAME, Col("AddressType"), Col("Ports"), Col("Endpoints"), AGE), _slice)
