"""The fixed part of `table ip kube-proxy`: base chains, dispatch maps, masquerade and reject helpers."""

from __future__ import annotations

from dataclasses import dataclass

from proxy_modes.nftables import names as N
from proxy_modes.nftables.names import T

# (name, type, hook, priority). Filter chains run at dstnat-10 so they see pre-DNAT destinations;
# filter-output-post-dnat (dstnat+10) sees the DNATed ones, as upstream nftablesBaseChains.
BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", -110),
    ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110),
    ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)

# (our chain, base chain, extra match): upstream nftablesJumpChains. The reject verdict is only
# valid in input/forward/output hooks, hence no endpoints check from filter-prerouting.
JUMPS = (
    (N.NODEPORT_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (N.SERVICE_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (N.SERVICE_ENDPOINTS_CHECK, "filter-forward", "ct state new"),
    (N.SERVICE_ENDPOINTS_CHECK, "filter-output", "ct state new"),
    (N.FIREWALL_CHECK, "filter-prerouting", "ct state new"),
    (N.FIREWALL_CHECK, "filter-output", "ct state new"),
    (N.CLUSTER_IPS_CHECK, "filter-forward", "ct state new"),
    (N.CLUSTER_IPS_CHECK, "filter-output-post-dnat", "ct state new"),
    (N.SERVICES, "nat-output", ""),
    (N.SERVICES, "nat-prerouting", ""),
    (N.MASQUERADING, "nat-postrouting", ""),
)

V4 = "ipv4_addr . inet_proto . inet_service : verdict"
PORTS = "inet_proto . inet_service : verdict"
SETS = ((N.CLUSTER_IPS, "set", "ipv4_addr", "Active ClusterIPs"),)
MAPS = (
    (N.NO_ENDPOINT_SERVICES, "map", V4, "vmap to drop or reject packets to services with no endpoints"),
    (N.NO_ENDPOINT_NODEPORTS, "map", PORTS, "vmap to drop or reject packets to service nodeports with no endpoints"),
    (N.FIREWALL_IPS, "map", V4, "destinations that are subject to LoadBalancerSourceRanges"),
    (N.SERVICE_IPS, "map", V4, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    (N.SERVICE_NODEPORTS, "map", PORTS, "NodePort traffic"),
)
NO_LOCALHOST = "ip daddr != 127.0.0.0/8"  # NodePorts on 127.0.0.1 are not supported (route_localnet)


@dataclass(frozen=True)
class BaseConfig:
    service_cidr: str = "172.30.0.0/16"  # traffic to unallocated ClusterIPs in it is dropped
    mark: str = "0x4000"


DECLARATIONS = {name: (kind, typ, comment) for name, kind, typ, comment in SETS + MAPS}


def declare(name: str, elements: str = "") -> str:
    """`add map|set` of a fixed map or set, optionally with elements ("k : v , k2 : v2").

    Re-declaring an existing map with identical properties only adds the elements, and nft 1.0.6
    then needs just its table cache, while `add element` makes it list every chain of the table.
    """
    kind, typ, comment = DECLARATIONS[name]
    elems = f" elements = {{ {elements} }} ;" if elements else ""
    return f'add {kind} {T} {name} {{ type {typ} ; comment "{comment}" ;{elems} }}'


def base_commands(cfg: BaseConfig, flush: bool, create_table: bool = True) -> list[str]:
    """Create (and with `flush`, reset) the fixed objects; map/set elements are left alone.

    Without `create_table` the table must exist: `add table` with a block (for its comment) makes
    nft 1.0.6 list every chain of it first, ~0.4 s at 10k services.
    """
    out = [f'add table {T} {{ comment "rules for kube-proxy" ; }}'] if create_table else []
    out += [declare(name) for name in DECLARATIONS]
    for name, ctype, hook, prio in BASE_CHAINS:
        out.append(f"add chain {T} {name} {{ type {ctype} hook {hook} priority {prio} ; }}")
    fixed = sorted({c for c, _, _ in JUMPS} | {N.MARK_MASQ, N.MASQUERADING, N.SERVICES})
    for name in fixed:
        out.append(f"add chain {T} {name}")
    out.append(f'add chain {T} {N.REJECT_CHAIN} {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}')
    if flush:
        out += [f"flush chain {T} {name}" for name, *_ in BASE_CHAINS]
        out += [f"flush chain {T} {name}" for name in [*fixed, N.REJECT_CHAIN]]
    rules: dict[str, list[str]] = {}
    for dst, src, extra in JUMPS:
        rules.setdefault(src, []).append(f"{extra + ' ' if extra else ''}jump {dst}")
    more = [
        (N.MARK_MASQ, f"mark set mark or {cfg.mark}"),
        (N.MASQUERADING, f"mark and {cfg.mark} == 0 return"),
        # Clear the bit so a packet re-traversing the stack (e.g. via a tunnel) is not masqueraded twice.
        (N.MASQUERADING, f"mark set mark xor {cfg.mark}"),
        (N.MASQUERADING, "masquerade fully-random"),
        (N.REJECT_CHAIN, "reject"),
        (N.SERVICE_ENDPOINTS_CHECK, f"ip daddr . meta l4proto . th dport vmap @{N.NO_ENDPOINT_SERVICES}"),
        (N.NODEPORT_ENDPOINTS_CHECK, f"fib daddr type local {NO_LOCALHOST} meta l4proto . th dport vmap @{N.NO_ENDPOINT_NODEPORTS}"),
        (N.FIREWALL_CHECK, f"ip daddr . meta l4proto . th dport vmap @{N.FIREWALL_IPS}"),
        (N.CLUSTER_IPS_CHECK, f'ip daddr @{N.CLUSTER_IPS} reject comment "Reject traffic to invalid ports of ClusterIPs"'),
        (N.CLUSTER_IPS_CHECK, f'ip daddr {{ {cfg.service_cidr} }} drop comment "Drop traffic to unallocated ClusterIPs"'),
        (N.SERVICES, f"ip daddr . meta l4proto . th dport vmap @{N.SERVICE_IPS}"),
        (N.SERVICES, f"fib daddr type local {NO_LOCALHOST} meta l4proto . th dport vmap @{N.SERVICE_NODEPORTS}"),
    ]
    for chain, rule in more:
        rules.setdefault(chain, []).append(rule)
    return out + [chain_block(chain, body) for chain, body in rules.items()]


def chain_block(chain: str, rules: list[str]) -> str:
    """`add chain` with its rules in one statement: nft 1.0.6 then fetches only its table cache,
    where each `add rule` makes it list every chain of the table first (~0.4 s at 50k chains)."""
    if not rules:
        return f"add chain {T} {chain}"
    return f"add chain {T} {chain} {{ " + "".join(f"{r} ; " for r in rules) + "}"
