"""Pure record lookup for names inside the cluster zone, like CoreDNS's kubernetes plugin."""

from __future__ import annotations

import ipaddress

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RD, SOA, SRV, TXT, A

from netkube.dns.index import Index, dashed
from netkube.dns.model import Port, Service

DNS_SCHEMA_VERSION = "1.1.0"  # the Kubernetes DNS spec version CoreDNS reports at dns-version.<zone>

Record = tuple[int, RD]  # (QTYPE, rdata); the owner name is the queried name
Extra = tuple[str, int, RD]  # additional-section record: (owner fqdn, QTYPE, rdata)


def addr_record(ip: str) -> Record:
    return (QTYPE.AAAA, AAAA(ip)) if ":" in ip else (QTYPE.A, A(ip))


def srv_weight(count: int) -> int:
    # CoreDNS spreads a weight of 100 over records of equal priority: floor(100 / n).
    return 100 // count if count else 100


def undash_ipv4(label: str) -> str | None:
    parts = label.split("-")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(parts)))
    except ValueError:
        return None


class ZoneRecords:
    """Answers "which records does this in-zone name own?" from the index; never touches the network."""

    def __init__(self, index: Index, zone: str, ttl: int = 5) -> None:
        self.index = index
        self.zone = zone
        self.ttl = ttl

    def fqdn(self, *labels: str) -> str:
        return ".".join((*labels, self.zone)) + "."

    def soa(self) -> SOA:
        return SOA(self.fqdn("ns", "dns"), f"hostmaster.{self.zone}.",
                   (self.index.serial, 7200, 1800, 86400, self.ttl))

    def lookup(self, labels: tuple[str, ...]) -> tuple[list[Record], list[Extra]] | None:
        """Records owned by `labels` (relative to the zone, lower case); None if the name doesn't exist.

        An empty list means the name exists without records (an empty non-terminal, e.g. `svc.<zone>`).
        """
        n = len(labels)
        if n == 0:
            return [(QTYPE.SOA, self.soa()), (QTYPE.NS, NS(self.fqdn("ns", "dns")))], []
        if labels == ("dns-version",):
            return [(QTYPE.TXT, TXT(DNS_SCHEMA_VERSION))], []
        if n == 1:
            return ([], []) if labels[0] in ("svc", "pod") else None
        kind = labels[-1]
        if kind == "pod":
            # "pods insecure": a-b-c-d.<ns>.pod.<zone> answers a.b.c.d without checking the pod.
            ip = undash_ipv4(labels[0]) if n == 3 else None
            if n == 2:
                return [], []
            return ([(QTYPE.A, A(ip))], []) if ip else None
        if kind != "svc":
            return None
        if n == 2:
            return ([], []) if self.index.has_namespace(labels[0]) else None
        svc = self.index.service(labels[-2], labels[-3])
        if svc is None:
            return None
        if n == 3:
            return self._service(svc)
        if n == 4:
            return self._endpoint(svc, labels[0])
        if n == 5 and labels[0].startswith("_") and labels[1].startswith("_"):
            return self._srv(svc, labels[0][1:], labels[1][1:].upper())
        return None

    def _service(self, svc: Service) -> tuple[list[Record], list[Extra]]:
        if svc.external_name is not None:
            return [(QTYPE.CNAME, CNAME(svc.external_name.rstrip(".") + "."))], []
        records: list[Record] = []
        extra: list[Extra] = []
        if svc.headless:
            eps = self.index.endpoints(svc.namespace, svc.name)
            records += [addr_record(ep.ip) for ep, _ in eps]
            srvs = [(p, ep.ip, ep.hostname or dashed(ep.ip)) for ep, ports in eps for p in ports]
            w = srv_weight(len(srvs))
            for p, ip, label in srvs:
                target = self.fqdn(label, svc.name, svc.namespace, "svc")
                records.append((QTYPE.SRV, SRV(0, w, p.port, target)))
                extra.append((target, *addr_record(ip)))
        else:
            records += [addr_record(ip) for ip in svc.cluster_ips]
            w = srv_weight(len(svc.ports))
            target = self.fqdn(svc.name, svc.namespace, "svc")
            records += [(QTYPE.SRV, SRV(0, w, p.port, target)) for p in svc.ports]
            if svc.ports:
                extra += [(target, *addr_record(ip)) for ip in svc.cluster_ips]
        return records, extra

    def _endpoint(self, svc: Service, label: str) -> tuple[list[Record], list[Extra]] | None:
        if label.startswith("_"):
            # `_tcp.<svc>...` is an empty non-terminal when some port speaks that protocol.
            proto = label[1:].upper()
            return ([], []) if any(p.protocol == proto and p.name for p in self._ports(svc)) else None
        if not svc.headless:
            return None
        found = [addr_record(ep.ip) for ep, _ in self.index.endpoints(svc.namespace, svc.name)
                 if (ep.hostname or dashed(ep.ip)) == label]
        return (found, []) if found else None

    def _ports(self, svc: Service) -> list[Port]:
        if svc.headless:
            return [p for _, ports in self.index.endpoints(svc.namespace, svc.name) for p in ports]
        return list(svc.ports)

    def _srv(self, svc: Service, name: str, proto: str) -> tuple[list[Record], list[Extra]] | None:
        if svc.headless:
            hits = [(p, ep.ip, ep.hostname or dashed(ep.ip))
                    for ep, ports in self.index.endpoints(svc.namespace, svc.name)
                    for p in ports if p.name and p.name.lower() == name and p.protocol == proto]
            if not hits:
                return None
            w = srv_weight(len(hits))
            records: list[Record] = []
            extra: list[Extra] = []
            for p, ip, label in hits:
                target = self.fqdn(label, svc.name, svc.namespace, "svc")
                records.append((QTYPE.SRV, SRV(0, w, p.port, target)))
                extra.append((target, *addr_record(ip)))
            return records, extra
        ports = [p for p in svc.ports if p.name and p.name.lower() == name and p.protocol == proto]
        if not ports:
            return None
        target = (svc.external_name.rstrip(".") + "." if svc.external_name
                  else self.fqdn(svc.name, svc.namespace, "svc"))
        w = srv_weight(len(ports))
        extra = [(target, *addr_record(ip)) for ip in svc.cluster_ips]
        return [(QTYPE.SRV, SRV(0, w, p.port, target)) for p in ports], extra

    def reverse(self, ip: str) -> list[Record]:
        return [(QTYPE.PTR, PTR(self.fqdn(*labels))) for labels in self.index.ptr(ip)]


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

