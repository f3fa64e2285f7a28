"""Helper of scripts/bench/proxy: API write -> rule in the kernel of every node, on a real 3-node cluster.

N selector-less Services, each with an EndpointSlice of 4 endpoints written by this bench, as a
user's custom slices are. Then, per mode, W times: one slice gets a new endpoint, annotated with
endpoints.kubernetes.io/last-change-trigger-time = the bench's clock right before the PUT. Each
node's kube-proxy logs, after the sync that put it in the kernel, the time since that trigger
(upstream's network_programming_duration_seconds); the bench reads those lines from the agents'
logs, waits for all nodes, checks the first writes really are in each node's rules (not for
userspace, whose endpoints live in the proxy), and prints
p50/p99 of the slowest node per write ("live on every node") and of all node samples.
Writes are spaced 0.15-0.35 s apart: isolated changes, not a burst.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

from netkube.client import ENDPOINTSLICES, NAMESPACES, SERVICES, ApiClient, Obj, cluster_client
from netkube.config import ClusterConfig
from proxy_modes.programming import SERVICE_NAME, TRIGGER_TIME, format_trigger_time

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchcluster import NETKUBE, bench_cluster  # noqa: E402

NS = "dp-prog"
LINE = re.compile(r"network programming latency \(s\): ([^\[\n]*)\[\w+ sync ([0-9.]+) s, "
                  r"event after (-?[0-9.]+) s, sync began (-?[0-9.]+) s after it\]")
VERIFY = 3  # writes per mode checked in every node's kernel rules
TARGET_P50 = 0.1


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def endpoint_ip(i: int, k: int) -> str:
    """4 endpoints per service from 10.244.192.0 (pod CIDR, above the nodes' own /24s)."""
    n = i * 4 + k
    return f"10.244.{192 + n // 256}.{n % 256}"


def make_slice(i: int, ips: list[str]) -> Obj:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"p{i}-bench", "namespace": NS, "labels": {SERVICE_NAME: f"p{i}"},
                         "annotations": {TRIGGER_TIME: format_trigger_time(time.time())}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


class AgentLogs:
    """Follows every node agent's log for the kube-proxy latency lines (node -> service -> latencies)."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.paths = {n: cluster.log_dir / f"agent-{n}.log" for n in cluster.node_names}
        self.offsets = {n: p.stat().st_size if p.exists() else 0 for n, p in self.paths.items()}
        self.seen: dict[str, dict[str, list[float]]] = {n: {} for n in self.paths}
        self.sync_secs: dict[str, dict[str, float]] = {n: {} for n in self.paths}  # that sync's own duration
        self.event_secs: dict[str, dict[str, float]] = {n: {} for n in self.paths}  # trigger -> the agent's event
        self.queued_secs: dict[str, dict[str, float]] = {n: {} for n in self.paths}  # event -> sync start

    def poll(self) -> None:
        for node, path in self.paths.items():
            with path.open("rb") as f:
                f.seek(self.offsets[node])
                data = f.read()
            end = data.rfind(b"\n") + 1  # whole lines only
            self.offsets[node] += end
            for m in LINE.finditer(data[:end].decode(errors="replace")):
                for pair in m.group(1).split(" "):
                    key, _, val = pair.partition("=")
                    if val:
                        self.seen[node].setdefault(key, []).append(float(val))
                        self.sync_secs[node].setdefault(key, float(m.group(2)))
                        self.event_secs[node].setdefault(key, float(m.group(3)))
                        self.queued_secs[node].setdefault(key, float(m.group(4)))

    async def wait(self, key: str, timeout: float = 30.0) -> dict[str, float]:
        """Each node's first latency for `key` since the last clear()."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if all(self.seen[n].get(key) for n in self.seen):
                return {n: self.seen[n][key][0] for n in self.seen}
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key}: no programming latency from {[n for n in self.seen if not self.seen[n].get(key)]}")
            await asyncio.sleep(0.005)

    def clear(self) -> None:
        self.poll()
        self.seen = {n: {} for n in self.paths}
        self.sync_secs = {n: {} for n in self.paths}
        self.event_secs = {n: {} for n in self.paths}
        self.queued_secs = {n: {} for n in self.paths}


async def gather_limited(coros: list[Awaitable[Obj]], limit: int = 16) -> list[Obj]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[Obj]) -> Obj:
        async with sem:
            return await c
    return await asyncio.gather(*(one(c) for c in coros))


async def create_objects(client: ApiClient, n: int) -> dict[int, Obj]:
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    await gather_limited([client.create(SERVICES, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"p{i}", "namespace": NS},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}) for i in range(n)])
    made = await gather_limited([client.create(ENDPOINTSLICES, make_slice(i, [endpoint_ip(i, k) for k in range(4)]))
                                 for i in range(n)])
    return dict(enumerate(made))


def in_kernel(cluster: ClusterConfig, node: str, mode: str, ip: str) -> bool:
    argv = ["iptables-save", "-t", "nat"] if mode != "nftables" else ["nft", "list", "table", "ip", "kube-proxy"]
    out = subprocess.run(["ip", "netns", "exec", cluster.node_netns(node), *argv], capture_output=True, text=True,
                         timeout=60).stdout
    return ip in out


@dataclass
class Samples:
    every: list[float] = field(default_factory=list)  # per write: the slowest node
    per_node: list[float] = field(default_factory=list)
    sync: list[float] = field(default_factory=list)  # per node: the kernel write of that sync alone
    watch: list[float] = field(default_factory=list)  # per write: PUT -> watch event at the bench's own watch
    event: list[float] = field(default_factory=list)  # per node: PUT -> the event in kube-proxy's handler
    queued: list[float] = field(default_factory=list)  # per node: that event -> its sync began
    verified: int = 0


