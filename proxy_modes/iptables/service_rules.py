"""The rules for one service port, in upstream's order (pkg/proxy/iptables/proxier.go syncProxyRules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from proxy_modes.iptables import chains as C
from proxy_modes.model import Endpoint, ServicePort, usable

if TYPE_CHECKING:
    from proxy_modes.iptables.render import RenderConfig


@dataclass
class Fragment:
    """Everything one service port contributes, as iptables-restore lines in upstream's order."""

    filter_rules: list[str] = field(default_factory=list)  # in filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES
    nat_shared: list[str] = field(default_factory=list)  # in nat KUBE-SERVICES / KUBE-NODEPORTS
    chains: list[str] = field(default_factory=list)  # its own nat chains, in declaration order
    rules: list[str] = field(default_factory=list)  # the rules of those chains
    source: tuple[ServicePort, tuple[Endpoint, ...], bool] | None = None  # what it was rendered from (reuse if equal)
    by_chain: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # shared rules per (table, chain)
    _own: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)

    def shared(self, table: str, chain: str) -> list[str]:
        return self.by_chain.get((table, chain), [])

    def index_shared(self) -> None:
        for table, lines in (("filter", self.filter_rules), ("nat", self.nat_shared)):
            for r in lines:
                self.by_chain.setdefault((table, r[3:r.index(" ", 3)]), []).append(r)

    def chain_rules(self) -> dict[str, list[str]]:
        """Its rules per own chain (computed once)."""
        if self._own is None:
            self._own = {c: [] for c in self.chains}
            for r in self.rules:
                self._own[r[3:r.index(" ", 3)]].append(r)
        return self._own


@lru_cache(maxsize=256)
def probability(n: int) -> str:
    """Upstream computes 1/n and prints it with %0.10f."""
    return f"{1.0 / n:0.10f}"


def _q(comment: str) -> str:
    return f'"{comment}"' if " " in comment else comment


