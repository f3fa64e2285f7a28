"""`netkube server`: the control plane process — apiserver, controllers and scheduler."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket

from aiohttp import web

from netkube.client import ApiClient
from netkube.config import ClusterConfig
from netkube.supervise import supervise

log = logging.getLogger("netkube.server")


def _loopback_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        raise SystemExit(
            f"netkube server: cannot listen on 127.0.0.1:{port}: {e.strerror}. Another cluster or "
            f"program uses that port; stop it or give this cluster another --api-port."
        ) from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(cluster: ClusterConfig, sockets: list[socket.socket]) -> None:
    from netkube.api.app import make_app
    from netkube.api.sqlite_store import SqliteStore
    from netkube.controllers import run_controllers
    from netkube.scheduler import run_scheduler

    store = SqliteStore(str(cluster.db_path))
    app = make_app(store, cluster)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    log.info("apiserver listening on %s", ", ".join(str(s.getsockname()) for s in sockets))

    client = ApiClient(f"http://127.0.0.1:{cluster.api_port}")
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
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cluster = ClusterConfig.from_file(args.cluster_config)
    sockets = [_loopback_socket(cluster.api_port)]
    if args.listen_netns:
        from netkube.lab.netns import listen_in

        sockets.append(listen_in(args.listen_netns, cluster.api_host, cluster.api_port))
    asyncio.run(serve(cluster, sockets))


if __name__ == "__main__":
    main()
