"""Benchmark: create N pods to Ready, delete them, and netkube's memory per idle pod (RSS and PSS)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from netkube.client import PODS, cluster_client
from netkube.config import ClusterConfig

NETKUBE = [sys.executable, "-m", "netkube.cli.main"]
MIB = 1024 * 1024


def _kb(pid: int, fname: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{fname}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def memory(records_path: Path) -> dict[str, tuple[int, int]]:
    """(RSS, PSS) bytes per category of recorded netkube processes and their descendants."""
    from netkube.lab.records import Records, process_start_time

    totals: dict[str, list[int]] = {}
    for rec in Records(records_path).live():
        if rec.kind != "process" or process_start_time(rec.data["pid"]) != rec.data["start"]:
            continue
        what = rec.data.get("what", "")
        cat = "agents" if what.startswith("netkube agent") else "server" if what.startswith("netkube server") \
            else "pause" if what.startswith("pause") else "containers" if what.startswith("container") else "other"
        todo, seen = [rec.data["pid"]], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            t = totals.setdefault(cat, [0, 0])
            t[0] += _kb(pid, "status", "VmRSS")
            t[1] += _kb(pid, "smaps_rollup", "Pss")
            todo += _children(pid)
    return {k: (v[0], v[1]) for k, v in totals.items()}


def _is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


async def wait_ready(cfg: ClusterConfig, n: int, deadline: float) -> None:
    client = cluster_client(cfg, "admin")
    try:
        listed = await client.list(PODS, "default", label_selector="app=bench")
        ready = {p["metadata"]["name"] for p in listed["items"] if _is_ready(p)}
        rv = listed["metadata"]["resourceVersion"]
        while len(ready) < n and time.monotonic() < deadline:
            async for etype, pod in client.watch(PODS, "default", rv, label_selector="app=bench",
                                                 timeout_seconds=max(1, int(deadline - time.monotonic()))):
                rv = pod["metadata"].get("resourceVersion", rv)
                if etype in ("ADDED", "MODIFIED") and _is_ready(pod):
                    ready.add(pod["metadata"]["name"])
                    if len(ready) >= n:
                        return
    finally:
        await client.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    state_root = tempfile.mkdtemp(prefix="netkube-bench-", dir="/var/tmp")
    name = f"bpods{uuid.uuid4().hex[:5]}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = [*NETKUBE, "--state-root", state_root]
    up = subprocess.run([*base, "up", "--name", name, "--api-port", str(port)], capture_output=True, text=True)
    if up.returncode != 0:
        print(up.stdout, up.stderr)
        # a failed `up` leaves what it made recorded: remove it as the message says
        subprocess.run([*base, "down", "--name", name], capture_output=True)
        shutil.rmtree(state_root, ignore_errors=True)
        sys.exit(1)
    state = Path(state_root) / name
    kubectl = ["kubectl", "--kubeconfig", str(state / "kubeconfig")]

    def count(ready_only: bool) -> int:
        pods = json.loads(subprocess.run([*kubectl, "get", "pods", "-l", "app=bench", "-o", "json"],
                                         capture_output=True, text=True, check=True).stdout)["items"]
        if not ready_only:
            return len(pods)
        return sum(any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
                   for p in pods)

    try:
        time.sleep(2)
        before = memory(state / "records.jsonl")
        manifest = "---\n".join(
            yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i}", "labels": {"app": "bench"}},
                            "spec": {"containers": [{"name": "httpd", "image": "httpd"}]}})
            for i in range(n))
        t0 = time.monotonic()
        subprocess.run([*kubectl, "create", "-f", "-"], input=manifest, text=True, check=True, capture_output=True)
        # One watch instead of polling with `kubectl get` (a core's worth of CPU here) or `kubectl
        # wait` (one pod at a time, client-side rate limited): the bench should not compete with netkube.
        asyncio.run(wait_ready(ClusterConfig.load(name, state_root), n, t0 + 300))
        create_s = time.monotonic() - t0
        ready = count(True)
        time.sleep(3)  # idle
        after = memory(state / "records.jsonl")
        t1 = time.monotonic()
        subprocess.run([*kubectl, "delete", "pods", "-l", "app=bench", "--wait=false"], check=True, capture_output=True)
        left = n
        while left and time.monotonic() - t1 < 300:
            left = count(False)
            time.sleep(0.2)
        delete_s = time.monotonic() - t1

        def delta(cats: tuple[str, ...], i: int) -> float:
            return sum(after.get(c, (0, 0))[i] - before.get(c, (0, 0))[i] for c in cats) / n / MIB

        own = ("agents", "server", "pause")
        rate_c, rate_d = ready / create_s, (n - left) / delete_s
        print(f"pods created to Ready: {ready}/{n} in {create_s:.2f} s = {rate_c:.1f} pods/s   target >= 20 pods/s   "
              f"ratio to target {rate_c / 20:.2f}")
        print(f"pods deleted (gone from the API): {n - left}/{n} in {delete_s:.2f} s = {rate_d:.1f} pods/s")
        print(f"netkube memory per idle pod (pause + agent/server growth): RSS {delta(own, 0):.2f} MiB, "
              f"PSS {delta(own, 1):.2f} MiB   target < 10 MiB   ratio to target {delta(own, 0) / 10:.2f}")
        print(f"  with the workload (busybox httpd container): RSS {delta((*own, 'containers'), 0):.2f} MiB, "
              f"PSS {delta((*own, 'containers'), 1):.2f} MiB")
        print("  by part, RSS MiB/pod: " + ", ".join(f"{c} {delta((c,), 0):.2f}" for c in (*own, "containers")))
        print(f"reproduce: sudo scripts/bench/pods {n}")
    finally:
        subprocess.run([*base, "down", "--name", name], capture_output=True)
        shutil.rmtree(state_root, ignore_errors=True)  # the bench's own temporary state root


if __name__ == "__main__":
    main()
