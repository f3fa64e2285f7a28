"""Thin asyncio UDP and TCP (2-byte length framing) shells around the pure handler."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

from netkube.dns.forward import Forwarder
from netkube.dns.handler import FORWARD, Handler

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may sit idle between queries (RFC 7766 suggests a few s)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        result = self.server.handler.handle(data, udp=True)
        if isinstance(result, bytes):
            assert self.transport is not None
            self.transport.sendto(result, addr)
        elif result is FORWARD:
            self.server.spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = await self.server.forward(data)
        if answer is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(answer, addr)


class DnsServer:
    """Serves `handler` on UDP and TCP at host:port; port 0 picks one free port for both."""

    def __init__(self, handler: Handler, host: str = "0.0.0.0", port: int = 53,
                 forwarder: Forwarder | None = None) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.forwarder = forwarder
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def forward(self, data: bytes) -> bytes | None:
        answer = await self.forwarder.forward(data) if self.forwarder else None
        return answer if answer is not None else self.handler.servfail(data)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # TCP first so that with port 0 the UDP socket can take the same number.
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port, reuse_address=True)
        self.port = self._tcp.sockets[0].getsockname()[1]
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(self.host, self.port), family=family)
        log.info("serving DNS on %s:%d (udp+tcp)", self.host, self.port)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for t in list(self._tasks):
            t.cancel()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                (length,) = struct.unpack("!H", head)
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                result = self.handler.handle(data, udp=False)
                if result is FORWARD:
                    result = await self.forward(data)
                if not isinstance(result, bytes):
                    break  # nothing sensible to say: close, as CoreDNS does on garbage
                writer.write(struct.pack("!H", len(result)) + result)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
