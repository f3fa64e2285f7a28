"""`netkube trace`: walk a flow through the live rules of the node where it enters netfilter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from netkube.client import ENDPOINTSLICES, NODES, PODS, SERVICES, Obj, cluster_client
from netkube.config import ClusterConfig, ConfigError
from netkube.debug.live import check_node, node_addresses, node_holding, rules_text
from netkube.debug.traceformat import Flow, format_trace
from proxy_modes.tracer import Packet, Tracer, TraceResult


@dataclass
class World:
    pods: list[Obj] = field(default_factory=list)
    services: list[Obj] = field(default_factory=list)
    slices: list[Obj] = field(default_factory=list)
    nodes: list[Obj] = field(default_factory=list)

    def mode(self, cluster: ClusterConfig, node: str) -> str:
        """The mode the node's kube-proxy reports it runs (a ConfigMap edit may be newer than cluster.json)."""
        from netkube.addons.kubeproxy import MODE_ANNOTATION

        for n in self.nodes:
            if n["metadata"]["name"] == node:
                return str((n["metadata"].get("annotations") or {}).get(MODE_ANNOTATION) or cluster.proxy_mode)
        return cluster.proxy_mode


async def _load(cluster: ClusterConfig) -> World:
    client = cluster_client(cluster, "admin")
    try:
        pods, svcs, slices, nodes = await asyncio.gather(
            client.list(PODS), client.list(SERVICES), client.list(ENDPOINTSLICES), client.list(NODES))
    except OSError as e:
        raise ConfigError(f"cannot reach the apiserver of {cluster.name!r} at {cluster.api_url_host}: {e}") from e
    finally:
        await client.close()
    return World(pods["items"], svcs["items"], slices["items"], nodes["items"])


def owners(cluster: ClusterConfig, world: World) -> dict[str, str]:
    out = {cluster.node_ip(n): f"{n} (the node itself)" for n in cluster.node_names}
    for p in world.pods:
        ip, node = p.get("status", {}).get("podIP"), p.get("spec", {}).get("nodeName")
        if ip and not p["spec"].get("hostNetwork"):
            out[ip] = f"{node} pod {p['metadata']['namespace']}/{p['metadata']['name']}"
    return out


def resolve_source(cluster: ClusterConfig, world: World, spec: str, namespace: str) -> tuple[str, str, str | None, str]:
    """→ (source IP, label, ingress interface or None, netns) ; the node comes with the destination."""
    if spec == "client":
        return cluster.client_ip, "external client", "eth0", cluster.client_netns
    if spec.startswith("node/"):
        node = check_node(cluster, spec.removeprefix("node/"))
        return cluster.node_ip(node), f"node {node}", None, cluster.node_netns(node)
    name = spec.removeprefix("pod/")
    for p in world.pods:
        if p["metadata"]["name"] == name and p["metadata"].get("namespace") == namespace:
            ip, node = p.get("status", {}).get("podIP"), p.get("spec", {}).get("nodeName")
            if not ip or not node:
                raise ConfigError(f'pod "{name}" has no IP yet (phase {p.get("status", {}).get("phase")}); wait until it runs')
            return ip, f"pod {namespace}/{name} on {node}", "cni0", cluster.pod_netns(p["metadata"]["uid"])
    raise ConfigError(f'pod "{name}" not found in namespace "{namespace}"; give --from POD, node/NODE or client')


def resolve_dest(world: World, spec: str, namespace: str, proto: str) -> tuple[str, int, str]:
    """IP:PORT or svc/NAME:PORT (port number or name) → (ip, port, label)."""
    if spec.startswith("svc/"):
        name, _, port = spec.removeprefix("svc/").partition(":")
        svc = next((s for s in world.services if s["metadata"]["name"] == name
                    and s["metadata"].get("namespace") == namespace), None)
        if svc is None:
            raise ConfigError(f'service "{name}" not found in namespace "{namespace}"')
        ports = svc["spec"].get("ports") or []
        match = [p for p in ports if (str(p["port"]) == port or p.get("name") == port or not port)
                 and (p.get("protocol") or "TCP").lower() == proto]
        if not match:
            have = ", ".join(f"{p.get('name') or '-'}={p['port']}/{p.get('protocol', 'TCP')}" for p in ports)
            raise ConfigError(f"service {namespace}/{name} has no {proto} port {port!r}; it has: {have}")
        p = match[0]
        return svc["spec"]["clusterIP"], int(p["port"]), f"svc {namespace}/{name}:{p.get('name') or p['port']}"
    ip, _, port = spec.rpartition(":")
    if not ip or not port.isdigit():
        raise ConfigError(f"--to {spec!r}: give IP:PORT (e.g. 10.96.0.10:53) or svc/NAME:PORT")
    return ip, int(port), service_label(world, ip, int(port), proto)


