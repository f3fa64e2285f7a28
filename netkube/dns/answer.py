"""Build kubernetes-plugin answers with dnslib (the slow path; the handler caches the bytes)."""

from __future__ import annotations

from dnslib import (
    AAAA,
    CNAME,
    EDNS0,
    NS,
    PTR,
    QTYPE,
    RCODE,
    RR,
    SOA,
    SRV,
    TXT,
    A,
    DNSHeader,
    DNSLabel,
    DNSRecord,
)

from netkube.dns.config import in_zone
from netkube.dns.records import (
    DNS_SCHEMA_VERSION,
    DNS_VERSION_TTL,
    Target,
    ZoneRecords,
    reverse_ip,
    srv_weight,
)
from netkube.dns.wire import BADVERS, Query

MAX_CNAME_CHAIN = 8


def reply_for(rec: DNSRecord, q: Query, rcode: int, aa: bool = False) -> DNSRecord:
    """An empty reply echoing the question, RD and CD, with an OPT mirroring the client's (as CoreDNS)."""
    h = rec.header
    reply = DNSRecord(DNSHeader(id=h.id, qr=1, aa=int(aa), rd=h.rd, cd=h.cd, ra=0, rcode=rcode & 0xF,
                                opcode=h.opcode), q=rec.q)
    if q.edns >= 0:
        size = 0 if rcode == BADVERS else q.edns
        reply.add_ar(EDNS0(udp_len=size, ext_rcode=rcode >> 4, flags="do" if q.do else ""))
    return reply


def fit(reply: DNSRecord, limit: int) -> bytes:
    """Pack, trimming to `limit` bytes like miekg's Msg.Truncate: extras go first (no TC), then answers (TC)."""
    data = bytes(reply.pack())
    if len(data) <= limit:
        return data
    reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    data = bytes(reply.pack())
    if len(data) <= limit:
        return data
    answers = list(reply.rr)
    reply.auth = []
    reply.header.tc = 1
    lo, hi = 0, len(answers)
    while lo < hi:  # the most answers that still fit
        mid = (lo + hi + 1) // 2
        reply.rr = answers[:mid]
        if len(reply.pack()) <= limit:
            lo = mid
        else:
            hi = mid - 1
    reply.rr = answers[:lo]
    return bytes(reply.pack())


