"""Pure: proxy state + node config → the IPVS virtual servers, real servers, ipset members and bound IPs."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy_modes.ipvs import names as N
from proxy_modes.kernel.ipvs import RealServer, VirtualServer
from proxy_modes.model import Endpoint, ProxyState, ServicePort, usable


@dataclass(frozen=True)
class IpvsConfig:
    node_name: str
    node_ips: tuple[str, ...]
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    scheduler: str = "rr"
    masquerade_bit: int = 14

    @property
    def mark(self) -> str:
        return hex(1 << self.masquerade_bit)


@dataclass
class Desired:
    servers: dict[VirtualServer, list[RealServer]] = field(default_factory=dict)
    bound: set[str] = field(default_factory=set)  # addresses on kube-ipvs0
    ipsets: dict[str, set[str]] = field(default_factory=lambda: {s.name: set() for s in N.IPSETS})

    def listing(self) -> str:
        """`ipvsadm -Ln`-like text of the virtual and real servers (golden tests)."""
        out: list[str] = []
        for vs in sorted(self.servers):
            persist = f" persistent {vs.timeout}" if vs.timeout else ""
            out.append(f"{vs.protocol}  {vs.address}:{vs.port} {vs.scheduler}{persist}")
            out += [f"  -> {rs.address}:{rs.port}  Masq  {rs.weight}" for rs in self.servers[vs]]
        return "\n".join(out) + "\n"


def _reals(eps: list[Endpoint]) -> list[RealServer]:
    return sorted({RealServer(e.ip, e.port) for e in eps})


def _member(ip: str, sp: ServicePort, port: int) -> str:
    return f"{ip},{sp.name.proto}:{port}"


def compute(state: ProxyState, cfg: IpvsConfig) -> Desired:
    d = Desired()
    for spn in sorted(state.services):
        sp = state.services[spn]
        eps = state.endpoints.get(spn, [])
        cluster_eps = usable(eps, local_only=sp.internal_policy_local)
        external_eps = usable(eps, local_only=sp.external_policy_local)
        timeout = sp.affinity_timeout or 0

        def vs(addr: str, port: int, sp: ServicePort = sp, timeout: int = timeout) -> VirtualServer:
            return VirtualServer(addr, sp.name.protocol, port, cfg.scheduler, timeout)

        # Hairpin: a local endpoint reaching itself through the service must be masqueraded.
        for e in usable(eps, local_only=True):
            d.ipsets[N.LOOP_BACK.name].add(f"{e.ip},{spn.proto}:{e.port},{e.ip}")
        # ClusterIP: always a virtual server (with no real servers IPVS answers port unreachable).
        d.servers[vs(sp.cluster_ip, sp.port)] = _reals(cluster_eps)
        d.bound.add(sp.cluster_ip)
        d.ipsets[N.CLUSTER_IP.name].add(_member(sp.cluster_ip, sp, sp.port))
        for ips, all_set, local_set in ((sp.external_ips, N.EXTERNAL_IP, N.EXTERNAL_IP_LOCAL),
                                        (sp.load_balancer_ips, N.LOAD_BALANCER, N.LOAD_BALANCER_LOCAL)):
            for ip in ips:
                d.servers[vs(ip, sp.port)] = _reals(external_eps)
                d.bound.add(ip)
                chosen = local_set if sp.external_policy_local else all_set
                d.ipsets[chosen.name].add(_member(ip, sp, sp.port))
                if chosen is local_set and all_set is N.LOAD_BALANCER:
                    d.ipsets[all_set.name].add(_member(ip, sp, sp.port))  # LB: both sets, as upstream
        if sp.node_port and spn.protocol in N.NODE_PORT_SETS:
            all_set, local_set = N.NODE_PORT_SETS[spn.protocol]
            d.ipsets[all_set.name].add(str(sp.node_port))
            if sp.external_policy_local:
                d.ipsets[local_set.name].add(str(sp.node_port))
            for ip in cfg.node_ips:
                d.servers[vs(ip, sp.node_port)] = _reals(external_eps)
    d.ipsets[N.IPVS_IPS.name] = set(d.bound)
    return d
