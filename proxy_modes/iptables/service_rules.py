"""The rules for one service port, in upstream's order (pkg/proxy/iptables/proxier.go syncProxyRules)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy_modes.iptables import chains as C
from proxy_modes.model import Endpoint, ProxyState, ServicePort, usable

if TYPE_CHECKING:
    from proxy_modes.iptables.render import Buffers, RenderConfig


def probability(n: int) -> str:
    """Upstream computes 1/n and prints it with %0.10f."""
    return f"{1.0 / n:0.10f}"


def _q(comment: str) -> str:
    return f'"{comment}"' if " " in comment else comment


def service_chains(sp: ServicePort, state: ProxyState) -> set[str]:
    eps = state.endpoints.get(sp.name, [])
    every = {str(e): e for e in usable(eps) + usable(eps, local_only=True)}
    return {C.svc_chain(sp.name), C.svl_chain(sp.name), C.ext_chain(sp.name)} | {
        C.sep_chain(sp.name, e) for e in every.values()
    }


def write_service(b: Buffers, cfg: RenderConfig, sp: ServicePort, eps: list[Endpoint], skip_chains: bool) -> None:
    spn, name = sp.name, str(sp.name)
    proto = spn.proto
    cluster_eps = usable(eps)
    local_eps = usable(eps, local_only=True)
    has_endpoints = bool(cluster_eps)
    cluster_chain, local_chain, ext = C.svc_chain(spn), C.svl_chain(spn), C.ext_chain(spn)
    internal_chain = local_chain if sp.internal_policy_local else cluster_chain
    external_policy_chain = local_chain if sp.external_policy_local else cluster_chain
    # Upstream UsesClusterEndpoints: ETP=Local still needs the cluster chain for pod/node traffic.
    uses_cluster_chain = bool(cluster_eps) and (not sp.internal_policy_local or sp.externally_accessible)
    uses_local_chain = bool(local_eps) and (sp.internal_policy_local or sp.external_policy_local)
    uses_ext_chain = has_endpoints and sp.externally_accessible
    has_internal = bool(local_eps) if sp.internal_policy_local else has_endpoints
    has_external = bool(local_eps) if sp.external_policy_local else has_endpoints

    def filter_target() -> tuple[str, str]:
        # No endpoints at all: REJECT (the client learns at once); endpoints elsewhere only: DROP.
        return (f"{name} has no endpoints", "REJECT") if not has_endpoints else (f"{name} has no local endpoints", "DROP")

    match = f"-m {proto} -p {proto}"
    cip = f'-m comment --comment "{name} cluster IP" {match} -d {sp.cluster_ip} --dport {sp.port}'
    if has_internal:
        b.nat_rules.append(f"-A {C.KUBE_SERVICES} {cip} -j {internal_chain}")
    else:
        comment, target = filter_target()
        b.filter_rules.append(
            f'-A {C.KUBE_SERVICES} -m comment --comment "{comment}" {match} -d {sp.cluster_ip} --dport {sp.port} -j {target}'
        )
    for kind, ips in (("external IP", sp.external_ips), ("loadbalancer IP", sp.load_balancer_ips)):
        for ip in ips:
            if has_endpoints:
                b.nat_rules.append(
                    f'-A {C.KUBE_SERVICES} -m comment --comment "{name} {kind}" {match} -d {ip} --dport {sp.port} -j {ext}'
                )
            if not has_external:
                comment, target = filter_target()
                b.filter_rules.append(
                    f'-A {C.KUBE_EXTERNAL_SERVICES} -m comment --comment "{comment}" {match} -d {ip} --dport {sp.port} -j {target}'
                )
    if sp.node_port:
        if has_endpoints:
            b.nat_rules.append(f"-A {C.KUBE_NODEPORTS} -m comment --comment {_q(name)} {match} --dport {sp.node_port} -j {ext}")
        if not has_external:
            comment, target = filter_target()
            b.filter_rules.append(
                f'-A {C.KUBE_EXTERNAL_SERVICES} -m comment --comment "{comment}" -m addrtype --dst-type LOCAL '
                f"{match} --dport {sp.node_port} -j {target}"
            )
    if skip_chains:
        return  # partial sync: this service's own chains are unchanged in the kernel

    rules: list[str] = []
    if has_internal:
        # Off-cluster sources reaching a ClusterIP (e.g. from the node) must be SNATed so replies
        # come back through this node's conntrack entry.
        rules.append(f"-A {internal_chain} {cip} ! -s {cfg.cluster_cidr} -j {C.KUBE_MARK_MASQ}")
    if uses_ext_chain:
        b.nat_chain(ext)
        if not sp.external_policy_local:
            rules.append(f'-A {ext} -m comment --comment "masquerade traffic for {name} external destinations" -j {C.KUBE_MARK_MASQ}')
        else:
            # Local policy keeps the client source IP, except for pods and the node itself, which
            # are sent to the cluster-wide chain (their traffic never left the cluster).
            rules += [
                f'-A {ext} -m comment --comment "pod traffic for {name} external destinations" -s {cfg.cluster_cidr} -j {cluster_chain}',
                f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {name} external destinations" '
                f"-m addrtype --src-type LOCAL -j {C.KUBE_MARK_MASQ}",
                f'-A {ext} -m comment --comment "route LOCAL traffic for {name} external destinations" '
                f"-m addrtype --src-type LOCAL -j {cluster_chain}",
            ]
        if has_external:
            rules.append(f"-A {ext} -j {external_policy_chain}")
    if uses_cluster_chain:
        b.nat_chain(cluster_chain)
        rules += _to_endpoints(sp, cluster_chain, cluster_eps)
    if uses_local_chain:
        b.nat_chain(local_chain)
        rules += _to_endpoints(sp, local_chain, local_eps)
    seen: set[str] = set()
    for ep in cluster_eps + local_eps:
        if str(ep) in seen:
            continue
        seen.add(str(ep))
        sep = C.sep_chain(spn, ep)
        b.nat_chain(sep)
        head = f"-A {sep} -m comment --comment {_q(name)}"
        # Hairpin: a pod reaching itself through its Service must be SNATed or it would answer
        # itself directly and the client would drop the reply.
        rules.append(f"{head} -s {ep.ip} -j {C.KUBE_MARK_MASQ}")
        recent = f" -m recent --name {sep} --set" if sp.affinity_timeout is not None else ""
        rules.append(f"{head}{recent} {match} -j DNAT --to-destination {ep}")
    b.nat_rules += rules


def _to_endpoints(sp: ServicePort, chain: str, eps: list[Endpoint]) -> list[str]:
    name = str(sp.name)
    out: list[str] = []
    if sp.affinity_timeout is not None:
        for ep in eps:
            sep = C.sep_chain(sp.name, ep)
            out.append(
                f'-A {chain} -m comment --comment "{name} -> {ep}" -m recent --name {sep} --rcheck '
                f"--seconds {sp.affinity_timeout} --reap -j {sep}"
            )
    n = len(eps)
    for i, ep in enumerate(eps):
        stat = f" -m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
        out.append(f'-A {chain} -m comment --comment "{name} -> {ep}"{stat} -j {C.sep_chain(sp.name, ep)}')
    return out
