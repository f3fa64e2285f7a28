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
PROXY_MODES = ("iptables", "nftables", "userspace", "ipvs")  # ipvs falls back to iptables without IPVS
RUNTIMES = ("process", "docker")
IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq")


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
    # pod network add-on: flannel-vxlan | flannel-host-gw | none (`netkube network install` later)
    network: str = "flannel-vxlan"
    # CNI plugin binaries: netkube's own, or "reference" = /usr/lib/cni first in CNI_PATH
    cni_plugins: str = "netkube"
    # LoadBalancer addresses, "first-last" on the node network; "" = .240-.250 of --node-cidr.
    lb_pool: str = ""
    # apiserver storage: "sqlite" (store.sqlite in the state dir) or "etcd" at etcd_endpoints.
    store: str = "sqlite"
    etcd_endpoints: str = ""
    # plain HTTP without authentication instead of HTTPS with the cluster CA (netkube up --insecure-http)
    insecure_http: bool = False
    # kube-proxy --ipvs-scheduler (ipvs mode): rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq
    ipvs_scheduler: str = "rr"
    # machine mode (`netkube server` / `join` on real machines): the control plane's address on the node
    # network, e.g. 192.168.56.101; "" = the emulator's node1 address
    api_address: str = ""
    # pod runtime: "process" (nsexec'd processes) or "docker" (containers of a Docker engine, see
    # docs/runtime-docker.md); docker_host "" = the engine `netkube up` starts for the cluster
    runtime: str = "process"
    docker_host: str = ""

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
        self._validate_lb_pool(nets["--node-cidr"])
        self._validate_network()
        if self.proxy_mode not in PROXY_MODES:
            raise ConfigError(f"--proxy-mode {self.proxy_mode!r} is not available; choose: {', '.join(PROXY_MODES)}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"--runtime {self.runtime!r} is unknown; choose: {', '.join(RUNTIMES)}")
        if self.ipvs_scheduler not in IPVS_SCHEDULERS:
            raise ConfigError(f"--ipvs-scheduler {self.ipvs_scheduler!r} is unknown; choose: {', '.join(IPVS_SCHEDULERS)}")

    def _validate_lb_pool(self, node_net: ipaddress.IPv4Network) -> None:
        if node_net.num_addresses < 252:
            raise ConfigError(f"--node-cidr {self.node_cidr} has no room for the client (.200) and the "
                              f"LoadBalancer pool (.240-.250); use a /24")
        try:
            ips = [ipaddress.IPv4Address(ip) for ip in self.lb_pool_ips]
        except ValueError as e:
            raise ConfigError(f"--lb-pool {self.lb_pool!r} is not a range such as 192.168.56.240-192.168.56.250: {e}") from e
        taken = {self.node_ip(n) for n in self.node_names} | {self.underlay_gateway, self.client_ip}
        bad = [str(ip) for ip in ips if ip not in node_net or str(ip) in taken]
        if not ips or bad:
            raise ConfigError(f"--lb-pool {self.lb_pool!r} must be free addresses of --node-cidr {self.node_cidr} "
                              f"(not nodes .101+, the gateway .1 or the client .200); bad: {bad or 'empty'}")

    def _validate_network(self) -> None:
        from cni.netconf import BACKENDS, CNI_PLUGIN_SETS

        if self.network not in (*BACKENDS, "none"):
            raise ConfigError(f"--network {self.network!r} is unknown; choose: {', '.join(BACKENDS)} "
                              f"(or --no-network)")
        if self.cni_plugins not in CNI_PLUGIN_SETS:
            raise ConfigError(f"--cni-plugins {self.cni_plugins!r} is unknown; choose: {', '.join(CNI_PLUGIN_SETS)}")

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
        return self.api_address or self.node_ip("node1")

    @property
    def api_scheme(self) -> str:
        return "http" if self.insecure_http else "https"

    @property
    def api_url_nodes(self) -> str:
        return f"{self.api_scheme}://{self.api_host}:{self.api_port}"

    @property
    def api_url_host(self) -> str:
        return f"{self.api_scheme}://127.0.0.1:{self.api_port}"

    @property
    def pki_dir(self) -> Path:
        """The cluster CA and the certificates `netkube up` issues (see netkube/pki.py)."""
        return self.state_dir / "pki"

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

    @property
    def lb_pool_ips(self) -> list[str]:
        """The LoadBalancer pool, in allocation order (MetalLB L2: addresses on the node network)."""
        net = ipaddress.IPv4Network(self.node_cidr)
        if self.lb_pool:
            first, _, last = self.lb_pool.partition("-")
            lo, hi = ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address((last or first).strip())
        else:
            lo, hi = net[240], net[250]
        return [str(ipaddress.IPv4Address(i)) for i in range(int(lo), int(hi) + 1)]

    @property
    def client_ip(self) -> str:
        """The external client's address on the underlay (.200 of the node network)."""
        return str(ipaddress.IPv4Network(self.node_cidr)[200])

    # --- host object names (see docs/architecture.md) -----------------------------------------
    @property
    def client_netns(self) -> str:
        return f"{self.name}-client"

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
