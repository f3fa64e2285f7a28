"""`python -m netkube.dns`: the cluster DNS server run as the coredns pod's container."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from netkube.client import ApiClient
from netkube.dns.forward import Forwarder, parse_upstreams
from netkube.dns.handler import Handler
from netkube.dns.health import HealthServer
from netkube.dns.index import Index
from netkube.dns.server import DnsServer
from netkube.dns.watch import ClusterWatcher

log = logging.getLogger("netkube.dns")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m netkube.dns", allow_abbrev=False,
                                description="Cluster DNS answering from watched Services and EndpointSlices.")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (tests use 127.0.0.1)")
    p.add_argument("--health-port", type=int, default=8080)
    p.add_argument("--ready-port", type=int, default=8181)
    p.add_argument("--domain", default="cluster.local")
    p.add_argument("--ttl", type=int, default=5)
    p.add_argument("--apiserver", help="apiserver URL (default http://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)")
    p.add_argument("--upstream", action="append", default=[],
                   help="forward names outside the zone to these servers (ip[:port], repeatable)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_known_args(argv)


def apiserver_url(arg: str | None) -> str:
    if arg:
        return arg
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise SystemExit("netkube.dns: no apiserver: pass --apiserver http://HOST:PORT or set "
                         "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (the kubelet sets them in pods)")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(args: argparse.Namespace, url: str, upstreams: list[tuple[str, int]]) -> None:
    index = Index()
    client = ApiClient(url)
    dns = DnsServer(Handler(index, args.domain, args.ttl, forward=bool(upstreams)), args.bind, args.port,
                    Forwarder(upstreams) if upstreams else None)
    health = HealthServer(index, args.bind, args.health_port, args.ready_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await dns.start()
        await health.start()
    except OSError as e:
        await dns.close()
        await health.close()
        await client.close()
        raise SystemExit(f"netkube.dns: cannot listen on {args.bind} (port {args.port}, health "
                         f"{args.health_port}, ready {args.ready_port}): {e}; free the port or pick another") from e
    log.info("watching %s for zone %s (ttl %ds)", url, args.domain, args.ttl)
    watcher = asyncio.create_task(ClusterWatcher(client, index).run())
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await dns.close()
        await health.close()
        await client.close()


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if extra:
        # CoreDNS flags such as `-conf /etc/coredns/Corefile` come from stock manifests.
        log.info("ignoring CoreDNS arguments: %s", " ".join(extra))
    try:
        upstreams = parse_upstreams(args.upstream)
    except ValueError as e:
        raise SystemExit(f"netkube.dns: {e}") from e
    asyncio.run(serve(args, apiserver_url(args.apiserver), upstreams))
    return 0


if __name__ == "__main__":
    sys.exit(main())
