"""A small asyncio HTTP/1.1 client for etcd's JSON gateway: POSTs over a pool of keep-alive
connections, so several writes are in flight at once (etcd commits them in one batch) while the
event loop keeps serving. Only what the gateway sends is understood: Content-Length or chunked
bodies, no TLS, no redirects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpPool:
    def __init__(self, host: str, port: int, size: int = 16, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.size = size
        self._idle: list[Conn] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    def _bind(self) -> asyncio.Semaphore:
        """Connections belong to one loop; a store reused from another loop (tests) starts afresh."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self.close()
            self._loop, self._slots = loop, asyncio.Semaphore(self.size)
        return self._slots

    async def post(self, path: str, body: Any) -> tuple[int, bytes]:
        """(status, body); OSError when etcd cannot be reached or does not answer in time. A pooled
        connection etcd closed while idle is retried once on a fresh one."""
        data = json.dumps(body, separators=(",", ":")).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        async with self._bind():
            for attempt in (0, 1):
                reused = bool(self._idle) and not attempt  # the retry gets a fresh connection
                conn = self._idle.pop() if reused else await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.timeout)
                try:
                    conn[1].write(head + data)
                    status, text, keep = await asyncio.wait_for(self._response(conn[0]), self.timeout)
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    conn[1].close()
                    # only a dropped idle connection is retried, never a request etcd may be working on
                    dropped = isinstance(e, (ConnectionError, asyncio.IncompleteReadError))
                    if attempt or not reused or not dropped:
                        raise OSError(f"no answer from {self.host}:{self.port}{path}: {e!r}") from None
                    continue
                except BaseException:
                    conn[1].close()  # cancelled mid-answer: the connection's state is unknown
                    raise
                if keep:
                    self._idle.append(conn)
                else:
                    conn[1].close()
                return status, text
        raise AssertionError("unreachable")

    @staticmethod
    async def _response(r: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        status_line = await r.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await r.readuntil(b"\r\n")) != b"\r\n":
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        keep = headers.get("connection", "").lower() != "close"
        if "chunked" in headers.get("transfer-encoding", ""):
            parts = []
            while size := int((await r.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await r.readexactly(size))
                await r.readexactly(2)
            while await r.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return status, b"".join(parts), keep
        if "content-length" in headers:
            return status, await r.readexactly(int(headers["content-length"])), keep
        return status, await r.read(), False

    def close(self) -> None:
        for _, w in self._idle:
            try:
                w.close()
            except RuntimeError:
                pass  # its loop is already closed, and the socket with it
        self._idle.clear()
