"""Pure record lookup for names inside the cluster zone, following CoreDNS's kubernetes plugin."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netkube.dns.config import Kubernetes
from netkube.dns.index import Index, dashed
from netkube.dns.model import Port, Service

DNS_SCHEMA_VERSION = "1.1.0"  # the Kubernetes DNS spec version CoreDNS reports at dns-version.<zone>
DNS_VERSION_TTL = 28800  # CoreDNS hard-codes this TTL for dns-version.<zone>


@dataclass(frozen=True, slots=True)
class Target:
    """One backend record, like CoreDNS's msg.Service: an address or a CNAME target, a port, a name."""

    host: str
    port: int  # -1: no port (a slice without ports still yields A records)
    owner: str  # fqdn an SRV record points at
    cname: bool = False


def is_wild(label: str) -> bool:
    return label in ("*", "any")


def _match(a: str, b: str) -> bool:
    return is_wild(a) or is_wild(b) or a.lower() == b.lower()


def pod_ip(label: str) -> str | None:
    """The address a pod label stands for: a-b-c-d (IPv4) or dashes for colons (IPv6), as CoreDNS."""
    ip = label.replace("-", ".") if label.count("-") == 3 and "--" not in label else label.replace("-", ":")
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def srv_weight(count: int) -> int:
    # CoreDNS spreads a weight of 100 over records of equal priority: floor(100 / n).
    return 100 // count if count else 100


class ZoneRecords:
    """Answers "what does this in-zone name hold?" from the index; never touches the network."""

    def __init__(self, index: Index, kube: Kubernetes, local_ips: tuple[str, ...] = ()) -> None:
        self.index = index
        self.kube = kube
        self.zone = kube.cluster_zone
        self.local_ips = local_ips

    def fqdn(self, *labels: str) -> str:
        return ".".join((*labels, self.zone)) + "."

    def find(self, labels: tuple[str, ...], zone: str) -> list[Target] | None:
        """Targets owned by `labels` (relative to `zone`, lower case); None means NXDOMAIN.

        Mirrors parseRequest/Records/findPods/findServices: `svc` and `pod` alone are empty
        non-terminals; a namespace must exist as a Namespace object; more than 5 labels, or a
        fourth kind other than svc/pod, is an invalid request (NXDOMAIN).
        """
        n = len(labels)
        if n == 0:
            return []
        kind = labels[-1]
        if kind not in ("svc", "pod") or n > 5:
            return None
        if n == 1:
            return []
        ns = labels[-2]
        if not self.index.has_namespace(ns):
            return None
        if n == 2:
            return []
        if kind == "pod":
            return self._pod(labels[-3], ns, zone)
        port, proto, endpoint = "*", "*", ""
        if n == 4:
            endpoint = labels[0]
        elif n == 5:
            port, proto = labels[0].removeprefix("_"), labels[1].removeprefix("_")
        svc = self.index.service(ns, labels[-3])
        if svc is None:
            return None
        found = self._service(svc, port, proto, endpoint, zone)
        return found or None

    def _pod(self, label: str, ns: str, zone: str) -> list[Target] | None:
        mode = self.kube.pods
        ip = pod_ip(label)
        if mode == "disabled" or ip is None:
            return None
        if mode == "verified" and not self.index.pod_in(ip, ns):
            return None
        return [Target(ip, -1, f"{label}.{ns}.pod.{zone}.")]

    def _service(self, svc: Service, port: str, proto: str, endpoint: str, zone: str) -> list[Target]:
        base = f"{svc.name}.{svc.namespace}.svc.{zone}."
        if svc.external_name is not None:
            return [Target(svc.external_name.rstrip(".") + ".", -1, base, cname=True)]
        out: list[Target] = []
        if svc.headless or endpoint:
            for ep, ports in self.index.endpoints(svc.namespace, svc.name):
                label = ep.hostname or dashed(ep.ip)
                if endpoint and not _match(endpoint, label):
                    continue
                for p in ports or (Port("", -1, ""),):
                    if p.port == -1 and (port, proto) != ("*", "*"):
                        continue
                    if p.port == -1 or (_match(port, p.name) and _match(proto, p.protocol)):
                        out.append(Target(ep.ip, p.port, f"{label}.{base}"))
            return out
        for p in svc.ports:
            if _match(port, p.name) and _match(proto, p.protocol):
                out += [Target(ip, p.port, base) for ip in svc.cluster_ips]
        return out

    def reverse(self, ip: str) -> list[str]:
        return [self.fqdn(*labels) for labels in self.index.ptr(ip)]

    def ns_addrs(self) -> list[tuple[str, str]]:
        """(fqdn, address) for NS answers: the services this server backs, else ns.dns.<zone>."""
        found = self.index.service_ips_with_endpoint(set(self.local_ips))
        if found:
            return [(f"{name}.{self.zone}.", ip) for name, ip in found]
        return [(f"ns.dns.{self.zone}.", ip) for ip in self.local_ips]


def reverse_ip(qname: str) -> str | None:
    """The address a reverse name stands for (`20.0.96.10.in-addr.arpa` -> 10.96.0.20), or None."""
    labels = qname.split(".")
    try:
        if qname.endswith(".in-addr.arpa") and len(labels) == 6:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if qname.endswith(".ip6.arpa") and len(labels) == 34:
            nibbles = "".join(reversed(labels[:32]))
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
    except ValueError:
        return None
    return None