async def follow(client: ApiClient, arrivals: dict[str, float]) -> None:
    """The bench's own watch on the slices: when each resourceVersion reached a watcher."""
    async for _etype, obj in client.watch(ENDPOINTSLICES, NS, timeout_seconds=3600):
        arrivals[obj["metadata"].get("resourceVersion", "")] = time.time()


async def measure_mode(cluster: ClusterConfig, client: ApiClient, logs: AgentLogs, slices: dict[int, Obj], mode: str,
                       writes: int, rng: random.Random, arrivals: dict[str, float]) -> Samples:
    out = Samples()
    for w in range(-1, writes):  # write -1 is a warm-up: it lands after everything before it
        i = rng.randrange(len(slices))
        cur = slices[i]
        fresh = f"10.244.{224 + (w + 1) // 256 % 16}.{(w + 1) % 256}" if w >= 0 else "10.244.240.1"
        body = {**cur, "endpoints": [*cur["endpoints"][:-1], {"addresses": [fresh], "conditions": {"ready": True}}]}
        logs.clear()
        t_write = time.time()
        body["metadata"] = {**cur["metadata"], "annotations": {TRIGGER_TIME: format_trigger_time(t_write)}}
        slices[i] = await client.update(ENDPOINTSLICES, body)
        key = f"{NS}/p{i}"
        got = await logs.wait(key, timeout=120 if w < 0 else 30)
        if w < 0:
            continue
        out.every.append(max(got.values()))
        out.per_node.extend(got.values())
        out.sync.extend(logs.sync_secs[n][key] for n in got)
        out.event.extend(logs.event_secs[n][key] for n in got)
        out.queued.extend(logs.queued_secs[n][key] for n in got)
        if (arrived := arrivals.get(slices[i]["metadata"]["resourceVersion"])) is not None:
            out.watch.append(arrived - t_write)
        if w < VERIFY and mode != "userspace":  # userspace: endpoints live in the proxy, not in rules
            out.verified += all(await asyncio.gather(*(asyncio.to_thread(in_kernel, cluster, n, mode, fresh)
                                                       for n in cluster.node_names)))
        await asyncio.sleep(rng.uniform(0.15, 0.35))
    return out


def checked(verified: int, mode: str, writes: int) -> str:
    return "n/a (endpoints live in the proxy)" if mode == "userspace" else f"{verified}/{min(VERIFY, writes)}"


def ms(xs: list[float], q: float) -> str:
    return f"{percentile(xs, q) * 1000:5.0f}" if xs else "    -"


async def run(cluster: ClusterConfig, state_root: str, n: int, writes: int, modes: list[str]) -> None:
    client = cluster_client(cluster, "admin")
    rng = random.Random(8)
    arrivals: dict[str, float] = {}
    watcher: asyncio.Task[None] | None = None
    try:
        t = time.monotonic()
        slices = await create_objects(client, n)
        print(f"# {n} Services + EndpointSlices created in {time.monotonic() - t:.1f} s", flush=True)
        watcher = asyncio.create_task(follow(client, arrivals))
        logs = AgentLogs(cluster)
        for mode in modes:
            if mode != cluster.proxy_mode:
                subprocess.run([*NETKUBE, "--state-root", state_root, "proxy-mode", "--name", cluster.name, mode,
                                "--timeout", "180"], check=True, capture_output=True, timeout=240)
                cluster.proxy_mode = mode
            r = await measure_mode(cluster, client, logs, slices, mode, writes, rng, arrivals)
            p50 = percentile(r.every, 0.5)
            print(f"programming {mode:9} services {n:5} writes {len(r.every):3}: API write -> rule live on every node "
                  f"p50 {ms(r.every, 0.5)} ms p99 {ms(r.every, 0.99)} ms | per node p50 {ms(r.per_node, 0.5)} ms "
                  f"p99 {ms(r.per_node, 0.99)} ms | verified in rules {checked(r.verified, mode, writes)} | "
                  f"target p50 < 100 ms, ratio to target {p50 / TARGET_P50:.2f}", flush=True)
            print(f"programming {mode:9} breakdown p50/p99 ms: PUT -> bench's watch event {ms(r.watch, 0.5)}/"
                  f"{ms(r.watch, 0.99)} | PUT -> kube-proxy's event {ms(r.event, 0.5)}/{ms(r.event, 0.99)} | "
                  f"event -> sync start {ms(r.queued, 0.5)}/{ms(r.queued, 0.99)} | "
                  f"the sync (render + kernel write) {ms(r.sync, 0.5)}/{ms(r.sync, 0.99)}", flush=True)
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await client.close()


def main(n: int = 1000, writes: int = 40, modes: tuple[str, ...] = ("iptables", "nftables", "userspace")) -> None:
    print(f"# programming: a 3-node cluster, {n} selector-less Services with 4-endpoint EndpointSlices; {writes} "
          "isolated endpoint changes per mode; latency = PUT -> the sync holding it done (each node's kube-proxy, "
          "from endpoints.kubernetes.io/last-change-trigger-time), slowest node per write", flush=True)
    with bench_cluster("dp", ("--proxy-mode", modes[0]), attempts=3) as c:
        asyncio.run(run(c.cfg, c.cfg.state_root, n, writes, list(modes)))

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--writes", type=int, default=40, help="endpoint changes per mode")
    ap.add_argument("--modes", default="iptables,nftables,userspace", help="comma-separated: iptables,nftables,userspace")
    args = ap.parse_args()
    main(args.services, args.writes, tuple(args.modes.split(",")))
