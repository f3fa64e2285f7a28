"""Thin asyncio UDP and TCP (2-byte length framing) shells around the pure handler."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time

from netkube.dns.cache import ResponseCache
from netkube.dns.config import Forward
from netkube.dns.forward import Forwarder, ForwardGroup
from netkube.dns.handler import FORWARD, Handler, Meta, type_label
from netkube.dns.metrics import Metrics
from netkube.dns.wire import Query, Reject, parse_query

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may sit idle between queries (RFC 7766 suggests a few s)
UDP_BATCH = 64  # datagrams read per wake-up before yielding to the event loop
RECV_SIZE = 65535


def truncated(data: bytes, q: Query) -> bytes:
    """Header + question with TC set: what a client gets when a forwarded answer is too big for it."""
    flags = struct.unpack_from("!H", data, 2)[0] | 0x0200
    return data[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + data[12 : q.qend]


class DnsServer:
    """Serves `handler` on UDP and TCP at host:port; port 0 picks one free port for both."""

    def __init__(self, handler: Handler, host: str = "0.0.0.0", port: int = 53,
                 forwarder: Forwarder | None = None, metrics: Metrics | None = None,
                 reuse_port: bool = False) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.forwarder = forwarder  # legacy: one forwarder for every forwarded name
        self.metrics = metrics or Metrics()
        self.reuse_port = reuse_port
        self.family = "2" if ":" in host else "1"
        self._sock: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._groups: dict[Forward, ForwardGroup] = {}
        self.metrics.collectors.append(self._collect)

    def spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- forwarding ---------------------------------------------------------------------------
    def group(self, conf: Forward | None) -> ForwardGroup | None:
        if conf is None or not conf.to:
            if self.forwarder is None:
                return None
            return self._groups.setdefault(Forward("", ()), ForwardGroup(self.forwarder, None))
        grp = self._groups.get(conf)
        if grp is None:
            route = self.handler.config.route(conf.zone)
            cache = route[0].cache if route else None
            grp = self._groups[conf] = ForwardGroup(Forwarder(list(conf.to), force_tcp=conf.force_tcp),
                                                    ResponseCache(cache) if cache else None)
        return grp

    def from_cache(self, data: bytes) -> tuple[bytes, Query, ForwardGroup] | tuple[None, Query | None, ForwardGroup | None]:
        try:
            q = parse_query(data)
        except Reject:
            return None, None, None
        grp = self.group(self.handler.forward_for(data)) if q is not None else None
        if grp is None or q is None:
            return None, q, grp
        hit = grp.cached(q, data)
        return (hit, q, grp) if hit is not None else (None, q, grp)

    async def forward(self, data: bytes, tcp: bool = False) -> bytes | None:
        _, q, grp = self.from_cache(data)
        answer = await grp.resolve(q, data, tcp) if grp is not None and q is not None else None
        return answer if answer is not None else self.handler.servfail(data)

    def _fit(self, answer: bytes, q: Query | None, udp: bool) -> bytes:
        if udp and q is not None and len(answer) > max(512, q.edns):
            return truncated(answer, q)
        return answer

    # --- UDP ----------------------------------------------------------------------------------
    def _udp_socket(self) -> socket.socket:
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, self.port))
        sock.setblocking(False)
        return sock

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        resolve = self.handler.resolve
        observe = self.metrics.observe
        clock = time.perf_counter
        fam = self.family
        for _ in range(UDP_BATCH):
            try:
                data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            t0 = clock()
            try:
                result, meta = resolve(data, True)
            except Exception:  # a bug must not stop the server; count it like CoreDNS's panics
                log.exception("handler failed on a %d-byte query", len(data))
                self.metrics.panics += 1
                result, meta = self.handler.servfail(data), ("dropped", "other", "SERVFAIL", "")
            if type(result) is bytes:
                try:
                    sock.sendto(result, addr)
                except OSError:
                    pass  # full socket buffer or unreachable client: dropped, as UDP allows
                observe(meta, "udp", fam, False, len(data), len(result), clock() - t0)  # type: ignore[arg-type]
            elif result is FORWARD:
                self._udp_forward(data, addr, meta, t0)

    def _udp_forward(self, data: bytes, addr: tuple[str, int], meta: Meta, t0: float) -> None:
        hit, q, grp = self.from_cache(data)
        if hit is not None and q is not None:
            self._send(self._fit(hit, q, True), addr, (meta[0], meta[1], _rcode(hit), "cache"), data, t0)
            return
        self.spawn(self._udp_forward_slow(data, addr, meta, t0, q, grp))

    async def _udp_forward_slow(self, data: bytes, addr: tuple[str, int], meta: Meta, t0: float,
                                q: Query | None, grp: ForwardGroup | None) -> None:
        answer = await grp.resolve(q, data, False) if grp is not None and q is not None else None
        plugin = "forward"
        if answer is None:
            answer, plugin = self.handler.servfail(data), ""
        if answer is not None:
            self._send(self._fit(answer, q, True), addr, (meta[0], meta[1], _rcode(answer), plugin), data, t0)

    def _send(self, answer: bytes, addr: tuple[str, int], meta: Meta, data: bytes, t0: float) -> None:
        if self._sock is not None:
            try:
                self._sock.sendto(answer, addr)
            except OSError:
                pass
        self.metrics.observe(meta, "udp", self.family, False, len(data), len(answer), time.perf_counter() - t0)

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # TCP first so that with port 0 the UDP socket can take the same number.
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port, reuse_address=True,
                                               reuse_port=self.reuse_port or None)
        self.port = self._tcp.sockets[0].getsockname()[1]
        self._sock = self._udp_socket()
        loop.add_reader(self._sock.fileno(), self._readable)
        log.info("serving DNS on %s:%d (udp+tcp)", self.host, self.port)

    async def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
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
                t0 = time.perf_counter()
                try:
                    result, meta = self.handler.resolve(data, udp=False)
                except Exception:
                    log.exception("handler failed on a %d-byte TCP query", len(data))
                    self.metrics.panics += 1
                    result, meta = self.handler.servfail(data), ("dropped", "other", "SERVFAIL", "")
                if result is FORWARD:
                    hit, q, grp = self.from_cache(data)
                    plugin = "cache" if hit is not None else "forward"
                    result = hit if hit is not None else await self.forward(data, tcp=True)
                    meta = (meta[0], meta[1], _rcode(result) if isinstance(result, bytes) else "", plugin)
                if not isinstance(result, bytes):
                    break  # nothing sensible to say: close, as CoreDNS does on garbage
                writer.write(struct.pack("!H", len(result)) + result)
                self.metrics.observe(meta, "tcp", self.family, False, len(data), len(result),
                                     time.perf_counter() - t0)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    # --- metrics of the forward and cache plugins ---------------------------------------------
    def _collect(self) -> list[str]:
        s = self.metrics.server
        hits, misses, entries, fwd_req, fwd_resp = [], [], [], [], []
        for conf, grp in self._groups.items():
            zones = (conf.zone + "." if conf.zone else ".")
            if grp.cache is not None:
                for t, n in grp.cache.hits.items():
                    hits.append(f'coredns_cache_hits_total{{server="{s}",type="{t}",view="",zones="{zones}"}} {n}')
                for t, n in grp.cache.entries().items():
                    entries.append(f'coredns_cache_entries{{server="{s}",type="{t}",view="",zones="{zones}"}} {n}')
                misses.append(f'coredns_cache_misses_total{{server="{s}",view="",zones="{zones}"}} {grp.cache.misses}')
            fwd_req += [f'coredns_forward_requests_total{{to="{to}"}} {n}' for to, n in grp.forwarder.requests.items()]
            fwd_resp += [f'coredns_forward_responses_total{{rcode="{rc}",to="{to}"}} {n}'
                         for (rc, to), n in grp.forwarder.responses.items()]
        return [
            "# HELP coredns_cache_entries The number of elements in the cache.", "# TYPE coredns_cache_entries gauge",
            *entries,
            "# HELP coredns_cache_hits_total The count of cache hits.", "# TYPE coredns_cache_hits_total counter",
            *hits,
            "# HELP coredns_cache_misses_total The count of cache misses. Deprecated, derive misses from cache "
            "hits/requests counters.", "# TYPE coredns_cache_misses_total counter", *misses,
            "# HELP coredns_forward_requests_total Counter of requests made per upstream.",
            "# TYPE coredns_forward_requests_total counter", *fwd_req,
            "# HELP coredns_forward_responses_total Counter of responses received per upstream.",
            "# TYPE coredns_forward_responses_total counter", *fwd_resp,
        ]

    def reset_forwarding(self) -> None:
        """Forget forwarders and caches (a new config takes effect with an empty cache, like a reload)."""
        self._groups.clear()


def _rcode(msg: bytes) -> str:
    return {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}.get(
        msg[3] & 0xF if len(msg) > 3 else 2, "OTHER")


__all__ = ["DnsServer", "type_label"]
