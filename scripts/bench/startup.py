"""Benchmark: `netkube up` time for 3 nodes, then N pods from create to Ready and routable."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import yaml

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
        sys.exit(1)
    kubeconfig = f"{state_root}/{name}/kubeconfig"
    kubectl = ["kubectl", "--kubeconfig", kubeconfig]
    try:
        # One YAML stream of N pods: kubectl creates them one by one.
        manifest = "---\n".join(
            yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i}", "labels": {"app": "bench"}},
                        "spec": {"containers": [{"name": "httpd", "image": "httpd"}]}})
            for i in range(n)
        )
        t1 = time.monotonic()
        subprocess.run([*kubectl, "create", "-f", "-"], input=manifest, text=True, check=True,
                       capture_output=True)
        routable: set[str] = set()
        netns = f"{name}-node1"
        while len(routable) < n and time.monotonic() - t1 < 300:
            pods = json.loads(subprocess.run([*kubectl, "get", "pods", "-l", "app=bench", "-o", "json"],
                                             capture_output=True, text=True, check=True).stdout)["items"]
            candidates = {}
            for p in pods:
                ip = p.get("status", {}).get("podIP")
                ready = any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
                if ip and ready and p["metadata"]["name"] not in routable:
                    candidates[ip] = p["metadata"]["name"]
            if candidates:
                # One prober inside node1's netns GETs every candidate at once (a process per
                # request would measure the prober, not the cluster).
                r = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, *candidates],
                                   capture_output=True, text=True)
                routable.update(candidates[ip] for ip in r.stdout.split())
            time.sleep(0.1)
        pods_s = time.monotonic() - t1
        rate = len(routable) / pods_s
        print(f"cluster up (3 nodes): {up_s:.2f} s   target < 5 s   ratio to target {up_s / 5:.2f}")
        print(f"pods Ready and routable: {len(routable)}/{n} in {pods_s:.2f} s = {rate:.1f} pods/s   "
              f"target >= 20 pods/s   ratio to target {rate / 20:.2f}")
        print(f"reproduce: sudo scripts/bench/startup {n}")
    finally:
        subprocess.run([*base, "down", "--name", name], capture_output=True)


if __name__ == "__main__":
    main()
