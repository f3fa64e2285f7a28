"""A lean asyncio HTTP/1.1 server (keep-alive aware) for the built-in image programs."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

IDLE_TIMEOUT = 60.0  # seconds an idle keep-alive connection is kept
MAX_HEADER_BYTES = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    peer: tuple[str, int]

    def arg(self, name: str) -> str:
        return self.query.get(name, [""])[0]


@dataclass
class Response:
    body: bytes
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[Request], Response]


class HttpServer:
    def __init__(self, route: Route, host: str = "0.0.0.0", port: int = 8080) -> None:
        self.route = route
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True,
                                                  limit=MAX_HEADER_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[:2]
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    break
                method, target, version = parts
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)  # bodies are ignored but must be consumed
                conn = headers.get("connection", "").lower()
                # HTTP/1.1 keeps the connection by default, HTTP/1.0 only when asked to.
                keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
                url = urlsplit(target)
                req = Request(method, unquote(url.path), parse_qs(url.query, keep_blank_values=True),
                              headers, peer)
                resp = self.route(req)
                writer.write(self._encode(resp, keep, method == "HEAD"))
                await writer.drain()
                if not keep:
                    break
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _encode(resp: Response, keep: bool, head_only: bool) -> bytes:
        reason = REASONS.get(resp.status, "OK")
        header = (f"HTTP/1.1 {resp.status} {reason}\r\nContent-Type: {resp.content_type}\r\n"
                  f"Content-Length: {len(resp.body)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        return header.encode() + (b"" if head_only else resp.body)


async def run_until_signalled(*servers: HttpServer, ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT (the kubelet stops containers with SIGTERM), then close cleanly.

    `ready` runs once the handlers are installed and the servers listen (a start message, say).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for s in servers:
        await s.start()
    if ready is not None:
        ready()
    await stop.wait()
    for s in servers:
        await s.close()


def fail(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr)
    raise SystemExit(2)