def render_service(cfg: RenderConfig, sp: ServicePort, eps: list[Endpoint], large: bool = False) -> Fragment:
    """large: upstream's large cluster mode (over 1000 endpoints in all), whose endpoint rules (the
    SVC/SVL jumps and the SEP chains) carry no comment: a smaller ruleset to load and to check."""
    f = Fragment(source=(sp, tuple(eps), large))
    spn, name = sp.name, str(sp.name)
    proto = spn.proto
    cluster_eps = usable(eps)
    local_eps = usable(eps, local_only=True) if sp.internal_policy_local or sp.external_policy_local else []
    has_endpoints = bool(cluster_eps)
    cluster_chain, local_chain, ext = C.service_chain_names(spn)
    internal_chain = local_chain if sp.internal_policy_local else cluster_chain
    external_policy_chain = local_chain if sp.external_policy_local else cluster_chain
    # Upstream UsesClusterEndpoints: ETP=Local still needs the cluster chain for pod/node traffic.
    uses_cluster_chain = bool(cluster_eps) and (not sp.internal_policy_local or sp.externally_accessible)
    uses_local_chain = bool(local_eps)
    uses_ext_chain = has_endpoints and sp.externally_accessible
    has_internal = bool(local_eps) if sp.internal_policy_local else has_endpoints
    has_external = bool(local_eps) if sp.external_policy_local else has_endpoints

    def filter_target() -> tuple[str, str]:
        # No endpoints at all: REJECT (the client learns at once); endpoints elsewhere only: DROP.
        return (f"{name} has no endpoints", "REJECT") if not has_endpoints else (f"{name} has no local endpoints", "DROP")

    match = f"-m {proto} -p {proto}"
    cip = f'-m comment --comment "{name} cluster IP" {match} -d {sp.cluster_ip} --dport {sp.port}'
    if has_internal:
        f.nat_shared.append(f"-A {C.KUBE_SERVICES} {cip} -j {internal_chain}")
    else:
        comment, target = filter_target()
        f.filter_rules.append(
            f'-A {C.KUBE_SERVICES} -m comment --comment "{comment}" {match} -d {sp.cluster_ip} --dport {sp.port} -j {target}'
        )
    for kind, ips in (("external IP", sp.external_ips), ("loadbalancer IP", sp.load_balancer_ips)):
        for ip in ips:
            if has_endpoints:
                f.nat_shared.append(
                    f'-A {C.KUBE_SERVICES} -m comment --comment "{name} {kind}" {match} -d {ip} --dport {sp.port} -j {ext}'
                )
            if not has_external:
                comment, target = filter_target()
                f.filter_rules.append(
                    f'-A {C.KUBE_EXTERNAL_SERVICES} -m comment --comment "{comment}" {match} -d {ip} --dport {sp.port} -j {target}'
                )
    if sp.node_port:
        if has_endpoints:
            f.nat_shared.append(f"-A {C.KUBE_NODEPORTS} -m comment --comment {_q(name)} {match} --dport {sp.node_port} -j {ext}")
        if not has_external:
            comment, target = filter_target()
            f.filter_rules.append(
                f'-A {C.KUBE_EXTERNAL_SERVICES} -m comment --comment "{comment}" -m addrtype --dst-type LOCAL '
                f"{match} --dport {sp.node_port} -j {target}"
            )

    rules = f.rules
    if has_internal:
        # Off-cluster sources reaching a ClusterIP (e.g. from the node) must be SNATed so replies
        # come back through this node's conntrack entry.
        rules.append(f"-A {internal_chain} {cip} ! -s {cfg.cluster_cidr} -j {C.KUBE_MARK_MASQ}")
    if uses_ext_chain:
        f.chains.append(ext)
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
    seps: dict[str, str] = {}  # "ip:port" -> KUBE-SEP chain, each endpoint once
    keys: dict[int, str] = {}  # id(endpoint) -> "ip:port", formatted once
    for ep in cluster_eps + local_eps:
        key = keys[id(ep)] = f"{ep.ip}:{ep.port}"
        if key not in seps:
            seps[key] = C.sep_chain(spn, key)
    if uses_cluster_chain:
        f.chains.append(cluster_chain)
        _to_endpoints(rules, sp, name, cluster_chain, [keys[id(e)] for e in cluster_eps], seps, large)
    if uses_local_chain:
        f.chains.append(local_chain)
        _to_endpoints(rules, sp, name, local_chain, [keys[id(e)] for e in local_eps], seps, large)
    head_comment = _q(name)
    for ep in cluster_eps + local_eps:
        key = keys[id(ep)]
        sep = seps.pop(key, None)
        if sep is None:
            continue  # already written (an endpoint in both the cluster and the local list)
        f.chains.append(sep)
        head = f"-A {sep}" if large else f"-A {sep} -m comment --comment {head_comment}"
        # Hairpin: a pod reaching itself through its Service must be SNATed or it would answer
        # itself directly and the client would drop the reply.
        rules.append(f"{head} -s {ep.ip} -j {C.KUBE_MARK_MASQ}")
        recent = f" -m recent --name {sep} --set" if sp.affinity_timeout is not None else ""
        rules.append(f"{head}{recent} {match} -j DNAT --to-destination {key}")
    f.index_shared()
    return f


def _to_endpoints(out: list[str], sp: ServicePort, name: str, chain: str, eps: list[str],
                  seps: dict[str, str], large: bool) -> None:
    """eps: the endpoints' "ip:port", in order."""
    def head(ep: str) -> str:
        return f"-A {chain}" if large else f'-A {chain} -m comment --comment "{name} -> {ep}"'

    if sp.affinity_timeout is not None:
        for ep in eps:
            sep = seps[ep]
            out.append(f"{head(ep)} -m recent --name {sep} --rcheck --seconds {sp.affinity_timeout} --reap -j {sep}")
    n = len(eps)
    for i, ep in enumerate(eps):
        stat = f" -m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
        out.append(f"{head(ep)}{stat} -j {seps[ep]}")
