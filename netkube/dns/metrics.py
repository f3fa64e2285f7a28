"""CoreDNS's Prometheus metrics (names, labels, buckets), kept in dicts and written as text by hand."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from aiohttp import web

from netkube.dns.handler import Meta

VERSION = "1.11.3"  # the CoreDNS release whose metric set this follows
TIME_BUCKETS = [0.00025 * 2**i for i in range(16)]  # plugin.TimeBuckets: 0.25 ms .. 8.192 s
SIZE_BUCKETS = [0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000, 48000, 64000]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: list[float]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.buckets, v)] += 1
        self.sum += v


def _labels(names: tuple[str, ...], values: Iterable[object]) -> str:
    pairs = sorted(zip(names, values, strict=True))
    esc = (str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in pairs)
    return ",".join(f'{n}="{e}"' for (n, _), e in zip(pairs, esc, strict=True))


def _fmt(v: float) -> str:
    return repr(float(v)) if isinstance(v, float) and not v.is_integer() else str(int(v))


class Metrics:
    """Per-process counters; `observe` is called once per answered query (keep it cheap)."""

    def __init__(self, server: str = "dns://:53") -> None:
        self.server = server
        self.requests: dict[tuple[str, str, str, str], int] = {}  # (zone, proto, family, type)
        self.responses: dict[tuple[str, str, str], int] = {}  # (zone, rcode, plugin)
        self.do_requests: dict[str, int] = {}
        self.duration: dict[tuple[str, str], Histogram] = {}  # (zone, type)
        self.req_size: dict[tuple[str, str], Histogram] = {}  # (zone, proto)
        self.resp_size: dict[tuple[str, str], Histogram] = {}
        self.panics = 0
        self.reload_failed = 0
        self.plugins: list[tuple[str, str]] = []  # (zone, plugin name) -> coredns_plugin_enabled
        self.collectors: list[Callable[[], list[str]]] = []  # cache and forward families

    def observe(self, meta: Meta, proto: str, family: str, do: bool, req_len: int, resp_len: int,
                seconds: float) -> None:
        zone, qtype, rcode, plugin = meta
        k4 = (zone, proto, family, qtype)
        self.requests[k4] = self.requests.get(k4, 0) + 1
        k3 = (zone, rcode, plugin)
        self.responses[k3] = self.responses.get(k3, 0) + 1
        if do:
            self.do_requests[zone] = self.do_requests.get(zone, 0) + 1
        h = self.duration.get((zone, qtype))
        if h is None:
            h = self.duration[(zone, qtype)] = Histogram(TIME_BUCKETS)
        h.observe(seconds)
        zp = (zone, proto)
        h = self.req_size.get(zp)
        if h is None:
            h = self.req_size[zp] = Histogram(SIZE_BUCKETS)
            self.resp_size[zp] = Histogram(SIZE_BUCKETS)
        h.observe(req_len)
        self.resp_size[zp].observe(resp_len)

    # --- text exposition ----------------------------------------------------------------------
    def render(self) -> str:
        out: list[str] = []
        s = self.server

        def family(name: str, kind: str, help_: str, rows: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}")
            out.extend(f"{name}{{{labels}}} {_fmt(v)}" if labels else f"{name} {_fmt(v)}" for labels, v in rows)

        def hist(name: str, help_: str, names: tuple[str, ...], data: dict[tuple[str, str], Histogram]) -> None:
            out.append(f"# HELP {name} {help_}\n# TYPE {name} histogram")
            for key, h in sorted(data.items()):
                base = _labels(("server", "view", *names), (s, "", *key))
                acc = 0
                for le, c in zip([*h.buckets, float("inf")], h.counts, strict=True):
                    acc += c
                    le_s = "+Inf" if le == float("inf") else _fmt(le)
                    out.append(f'{name}_bucket{{{base},le="{le_s}"}} {acc}')
                out.append(f"{name}_sum{{{base}}} {_fmt(h.sum)}")
                out.append(f"{name}_count{{{base}}} {acc}")

        family("coredns_build_info", "gauge", "A metric with a constant '1' value labeled by version, revision, "
               "and goversion from which CoreDNS was built.",
               [(_labels(("goversion", "revision", "version"), ("netkube-python", "netkube", VERSION)), 1)])
        family("coredns_panics_total", "counter", "A metrics that counts the number of panics.", [("", self.panics)])
        family("coredns_plugin_enabled", "gauge", "A metric that indicates whether a plugin is enabled on per "
               "server and zone basis.",
               [(_labels(("name", "server", "view", "zone"), (p, s, "", z)), 1) for z, p in self.plugins])
        family("coredns_reload_failed_total", "counter", "Counter of the number of failed reload attempts.",
               [("", self.reload_failed)])
        family("coredns_dns_requests_total", "counter", "Counter of DNS requests made per zone, protocol and family.",
               [(_labels(("family", "proto", "server", "type", "view", "zone"), (f, p, s, t, "", z)), n)
                for (z, p, f, t), n in sorted(self.requests.items())])
        family("coredns_dns_do_requests_total", "counter", "Counter of DNS requests with DO bit set per zone.",
               [(_labels(("server", "view", "zone"), (s, "", z)), n) for z, n in sorted(self.do_requests.items())])
        family("coredns_dns_responses_total", "counter", "Counter of response status codes.",
               [(_labels(("plugin", "rcode", "server", "view", "zone"), (pl, rc, s, "", z)), n)
                for (z, rc, pl), n in sorted(self.responses.items())])
        hist("coredns_dns_request_duration_seconds", "Histogram of the time (in seconds) each request took per zone.",
             ("zone", "type"), self.duration)
        hist("coredns_dns_request_size_bytes", "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone "
             "and protocol.", ("zone", "proto"), self.req_size)
        hist("coredns_dns_response_size_bytes", "Size of the returned response in bytes.", ("zone", "proto"),
             self.resp_size)
        for collect in self.collectors:
            out.extend(collect())
        return "\n".join(out) + "\n"


class MetricsServer:
    """Serves GET /metrics (CoreDNS's `prometheus :9153`)."""

    def __init__(self, metrics: Metrics, host: str = "0.0.0.0", port: int = 9153) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _get(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
