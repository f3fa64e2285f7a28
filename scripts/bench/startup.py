"""Benchmark: `netkube up` time for 3 nodes, then N pods from create to Ready and routable.

The pods are created with one kubectl call, then followed with a single watch (netkube's own
client) rather than repeated kubectl runs, whose start-up CPU would compete with the cluster being
measured on a 2-core machine. Routability is checked by one prober inside node1's netns per batch.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchcluster import bench_cluster, bench_manifest, ready  # noqa: E402

from netkube.client import PODS, cluster_client  # noqa: E402
from netkube.config import ClusterConfig  # noqa: E402

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
                if ip and ready(pod) and pod["metadata"]["name"] not in routable:
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
    with bench_cluster("bench") as c:
        t1 = time.monotonic()
        subprocess.run([*c.kubectl, "create", "-f", "-"], input=bench_manifest(n), text=True, check=True,
                       capture_output=True)
        count, secs = asyncio.run(follow(c.cfg, n, t1))
        rate = count / secs if secs > 0 else 0.0
        print(f"cluster up (3 nodes): {c.up_seconds:.2f} s   target < 5 s   ratio to target {c.up_seconds / 5:.2f}")
        print(f"pods Ready and routable: {count}/{n} in {secs:.2f} s = {rate:.1f} pods/s   "
              f"target >= 20 pods/s   ratio to target {rate / 20:.2f}")
        print(f"reproduce: sudo scripts/bench/startup {n}")


if __name__ == "__main__":
    main()
