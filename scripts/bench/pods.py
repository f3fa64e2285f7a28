"""Benchmark: create N pods to Ready, delete them, and netkube's memory per idle pod (RSS and PSS)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchcluster import bench_cluster, bench_manifest, ready  # noqa: E402

from netkube.client import PODS, cluster_client  # noqa: E402
from netkube.config import ClusterConfig  # noqa: E402

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


async def wait_ready(cfg: ClusterConfig, n: int, deadline: float) -> None:
    client = cluster_client(cfg, "admin")
    try:
        listed = await client.list(PODS, "default", label_selector="app=bench")
        seen = {p["metadata"]["name"] for p in listed["items"] if ready(p)}
        rv = listed["metadata"]["resourceVersion"]
        while len(seen) < n and time.monotonic() < deadline:
            async for etype, pod in client.watch(PODS, "default", rv, label_selector="app=bench",
                                                 timeout_seconds=max(1, int(deadline - time.monotonic()))):
                rv = pod["metadata"].get("resourceVersion", rv)
                if etype in ("ADDED", "MODIFIED") and ready(pod):
                    seen.add(pod["metadata"]["name"])
                    if len(seen) >= n:
                        return
    finally:
        await client.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with bench_cluster("bpods") as c:
        kubectl, records = c.kubectl, c.cfg.records_path

        def count(ready_only: bool) -> int:
            pods = json.loads(subprocess.run([*kubectl, "get", "pods", "-l", "app=bench", "-o", "json"],
                                             capture_output=True, text=True, check=True).stdout)["items"]
            return sum(ready(p) for p in pods) if ready_only else len(pods)

        time.sleep(2)
        before = memory(records)
        t0 = time.monotonic()
        subprocess.run([*kubectl, "create", "-f", "-"], input=bench_manifest(n), text=True, check=True,
                       capture_output=True)
        # One watch instead of polling with `kubectl get` (a core's worth of CPU here) or `kubectl
        # wait` (one pod at a time, client-side rate limited): the bench should not compete with netkube.
        asyncio.run(wait_ready(c.cfg, n, t0 + 300))
        create_s = time.monotonic() - t0
        ready_n = count(True)
        time.sleep(3)  # idle
        after = memory(records)
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
        rate_c, rate_d = ready_n / create_s, (n - left) / delete_s
        print(f"pods created to Ready: {ready_n}/{n} in {create_s:.2f} s = {rate_c:.1f} pods/s   target >= 20 pods/s   "
              f"ratio to target {rate_c / 20:.2f}")
        print(f"pods deleted (gone from the API): {n - left}/{n} in {delete_s:.2f} s = {rate_d:.1f} pods/s")
        print(f"netkube memory per idle pod (pause + agent/server growth): RSS {delta(own, 0):.2f} MiB, "
              f"PSS {delta(own, 1):.2f} MiB   target < 10 MiB   ratio to target {delta(own, 0) / 10:.2f}")
        print(f"  with the workload (busybox httpd container): RSS {delta((*own, 'containers'), 0):.2f} MiB, "
              f"PSS {delta((*own, 'containers'), 1):.2f} MiB")
        print("  by part, RSS MiB/pod: " + ", ".join(f"{c} {delta((c,), 0):.2f}" for c in (*own, "containers")))
        print(f"reproduce: sudo scripts/bench/pods {n}")


if __name__ == "__main__":
    main()
