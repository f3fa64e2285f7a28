"""Entry point: python -m netkube.agent --cluster-config FILE --node NODE (inside the node netns)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from netkube.agent.agent import NodeAgent
from netkube.config import ClusterConfig
from netkube.gcpolicy import tune_daemon


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="netkube agent")
    parser.add_argument("--cluster-config", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--api-url", default=None, help="apiserver URL (default: the control-plane node IP)")
    # machine mode (`netkube server` / `join`): the node IP and the interface holding it (flannel's
    # --iface; the LoadBalancer speaker's device); the emulator derives both from the node name
    parser.add_argument("--node-ip", default=None, help="this node's IP (default: from the node name)")
    parser.add_argument("--iface", default="eth0", help="the interface holding the node IP (default eth0)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s %(levelname)s {args.node} %(name)s: %(message)s",
    )
    cluster = ClusterConfig.from_file(args.cluster_config)
    tune_daemon()
    asyncio.run(NodeAgent(cluster, args.node, args.api_url, node_ip=args.node_ip, iface=args.iface).run())


if __name__ == "__main__":
    main()
