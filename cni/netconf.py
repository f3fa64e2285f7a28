"""The pod network add-on: kube-flannel's ConfigMap (net-conf.json), backends and CNI plugin sets."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKENDS = {"flannel-vxlan": "vxlan", "flannel-host-gw": "host-gw"}
CNI_PLUGIN_SETS = ("netkube", "reference")
REFERENCE_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
# Where kube-flannel.yml puts its configuration; the agents' flannel waits for this object.
NAMESPACE = "kube-flannel"
CONFIGMAP = "kube-flannel-cfg"
NET_CONF_KEY = "net-conf.json"


class NetConfError(ValueError):
    """net-conf.json is unusable; the message says what and how to fix it."""


@dataclass(frozen=True)
class NetConf:
    network: str  # "10.244.0.0/16"
    backend: str  # "vxlan" | "host-gw"


def bin_dirs(state_dir: Path, plugins: str) -> list[str]:
    """CNI_PATH for the kubelet. "reference": /usr/lib/cni first, so bridge/host-local/portmap/loopback
    are the reference binaries, while flannel (not in that package) is still netkube's meta plugin."""
    own = str(Path(state_dir) / "cni" / "bin")
    return [REFERENCE_BIN_DIR, own] if plugins == "reference" else [own]


def net_conf(pod_cidr: str, network: str) -> dict[str, Any]:
    return {"Network": pod_cidr, "Backend": {"Type": BACKENDS[network]}}


def parse(text: str, cluster_pod_cidr: str) -> NetConf:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise NetConfError(f"{NET_CONF_KEY} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise NetConfError(f"{NET_CONF_KEY} must be a JSON object such as "
                           '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}')
    backend = (data.get("Backend") or {}).get("Type", "udp") if isinstance(data.get("Backend"), dict) else None
    if backend not in ("vxlan", "host-gw"):
        raise NetConfError(f"{NET_CONF_KEY}: Backend.Type {backend!r} is not supported; use vxlan or host-gw")
    try:
        net = ipaddress.IPv4Network(str(data.get("Network")), strict=True)
    except ValueError as e:
        raise NetConfError(f"{NET_CONF_KEY}: Network {data.get('Network')!r} is not an IPv4 network: {e}") from None
    if str(net) != str(ipaddress.IPv4Network(cluster_pod_cidr)):
        # kube-subnet-mgr leases node.spec.podCIDR, which comes from the cluster's --pod-cidr.
        raise NetConfError(f"{NET_CONF_KEY}: Network {net} differs from the cluster's pod CIDR "
                           f"{cluster_pod_cidr}; node podCIDRs come from that, so set Network to it")
    return NetConf(str(net), backend)


def manifests(network: str, pod_cidr: str) -> list[dict[str, Any]]:
    """What `kubectl apply -f kube-flannel.yml` creates that the agents act on: the namespace and
    ConfigMap kube-flannel-cfg (cni-conf.json + net-conf.json, the keys upstream uses)."""
    if network not in BACKENDS:
        raise NetConfError(f"unknown network {network!r}; choose: {', '.join(BACKENDS)}")
    cni_conf = {"name": "cbr0", "cniVersion": "1.0.0", "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    labels = {"app": "flannel", "k8s-app": "flannel", "tier": "node"}
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NAMESPACE, "labels": {"k8s-app": "flannel",
                                                     "pod-security.kubernetes.io/enforce": "privileged"}}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": CONFIGMAP, "namespace": NAMESPACE, "labels": labels},
         "data": {"cni-conf.json": json.dumps(cni_conf, indent=2),
                  NET_CONF_KEY: json.dumps(net_conf(pod_cidr, network), indent=2)}},
    ]
