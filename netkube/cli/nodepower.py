"""`netkube node stop|start NODE`: power a node off and on as a VM would be (agent down, eth0 down)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from netkube.client import NODES, cluster_client
from netkube.config import ClusterConfig, ConfigError
from netkube.lab.processes import python_module_argv, spawn_detached
from netkube.lab.records import Record, Records, process_start_time


def _check_node(cluster: ClusterConfig, node: str) -> None:
    if node not in cluster.node_names:
        raise ConfigError(f"cluster {cluster.name!r} has no node {node!r}; its nodes are {', '.join(cluster.node_names)}")


def agent_what(node: str) -> str:
    return f"netkube agent {node}"  # the record `netkube up` writes for the node's agent


def live_agent(cluster: ClusterConfig, node: str) -> Record | None:
    for rec in Records(cluster.records_path).live():
        if rec.kind == "process" and rec.data.get("what") == agent_what(node):
            if process_start_time(rec.data["pid"]) == rec.data["start"]:
                return rec
    return None


def _ip(netns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, timeout=10)


def _routes_file(cluster: ClusterConfig, node: str) -> Path:
    return cluster.node_dir(node) / "eth0-routes.json"


def stop_agent(cluster: ClusterConfig, rec: Record, timeout: float = 10.0) -> None:
    pid, start = rec.data["pid"], rec.data["start"]
    os.kill(pid, signal.SIGTERM)  # the agent cancels its components; pods keep running (as containerd's)
    deadline = time.monotonic() + timeout
    while process_start_time(pid) == start and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if process_start_time(pid) == start:
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    Records(cluster.records_path).forget("process", pid=pid, start=start)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def node_stop(cluster: ClusterConfig, node: str) -> int:
    """The agent stops (no heartbeats: NotReady after the grace period) and eth0 goes down, so the
    node's pods stop answering from elsewhere; they keep running and are adopted on start."""
    _check_node(cluster, node)
    netns = cluster.node_netns(node)
    rec = live_agent(cluster, node)
    if rec is not None:
        stop_agent(cluster, rec)
        print(f"node agent of {node} stopped (pid {rec.data['pid']})")
    else:
        print(f"node agent of {node} was not running")
    # Setting a link down drops every route through it; keep them to put back on start.
    routes = _ip(netns, "-j", "route", "show", "dev", "eth0")
    if routes.returncode != 0:
        raise ConfigError(f"node {node}: cannot read routes in netns {netns}: {routes.stderr.strip()}")
    kept = [r for r in json.loads(routes.stdout or "[]") if r.get("protocol") != "kernel"]
    if kept or not _routes_file(cluster, node).exists():
        _routes_file(cluster, node).write_text(json.dumps(kept))
    down = _ip(netns, "link", "set", "eth0", "down")
    if down.returncode != 0:
        raise ConfigError(f"node {node}: `ip link set eth0 down` in {netns} failed: {down.stderr.strip()}")
    print(f"node {node} is powered off: eth0 down in {netns}; its pods keep running, unreachable")
    return 0


def _restore_routes(cluster: ClusterConfig, node: str) -> None:
    path = _routes_file(cluster, node)
    try:
        routes = json.loads(path.read_text())
    except (OSError, ValueError):
        routes = []
    netns = cluster.node_netns(node)
    for r in routes:
        argv = ["route", "replace", r.get("dst", "default")]
        if r.get("gateway"):
            argv += ["via", r["gateway"]]
        argv += ["dev", "eth0"]
        if "onlink" in (r.get("flags") or []):
            argv.append("onlink")
        res = _ip(netns, *argv)
        if res.returncode != 0:
            print(f"warning: could not restore route {' '.join(argv[2:])} in {netns}: {res.stderr.strip()}")


async def _wait_ready(cluster: ClusterConfig, node: str, timeout: float) -> None:
    client = cluster_client(cluster, "admin")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj = await client.get(NODES, node)
            conds = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
            if conds.get("Ready") == "True":
                return
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    raise TimeoutError(f"node {node} did not become Ready within {timeout:.0f}s; see {cluster.log_dir / f'agent-{node}.log'}")


def node_start(cluster: ClusterConfig, node: str, timeout: float = 60.0) -> int:
    """eth0 up, routes back, the agent restarted; its kubelet adopts the pods that kept running."""
    _check_node(cluster, node)
    netns = cluster.node_netns(node)
    up = _ip(netns, "link", "set", "eth0", "up")
    if up.returncode != 0:
        raise ConfigError(f"node {node}: `ip link set eth0 up` in {netns} failed: {up.stderr.strip()}")
    _restore_routes(cluster, node)
    if live_agent(cluster, node) is None:
        spawn_detached(
            python_module_argv("netkube.agent", "--cluster-config", str(cluster.state_dir / "cluster.json"), "--node", node),
            cluster.log_dir / f"agent-{node}.log", Records(cluster.records_path), agent_what(node), netns=netns,
        )
    asyncio.run(_wait_ready(cluster, node, timeout))
    print(f"node {node} is powered on and Ready")
    return 0
