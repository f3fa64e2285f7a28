"""Names of the objects in `table ip kube-proxy`, spelled exactly as upstream pkg/proxy/nftables."""

from __future__ import annotations

import base64
import functools
import hashlib

from proxy_modes.model import Endpoint, ServicePortName

FAMILY, TABLE = "ip", "kube-proxy"
T = f"{FAMILY} {TABLE}"  # prefix of every command: "add chain ip kube-proxy X"

SERVICES = "services"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
CLUSTER_IPS = "cluster-ips"
CLUSTER_IPS_CHECK = "cluster-ips-check"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
REJECT_CHAIN = "reject-chain"
FIREWALL_IPS = "firewall-ips"
FIREWALL_CHECK = "firewall-check"
MARK_MASQ = "mark-for-masquerade"
MASQUERADING = "masquerading"

# Maps/sets whose elements are rewritten as a whole on a full sync (the "switch" transaction).
ELEMENT_OWNERS = (CLUSTER_IPS, SERVICE_IPS, SERVICE_NODEPORTS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS)


@functools.lru_cache(maxsize=1 << 17)  # a full sync of 10k services names 90k objects
def hash_and_truncate(name: str) -> str:
    """Upstream hashAndTruncate: base32(sha256(name))[:8] + "-" + name (max 240 chars)."""
    # 8 base32 characters are exactly the first 5 bytes (40 bits): encode only those.
    encoded = base64.b32encode(hashlib.sha256(name.encode()).digest()[:5]).decode()
    out = encoded + "-" + name
    return out if len(out) <= 240 else out[:237] + "..."


def port_base(spn: ServicePortName) -> str:
    return hash_and_truncate(f"{spn.namespace}/{spn.name}/{spn.proto}/{spn.port}")


def endpoint_base(spn: ServicePortName, ep: Endpoint) -> str:
    return hash_and_truncate(f"{spn.namespace}/{spn.name}/{spn.proto}/{spn.port}__{ep.ip}/{ep.port}")


def service_chain(spn: ServicePortName) -> str:
    return "service-" + port_base(spn)


def local_chain(spn: ServicePortName) -> str:
    return "local-" + port_base(spn)


def external_chain(spn: ServicePortName) -> str:
    return "external-" + port_base(spn)


def endpoint_chain(spn: ServicePortName, ep: Endpoint) -> str:
    return "endpoint-" + endpoint_base(spn, ep)


def affinity_set(spn: ServicePortName, ep: Endpoint) -> str:
    return "affinity-" + endpoint_base(spn, ep)


def is_service_object(name: str) -> bool:
    """Per-service chains and sets always contain a "/" (upstream isServiceChainName)."""
    return "/" in name