class KubeAnswer:
    """Answers one question inside a kubernetes zone; `nxdomain` tells the caller to maybe fall through."""

    def __init__(self, records: ZoneRecords, zones: tuple[str, ...]) -> None:
        self.records = records
        self.zones = zones
        self.ttl = records.kube.ttl

    def soa(self, zone: str) -> RR:
        ttl = self.ttl
        return RR(zone + ".", QTYPE.SOA, ttl=min(ttl, 300),
                  rdata=SOA(f"ns.dns.{zone}.", f"hostmaster.{zone}.",
                            (self.records.index.serial & 0xFFFFFFFF, 7200, 1800, 86400, ttl)))

    def _labels(self, name: str, zone: str) -> tuple[str, ...]:
        return tuple(name[: -len(zone) - 1].split(".")) if name != zone else ()

    def answer(self, rec: DNSRecord, q: Query, zone: str) -> tuple[DNSRecord, bool]:
        """(reply, is NXDOMAIN)."""
        name, qtype = q.qname, q.qtype
        owner: DNSLabel = rec.q.qname
        reply = reply_for(rec, q, 0, aa=True)
        if qtype in (QTYPE.AXFR, QTYPE.IXFR):
            return reply_for(rec, q, RCODE.REFUSED), False
        if name.endswith((".in-addr.arpa", ".ip6.arpa")) or name in ("in-addr.arpa", "ip6.arpa"):
            ip = reverse_ip(name)
            ptrs = self.records.reverse(ip) if ip and qtype == QTYPE.PTR else []
            for target in ptrs:
                reply.add_answer(RR(owner, QTYPE.PTR, ttl=self.ttl, rdata=PTR(target)))
            return self._finish(reply, rec, q, zone, exists=bool(ptrs))
        labels = self._labels(name, zone)
        if labels == ("dns-version",):
            if qtype == QTYPE.TXT:
                reply.add_answer(RR(owner, QTYPE.TXT, ttl=DNS_VERSION_TTL, rdata=TXT(DNS_SCHEMA_VERSION)))
            return self._finish(reply, rec, q, zone, exists=True)
        if not labels and qtype == QTYPE.SOA:
            reply.add_answer(self.soa(zone))
            return reply, False
        if not labels and qtype == QTYPE.NS:
            for fqdn, ip in self.records.ns_addrs():
                reply.add_answer(RR(owner, QTYPE.NS, ttl=self.ttl, rdata=NS(fqdn)))
                reply.add_ar(RR(fqdn, QTYPE.AAAA if ":" in ip else QTYPE.A, ttl=self.ttl,
                                rdata=AAAA(ip) if ":" in ip else A(ip)))
            return self._finish(reply, rec, q, zone, exists=True)
        if labels == ("ns", "dns"):
            addrs = [ip for _, ip in self.records.ns_addrs()]
            self._addresses(reply, owner, addrs, qtype)
            return self._finish(reply, rec, q, zone, exists=True)
        found = self.records.find(labels, zone)
        if found is None:
            return self._finish(reply, rec, q, zone, exists=False)
        if qtype in (QTYPE.A, QTYPE.AAAA):
            self._address_answer(reply, owner, found, qtype)
        elif qtype == QTYPE.SRV:
            self._srv(reply, owner, found)
        elif qtype == QTYPE.CNAME:
            for t in found:
                if t.cname:
                    reply.add_answer(RR(owner, QTYPE.CNAME, ttl=self.ttl, rdata=CNAME(t.host)))
        return self._finish(reply, rec, q, zone, exists=True)

    def _finish(self, reply: DNSRecord, rec: DNSRecord, q: Query, zone: str, exists: bool) -> tuple[DNSRecord, bool]:
        if not reply.rr:
            if not exists:
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.soa(zone))
        return reply, not exists

    def _addresses(self, reply: DNSRecord, owner: DNSLabel | str, ips: list[str], qtype: int) -> None:
        want6 = qtype == QTYPE.AAAA
        for ip in dict.fromkeys(ips):
            if (":" in ip) == want6:
                reply.add_answer(RR(owner, qtype, ttl=self.ttl, rdata=AAAA(ip) if want6 else A(ip)))

    def _address_answer(self, reply: DNSRecord, owner: DNSLabel | str, found: list[Target], qtype: int) -> None:
        chain = 0
        while True:
            cname = next((t for t in found if t.cname), None)
            if cname is None:
                self._addresses(reply, owner, [t.host for t in found], qtype)
                return
            reply.add_answer(RR(owner, QTYPE.CNAME, ttl=self.ttl, rdata=CNAME(cname.host)))
            target = cname.host.rstrip(".").lower()
            zone = next((z for z in self.zones if in_zone(target, z)), None)
            chain += 1
            if zone is None or chain > MAX_CNAME_CHAIN:
                return  # outside the zone: the client (or a future upstream lookup) chases it
            nxt = self.records.find(self._labels(target, zone), zone)
            if not nxt:
                return
            owner, found = cname.host, nxt

    def _srv(self, reply: DNSRecord, owner: DNSLabel, found: list[Target]) -> None:
        targets = [t for t in found if not t.cname and t.port >= 0]
        w = srv_weight(len(targets))
        seen: set[tuple[str, int]] = set()
        for t in targets:
            if (t.owner, t.port) in seen:
                continue
            seen.add((t.owner, t.port))
            reply.add_answer(RR(owner, QTYPE.SRV, ttl=self.ttl, rdata=SRV(0, w, t.port, t.owner)))
            reply.add_ar(RR(t.owner, QTYPE.AAAA if ":" in t.host else QTYPE.A, ttl=self.ttl,
                            rdata=AAAA(t.host) if ":" in t.host else A(t.host)))
