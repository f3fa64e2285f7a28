"""Pure: which ipsets are non-empty → the iptables-restore text ipvs mode needs (masquerade, hairpin,
node ports, accept). Mirrors upstream writeIptablesRules: a rule per non-empty set, nothing per service."""

from __future__ import annotations

from proxy_modes.ipvs import names as N
from proxy_modes.ipvs.desired import Desired, IpvsConfig

# (set, table, from chain, target, match type, protocol) — upstream ipsetWithIptablesChain, in order.
SET_RULES = (
    (N.LOOP_BACK, "nat", N.KUBE_POSTROUTING, "MASQUERADE", "dst,dst,src", ""),
    (N.LOAD_BALANCER, "nat", N.KUBE_SERVICES, N.KUBE_LOAD_BALANCER, "dst,dst", ""),
    (N.LOAD_BALANCER_LOCAL, "nat", N.KUBE_LOAD_BALANCER, "RETURN", "dst,dst", ""),
    (N.NODE_PORT_LOCAL_TCP, "nat", N.KUBE_NODE_PORT, "RETURN", "dst", "tcp"),
    (N.NODE_PORT_TCP, "nat", N.KUBE_NODE_PORT, N.KUBE_MARK_MASQ, "dst", "tcp"),
    (N.NODE_PORT_LOCAL_UDP, "nat", N.KUBE_NODE_PORT, "RETURN", "dst", "udp"),
    (N.NODE_PORT_UDP, "nat", N.KUBE_NODE_PORT, N.KUBE_MARK_MASQ, "dst", "udp"),
)


def _q(s: str) -> str:
    return f'"{s}"'


def render(d: Desired, cfg: IpvsConfig) -> str:
    """iptables-restore --noflush input for the nat and filter tables (our chains are rewritten whole)."""
    mark = cfg.mark
    nonempty = {name for name, members in d.ipsets.items() if members}
    nat: list[str] = [f":{c} - [0:0]" for c in N.NAT_CHAINS]
    flt: list[str] = [f":{c} - [0:0]" for c in N.FILTER_CHAINS]
    for spec, table, chain, target, mtype, proto in SET_RULES:
        if spec.name not in nonempty:
            continue
        p = f"-p {proto} " if proto else ""
        rule = f"-A {chain} {p}-m comment --comment {_q(spec.comment)} -m set --match-set {spec.name} {mtype} -j {target}"
        (nat if table == "nat" else flt).append(rule)
    nat += [
        f"-A {N.KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        # Clear the bit so a packet re-traversing the stack (e.g. via a tunnel) is not masqueraded twice.
        f"-A {N.KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
        f'-A {N.KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
        f"-A {N.KUBE_MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    if N.CLUSTER_IP.name in nonempty:
        # Off-cluster sources (the node itself, other hosts) reaching a ClusterIP are SNATed so the
        # replies come back through this node's IPVS connection.
        nat.append(f"-A {N.KUBE_SERVICES} -m comment --comment {_q(N.CLUSTER_IP.comment)} -m set --match-set "
                   f"{N.CLUSTER_IP.name} dst,dst ! -s {cfg.cluster_cidr} -j {N.KUBE_MARK_MASQ}")
    if N.EXTERNAL_IP.name in nonempty:
        head = (f"-A {N.KUBE_SERVICES} -m comment --comment {_q(N.EXTERNAL_IP.comment)} -m set --match-set "
                f"{N.EXTERNAL_IP.name} dst,dst")
        nat += [f"{head} -j {N.KUBE_MARK_MASQ}", f"{head} -m addrtype --dst-type LOCAL -j ACCEPT"]
    nat.append(f"-A {N.KUBE_SERVICES} -m addrtype --dst-type LOCAL -j {N.KUBE_NODE_PORT}")
    nat.append(f"-A {N.KUBE_LOAD_BALANCER} -j {N.KUBE_MARK_MASQ}")
    # Accept traffic to virtual servers in case later rules would drop it (must end KUBE-SERVICES).
    for spec in (N.CLUSTER_IP, N.LOAD_BALANCER):
        if spec.name in nonempty:
            nat.append(f"-A {N.KUBE_SERVICES} -m set --match-set {spec.name} dst,dst -j ACCEPT")
    flt += [
        f"-A {N.KUBE_SOURCE_RANGES_FIREWALL} -j DROP",
        f'-A {N.KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
        f'-A {N.KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {N.KUBE_NODE_PORT} -m comment --comment {_q(N.HEALTH_CHECK_NODE_PORT.comment)} -m set --match-set "
        f"{N.HEALTH_CHECK_NODE_PORT.name} dst -j ACCEPT",
    ]
    # KUBE-IPVS-FILTER: addresses on kube-ipvs0 accept new connections only on service ports.
    for spec in (N.LOAD_BALANCER, N.CLUSTER_IP, N.EXTERNAL_IP, N.EXTERNAL_IP_LOCAL):
        flt.append(f"-A {N.KUBE_IPVS_FILTER} -m set --match-set {spec.name} dst,dst -j RETURN")
    flt.append(f"-A {N.KUBE_IPVS_FILTER} -m set --match-set {N.HEALTH_CHECK_NODE_PORT.name} dst -j RETURN")
    flt.append(f"-A {N.KUBE_IPVS_FILTER} -m conntrack --ctstate NEW -m set --match-set {N.IPVS_IPS.name} dst -j REJECT")
    return "\n".join(["*filter", *flt, "COMMIT", "*nat", *nat, "COMMIT"]) + "\n"
