"""Cluster configuration and the naming scheme for every host object, written down once."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_ROOT = Path("/var/lib/netkube")
API_PORT = 6443
CLUSTER_DOMAIN = "cluster.local"
VXLAN_VNI = 1
VXLAN_PORT = 8472
MASQ_MARK = 0x4000


class ConfigError(ValueError):
    """A user-supplied setting is wrong; the message says what and how to fix it."""


@dataclass
class ClusterConfig:
    name: str = "netkube"
    nodes: int = 3
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    node_cidr: str = "192.168.56.0/24"
    proxy_mode: str = "iptables"
    node_port_range: str = "30000-32767"
    cluster_domain: str = CLUSTER_DOMAIN
    api_port: int = API_PORT
    state_root: str = str(STATE_ROOT)
    extra: dict[str, str] = field(default_factory=dict)

    # --- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        if not self.name or not all(c.isalnum() or c == "-" for c in self.name) or len(self.name) > 20:
            raise ConfigError(
                f"cluster name {self.name!r} is invalid: use up to 20 letters, digits or '-'"
            )
        root = Path(self.state_root).resolve()
        if root == Path("/tmp") or Path("/tmp") in root.parents:
            raise ConfigError(
                f"state root {self.state_root} is under /tmp, which every container replaces with a "
                f"private /tmp; use a directory elsewhere, e.g. /var/tmp or /var/lib/netkube"
            )
        if not 1 <= self.nodes <= 50:
            raise ConfigError(f"--nodes {self.nodes}: choose between 1 and 50 nodes")
        nets = {}
        for flag, value in (
            ("--pod-cidr", self.pod_cidr),
            ("--service-cidr", self.service_cidr),
            ("--node-cidr", self.node_cidr),
        ):
            try:
                net = ipaddress.IPv4Network(value, strict=True)
            except ValueError as e:
                raise ConfigError(f"{flag} {value!r} is not an IPv4 network such as 10.0.0.0/16: {e}") from e
            nets[flag] = net
        if nets["--pod-cidr"].prefixlen > 24 - max(0, (self.nodes - 1).bit_length()):
            raise ConfigError(
                f"--pod-cidr {self.pod_cidr} is too small for {self.nodes} nodes with a /24 each; "
                f"use a /16 such as 10.244.0.0/16"
            )
        if nets["--service-cidr"].num_addresses < 16:
            raise ConfigError(f"--service-cidr {self.service_cidr} needs at least 16 addresses (use /28 or larger)")
        if nets["--node-cidr"].num_addresses < 101 + self.nodes + 2:
            raise ConfigError(
                f"--node-cidr {self.node_cidr} has no room for nodes at .101..{100 + self.nodes}; use a /24"
            )
        names = list(nets)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if nets[a].overlaps(nets[b]):
                    raise ConfigError(f"{a} {nets[a]} overlaps {b} {nets[b]}; choose disjoint ranges")
        if self.proxy_mode not in ("iptables",):
            raise ConfigError(f"--proxy-mode {self.proxy_mode!r} is not available; choose: iptables")

    # --- derived values ---------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return Path(self.state_root) / self.name

    @property
    def node_names(self) -> list[str]:
        return [f"node{i}" for i in range(1, self.nodes + 1)]

    def node_ip(self, node: str) -> str:
        index = int(node.removeprefix("node"))
        return str(ipaddress.IPv4Network(self.node_cidr)[100 + index])

    @property
    def node_prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.node_cidr).prefixlen

    @property
    def underlay_gateway(self) -> str:
        """The underlay router's address (.1), as the host side of a Vagrant host-only network."""
        return str(ipaddress.IPv4Network(self.node_cidr)[1])

    @property
    def api_host(self) -> str:
        """Where nodes and pods reach the apiserver: the control-plane node's IP."""
        return self.node_ip("node1")

    @property
    def api_url_nodes(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def api_url_host(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def service_ip(self, index: int) -> str:
        return str(ipaddress.IPv4Network(self.service_cidr)[index])

    @property
    def kubernetes_service_ip(self) -> str:
        return self.service_ip(1)

    @property
    def dns_service_ip(self) -> str:
        return self.service_ip(10)

    @property
    def node_port_min(self) -> int:
        return int(self.node_port_range.split("-")[0])

    @property
    def node_port_max(self) -> int:
        return int(self.node_port_range.split("-")[1])

    # --- host object names (see docs/architecture.md) -----------------------------------------
    @property
    def underlay_netns(self) -> str:
        return f"{self.name}-underlay"

    def node_netns(self, node: str) -> str:
        return f"{self.name}-{node}"

    def pod_netns(self, pod_uid: str) -> str:
        return f"{self.name}-pod-{pod_uid.replace('-', '')[:12]}"

    def node_dir(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def records_path(self) -> Path:
        return self.state_dir / "records.jsonl"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "store.sqlite"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    # --- persistence ------------------------------------------------------------------------
    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "cluster.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, name: str, state_root: str = str(STATE_ROOT)) -> ClusterConfig:
        path = Path(state_root) / name / "cluster.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no cluster named {name!r} (no {path}); start one with `netkube up --name {name}`") from None
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> ClusterConfig:
        return cls(**json.loads(Path(path).read_text()))
