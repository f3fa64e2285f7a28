"""Pure DNS handler: query bytes in, response bytes out (or a request to forward); no sockets."""

from __future__ import annotations

import logging
import struct
from typing import Final

from dnslib import QTYPE, RCODE, DNSError, DNSRecord

from netkube.dns.answer import KubeAnswer, fit, reply_for
from netkube.dns.config import DnsConfig, Forward, default_config, in_zone
from netkube.dns.index import Index
from netkube.dns.records import ZoneRecords
from netkube.dns.wire import BADVERS, FORMERR, NOTIMP, Query, Reject, header_only, parse_query

log = logging.getLogger(__name__)


class _Forward:
    def __repr__(self) -> str:
        return "FORWARD"


FORWARD: Final = _Forward()  # the handler's answer when the query must go to an upstream server
Result = bytes | None | _Forward  # None: drop the packet (too short to answer, or not a query)

CACHE_LIMIT = 20000
MONITORED = {"A", "AAAA", "MX", "SOA", "CNAME", "PTR", "TXT", "NS", "SRV", "DS", "DNSKEY", "RRSIG",
             "NSEC", "NSEC3", "HTTPS", "IXFR", "AXFR", "ANY"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}
Meta = tuple[str, str, str, str]  # metric labels: (zone, type, rcode, plugin)
NO_META: Meta = ("dropped", "other", "FORMERR", "")


def type_label(qtype: int) -> str:
    name = QTYPE.get(qtype, "")
    return name if name in MONITORED else "other"


class _Rotor:
    """Pre-encoded rotations of an answer with several addresses (the loadbalance plugin)."""

    __slots__ = ("items", "i")

    def __init__(self, items: list[bytes]) -> None:
        self.items = items
        self.i = 0

    def next(self) -> bytes:
        i = self.i
        self.i = (i + 1) % len(self.items)
        return self.items[i]


