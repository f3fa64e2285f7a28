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


def base_commands(cfg: BaseConfig, flush: bool) -> list[str]:
    """Create (and with `flush`, reset) the fixed objects; map/set elements are left alone."""
    out = [f'add table {T} {{ comment "rules for kube-proxy" ; }}']
    for name, kind, typ, comment in SETS + MAPS:
        out.append(f'add {kind} {T} {name} {{ type {typ} ; comment "{comment}" ; }}')
    for name, ctype, hook, prio in BASE_CHAINS:
        out.append(f"add chain {T} {name} {{ type {ctype} hook {hook} priority {prio} ; }}")
    fixed = sorted({c for c, _, _ in JUMPS} | {N.MARK_MASQ, N.MASQUERADING, N.SERVICES})
    for name in fixed:
        out.append(f"add chain {T} {name}")
    out.append(f'add chain {T} {N.REJECT_CHAIN} {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}')
    if flush:
        out += [f"flush chain {T} {name}" for name, *_ in BASE_CHAINS]
        out += [f"flush chain {T} {name}" for name in [*fixed, N.REJECT_CHAIN]]
    for dst, src, extra in JUMPS:
        out.append(f"add rule {T} {src} {extra + ' ' if extra else ''}jump {dst}")
    out += [
        f"add rule {T} {N.MARK_MASQ} mark set mark or {cfg.mark}",
        f"add rule {T} {N.MASQUERADING} mark and {cfg.mark} == 0 return",
        # Clear the bit so a packet re-traversing the stack (e.g. via a tunnel) is not masqueraded twice.
        f"add rule {T} {N.MASQUERADING} mark set mark xor {cfg.mark}",
        f"add rule {T} {N.MASQUERADING} masquerade fully-random",
        f"add rule {T} {N.REJECT_CHAIN} reject",
        f"add rule {T} {N.SERVICE_ENDPOINTS_CHECK} ip daddr . meta l4proto . th dport vmap @{N.NO_ENDPOINT_SERVICES}",
        f"add rule {T} {N.NODEPORT_ENDPOINTS_CHECK} fib daddr type local {NO_LOCALHOST} "
        f"meta l4proto . th dport vmap @{N.NO_ENDPOINT_NODEPORTS}",
        f"add rule {T} {N.FIREWALL_CHECK} ip daddr . meta l4proto . th dport vmap @{N.FIREWALL_IPS}",
        f'add rule {T} {N.CLUSTER_IPS_CHECK} ip daddr @{N.CLUSTER_IPS} reject comment "Reject traffic to invalid ports of ClusterIPs"',
        f'add rule {T} {N.CLUSTER_IPS_CHECK} ip daddr {{ {cfg.service_cidr} }} drop comment "Drop traffic to unallocated ClusterIPs"',
        f"add rule {T} {N.SERVICES} ip daddr . meta l4proto . th dport vmap @{N.SERVICE_IPS}",
        f"add rule {T} {N.SERVICES} fib daddr type local {NO_LOCALHOST} meta l4proto . th dport vmap @{N.SERVICE_NODEPORTS}",
    ]
    return out
