"""Starting this machine's node agent (and its files) the way `netkube up` does for a node netns."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from netkube.client import NODES, ApiClient
from netkube.config import ClusterConfig
from netkube.lab.processes import python_module_argv, spawn_detached
from netkube.lab.records import Records
from netkube.machine.host import Machine


def install_node_files(cluster: ClusterConfig) -> None:
    """CNI plugin executables and the built-in images, under the state dir (nothing in /opt/cni)."""
    from cni.install import install_plugins
    from netkube.images.registry import prepare_assets

    install_plugins(cluster.state_dir / "cni" / "bin", sys.executable)
    prepare_assets(cluster.state_dir / "images")


def start_agent(cluster: ClusterConfig, machine: Machine, records: Records) -> int:
    # No netns: on a machine the node *is* the root namespace (the design's one rule).
    return spawn_detached(
        python_module_argv("netkube.agent", "--cluster-config", str(cluster.state_dir / "cluster.json"),
                           "--node", machine.node, "--node-ip", machine.node_ip, "--iface", machine.iface,
                           "--api-url", machine.api_url),
        cluster.log_dir / "agent.log", records, f"netkube agent {machine.node}",
    )


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


async def wait_node_ready(client: ApiClient, node: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            obj = await client.get(NODES, node)
            for c in obj.get("status", {}).get("conditions", []):
                if c.get("type") == "Ready" and c.get("status") == "True":
                    return
        except Exception:  # noqa: BLE001 - not registered yet / not reachable yet: keep waiting
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"node {node} did not become Ready within {timeout:.0f}s")
