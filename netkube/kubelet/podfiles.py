"""Render a pod's /etc/resolv.conf and /etc/hosts exactly as the kubelet writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netkube.config import ClusterConfig

HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
HOST_NETWORK_HOSTS_HEADER = "# Kubernetes-managed hosts file (host network).\n"


def pod_hostname(pod: dict[str, Any]) -> str:
    # spec.hostname overrides the pod name; the kernel limits hostnames to 64 bytes, and the
    # kubelet truncates to 63 (a DNS label), dropping trailing '-' / '.'.
    name = pod["spec"].get("hostname") or pod["metadata"]["name"]
    return name[:63].rstrip("-.")


def render_resolv_conf(pod: dict[str, Any], cluster: ClusterConfig, host_resolv: str = "") -> str:
    spec = pod["spec"]
    ns = pod["metadata"]["namespace"]
    zone = cluster.cluster_domain
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"  # upstream: ClusterFirst falls back to Default for host-network pods
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        nameservers = [cluster.dns_service_ip]
        searches = [f"{ns}.svc.{zone}", f"svc.{zone}", zone]
        options = ["ndots:5"]
    elif policy == "Default":
        for line in host_resolv.splitlines():
            parts = line.split()
            if parts and parts[0] == "nameserver":
                nameservers += parts[1:2]
            elif parts and parts[0] in ("search", "domain"):
                searches += parts[1:]
            elif parts and parts[0] == "options":
                options += parts[1:]
    cfg = spec.get("dnsConfig") or {}
    nameservers += [n for n in cfg.get("nameservers", []) if n not in nameservers]
    searches += [s for s in cfg.get("searches", []) if s not in searches]
    for opt in cfg.get("options", []):
        text = opt["name"] + (f":{opt['value']}" if opt.get("value") is not None else "")
        options = [o for o in options if o.split(":")[0] != opt["name"]] + [text]
    lines = []
    if searches:
        lines.append("search " + " ".join(searches[:32]))
    lines += [f"nameserver {n}" for n in nameservers[:3]]  # glibc reads at most 3 (MAXNS)
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def render_hosts(pod: dict[str, Any], cluster: ClusterConfig, pod_ips: list[str]) -> str:
    spec = pod["spec"]
    hostname = pod_hostname(pod)
    out = [HOSTS_HEADER]
    out.append("127.0.0.1\tlocalhost\n")
    out.append("::1\tlocalhost ip6-localhost ip6-loopback\n")
    out.append("fe00::0\tip6-localnet\n")
    out.append("fe00::0\tip6-mcastprefix\n")
    out.append("fe00::1\tip6-allnodes\n")
    out.append("fe00::2\tip6-allrouters\n")
    sub = spec.get("subdomain")
    for ip in pod_ips:
        if sub:
            fqdn = f"{hostname}.{sub}.{pod['metadata']['namespace']}.svc.{cluster.cluster_domain}"
            out.append(f"{ip}\t{fqdn}\t{hostname}\n")
        else:
            out.append(f"{ip}\t{hostname}\n")
    aliases = spec.get("hostAliases") or []
    if aliases:
        out.append("\n# Entries added by HostAliases.\n")
        for alias in aliases:
            for name in alias.get("hostnames", []):
                out.append(f"{alias['ip']}\t{name}\n")
    return "".join(out)


def write_pod_files(pod_dir: Path, resolv: str, hosts: str) -> tuple[Path, Path]:
    pod_dir.mkdir(parents=True, exist_ok=True)
    resolv_path, hosts_path = pod_dir / "resolv.conf", pod_dir / "hosts"
    resolv_path.write_text(resolv)
    hosts_path.write_text(hosts)
    return resolv_path, hosts_path