def service_label(world: World, ip: str, port: int, proto: str) -> str:
    for s in world.services:
        spec, md = s["spec"], s["metadata"]
        lb = [i.get("ip") for i in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
        for p in spec.get("ports") or []:
            if (p.get("protocol") or "TCP").lower() != proto:
                continue
            kind = ("cluster IP" if ip == spec.get("clusterIP") and port == p["port"] else
                    "loadbalancer IP" if ip in lb and port == p["port"] else
                    "node port" if port == p.get("nodePort") else "")
            if kind:
                return f"svc {md['namespace']}/{md['name']}:{p.get('name') or p['port']} {kind}"
    return ""


def entry_node(cluster: ClusterConfig, source: str, src_ip: str, world: World, dst: str) -> str:
    if source.startswith("node/"):
        return source.removeprefix("node/")
    if source != "client":
        return next(p["spec"]["nodeName"] for p in world.pods if p.get("status", {}).get("podIP") == src_ip)
    node = node_holding(cluster, dst)
    if node is None:
        raise ConfigError(f"no node holds {dst}, so a packet from the client would go nowhere; give a node IP "
                          f"({', '.join(cluster.node_ip(n) for n in cluster.node_names)}) or an EXTERNAL-IP "
                          f"from `kubectl get svc`")
    return node


def userspace_endpoints(world: World, label: str) -> list[str]:
    """Ready endpoints of the service a userspace portal leads to (the proxy's round-robin pool)."""
    if not label.startswith("svc "):
        return []
    ns, _, rest = label.split()[1].partition("/")
    name, _, pname = rest.partition(":")
    svc = next((s for s in world.services if s["metadata"]["name"] == name and s["metadata"]["namespace"] == ns), None)
    port = next((p for p in (svc or {}).get("spec", {}).get("ports") or [] if (p.get("name") or str(p["port"])) == pname), None)
    out: set[str] = set()
    for sl in world.slices:
        md = sl["metadata"]
        if md.get("namespace") != ns or (md.get("labels") or {}).get("kubernetes.io/service-name") != name:
            continue
        sport = next((p for p in sl.get("ports") or [] if (p.get("name") or "") == ((port or {}).get("name") or "")), None)
        for e in sl.get("endpoints") or []:
            if sport and (e.get("conditions") or {}).get("ready") is not False:
                out |= {f"{a}:{sport['port']}" for a in e.get("addresses") or []}
    return sorted(out)


def run_trace(cluster: ClusterConfig, world: World, source: str, dest: str, namespace: str,
              proto: str) -> tuple[Flow, TraceResult, str]:
    src_ip, src_label, in_iface, _ = resolve_source(cluster, world, source, namespace)
    dst, dport, dst_label = resolve_dest(world, dest, namespace, proto)
    node = entry_node(cluster, source, src_ip, world, dst)
    mode = world.mode(cluster, node)
    flow = Flow(src_ip, src_label, dst, dport, proto, dst_label, node, in_iface, mode)
    if mode == "ipvs":
        raise ConfigError("trace walks iptables and nftables rules; in ipvs mode read `netkube rules` "
                          "(ipvsadm -Ln shows the virtual servers and their real servers)")
    text = rules_text(cluster, node, mode)
    pkt = Packet(src_ip, dst, dport, proto, in_iface, tuple(node_addresses(cluster, node)))
    if mode == "nftables":
        from proxy_modes.tracer_nft import NftTracer

        return flow, NftTracer(text).trace(pkt), text
    return flow, Tracer(text).trace(pkt), text


def load_world(cluster: ClusterConfig) -> World:
    return asyncio.run(_load(cluster))


def trace(cluster: ClusterConfig, source: str, dest: str, namespace: str, proto: str, verbose: bool = True,
          probe: bool = False) -> int:
    world = load_world(cluster)
    flow, result, _ = run_trace(cluster, world, source, dest, namespace, proto)
    expand = None
    if flow.mode == "userspace":
        eps = userspace_endpoints(world, flow.dst_label)
        expand = {t: eps for t in result.targets() if ":" in t and t.split(":")[0] in node_addresses(cluster, flow.node)}
    print(format_trace(flow, result, owners(cluster, world), expand, verbose))
    if probe:
        from netkube.debug.probe import probe_flow

        print(probe_flow(cluster, world, source, flow, result, namespace))
    return 0
