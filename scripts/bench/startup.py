"""Benchmark: `netkube up` time for 3 nodes, then N pods from create to Ready and routable.

The pods are created with one kubectl call, then followed with a single watch (netkube's own
client) rather than repeated kubectl runs, whose start-up CPU would compete with the cluster being
measured on a 2-core machine. Routability is checked by one prober inside node1's netns per batch.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import yaml

from netkube.client import PODS, cluster_client
from netkube.config import ClusterConfig

NETKUBE = [sys.executable, "-m", "netkube.cli.main"]

PROBE = """
import asyncio, sys
async def get(ip):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(ip, 80), 1)
        w.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
        line = await asyncio.wait_for(r.readline(), 1)
        w.close()
        return ip if b" 200 " in line else None
    except Exception:
        return None
async def main():
    for ip in await asyncio.gather(*(get(ip) for ip in sys.argv[1:])):
        if ip:
            print(ip)
asyncio.run(main())
"""


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


async def follow(cluster: ClusterConfig, n: int, t1: float, timeout: float = 300) -> tuple[int, float]:
    """Watch the bench pods; probe newly Ready ones from node1. Returns (routable, seconds)."""
    client = cluster_client(cluster, "admin")
    routable: set[str] = set()
    pending: dict[str, str] = {}
    last = t1
    try:
        async def probe_loop() -> None:
            nonlocal last
            while len(routable) < n:
                batch = dict(pending)
                if batch:
                    proc = await asyncio.create_subprocess_exec(
                        "ip", "netns", "exec", cluster.node_netns("node1"), sys.executable, "-c", PROBE, *batch,
                        stdout=asyncio.subprocess.PIPE)
                    out, _ = await proc.communicate()
                    for ip in out.decode().split():
                        routable.add(batch[ip])
                        pending.pop(ip, None)
                        last = time.monotonic()
                await asyncio.sleep(0.05)

        async def watch_loop() -> None:
            async for _etype, pod in client.watch(PODS, "default", label_selector="app=bench", timeout_seconds=int(timeout)):
                ip = pod.get("status", {}).get("podIP")
                if ip and _ready(pod) and pod["metadata"]["name"] not in routable:
                    pending[ip] = pod["metadata"]["name"]

        watcher = asyncio.create_task(watch_loop())
        try:
            await asyncio.wait_for(probe_loop(), timeout)
        except TimeoutError:
            pass
        watcher.cancel()
    finally:
        await client.close()
    return len(routable), last - t1


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    state_root = tempfile.mkdtemp(prefix="netkube-bench-", dir="/var/tmp")
    name = f"bench{uuid.uuid4().hex[:5]}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = [*NETKUBE, "--state-root", state_root]
    t0 = time.monotonic()
    up = subprocess.run([*base, "up", "--name", name, "--api-port", str(port)], capture_output=True, text=True)
    up_s = time.monotonic() - t0
    if up.returncode != 0:
        print(up.stdout, up.stderr)
        # a failed `up` leaves what it made recorded: remove it as the message says
        subprocess.run([*base, "down", "--name", name], capture_output=True)
        shutil.rmtree(state_root, ignore_errors=True)
        sys.exit(1)
    cluster = ClusterConfig.load(name, state_root)
    kubectl = ["kubectl", "--kubeconfig", str(cluster.kubeconfig_path), "--cache-dir", f"{state_root}/kcache"]
    try:
        manifest = "---\n".join(
            yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i}", "labels": {"app": "bench"}},
                            "spec": {"containers": [{"name": "httpd", "image": "httpd"}]}})
            for i in range(n)
        )
        t1 = time.monotonic()
        subprocess.run([*kubectl, "create", "-f", "-"], input=manifest, text=True, check=True, capture_output=True)
        count, secs = asyncio.run(follow(cluster, n, t1))
        rate = count / secs if secs > 0 else 0.0
        print(f"cluster up (3 nodes): {up_s:.2f} s   target < 5 s   ratio to target {up_s / 5:.2f}")
        print(f"pods Ready and routable: {count}/{n} in {secs:.2f} s = {rate:.1f} pods/s   "
              f"target >= 20 pods/s   ratio to target {rate / 20:.2f}")
        print(f"reproduce: sudo scripts/bench/startup {n}")
    finally:
        subprocess.run([*base, "down", "--name", name], capture_output=True)
        shutil.rmtree(state_root, ignore_errors=True)  # the bench's own temporary state root


if __name__ == "__main__":
    main()
