"""Pure renderer of the userspace mode's iptables nat rules (upstream pkg/proxy/userspace, removed in 1.26)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy_modes.model import ServicePort

PORTALS_CONTAINER = "KUBE-PORTALS-CONTAINER"
PORTALS_HOST = "KUBE-PORTALS-HOST"
NODEPORT_CONTAINER = "KUBE-NODEPORT-CONTAINER"
NODEPORT_HOST = "KUBE-NODEPORT-HOST"
CHAINS = (PORTALS_CONTAINER, PORTALS_HOST, NODEPORT_CONTAINER, NODEPORT_HOST)


@dataclass(frozen=True)
class Jump:
    """A base-chain rule jumping to one of ours (upstream iptablesInit); data for cleanup too."""

    source: str
    chain: str
    extra: tuple[str, ...]
    comment: str
    position: str  # "prepend" or "append"

    def args(self) -> list[str]:
        return [*self.extra, "-m", "comment", "--comment", self.comment, "-j", self.chain]


PORTALS = "handle ClusterIPs; NOTE: this must be before the NodePort rules"
NODEPORTS = "handle service NodePorts; NOTE: this must be the last rule in the chain"
LOCAL = ("-m", "addrtype", "--dst-type", "LOCAL")
JUMPS = (
    Jump("OUTPUT", PORTALS_HOST, (), PORTALS, "prepend"),
    Jump("PREROUTING", PORTALS_CONTAINER, (), PORTALS, "prepend"),
    Jump("OUTPUT", NODEPORT_HOST, LOCAL, NODEPORTS, "append"),
    Jump("PREROUTING", NODEPORT_CONTAINER, LOCAL, NODEPORTS, "append"),
)


def _q(s: str) -> str:
    return f'"{s}"' if " " in s else s


def render(ports: dict[ServicePort, int], node_ip: str) -> str:
    """iptables-restore --noflush input for the nat table; `ports` maps service port → proxy port."""
    lines = ["*nat", *(f":{c} - [0:0]" for c in CHAINS)]
    for sp in sorted(ports, key=lambda s: s.name):
        proxy_port, proto, name = ports[sp], sp.name.proto, _q(str(sp.name))
        for ip in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips):
            match = f"-d {ip}/32 -p {proto} -m comment --comment {name} -m {proto} --dport {sp.port}"
            # From pods (PREROUTING): REDIRECT to the proxy on the incoming interface's address.
            lines.append(f"-A {PORTALS_CONTAINER} {match} -j REDIRECT --to-ports {proxy_port}")
            # From the node itself (OUTPUT): REDIRECT would mean 127.0.0.1; DNAT to the node IP instead.
            lines.append(f"-A {PORTALS_HOST} {match} -j DNAT --to-destination {node_ip}:{proxy_port}")
        if sp.node_port:
            match = f"-p {proto} -m comment --comment {name} -m {proto} --dport {sp.node_port}"
            lines.append(f"-A {NODEPORT_CONTAINER} {match} -j REDIRECT --to-ports {proxy_port}")
            lines.append(f"-A {NODEPORT_HOST} {match} -j DNAT --to-destination {node_ip}:{proxy_port}")
    return "\n".join([*lines, "COMMIT"]) + "\n"
