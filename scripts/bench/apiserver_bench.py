"""Benchmark helper for scripts/bench/apiserver: the apiserver runs in a child process, load here."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import multiprocessing.synchronize
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netkube.api.testing import ThreadedApiServer
from netkube.client import PODS, ApiClient
from netkube.lab.etcd import ETCD_HINT, etcd_argv, etcd_binary, free_port, wait_etcd
from netkube.pki import create_cluster_pki

NS = "default"
GET_TARGET, WATCH_P99_TARGET = 2000.0, 0.050


def serve(store: str, etcd_url: str, work: str, port: int, ready: mp.synchronize.Event, stop: mp.synchronize.Event) -> None:
    factory = None
    if store == "etcd":
        from netkube.api.etcd_store import EtcdStore

        factory = lambda: EtcdStore(etcd_url, f"/bench-{port}")  # noqa: E731
    s = ThreadedApiServer(f"{work}/store-{port}.sqlite", store_factory=factory, pki=Path(work) / "pki", port=port).start()
    ready.set()
    stop.wait()
    s.stop()
    s.cleanup()


def pod(i: int) -> dict:
    return {"metadata": {"name": f"p{i:04d}", "annotations": {"bench/t": repr(time.monotonic())}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def rate(fn, seconds: float, conc: int) -> float:  # type: ignore[no-untyped-def]
    n = 0
    end = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal n
        while time.monotonic() < end:
            await fn()
            n += 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return n / (time.monotonic() - t0)


async def watcher(c: ApiClient, rv: str, want: int, lat: list[float]) -> None:
    got = 0
    async for t, o in c.watch(PODS, NS, rv, timeout_seconds=120):
        if t == "MODIFIED":
            lat.append(time.monotonic() - float(o["metadata"]["annotations"]["bench/t"]))
            got += 1
            if got == want:
                return


async def run(url: str, pki: Path, pods: int, watchers: int, seconds: float, pace: float) -> dict[str, float]:
    def client() -> ApiClient:
        return ApiClient(url, ca_file=pki / "ca.crt", cert_file=pki / "admin.crt", key_file=pki / "admin.key")

    c = client()
    t0 = time.monotonic()
    await asyncio.gather(*(c.create(PODS, pod(i), NS) for i in range(pods)))  # up to 64 in flight
    create_rate = pods / (time.monotonic() - t0)
    # watch delivery: every pod patched once at a steady write rate, each change seen by every watcher
    rv = (await c.list(PODS, NS))["metadata"]["resourceVersion"]
    lat: list[float] = []
    wclients = [client() for _ in range(watchers)]
    tasks = [asyncio.create_task(watcher(w, rv, pods, lat)) for w in wclients]
    await asyncio.sleep(0.5)  # let every watch connect
    start = time.monotonic()
    for i in range(pods):
        await asyncio.sleep(max(0.0, start + i / pace - time.monotonic()))
        asyncio.create_task(c.patch(PODS, f"p{i:04d}", {"metadata": {"annotations": {"bench/t": repr(time.monotonic())}}}, NS))
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    for w in wclients:
        await w.close()
    get_rate = await rate(lambda: c.get(PODS, "p0000", NS), seconds, 16)
    list_rate = await rate(lambda: c.list(PODS, NS), seconds, 4)
    await c.close()
    lat.sort()
    return {"get": get_rate, "list": list_rate, "create": create_rate,
            "p50": statistics.median(lat), "p99": lat[int(len(lat) * 0.99) - 1], "samples": len(lat)}


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench/apiserver")
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--watchers", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--stores", default="sqlite,etcd")
    ap.add_argument("--rate", type=float, default=100.0, help="pod updates per second during the watch phase")
    args = ap.parse_args()
    stores = args.stores.split(",")
    work = tempfile.mkdtemp(prefix="nk-bench-api-", dir="/var/tmp")
    create_cluster_pki(Path(work) / "pki", "127.0.0.1", "10.96.0.1", "cluster.local", [])
    etcd = None
    etcd_url = ""
    if "etcd" in stores:
        if etcd_binary() is None:
            print(f"skipping etcd: {ETCD_HINT}")
            stores.remove("etcd")
        else:
            cp, pp = free_port(), free_port()
            etcd = subprocess.Popen(etcd_argv(Path(work) / "etcd", cp, pp), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            etcd_url = f"http://127.0.0.1:{cp}"
            wait_etcd(etcd_url)
    results: dict[str, dict[str, float]] = {}
    load_before = os.getloadavg()[0]  # the machine is shared: a busy one explains a missed target
    try:
        for store in stores:
            port = free_port()
            ready, stop = mp.Event(), mp.Event()
            p = mp.Process(target=serve, args=(store, etcd_url, work, port, ready, stop))
            p.start()
            if not ready.wait(30):
                raise SystemExit(f"{store}: apiserver did not start")
            try:
                results[store] = asyncio.run(run(f"https://127.0.0.1:{port}", Path(work) / "pki",
                                                 args.pods, args.watchers, args.seconds, args.rate))
            finally:
                stop.set()
                p.join(20)
    finally:
        if etcd is not None:
            etcd.terminate()  # the etcd this run started, by its handle
            etcd.wait(10)
        subprocess.run(["rm", "-rf", "--", work], check=False)
    print(f"apiserver over HTTPS (client cert), {args.pods} pods, {args.watchers} watchers, watch phase "
          f"{args.rate:.0f} updates/s; reproduce: scripts/bench/apiserver --pods {args.pods} "
          f"--watchers {args.watchers} --rate {args.rate:.0f}; 1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after on {os.cpu_count()} CPUs")
    print(f"{'store':<8}{'GET/s':>9}{'LIST/s':>9}{'CREATE/s':>10}{'watch p50':>11}{'watch p99':>11}")
    for store, r in results.items():
        print(f"{store:<8}{r['get']:>9.0f}{r['list']:>9.1f}{r['create']:>10.0f}"
              f"{r['p50'] * 1000:>9.1f}ms{r['p99'] * 1000:>9.1f}ms")
    for store, r in results.items():
        print(f"{store}: GET {r['get'] / GET_TARGET:.2f}x of the {GET_TARGET:.0f}/s target "
              f"({'met' if r['get'] >= GET_TARGET else 'MISSED'}); watch p99 {r['p99'] * 1000:.1f} ms vs "
              f"< {WATCH_P99_TARGET * 1000:.0f} ms ({'met' if r['p99'] < WATCH_P99_TARGET else 'MISSED'})")
    if "sqlite" in results and "etcd" in results:
        s, e = results["sqlite"], results["etcd"]
        print(f"etcd/sqlite: GET {e['get'] / s['get']:.2f}, LIST {e['list'] / s['list']:.2f}, "
              f"CREATE {e['create'] / s['create']:.2f}, watch p99 {e['p99'] / s['p99']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
