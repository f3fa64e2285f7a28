"""The per-node files flannel writes: run/flannel/subnet.env and cni/net.d/10-flannel.conflist."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any


def subnet_env(network: str, pod_cidr: str, mtu: int, ipmasq: bool = False) -> str:
    net = ipaddress.IPv4Network(pod_cidr, strict=False)
    return (f"FLANNEL_NETWORK={network}\nFLANNEL_SUBNET={net.network_address + 1}/{net.prefixlen}\n"
            f"FLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={'true' if ipmasq else 'false'}\n")


def conflist(node_dir: Path) -> dict[str, Any]:
    return {
        "name": "cbr0",
        "cniVersion": "1.0.0",
        "plugins": [{
            "type": "flannel",
            "subnetFile": str(node_dir / "run/flannel/subnet.env"),
            "dataDir": str(node_dir / "cni/flannel"),
            "delegate": {"hairpinMode": True, "isDefaultGateway": True,
                         "ipam": {"dataDir": str(node_dir / "cni/networks")}},
        }, {
            # hostPort → pod, fed by the kubelet's runtimeConfig.portMappings (kube-flannel.yml's list)
            "type": "portmap", "capabilities": {"portMappings": True},
        }],
    }


def write_atomic(path: Path, text: str) -> None:
    # Readers (plugins, kubelet) never see a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_conflist(node_dir: Path) -> Path:
    path = node_dir / "cni/net.d/10-flannel.conflist"
    write_atomic(path, json.dumps(conflist(node_dir), indent=2) + "\n")
    return path