class Handler:
    """Answers one DNS message at a time from the index and the configuration.

    Two caches of pre-encoded answers, both emptied when the index or the config changes: one per
    exact query bytes minus the ID (the hot path: a dict lookup and the ID patched in), one per
    (lower-case name, type, class, EDNS size, DO, flags) that copies the client's own question
    bytes in, so 0x20 mixed-case queries share an entry.
    """

    def __init__(self, index: Index, zone: str = "cluster.local", ttl: int = 5, forward: bool = False,
                 config: DnsConfig | None = None, local_ips: tuple[str, ...] = ()) -> None:
        self.index = index
        self.local_ips = local_ips
        self.exact: dict[bytes, tuple[bytes | _Rotor, Meta]] = {}  # UDP; TCP uses exact_tcp
        self.exact_tcp: dict[bytes, tuple[bytes | _Rotor, Meta]] = {}
        self._norm: dict[tuple[object, ...], tuple[bytes, bytes | _Rotor, Meta]] = {}
        self.config = config or default_config(zone, ttl, forward=forward)
        self._answers: dict[int, tuple[KubeAnswer, tuple[str, ...]]] = {}
        self.set_config(self.config)
        index.listeners.append(self.clear)

    def set_config(self, config: DnsConfig) -> None:
        self.config = config
        self._answers = {}
        for b in config.blocks:
            if b.kubernetes is not None:
                zones = tuple(sorted(b.kubernetes.zones, key=len, reverse=True))
                recs = ZoneRecords(self.index, b.kubernetes, self.local_ips)
                self._answers[id(b)] = (KubeAnswer(recs, zones), zones)
        self.clear()

    def clear(self) -> None:
        self.exact.clear()
        self.exact_tcp.clear()
        self._norm.clear()

    # --- entry points -------------------------------------------------------------------------
    def handle(self, data: bytes, udp: bool = True) -> Result:
        return self.resolve(bytes(data), udp)[0]

    def resolve(self, data: bytes, udp: bool = True) -> tuple[Result, Meta]:
        cache = self.exact if udp else self.exact_tcp
        hit = cache.get(data[2:])
        if hit is not None:
            body = hit[0]
            return data[:2] + (body if type(body) is bytes else body.next()), hit[1]  # type: ignore[union-attr]
        return self._slow(bytes(data), udp, cache)

    def formerr(self, data: bytes) -> bytes | None:
        return header_only(data, FORMERR, keep_opcode=False)

    def servfail(self, data: bytes) -> bytes | None:
        """The answer when forwarding failed."""
        try:
            q = parse_query(data)
            if q is None:
                return None
            rec = DNSRecord.parse(data)
        except (Reject, DNSError, ValueError, IndexError, struct.error, UnicodeError):
            return self.formerr(data)
        return bytes(reply_for(rec, q, RCODE.SERVFAIL).pack())

    def forward_for(self, data: bytes) -> Forward | None:
        """The forward settings of the server block a query routes to (None: no forwarding)."""
        try:
            q = parse_query(data)
        except Reject:
            return None
        route = self.config.route(q.qname) if q else None
        if route is None or route[0].forward is None or not route[0].forward.matches(q.qname):  # type: ignore[union-attr]
            return None
        return route[0].forward

    # --- the slow path ------------------------------------------------------------------------
    def _slow(self, data: bytes, udp: bool, cache: dict[bytes, tuple[bytes | _Rotor, Meta]]) -> tuple[Result, Meta]:
        try:
            q = parse_query(data)
        except Reject as e:
            return header_only(data, e.rcode, keep_opcode=e.rcode == NOTIMP), NO_META[:2] + (RCODES[e.rcode], "")
        if q is None:
            return None, NO_META
        nkey = (q.qname, q.qtype, q.qclass, q.edns, q.do, q.flags & 0x7910, udp)
        norm = self._norm.get(nkey)
        if norm is not None:
            head, tail, meta = norm
            body = tail if type(tail) is bytes else tail.next()  # type: ignore[union-attr]
            return data[:2] + head + data[12 : q.qend] + body, meta
        try:
            rec = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, struct.error, UnicodeError) as e:
            log.debug("malformed query: %s", e)
            return self.formerr(data), NO_META
        result, meta, variants, cacheable = self._answer(rec, q, udp)
        if not cacheable or not isinstance(result, bytes):
            return result, meta
        if len(cache) >= CACHE_LIMIT or len(self._norm) >= CACHE_LIMIT:
            self.clear()
        if len(variants) > 1:
            cache[data[2:]] = (_Rotor([v[2:] for v in variants]), meta)
            self._norm[nkey] = (variants[0][2:12], _Rotor([v[q.qend:] for v in variants]), meta)
            return variants[0], meta
        cache[data[2:]] = (result[2:], meta)
        self._norm[nkey] = (result[2:12], result[q.qend:], meta)
        return result, meta

    def _answer(self, rec: DNSRecord, q: Query, udp: bool) -> tuple[Result, Meta, list[bytes], bool]:
        tlabel = type_label(q.qtype)
        limit = max(512, q.edns) if udp else 65535
        if q.edns_version > 0:
            return bytes(reply_for(rec, q, BADVERS).pack()), ("dropped", tlabel, "BADVERS", ""), [], True
        if (q.flags >> 11) & 0xF:
            return bytes(reply_for(rec, q, NOTIMP).pack()), ("dropped", tlabel, "NOTIMP", ""), [], True
        route = self.config.route(q.qname)
        if route is None:
            # No server block for this name: CoreDNS's server answers REFUSED itself.
            return bytes(reply_for(rec, q, RCODE.REFUSED).pack()), ("dropped", tlabel, "REFUSED", ""), [], True
        block, bzone = route
        zlabel = bzone + "." if bzone else "."
        kube = self._answers.get(id(block))
        if kube is not None and q.qclass == 1:
            answer, zones = kube
            zone = next((z for z in zones if in_zone(q.qname, z)), None)
            if zone is not None:
                if not self.index.synced:
                    # Like CoreDNS before its first list: SERVFAIL, never a wrong NXDOMAIN.
                    return (bytes(reply_for(rec, q, RCODE.SERVFAIL).pack()),
                            (zlabel, tlabel, "SERVFAIL", "kubernetes"), [], False)
                reply, nx = answer.answer(rec, q, zone)
                if not (nx and block.kubernetes and block.kubernetes.falls_through(q.qname)):
                    rcode = RCODES.get(reply.header.rcode, str(reply.header.rcode))
                    meta = (zlabel, tlabel, rcode, "kubernetes")
                    variants = self._rotations(reply, limit) if block.loadbalance else []
                    data = variants[0] if variants else fit(reply, limit)
                    return data, meta, variants, True
        if block.forward is not None and block.forward.matches(q.qname):
            return FORWARD, (zlabel, tlabel, "", "forward"), [], False
        # The last plugin passed the query on and nothing is next: CoreDNS answers SERVFAIL.
        return bytes(reply_for(rec, q, RCODE.SERVFAIL).pack()), (zlabel, tlabel, "SERVFAIL", ""), [], True

    def _rotations(self, reply: DNSRecord, limit: int) -> list[bytes]:
        rrs = list(reply.rr)
        if len(rrs) < 2 or any(rr.rtype not in (QTYPE.A, QTYPE.AAAA) for rr in rrs):
            return []
        out = []
        for i in range(min(len(rrs), 16)):
            reply.rr = rrs[i:] + rrs[:i]
            out.append(fit(reply, limit))
        return out
