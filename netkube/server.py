"""`netkube server`: the control plane process — apiserver, controllers and scheduler."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket

from aiohttp import web

from netkube.client import cluster_client
from netkube.config import ClusterConfig
from netkube.gcpolicy import tune_daemon
from netkube.supervise import supervise

log = logging.getLogger("netkube.server")


def _loopback_socket(port: int, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise SystemExit(
            f"netkube server: cannot listen on {host}:{port}: {e.strerror}. Another cluster or "
            f"program uses that port; stop it or give this cluster another --api-port."
        ) from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(cluster: ClusterConfig, sockets: list[socket.socket]) -> None:
    from netkube.api.app import make_app
    from netkube.api.stores import open_store
    from netkube.controllers import run_controllers
    from netkube.scheduler import run_scheduler

    store = open_store(cluster.store, cluster.db_path, cluster.etcd_endpoints)
    authn, tls = None, None
    if not cluster.insecure_http:
        from netkube.api.authn import Authenticator, server_ssl_context

        pki = cluster.pki_dir
        authn = Authenticator.from_pki(pki / "sa.key", pki / "tokens.csv")
        tls = server_ssl_context(pki / "ca.crt", pki / "apiserver.crt", pki / "apiserver.key")
    app = make_app(store, cluster, authn)
    if cluster.api_address and tls is not None:  # machine mode: what `netkube join` calls (netkube/machine/)
        from netkube.api.joinapi import JoinApi

        JoinApi(cluster, cluster.pki_dir).add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock, ssl_context=tls).start()
    log.info("apiserver (%s, store %s) listening on %s", "https" if tls else "http", cluster.store,
             ", ".join(str(s.getsockname()) for s in sockets))

    client = cluster_client(cluster, "controller-manager", cluster.api_url_host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(supervise("controllers", lambda: run_controllers(client, cluster))),
        asyncio.create_task(supervise("scheduler", lambda: run_scheduler(client, cluster))),
    ]
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="netkube server")
    parser.add_argument("--cluster-config", required=True, help="path to the cluster's cluster.json")
    parser.add_argument(
        "--listen-netns", default=None, help="also listen on the API host address inside this netns"
    )
    parser.add_argument("--store", choices=["sqlite", "etcd"], default=None,
                        help="storage backend (default: the cluster's, sqlite unless `netkube up --store etcd`)")
    parser.add_argument("--etcd-endpoints", default=None, help="etcd client URL(s) for --store etcd, e.g. http://127.0.0.1:2379")
    parser.add_argument("--listen-address", default=None,
                        help="also listen on this address of the current netns (machine mode: the advertise address)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cluster = ClusterConfig.from_file(args.cluster_config)
    cluster.store = args.store or cluster.store
    cluster.etcd_endpoints = args.etcd_endpoints or cluster.etcd_endpoints
    if cluster.store == "etcd" and not cluster.etcd_endpoints:
        raise SystemExit("netkube server: --store etcd needs --etcd-endpoints http://HOST:PORT")
    sockets = [_loopback_socket(cluster.api_port)]
    if args.listen_address and args.listen_address != "127.0.0.1":
        sockets.append(_loopback_socket(cluster.api_port, args.listen_address))
    if args.listen_netns:
        from netkube.lab.netns import listen_in

        sockets.append(listen_in(args.listen_netns, cluster.api_host, cluster.api_port))
    tune_daemon()
    asyncio.run(serve(cluster, sockets))


if __name__ == "__main__":
    main()
