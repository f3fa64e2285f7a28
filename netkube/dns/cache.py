"""Cache of upstream answers like CoreDNS's cache plugin: TTL-bounded, negative answers by SOA minimum."""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable

from netkube.dns.config import Cache
from netkube.dns.wire import FORMERR, Query, Reject, ttl_offsets

Key = tuple[str, int, int, bool, bool]  # (name, type, class, DO, CD)


def _min_ttl(msg: bytes, offsets: list[int]) -> int | None:
    ttls = [struct.unpack_from("!I", msg, o)[0] for o in offsets]
    return min(ttls) if ttls else None


def _soa_minimum(msg: bytes, an: int, offsets: list[int]) -> int | None:
    """min(SOA TTL, SOA MINIMUM) of the first authority SOA (RFC 2308 negative caching)."""
    for o in offsets[an:]:
        rtype = struct.unpack_from("!H", msg, o - 4)[0]
        if rtype == 6:
            rdlen = struct.unpack_from("!H", msg, o + 4)[0]
            minimum = struct.unpack_from("!I", msg, o + 6 + rdlen - 4)[0]
            return min(struct.unpack_from("!I", msg, o)[0], minimum)
    return None


class ResponseCache:
    """Stores whole upstream responses; a hit patches ID, the client's question bytes and aged TTLs."""

    def __init__(self, conf: Cache, clock: Callable[[], float] = time.monotonic) -> None:
        self.conf = conf
        self.clock = clock
        self._items: OrderedDict[Key, tuple[bytes, list[int], float, float]] = OrderedDict()
        self.hits = {"success": 0, "denial": 0}
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def key(q: Query) -> Key:
        return (q.qname, q.qtype, q.qclass, q.do, bool(q.flags & 0x0010))

    def get(self, q: Query, data: bytes) -> bytes | None:
        k = self.key(q)
        item = self._items.get(k)
        now = self.clock()
        if item is None or now >= item[2]:
            if item is not None:
                del self._items[k]
            self.misses += 1
            return None
        msg, offsets, expires, _ = item
        out = bytearray(msg)
        out[0:2] = data[0:2]
        out[12 : q.qend] = data[12 : q.qend]  # same length: only the letter case can differ
        # Like CoreDNS: every record shows what is left of the cache lifetime.
        left = max(0, int(expires - now + 0.5))
        for o in offsets:
            struct.pack_into("!I", out, o, left)
        rcode = msg[3] & 0xF
        self.hits["denial" if rcode == 3 or not struct.unpack_from("!H", msg, 6)[0] else "success"] += 1
        return bytes(out)

    def put(self, q: Query, msg: bytes) -> None:
        """Remember an upstream answer for as long as its TTLs (or SOA minimum) and the config allow."""
        if len(msg) < 12 or msg[2] & 0x02:
            return  # never cache truncated answers
        rcode = msg[3] & 0xF
        an = struct.unpack_from("!H", msg, 6)[0]
        try:
            offsets = ttl_offsets(msg)
        except (Reject, struct.error, IndexError):
            return
        c = self.conf
        if rcode == 0 and an:
            ttl = _min_ttl(msg, offsets[:an])
            ttl = max(c.success_min, min(c.success_ttl, ttl if ttl is not None else 0))
        elif rcode in (0, 3):
            neg = _soa_minimum(msg, an, offsets)
            ttl = max(c.denial_min, min(c.denial_ttl, neg if neg is not None else 0))
        elif rcode == 2:
            ttl = 5  # CoreDNS caches SERVFAIL for 5 s by default (the `servfail` option)
        else:
            return
        if rcode == FORMERR or ttl <= 0:
            return
        now = self.clock()
        k = self.key(q)
        self._items[k] = (msg, offsets, now + ttl, now)
        self._items.move_to_end(k)
        while len(self._items) > c.capacity:
            self._items.popitem(last=False)

    def entries(self) -> dict[str, int]:
        out = {"success": 0, "denial": 0}
        for msg, _, _, _ in self._items.values():
            denial = msg[3] & 0xF == 3 or not struct.unpack_from("!H", msg, 6)[0]
            out["denial" if denial else "success"] += 1
        return out
