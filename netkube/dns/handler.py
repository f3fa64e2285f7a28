"""Pure DNS handler: query bytes in, response bytes out (or a request to forward); no sockets."""

from __future__ import annotations

import logging
import struct
from typing import Final

from dnslib import EDNS0, QTYPE, RCODE, RR, DNSError, DNSHeader, DNSLabel, DNSRecord

from netkube.dns.index import Index
from netkube.dns.records import Record, ZoneRecords, reverse_ip

log = logging.getLogger(__name__)


class _Forward:
    def __repr__(self) -> str:
        return "FORWARD"


FORWARD: Final = _Forward()  # the handler's answer when the query must go to an upstream server
Result = bytes | None | _Forward  # None: drop the packet (too short to answer, or not a query)

CACHE_LIMIT = 20000
MAX_CNAME_CHAIN = 8


class Handler:
    """Answers one DNS message at a time from the index.

    Encoded answers are cached per exact query bytes (minus the ID) and transport, and the cache is
    emptied whenever the index changes, so repeated lookups skip parsing entirely.
    """

    def __init__(self, index: Index, zone: str = "cluster.local", ttl: int = 5, forward: bool = False) -> None:
        self.index = index
        self.zone = zone.strip(".").lower()
        self.ttl = ttl
        self.forward = forward
        self.records = ZoneRecords(index, self.zone, ttl)
        self._suffix = "." + self.zone
        self._cache: dict[tuple[bytes, bool], bytes] = {}
        index.listeners.append(self._cache.clear)

    # --- entry point --------------------------------------------------------------------------
    def handle(self, data: bytes, udp: bool = True) -> Result:
        if len(data) < 12 or data[2] & 0x80:
            return None  # no header to answer to, or a response (answering those can loop)
        data = bytes(data)
        key = (data[2:], udp)
        hit = self._cache.get(key)
        if hit is not None:
            return data[:2] + hit
        try:
            query = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, struct.error, UnicodeError) as e:
            log.debug("malformed query: %s", e)
            return self.formerr(data)
        if query.header.opcode != 0:
            return bytes(self._reply(query, RCODE.NOTIMP).pack())
        if len(query.questions) != 1:
            return bytes(self._reply(query, RCODE.FORMERR).pack())
        if not self.index.synced:
            # Like CoreDNS before its first list: SERVFAIL, never a wrong NXDOMAIN.
            return bytes(self._reply(query, RCODE.SERVFAIL).pack())
        result = self._answer(query, udp)
        if isinstance(result, bytes):
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = result[2:]
        return result

    def formerr(self, data: bytes) -> bytes | None:
        if len(data) < 12:
            return None
        opcode_rd = data[2] & 0x79  # keep opcode and RD, as resolvers expect them echoed
        return data[:2] + struct.pack("!BBHHHH", 0x80 | opcode_rd, RCODE.FORMERR, 0, 0, 0, 0)

    def servfail(self, data: bytes) -> bytes | None:
        """The answer when forwarding failed."""
        try:
            return bytes(self._reply(DNSRecord.parse(data), RCODE.SERVFAIL).pack())
        except (DNSError, ValueError, IndexError, struct.error, UnicodeError):
            return self.formerr(data)

    # --- answering ----------------------------------------------------------------------------
    def _reply(self, query: DNSRecord, rcode: int, aa: bool = False) -> DNSRecord:
        h = query.header
        reply = DNSRecord(DNSHeader(id=h.id, qr=1, aa=int(aa), rd=h.rd, ra=0, rcode=rcode), q=query.q)
        if any(rr.rtype == QTYPE.OPT for rr in query.ar):
            reply.add_ar(EDNS0(udp_len=1232))
        return reply

    def _answer(self, query: DNSRecord, udp: bool) -> Result:
        qname: DNSLabel = query.q.qname
        name = str(qname).rstrip(".").lower()
        qtype = query.q.qtype
        if name == self.zone or name.endswith(self._suffix):
            labels = tuple(name[: -len(self._suffix)].split(".")) if name != self.zone else ()
            reply = self._in_zone(query, labels, qtype)
        elif name.endswith(".in-addr.arpa") or name.endswith(".ip6.arpa"):
            ip = reverse_ip(name)
            found = self.records.reverse(ip) if ip else []
            if not found:
                return FORWARD if self.forward else bytes(self._reply(query, RCODE.NXDOMAIN).pack())
            reply = self._reply(query, RCODE.NOERROR, aa=True)
            self._add(reply, qname, [r for r in found if qtype in (r[0], QTYPE.ANY)])
            if not reply.rr:
                reply.add_auth(RR(self.zone + ".", QTYPE.SOA, ttl=self.ttl, rdata=self.records.soa()))
        else:
            return FORWARD if self.forward else bytes(self._reply(query, RCODE.REFUSED).pack())
        return self._pack(reply, query, udp)

    def _in_zone(self, query: DNSRecord, labels: tuple[str, ...], qtype: int) -> DNSRecord:
        qname: DNSLabel = query.q.qname
        found = self.records.lookup(labels)
        if found is None:
            reply = self._reply(query, RCODE.NXDOMAIN, aa=True)
        else:
            reply = self._reply(query, RCODE.NOERROR, aa=True)
            records, extra = found
            cname = [r for r in records if r[0] == QTYPE.CNAME]
            if cname and qtype != QTYPE.CNAME:
                self._add(reply, qname, cname)
                self._chase(reply, str(cname[0][1].label).rstrip(".").lower(), qtype)
            else:
                self._add(reply, qname, [r for r in records if qtype in (r[0], QTYPE.ANY)])
                if qtype in (QTYPE.SRV, QTYPE.ANY):
                    for owner, t, rd in extra:
                        reply.add_ar(RR(owner, t, ttl=self.ttl, rdata=rd))
        if not reply.rr:
            reply.add_auth(RR(self.zone + ".", QTYPE.SOA, ttl=self.ttl, rdata=self.records.soa()))
        return reply

    def _chase(self, reply: DNSRecord, target: str, qtype: int) -> None:
        """Follow an ExternalName CNAME while it stays inside the zone (the client chases the rest)."""
        for _ in range(MAX_CNAME_CHAIN):
            if not (target == self.zone or target.endswith(self._suffix)):
                return
            labels = tuple(target[: -len(self._suffix)].split(".")) if target != self.zone else ()
            found = self.records.lookup(labels)
            if found is None:
                return
            records = found[0]
            cname = [r for r in records if r[0] == QTYPE.CNAME]
            if cname:
                self._add(reply, DNSLabel(target + "."), cname)
                target = str(cname[0][1].label).rstrip(".").lower()
                continue
            self._add(reply, DNSLabel(target + "."), [r for r in records if r[0] == qtype])
            return

    def _add(self, reply: DNSRecord, owner: DNSLabel, records: list[Record]) -> None:
        for rtype, rdata in records:
            reply.add_answer(RR(owner, rtype, ttl=self.ttl, rdata=rdata))

    def _pack(self, reply: DNSRecord, query: DNSRecord, udp: bool) -> bytes:
        data = bytes(reply.pack())
        if udp:
            limit = 512
            for rr in query.ar:
                if rr.rtype == QTYPE.OPT:
                    limit = max(512, min(rr.rclass, 1232))
            if len(data) > limit:
                # Too big for UDP: an empty truncated answer tells the client to retry over TCP.
                small = self._reply(query, reply.header.rcode, aa=bool(reply.header.aa))
                small.header.tc = 1
                data = bytes(small.pack())
        return data
