"""Names kube-proxy gives its iptables chains, and the base-chain jumps it owns (data for cleanup)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache

from proxy_modes.model import Endpoint, ServicePortName

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")

# Chains rewritten on every sync, in upstream's declaration order.
NAT_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)
FILTER_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL)
CANARY_TABLES = ("mangle", "nat", "filter")


@dataclass(frozen=True)
class Jump:
    """A rule in a base chain jumping to one of ours (upstream iptablesJumpChains)."""

    table: str
    chain: str  # ours
    source: str  # the base chain
    comment: str
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        return [*self.extra, "-m", "comment", "--comment", self.comment, "-j", self.chain]


NEW = ("-m", "conntrack", "--ctstate", "NEW")
JUMPS = (
    Jump("filter", KUBE_EXTERNAL_SERVICES, "INPUT", "kubernetes externally-visible service portals", NEW),
    Jump("filter", KUBE_EXTERNAL_SERVICES, "FORWARD", "kubernetes externally-visible service portals", NEW),
    Jump("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports"),
    Jump("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", NEW),
    Jump("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", NEW),
    Jump("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules"),
    Jump("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", NEW),
    Jump("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", NEW),
    Jump("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", NEW),
    Jump("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals"),
    Jump("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals"),
    Jump("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules"),
)


@lru_cache(maxsize=1 << 17)  # every sync asks again for the same names; hashing them is most of a render
def port_proto_hash(spn: ServicePortName, extra: str = "") -> str:
    """First 16 chars of base32(sha256(servicePortName + protocol [+ "ip:port"])), as upstream."""
    digest = hashlib.sha256((str(spn) + spn.proto + extra).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


@lru_cache(maxsize=1 << 15)
def service_chain_names(spn: ServicePortName) -> tuple[str, str, str]:
    """KUBE-SVC-, KUBE-SVL- and KUBE-EXT- of one service port (one hash, one cache lookup)."""
    h = port_proto_hash(spn)
    return "KUBE-SVC-" + h, "KUBE-SVL-" + h, "KUBE-EXT-" + h


def svc_chain(spn: ServicePortName) -> str:
    return "KUBE-SVC-" + port_proto_hash(spn)


def svl_chain(spn: ServicePortName) -> str:
    return "KUBE-SVL-" + port_proto_hash(spn)


def ext_chain(spn: ServicePortName) -> str:
    return "KUBE-EXT-" + port_proto_hash(spn)


def sep_chain(spn: ServicePortName, ep: Endpoint | str) -> str:
    return "KUBE-SEP-" + port_proto_hash(spn, str(ep))


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)
