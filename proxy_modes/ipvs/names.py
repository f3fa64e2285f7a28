"""Names ipvs mode owns: the dummy link, ipsets (upstream names, types, comments), chains and jumps."""

from __future__ import annotations

from dataclasses import dataclass

from proxy_modes.iptables.chains import Jump

DUMMY = "kube-ipvs0"


@dataclass(frozen=True)
class IpsetSpec:
    name: str
    type: str
    comment: str

    def create_line(self) -> str:
        opts = "range 0-65535" if self.type.startswith("bitmap:") else "family inet hashsize 1024 maxelem 65536"
        return f"create {self.name} {self.type} {opts}"


# pkg/proxy/ipvs/proxier.go ipsetInfo (IPv4).
LOOP_BACK = IpsetSpec("KUBE-LOOP-BACK", "hash:ip,port,ip",
                      "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose")
CLUSTER_IP = IpsetSpec("KUBE-CLUSTER-IP", "hash:ip,port", "Kubernetes service cluster ip + port for masquerade purpose")
EXTERNAL_IP = IpsetSpec("KUBE-EXTERNAL-IP", "hash:ip,port",
                        "Kubernetes service external ip + port for masquerade and filter purpose")
EXTERNAL_IP_LOCAL = IpsetSpec("KUBE-EXTERNAL-IP-LOCAL", "hash:ip,port",
                              "Kubernetes service external ip + port with externalTrafficPolicy=local")
LOAD_BALANCER = IpsetSpec("KUBE-LOAD-BALANCER", "hash:ip,port", "Kubernetes service lb portal")
LOAD_BALANCER_LOCAL = IpsetSpec("KUBE-LOAD-BALANCER-LOCAL", "hash:ip,port",
                                "Kubernetes service load balancer ip + port with externalTrafficPolicy=local")
NODE_PORT_TCP = IpsetSpec("KUBE-NODE-PORT-TCP", "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose")
NODE_PORT_LOCAL_TCP = IpsetSpec("KUBE-NODE-PORT-LOCAL-TCP", "bitmap:port",
                                "Kubernetes nodeport TCP port with externalTrafficPolicy=local")
NODE_PORT_UDP = IpsetSpec("KUBE-NODE-PORT-UDP", "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose")
NODE_PORT_LOCAL_UDP = IpsetSpec("KUBE-NODE-PORT-LOCAL-UDP", "bitmap:port",
                                "Kubernetes nodeport UDP port with externalTrafficPolicy=local")
HEALTH_CHECK_NODE_PORT = IpsetSpec("KUBE-HEALTH-CHECK-NODE-PORT", "bitmap:port", "Kubernetes health check node port")
IPVS_IPS = IpsetSpec("KUBE-IPVS-IPS", "hash:ip", "IPVS virtual server IP addresses")

IPSETS = (LOOP_BACK, CLUSTER_IP, EXTERNAL_IP, EXTERNAL_IP_LOCAL, LOAD_BALANCER, LOAD_BALANCER_LOCAL,
          NODE_PORT_TCP, NODE_PORT_LOCAL_TCP, NODE_PORT_UDP, NODE_PORT_LOCAL_UDP, HEALTH_CHECK_NODE_PORT,
          IPVS_IPS)
NODE_PORT_SETS = {"TCP": (NODE_PORT_TCP, NODE_PORT_LOCAL_TCP), "UDP": (NODE_PORT_UDP, NODE_PORT_LOCAL_UDP)}

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_NODE_PORT = "KUBE-NODE-PORT"
KUBE_LOAD_BALANCER = "KUBE-LOAD-BALANCER"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_SOURCE_RANGES_FIREWALL = "KUBE-SOURCE-RANGES-FIREWALL"
KUBE_IPVS_FILTER = "KUBE-IPVS-FILTER"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
CANARY_TABLES = ("mangle", "nat", "filter")

NAT_CHAINS = (KUBE_SERVICES, KUBE_POSTROUTING, KUBE_NODE_PORT, KUBE_LOAD_BALANCER, KUBE_MARK_MASQ)
FILTER_CHAINS = (KUBE_FORWARD, KUBE_NODE_PORT, KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL, KUBE_IPVS_FILTER)

# Upstream ipvs iptablesJumpChain.
JUMPS = (
    Jump("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals"),
    Jump("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals"),
    Jump("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules"),
    Jump("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules"),
    Jump("filter", KUBE_NODE_PORT, "INPUT", "kubernetes health check rules"),
    Jump("filter", KUBE_PROXY_FIREWALL, "INPUT", "kube-proxy firewall rules"),
    Jump("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kube-proxy firewall rules"),
    Jump("filter", KUBE_IPVS_FILTER, "INPUT", "kubernetes ipvs access filter"),
)

# Sysctls upstream sets in the node's netns (pkg/proxy/ipvs/proxier.go NewProxier).
SYSCTLS = (
    ("net.ipv4.vs.conntrack", "1"),  # so KUBE-POSTROUTING's MASQUERADE sees IPVS-forwarded packets
    ("net.ipv4.vs.expire_nodest_conn", "1"),  # drop connections to a deleted real server at once
    ("net.ipv4.vs.expire_quiescent_template", "1"),  # persistence templates of weight-0 servers expire
)
# conn_reuse_mode=0 is only set on kernels before 5.9, whose mode 1 delayed reused ports by 1 s.
CONN_REUSE = ("net.ipv4.vs.conn_reuse_mode", "0")
CONN_REUSE_FIXED = (5, 9)
