"""The asyncio HTTP client the etcd store writes with: Content-Length and chunked answers, keep-alive
reuse, a retry only for an idle connection the server dropped, and many requests in flight."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from netkube.api.etcd_http import HttpPool


class FakeServer:
    """Answers each request per `mode`; counts connections; 'drop' closes after one answer
    without saying so (as etcd does to an idle keep-alive connection)."""

    def __init__(self, mode: str) -> None:
        self.mode, self.conns, self.requests = mode, 0, 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.conns += 1
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
                body = await r.readexactly(length)
                self.requests += 1
                out = json.dumps({"echo": json.loads(body), "n": self.requests, "pad": "x" * 3000}).encode()
                if self.mode == "chunked":
                    parts = [out[i:i + 1000] for i in range(0, len(out), 1000)]
                    w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
                        b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n")
                else:
                    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
                await w.drain()
                if self.mode == "drop":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize("mode", ["length", "chunked", "drop"])
async def test_pool_reads_both_framings_and_survives_dropped_idle_connections(mode: str) -> None:
    srv = FakeServer(mode)
    port = await srv.start()
    pool = HttpPool("127.0.0.1", port, size=4, timeout=5)
    try:
        for i in range(3):
            status, text = await pool.post("/x", {"i": i})
            assert status == 200 and json.loads(text)["echo"] == {"i": i}
            await asyncio.sleep(0.05)  # let a 'drop' server close the idle connection
        # keep-alive reuses one connection; a dropped one is replaced without failing the request
        assert srv.conns == (3 if mode == "drop" else 1) and srv.requests == 3
        answers = await asyncio.gather(*(pool.post("/x", {"i": i}) for i in range(20)))
        assert sorted(json.loads(t)["echo"]["i"] for _, t in answers) == list(range(20))
        assert len(pool._idle) <= 4  # never more connections than the pool's size
    finally:
        pool.close()
        srv.stop()


async def test_pool_against_etcd_round_trips_large_ranges(etcd_url: str) -> None:
    host, port = etcd_url.removeprefix("http://").split(":")
    pool = HttpPool(host, int(port))
    root = f"/http-{id(pool)}/"
    try:
        await asyncio.gather(*(pool.post("/v3/kv/put", {
            "key": base64.b64encode(f"{root}{i:03d}".encode()).decode(),
            "value": base64.b64encode(b"v" * 300).decode()}) for i in range(60)))
        end = root[:-1] + chr(ord(root[-1]) + 1)
        status, text = await pool.post("/v3/kv/range", {"key": base64.b64encode(root.encode()).decode(),
                                                        "range_end": base64.b64encode(end.encode()).decode()})
        assert status == 200 and len(json.loads(text)["kvs"]) == 60  # ~25 KB answer
    finally:
        pool.close()
