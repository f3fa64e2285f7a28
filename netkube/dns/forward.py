"""Forwarding to upstream servers: UDP with a TCP retry on truncation, failover, and the cache."""

from __future__ import annotations

import asyncio
import logging
import random
import struct

from netkube.dns.cache import ResponseCache
from netkube.dns.config import Cache
from netkube.dns.wire import Query

log = logging.getLogger(__name__)


def parse_upstreams(values: list[str]) -> list[tuple[str, int]]:
    """`8.8.8.8`, `10.0.0.1:5353` or comma-separated lists of those -> [(host, port)]."""
    out = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            host, sep, port = item.rpartition(":")
            if not sep or ":" in host and not host.startswith("["):
                host, port = item, "53"  # plain host or a bare IPv6 address
            host = host.strip("[]")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"--upstream {item!r}: the port must be a number between 1 and 65535")
            out.append((host, int(port)))
    return out


class _OneShot(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes) -> None:
        self.qid = qid
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[:2] == self.qid and not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class Forwarder:
    """Sends a query to its upstreams (random order, like CoreDNS's default policy) until one answers."""

    def __init__(self, upstreams: list[tuple[str, int]], timeout: float = 2.0, force_tcp: bool = False,
                 shuffle: bool = True) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.force_tcp = force_tcp
        self.shuffle = shuffle
        self.requests: dict[str, int] = {}  # "host:port" -> count (coredns_forward_requests_total)
        self.responses: dict[tuple[str, str], int] = {}  # (rcode, to)

    async def forward(self, query: bytes, tcp: bool = False) -> bytes | None:
        """The first upstream answer; None when every server failed."""
        order = list(self.upstreams)
        if self.shuffle and len(order) > 1:
            random.shuffle(order)
        for host, port in order:
            to = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self.requests[to] = self.requests.get(to, 0) + 1
            try:
                if tcp or self.force_tcp:
                    answer = await self._tcp(query, host, port)
                else:
                    answer = await self._udp(query, host, port)
                    if len(answer) > 2 and answer[2] & 0x02:  # TC: the full answer needs TCP
                        answer = await self._tcp(query, host, port)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
                log.warning("upstream %s failed: %s", to, e or "timeout")
                continue
            rcode = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(answer[3] & 0xF, "OTHER")
            self.responses[(rcode, to)] = self.responses.get((rcode, to), 0) + 1
            return answer
        return None

    async def _udp(self, query: bytes, host: str, port: int) -> bytes:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(lambda: _OneShot(query[:2]), remote_addr=(host, port))
        try:
            transport.sendto(query)
            return await asyncio.wait_for(proto.answer, self.timeout)
        finally:
            transport.close()

    async def _tcp(self, query: bytes, host: str, port: int) -> bytes:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.timeout)
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), self.timeout))
            return await asyncio.wait_for(reader.readexactly(n), self.timeout)
        finally:
            writer.close()


class ForwardGroup:
    """One server block's forward + cache plugins."""

    def __init__(self, forwarder: Forwarder, cache: ResponseCache | None) -> None:
        self.forwarder = forwarder
        self.cache = cache

    @classmethod
    def build(cls, upstreams: list[tuple[str, int]], cache: Cache | None, force_tcp: bool = False) -> ForwardGroup:
        return cls(Forwarder(upstreams, force_tcp=force_tcp), ResponseCache(cache) if cache else None)

    def cached(self, q: Query, data: bytes) -> bytes | None:
        return self.cache.get(q, data) if self.cache is not None else None

    async def resolve(self, q: Query, data: bytes, tcp: bool) -> bytes | None:
        answer = await self.forwarder.forward(data, tcp)
        if answer is not None and self.cache is not None:
            self.cache.put(q, answer)
        return answer
