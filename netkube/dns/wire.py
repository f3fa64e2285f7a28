"""Fast wire-format checks of one DNS query (header, question, OPT) as CoreDNS's server does them."""

from __future__ import annotations

import struct
from dataclasses import dataclass

FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 1, 2, 3, 4, 5, 16
OPT = 41
_HDR = struct.Struct("!HHHHHH")


@dataclass(slots=True)
class Query:
    id: int
    flags: int
    qname: str  # lower case, no trailing dot ("" for the root)
    qend: int  # offset just past QTYPE/QCLASS: data[12:qend] is the question as sent
    qtype: int
    qclass: int
    edns: int  # the client's UDP payload size, -1 without an OPT record
    do: bool
    edns_version: int


class Reject(Exception):
    """A query that gets a header-only answer with this rcode (FORMERR, NOTIMP)."""

    def __init__(self, rcode: int) -> None:
        super().__init__(rcode)
        self.rcode = rcode


def _skip_name(data: bytes, off: int) -> int:
    """Offset after a (possibly compressed) name; raises Reject on anything malformed."""
    for _ in range(128):
        if off >= len(data):
            raise Reject(FORMERR)
        n = data[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            if off + 2 > len(data):
                raise Reject(FORMERR)
            return off + 2
        if n & 0xC0:
            raise Reject(FORMERR)  # the 0x40/0x80 label types are obsolete
        off += n + 1
    raise Reject(FORMERR)


def parse_query(data: bytes) -> Query | None:
    """The query, None for packets to drop silently (short, or responses), Reject for bad ones.

    The acceptance rules are miekg/dns's defaultMsgAcceptFunc, which CoreDNS uses: responses are
    ignored; opcodes other than QUERY/NOTIFY get NOTIMP; QDCOUNT != 1, ANCOUNT > 1, NSCOUNT > 1 or
    ARCOUNT > 2 get FORMERR, as does anything that does not unpack.
    """
    if len(data) < 12:
        return None
    qid, flags, qd, an, ns, ar = _HDR.unpack_from(data)
    if flags & 0x8000:
        return None
    if (flags >> 11) & 0xF not in (0, 4):
        raise Reject(NOTIMP)
    if qd != 1 or an > 1 or ns > 1 or ar > 2:
        raise Reject(FORMERR)
    labels = []
    off = 12
    while True:
        if off >= len(data):
            raise Reject(FORMERR)
        n = data[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 or off + 1 + n > len(data):
            raise Reject(FORMERR)  # no compression inside the first question
        labels.append(data[off + 1 : off + 1 + n])
        off += n + 1
    if off + 4 > len(data) or off - 12 > 255:
        raise Reject(FORMERR)
    qtype, qclass = struct.unpack_from("!HH", data, off)
    qend = off + 4
    try:
        qname = b".".join(labels).decode("ascii").lower()
    except UnicodeDecodeError:
        qname = b".".join(labels).decode("latin-1").lower()
    edns, do, version = -1, False, 0
    off = qend
    for _ in range(an + ns):
        off = _skip_name(data, off)
        if off + 10 > len(data):
            raise Reject(FORMERR)
        off += 10 + struct.unpack_from("!H", data, off + 8)[0]
    for _ in range(ar):
        start = off
        off = _skip_name(data, off)
        if off + 10 > len(data):
            raise Reject(FORMERR)
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, off)
        off += 10 + rdlen
        if off > len(data):
            raise Reject(FORMERR)
        if rtype == OPT:
            if edns >= 0 or data[start] != 0:
                raise Reject(FORMERR)  # a second OPT, or one not owned by the root
            edns, do, version = rclass, bool(ttl & 0x8000), (ttl >> 16) & 0xFF
    return Query(qid, flags, qname, qend, qtype, qclass, edns, do, version)


def header_only(data: bytes, rcode: int, keep_opcode: bool) -> bytes | None:
    """The header-only answer miekg/dns writes for rejected messages (no question echoed)."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack_from("!HH", data)
    opcode = flags & 0x7800 if keep_opcode else 0
    return _HDR.pack(qid, 0x8000 | opcode | (flags & 0x0100) | rcode, 0, 0, 0, 0)


def ttl_offsets(msg: bytes) -> list[int]:
    """Offsets of the TTL fields of every RR except OPT, so cached answers can be aged in place."""
    qd, an, ns, ar = struct.unpack_from("!HHHH", msg, 4)
    off = 12
    for _ in range(qd):
        off = _skip_name(msg, off) + 4
    out = []
    for _ in range(an + ns + ar):
        off = _skip_name(msg, off)
        rtype = struct.unpack_from("!H", msg, off)[0]
        if rtype != OPT:
            out.append(off + 4)
        off += 10 + struct.unpack_from("!H", msg, off + 8)[0]
        if off > len(msg):
            raise Reject(FORMERR)
    return out
