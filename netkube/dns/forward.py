"""Minimal UDP forwarder for names outside the cluster zone (no cache yet)."""

from __future__ import annotations

import asyncio
import logging

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
    def __init__(self, upstreams: list[tuple[str, int]], timeout: float = 2.0) -> None:
        self.upstreams = upstreams
        self.timeout = timeout

    async def forward(self, query: bytes) -> bytes | None:
        """The first upstream answer, trying each server in turn; None when all failed."""
        loop = asyncio.get_running_loop()
        for host, port in self.upstreams:
            transport = None
            try:
                transport, proto = await loop.create_datagram_endpoint(
                    lambda: _OneShot(query[:2]), remote_addr=(host, port))
                transport.sendto(query)
                return await asyncio.wait_for(proto.answer, self.timeout)
            except (TimeoutError, OSError) as e:
                log.warning("upstream %s:%d failed: %s", host, port, e or "timeout")
            finally:
                if transport is not None:
                    transport.close()
        return None
