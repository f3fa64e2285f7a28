"""Per-service objects (affinity sets, chains, map elements), following upstream syncProxyRules."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy_modes.model import Endpoint, ServicePort, usable
from proxy_modes.nftables import names as N


@dataclass(frozen=True)
class Element:
    """One element of a set or verdict map; `verdict` is None for plain sets."""

    owner: str
    key: str
    verdict: str | None = None
    comment: str = ""

    def body(self) -> str:
        c = f' comment "{self.comment}"' if self.comment else ""
        return f"{self.key}{c}" + (f" : {self.verdict}" if self.verdict else "")


@dataclass
class ServicePlan:
    """Everything one Service ("<ns>/<name>", all its ports) puts into the table."""

    sets: dict[str, int] = field(default_factory=dict)  # affinity set → timeout seconds
    chains: dict[str, list[str]] = field(default_factory=dict)  # in dependency order, rule bodies
    elements: list[Element] = field(default_factory=list)


def _dispatch(spn_chain: str, eps: list[Endpoint], sp: ServicePort, rules: list[str], vmap: bool) -> None:
    """Upstream writeServiceToEndpointRules: affinity lookups, then one numgen vmap.

    Without `vmap`, the same uniform choice as rules (endpoint i of n taken with odds 1/(n-i), the
    last one unconditionally, as iptables mode): every anonymous vmap is a set of its own, and the
    kernel scans all sets of the table to name each new one, so N services cost O(N^2) (~8 s of
    kernel time at 10k here). Large tables use this form; see README.md.
    """
    if sp.affinity_timeout is not None:
        for ep in eps:
            rules.append(f"ip saddr @{N.affinity_set(sp.name, ep)} goto {N.endpoint_chain(sp.name, ep)}")
    if vmap:
        arms = " , ".join(f"{i} : goto {N.endpoint_chain(sp.name, ep)}" for i, ep in enumerate(eps))
        rules.append(f"numgen random mod {len(eps)} vmap {{ {arms} }}")
        return
    for i, ep in enumerate(eps):
        cond = f"numgen random mod {len(eps) - i} 0 " if i < len(eps) - 1 else ""
        rules.append(f"{cond}goto {N.endpoint_chain(sp.name, ep)}")


def add_service_port(plan: ServicePlan, sp: ServicePort, endpoints: list[Endpoint], cluster_cidr: str,
                     vmap: bool = True) -> None:
    spn, proto = sp.name, sp.name.proto
    cluster_eps = usable(endpoints)
    local_eps = usable(endpoints, local_only=True)
    has_endpoints = bool(cluster_eps)
    # Upstream UsesClusterEndpoints: eTP=Local still needs the cluster chain for its short-circuits.
    uses_cluster = bool(cluster_eps) and (not sp.internal_policy_local or sp.externally_accessible)
    uses_local = bool(local_eps) and (sp.internal_policy_local or sp.external_policy_local)
    internal_chain = N.local_chain(spn) if sp.internal_policy_local else N.service_chain(spn)
    external_policy = N.local_chain(spn) if sp.external_policy_local else N.service_chain(spn)
    has_internal = bool(local_eps) if sp.internal_policy_local else has_endpoints
    has_external = bool(local_eps) if sp.external_policy_local else has_endpoints
    uses_external = sp.externally_accessible and has_endpoints

    # Endpoint chains first, so a single transaction never references a chain it has not added.
    used = set(cluster_eps if uses_cluster else []) | set(local_eps if uses_local else [])
    for ep in sorted(used, key=str):
        rules = [f"ip saddr {ep.ip} jump {N.MARK_MASQ}"]  # hairpin: a pod reaching itself via its Service
        if sp.affinity_timeout is not None:
            plan.sets[N.affinity_set(spn, ep)] = sp.affinity_timeout
            rules.append(f"update @{N.affinity_set(spn, ep)} {{ ip saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {ep.ip}:{ep.port}")
        plan.chains[N.endpoint_chain(spn, ep)] = rules

    masq = f"ip daddr {sp.cluster_ip} ip saddr != {cluster_cidr} jump {N.MARK_MASQ}"  # off-cluster sources
    if uses_cluster:
        rules = [masq] if has_internal and internal_chain == N.service_chain(spn) else []
        _dispatch(N.service_chain(spn), cluster_eps, sp, rules, vmap)
        plan.chains[N.service_chain(spn)] = rules
    if uses_local:
        rules = [masq] if has_internal and internal_chain == N.local_chain(spn) else []
        _dispatch(N.local_chain(spn), local_eps, sp, rules, vmap)
        plan.chains[N.local_chain(spn)] = rules
    if uses_external:
        ext: list[str] = []
        if not sp.external_policy_local:
            ext.append(f"jump {N.MARK_MASQ}")  # endpoints may be on other nodes
        else:
            cluster = N.service_chain(spn)
            ext += [
                # Pod → external IP is subject to neither policy: as if out to the LB and back.
                f'ip saddr {cluster_cidr} goto {cluster} comment "short-circuit pod traffic"',
                # The node's own traffic gets the LB/node IP as source: it must be masqueraded.
                f'fib saddr type local jump {N.MARK_MASQ} comment "masquerade local traffic"',
                f'fib saddr type local goto {cluster} comment "short-circuit local traffic"',
            ]
        if has_external:
            ext.append(f"goto {external_policy}")
        plan.chains[N.external_chain(spn)] = ext

    key = f"{proto} . {sp.port}"
    comment = str(spn)
    reject = f"goto {N.REJECT_CHAIN}"
    internal_verdict = None if has_internal else (reject if not has_endpoints else "drop")
    external_verdict = None if has_external else (reject if not has_endpoints else "drop")
    cip = Element(N.CLUSTER_IPS, sp.cluster_ip)
    if cip not in plan.elements:
        plan.elements.append(cip)
    if has_internal:
        plan.elements.append(Element(N.SERVICE_IPS, f"{sp.cluster_ip} . {key}", f"goto {internal_chain}"))
    else:
        plan.elements.append(Element(N.NO_ENDPOINT_SERVICES, f"{sp.cluster_ip} . {key}", internal_verdict, comment))
    for ip in (*sp.external_ips, *sp.load_balancer_ips):
        if uses_external:
            plan.elements.append(Element(N.SERVICE_IPS, f"{ip} . {key}", f"goto {N.external_chain(spn)}"))
        if external_verdict:
            plan.elements.append(Element(N.NO_ENDPOINT_SERVICES, f"{ip} . {key}", external_verdict, comment))
    if sp.node_port:
        nkey = f"{proto} . {sp.node_port}"
        if uses_external:
            plan.elements.append(Element(N.SERVICE_NODEPORTS, nkey, f"goto {N.external_chain(spn)}"))
        if external_verdict:
            plan.elements.append(Element(N.NO_ENDPOINT_NODEPORTS, nkey, external_verdict, comment))
