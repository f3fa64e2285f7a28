"""`python -m netkube.dns`: the cluster DNS server run as the coredns pod's container."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys

from netkube.client import SA_DIR, ApiClient
from netkube.dns.config import DnsConfig, default_config
from netkube.dns.corefile import CorefileError, parse_corefile
from netkube.dns.forward import parse_upstreams
from netkube.dns.handler import Handler
from netkube.dns.health import HealthServer
from netkube.dns.index import Index
from netkube.dns.localip import local_ips
from netkube.dns.metrics import Metrics, MetricsServer
from netkube.dns.reload import ConfigReloader
from netkube.dns.server import DnsServer
from netkube.dns.static import load_file
from netkube.dns.watch import ClusterWatcher

log = logging.getLogger("netkube.dns")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m netkube.dns", allow_abbrev=False,
                                description="Cluster DNS answering from watched Services and EndpointSlices.")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (tests use 127.0.0.1)")
    p.add_argument("--health-port", type=int, default=8080, help="-1 disables")
    p.add_argument("--ready-port", type=int, default=8181, help="-1 disables")
    p.add_argument("--metrics-port", type=int, default=9153, help="Prometheus /metrics; -1 disables")
    p.add_argument("--domain", default="cluster.local")
    p.add_argument("--ttl", type=int, default=5)
    p.add_argument("--apiserver", help="apiserver URL (default http://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)")
    p.add_argument("--upstream", action="append", default=[],
                   help="forward names outside the zone to these servers (ip[:port], repeatable); "
                        "only used while no coredns ConfigMap exists")
    p.add_argument("--corefile", help="read this Corefile instead of watching ConfigMap kube-system/coredns")
    p.add_argument("--static-index", metavar="FILE",
                   help="serve the objects in this JSON/YAML List instead of watching an apiserver")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the DNS port with SO_REUSEPORT (metrics/health in the first only)")
    p.add_argument("--reuseport", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_known_args(argv)


def apiserver_url(arg: str | None) -> str:
    if arg:
        return arg
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise SystemExit("netkube.dns: no apiserver: pass --apiserver http://HOST:PORT or set "
                         "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (the kubelet sets them in pods)")
    scheme = "https" if (SA_DIR / "token").exists() else "http"  # a token is mounted unless --insecure-http
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def api_client(url: str) -> ApiClient:
    """In a pod, like client-go's InClusterConfig: the mounted service-account token and CA."""
    if url.startswith("https:") and (SA_DIR / "token").exists():
        return ApiClient(url, ca_file=SA_DIR / "ca.crt", token_file=SA_DIR / "token")
    return ApiClient(url)


def initial_config(args: argparse.Namespace, upstreams: list[tuple[str, int]]) -> DnsConfig:
    defaults = default_config(args.domain, args.ttl, tuple(upstreams))
    if not args.corefile:
        return defaults
    try:
        with open(args.corefile) as f:
            config = parse_corefile(f.read(), args.corefile)
    except (OSError, CorefileError) as e:
        raise SystemExit(f"netkube.dns: --corefile {args.corefile}: {e}") from e
    for w in config.warnings:
        log.warning("Corefile %s", w)
    return config


async def serve(args: argparse.Namespace, url: str | None, upstreams: list[tuple[str, int]]) -> None:
    index = load_file(args.static_index) if args.static_index else Index()
    config = initial_config(args, upstreams)
    metrics = Metrics(f"dns://{'' if args.bind in ('0.0.0.0', '::') else args.bind}:{args.port}")
    handler = Handler(index, config=config, local_ips=local_ips(args.bind))
    dns = DnsServer(handler, args.bind, args.port, metrics=metrics, reuse_port=args.reuseport or args.workers > 1)
    servers: list = [dns]
    if args.health_port >= 0 and args.ready_port >= 0:
        servers.append(HealthServer(index, args.bind, args.health_port, args.ready_port))
    if args.metrics_port >= 0:
        servers.append(MetricsServer(metrics, args.bind, args.metrics_port))
    client = api_client(url) if url else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for s in servers:
            await s.start()
    except OSError as e:
        for s in servers:
            await s.close()
        if client:
            await client.close()
        raise SystemExit(f"netkube.dns: cannot listen on {args.bind} (port {args.port}, health {args.health_port}, "
                         f"ready {args.ready_port}, metrics {args.metrics_port}): {e}; free the port or pick another") from e
    watcher = ClusterWatcher(client, index, pods=_verified(config)) if client else None

    def apply(cfg: DnsConfig) -> None:
        handler.set_config(cfg)
        dns.reset_forwarding()
        metrics.plugins = [(z + "." if z else ".", p) for b in cfg.blocks for z in b.zones for p in b.plugins]
        if watcher is not None:
            watcher.watch_pods(_verified(cfg))

    apply(config)
    tasks = []
    if watcher is not None and client is not None:
        log.info("watching %s", url)
        tasks.append(asyncio.create_task(watcher.run()))
        if not args.corefile:
            reloader = ConfigReloader(apply, config, on_failure=lambda: setattr(
                metrics, "reload_failed", metrics.reload_failed + 1))
            tasks.append(asyncio.create_task(reloader.informer(client).run()))
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in servers:
            await s.close()
        if client:
            await client.close()


def _verified(cfg: DnsConfig) -> bool:
    return any(b.kubernetes is not None and b.kubernetes.pods == "verified" for b in cfg.blocks)


def spawn_workers(argv: list[str], n: int) -> list[subprocess.Popen[bytes]]:
    """N-1 more copies of this server on the same port (SO_REUSEPORT), without health/metrics ports."""
    extra = ["--reuseport", "--workers", "1", "--health-port", "-1", "--ready-port", "-1", "--metrics-port", "-1"]
    return [subprocess.Popen([sys.executable, "-m", "netkube.dns", *argv, *extra]) for _ in range(n - 1)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if extra:
        # CoreDNS flags such as `-conf /etc/coredns/Corefile` come from stock manifests.
        log.info("ignoring CoreDNS arguments: %s", " ".join(extra))
    try:
        upstreams = parse_upstreams(args.upstream)
    except ValueError as e:
        raise SystemExit(f"netkube.dns: {e}") from e
    url = None if args.static_index else apiserver_url(args.apiserver)
    workers = spawn_workers([a for a in argv if a not in extra], args.workers) if args.workers > 1 else []
    try:
        asyncio.run(serve(args, url, upstreams))
    finally:
        for w in workers:  # our own children, by pid
            w.terminate()
        for w in workers:
            w.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
