"""Pure renderer: proxy state + node config → iptables-restore input for the nat and filter tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from proxy_modes.iptables import chains as C
from proxy_modes.iptables.service_rules import Fragment, render_service
from proxy_modes.model import ProxyState, ServicePortName

# Upstream's largeClusterEndpointsThreshold: above this many endpoints (all service ports together)
# kube-proxy drops the comments of endpoint rules and deletes stale chains at most every 30 s.
LARGE_CLUSTER_ENDPOINTS = 1000

NODEPORTS_TAIL = (
    f'-A {C.KUBE_SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
    f'last rule in this chain" -m addrtype --dst-type LOCAL -j {C.KUBE_NODEPORTS}'
)


@dataclass(frozen=True)
class RenderConfig:
    node_name: str
    node_ips: tuple[str, ...]
    cluster_cidr: str = "10.244.0.0/16"  # sources outside it are off-cluster and get masqueraded
    masquerade_bit: int = 14

    @property
    def mark(self) -> str:
        return hex(1 << self.masquerade_bit)


def quote(comment: str) -> str:
    """Upstream writes comments with spaces in double quotes, others bare."""
    return f'"{comment}"' if " " in comment else comment


def fixed_rules(cfg: RenderConfig) -> dict[tuple[str, str], list[str]]:
    """Rules of our chains that hold no per-service rules, keyed (table, chain), in upstream's order."""
    mark = cfg.mark
    return {
        ("nat", C.KUBE_POSTROUTING): [
            f"-A {C.KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
            # Clear the bit so a packet re-traversing the stack (e.g. via a tunnel) is not masqueraded twice.
            f"-A {C.KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
            f'-A {C.KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
        ],
        ("nat", C.KUBE_MARK_MASQ): [f"-A {C.KUBE_MARK_MASQ} -j MARK --or-mark {mark}"],
        ("filter", C.KUBE_FORWARD): [
            f"-A {C.KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP",
            f'-A {C.KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
            f'-A {C.KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ],
        ("filter", C.KUBE_NODEPORTS): [],
        ("filter", C.KUBE_PROXY_FIREWALL): [],
    }


def endpoint_count(state: ProxyState) -> int:
    """Upstream's totalEndpoints: the endpoints of every service port, ready or not."""
    return sum(len(state.endpoints.get(spn, ())) for spn in state.services)


def fragments(state: ProxyState, cfg: RenderConfig) -> dict[ServicePortName, Fragment]:
    """Every service port's fragment, in upstream's (sorted) order."""
    large = endpoint_count(state) > LARGE_CLUSTER_ENDPOINTS
    return {spn: render_service(cfg, state.services[spn], state.endpoints.get(spn, []), large)
            for spn in sorted(state.services)}


def render(state: ProxyState, cfg: RenderConfig, existing_nat_chains: Iterable[str] = ()) -> str:
    """The whole ruleset as one iptables-restore --noflush input, as upstream writes a full sync.
    Stale service chains among `existing_nat_chains` are flushed (a chain line) and then deleted."""
    frags = fragments(state, cfg).values()
    fixed = fixed_rules(cfg)
    flt = ["*filter", *(f":{c} - [0:0]" for c in C.FILTER_CHAINS), *fixed[("filter", C.KUBE_FORWARD)]]
    for f in frags:
        flt += f.filter_rules
    decls = [f":{c} - [0:0]" for c in C.NAT_CHAINS]
    active: set[str] = set()
    for f in frags:
        decls += [f":{c} - [0:0]" for c in f.chains]
        active.update(f.chains)
    stale = sorted(c for c in existing_nat_chains if C.is_service_chain(c) and c not in active)
    decls += [f":{c} - [0:0]" for c in stale]
    rules = [*fixed[("nat", C.KUBE_POSTROUTING)], *fixed[("nat", C.KUBE_MARK_MASQ)]]
    for f in frags:
        rules += f.nat_shared
        rules += f.rules
    rules.append(NODEPORTS_TAIL)
    rules += [f"-X {c}" for c in stale]
    return "\n".join([*flt, "COMMIT", "*nat", *decls, *rules, "COMMIT"]) + "\n"
