"""Raw byte streams under HTTP upgrades aiohttp does not handle itself (SPDY/3.1).

aiohttp only switches protocols for WebSocket, so for `Upgrade: SPDY/3.1` we take the connection
over: divert the bytes that follow the request into our own reader (aiohttp's set_parser hook,
the one its WebSocket support uses), answer 101 and write to the transport directly. The SPDY
client sends nothing before it has read the 101, so no byte can reach aiohttp's HTTP parser first.
dial_upgrade is the client half: the apiserver asking a kubelet for the same upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

HIGH_WATER = 1 << 20  # buffered inbound bytes before we stop reading the socket


class UpgradedReader:
    """Inbound bytes after the upgrade; aiohttp's protocol feeds it (feed_data/feed_eof)."""

    def __init__(self, transport: asyncio.Transport | None) -> None:
        self._transport = transport
        self._buf = bytearray()
        self._eof = False
        self._paused = False
        self._event = asyncio.Event()

    # the aiohttp payload-parser interface
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._buf += data
        self._event.set()
        if len(self._buf) > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            with contextlib.suppress(Exception):
                self._transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._event.set()

    async def read(self, n: int = -1) -> bytes:
        while not self._buf and not self._eof:
            self._event.clear()
            await self._event.wait()
        size = len(self._buf) if n < 0 else n
        chunk = bytes(self._buf[:size])
        del self._buf[:size]
        if self._paused and len(self._buf) < HIGH_WATER // 2 and self._transport is not None:
            self._paused = False
            with contextlib.suppress(Exception):
                self._transport.resume_reading()
        return chunk


class UpgradedWriter:
    """Outbound bytes straight to the request's transport."""

    def __init__(self, request: web.BaseRequest) -> None:
        self._protocol = request.protocol
        self._transport = request.transport

    def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("connection closed")
        self._transport.write(data)

    async def drain(self) -> None:
        await self._protocol._drain_helper()  # aiohttp's own write flow control

    def write_eof(self) -> None:
        if self._transport is not None and self._transport.can_write_eof():
            with contextlib.suppress(OSError):
                self._transport.write_eof()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def hijack(request: web.Request, headers: dict[str, str]) -> tuple[web.StreamResponse, UpgradedReader,
                                                                       UpgradedWriter]:
    """Answer 101 with headers and return the connection's byte stream.

    The handler must return the response only when done with the stream; aiohttp then closes
    the connection (keep-alive is off).
    """
    reader = UpgradedReader(request.transport)  # type: ignore[arg-type]
    request.protocol.set_parser(reader)  # type: ignore[arg-type]
    request.protocol.keep_alive(False)
    resp = web.StreamResponse(status=101, headers=headers)
    await resp.prepare(request)
    return resp, reader, UpgradedWriter(request)


def is_upgrade(request: web.BaseRequest, protocol: str) -> bool:
    conn = request.headers.get("Connection", "").lower()
    return "upgrade" in conn and protocol.lower() in request.headers.get("Upgrade", "").lower()


@dataclass
class Upgrade:
    """A kubelet's answer to an upgrade request; reader/writer carry the stream after a 101."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


async def dial_upgrade(sock: socket.socket, host: str, path: str, query: list[tuple[str, str]],
                       headers: list[tuple[str, str]], timeout: float = 10) -> Upgrade:
    """POST an upgrade request over a fresh (not yet connected) socket and read the answer's head."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    hostname, _, port = host.rpartition(":")
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (hostname.strip("[]"), int(port))), timeout)
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock)
    target = path + ("?" + urlencode(query) if query else "")
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "Content-Length: 0",
             *(f"{k}: {v}" for k, v in headers)]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        resp_headers: CIMultiDict[str] = CIMultiDict()
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                resp_headers.add(k.strip(), v.strip())
        body = b""
        if status != 101:
            length = int(resp_headers.get("Content-Length", "0") or 0)
            body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
    except BaseException:
        writer.close()
        raise
    return Upgrade(status, resp_headers, body, reader, writer)


async def pipe(src: asyncio.StreamReader | UpgradedReader, dst: asyncio.StreamWriter | UpgradedWriter) -> None:
    """Copy until EOF, then half-close dst so the far side sees the end too."""
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
        if isinstance(dst, asyncio.StreamWriter):
            if dst.can_write_eof():
                dst.write_eof()
        else:
            dst.write_eof()


async def relay_raw(a: tuple[UpgradedReader, UpgradedWriter],
                    b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Both directions until both ends have finished (or one fails); then both are closed."""
    try:
        await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
    finally:
        a[1].close()
        b[1].close()


async def relay_ws(ws: web.WebSocketResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """WebSocket binary messages <-> a raw stream (SPDY tunnelled in WebSocket, message bounds mean nothing)."""

    async def up() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    break
                writer.write(msg.data)
                await writer.drain()
        writer.close()

    async def down() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                await ws.send_bytes(chunk)
        await ws.close()

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
