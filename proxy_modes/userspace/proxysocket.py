"""The per-service-port proxy sockets: TCP splice with connect retries, UDP with per-client sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from proxy_modes.userspace.loadbalancer import RoundRobin

log = logging.getLogger(__name__)
DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)  # upstream EndpointDialTimeouts: each retry on the next endpoint


def _split(ep: str) -> tuple[str, int]:
    host, _, port = ep.rpartition(":")
    return host, int(port)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            dst.write_eof() if dst.can_write_eof() else dst.close()


class TcpProxy:
    """Accepts on one socket and splices each connection to an endpoint picked by the balancer."""

    def __init__(self, key: str, lb: RoundRobin, sock: socket.socket) -> None:
        self.key, self.lb, self.sock = key, lb, sock
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, sock=self.sock)

    async def dial(self, client_ip: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        tried: set[str] = set()
        for timeout in DIAL_TIMEOUTS:
            ep = self.lb.next_endpoint(self.key, client_ip, skip=tried or None)
            if ep is None:
                return None
            tried.add(ep)
            try:
                return await asyncio.wait_for(asyncio.open_connection(*_split(ep)), timeout)
            except (OSError, TimeoutError) as e:
                log.info("userspace proxy %s: dial %s failed (%s), trying the next endpoint", self.key, ep, e)
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client_ip = (writer.get_extra_info("peername") or ("", 0))[0]
        conn = await self.dial(client_ip)
        if conn is None:
            writer.close()
            return
        er, ew = conn
        await asyncio.gather(_pipe(reader, ew), _pipe(er, writer))
        for w in (writer, ew):
            w.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.sock.close()


class _Session(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxy, client: tuple[str, int]) -> None:
        self.proxy, self.client = proxy, client
        self.transport: asyncio.DatagramTransport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.proxy.transport is not None:
            self.proxy.transport.sendto(data, self.client)  # the reply goes out from the service socket
        self.touch()

    def touch(self) -> None:
        if self.idle:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(self.proxy.idle_timeout, self.expire)

    def expire(self) -> None:
        self.proxy.sessions.pop(self.client, None)
        if self.transport:
            self.transport.close()


class UdpProxy(asyncio.DatagramProtocol):
    """One UDP socket per service port; a connected socket per client session, closed when idle."""

    def __init__(self, key: str, lb: RoundRobin, sock: socket.socket, idle_timeout: float = 0.25) -> None:
        self.key, self.lb, self.sock, self.idle_timeout = key, lb, sock, idle_timeout
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[tuple[str, int], _Session] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=self.sock)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        s = self.sessions.get(addr)
        if s is not None and s.transport is not None:
            s.transport.sendto(data)
            s.touch()
            return
        asyncio.ensure_future(self._open(data, addr))

    async def _open(self, data: bytes, addr: tuple[str, int]) -> None:
        ep = self.lb.next_endpoint(self.key, addr[0])
        if ep is None:
            return
        s = _Session(self, addr)
        self.sessions[addr] = s
        loop = asyncio.get_running_loop()
        s.transport, _ = await loop.create_datagram_endpoint(lambda: s, remote_addr=_split(ep))
        s.transport.sendto(data)
        s.touch()

    def close(self) -> None:
        for s in list(self.sessions.values()):
            s.expire()
        if self.transport is not None:
            self.transport.close()
        else:
            self.sock.close()
