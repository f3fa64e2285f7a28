"""Helper of scripts/bench/proxy: time proxier syncs against raw loads, each in a fresh namespace."""

from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_datapath as dp  # noqa: E402
from proxy_state import make_state  # noqa: E402

from proxy_modes.iptables.proxier import IptablesProxier  # noqa: E402
from proxy_modes.iptables.render import RenderConfig as IptConfig  # noqa: E402
from proxy_modes.iptables.render import render  # noqa: E402
from proxy_modes.kernel.iptables import RealIptables  # noqa: E402
from proxy_modes.kernel.nft import RealNft  # noqa: E402
from proxy_modes.model import Endpoint, ProxyState  # noqa: E402
from proxy_modes.nftables.proxier import NftablesProxier  # noqa: E402
from proxy_modes.nftables.render import RenderConfig as NftConfig  # noqa: E402
from proxy_modes.nftables.render import full_script  # noqa: E402

NODE_IP = "192.168.0.2"


@contextmanager
def netns() -> Iterator[str]:
    name = "nkt-pnft-" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run this thread, and the threads and processes it starts, in `ns`: as the node agent runs its
    kube-proxy (iptables/nft run with no nsenter in front, raw loads and syncs alike)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)


def timed(fn: Callable[[], object]) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def change_one(state: ProxyState) -> ProxyState:
    """The same state with one service's last endpoint replaced (a one-service partial sync)."""
    spn = sorted(state.services)[len(state.services) // 2]
    state.endpoints[spn] = [*state.endpoints[spn][:-1], Endpoint("10.250.0.1", 8080)]
    state.changed = {spn.service}
    return state


Row = tuple[float, float, float, float, float | None, str]


def datapath(ns: str, full_traffic: bool) -> str:
    """First-packet latency (ClusterIP/pod, ratio) and, if asked, conn/s and Gbit/s ratios."""
    with dp.pod(ns):
        return dp.measure(ns, full_traffic)


def partial_median(px: IptablesProxier | NftablesProxier, st: ProxyState) -> float:
    """Median of 3 one-service partial syncs, another service each time with one endpoint replaced,
    each change made before the clock starts: on a noisy 2-core machine one sample swings by 2x."""
    samples = []
    for k, spn in enumerate(sorted(st.services)[len(st.services) // 2:][:3]):
        st.endpoints[spn] = [*st.endpoints[spn][:-1], Endpoint(f"10.250.0.{k + 1}", 8080)]
        st.changed = {spn.service}
        samples.append(timed(lambda: px.sync(st, False)))
    return sorted(samples)[1]


def nat_rule_floor() -> float:
    """Median of 3 iptables-restores that add one rule to nat and nothing else: the least any partial
    sync that writes a rule can cost, as the kernel re-checks every chain reachable from the hooks."""
    ipt = RealIptables()
    samples = []
    for _ in range(3):
        samples.append(timed(lambda: ipt.restore("*nat\n:NKBENCH-FLOOR - [0:0]\n-A NKBENCH-FLOOR -j RETURN\nCOMMIT\n")))
        ipt.restore("*nat\n:NKBENCH-FLOOR - [0:0]\n-X NKBENCH-FLOOR\nCOMMIT\n")
    return sorted(samples)[1]


def bench_iptables(n: int, traffic: bool) -> Row:
    st = make_state(n)
    dp.add_bench_services(st)
    cfg = IptConfig("node1", (NODE_IP,))
    text = render(st, cfg)
    raws: list[float] = []
    fulls: list[float] = []
    # Best of 3, raw and full in turns, each in a fresh namespace: on this loaded 2-core machine one
    # sample of the same load swings by 2x (and a batched sync waits for the CPU once per run).
    for attempt in range(3):
        with netns() as ns:
            # One plain iptables-restore into the empty namespace: the fastest load of these rules.
            # (--noflush in ONE run is quadratic in iptables-nft 1.8.9: 3k services 8.7 s, 5k > 60 s.)
            with inside(ns):
                raws.append(timed(lambda: RealIptables(timeout=600).restore(text, noflush=False)))
        if attempt < 2:
            with netns() as ns, inside(ns):
                fulls.append(timed(lambda: IptablesProxier(RealIptables(), cfg).sync(st, True)))
    with netns() as ns:
        with inside(ns):  # the proxier's worker thread starts in there too
            px = IptablesProxier(RealIptables(), cfg)
            fulls.append(timed(lambda: px.sync(st, True)))
            st.changed = set()
            again = timed(lambda: px.sync(st, True))
            partial = partial_median(px, st)
            floor = nat_rule_floor()
        return min(raws), min(fulls), again, partial, floor, datapath(ns, traffic)


def bench_nftables(n: int, traffic: bool) -> Row:
    st = make_state(n)
    dp.add_bench_services(st)
    cfg = NftConfig("node1", (NODE_IP,))
    text = full_script(st, cfg)
    with netns() as ns, inside(ns):
        raw = timed(lambda: RealNft().run(text))  # no longer quadratic: 10k ~2.6 s
    with netns() as ns:
        with inside(ns):
            px = NftablesProxier(RealNft(), cfg)
            full = timed(lambda: px.sync(st, True))
            again = timed(lambda: px.sync(st, True))
            partial = partial_median(px, st)
        return raw, full, again, partial, None, datapath(ns, traffic)


def bench_userspace(n: int, traffic: bool) -> str:
    """The userspace proxier (n services + the bench's) in a node namespace of its own, same datapath measures."""
    with netns() as ns:
        return dp.userspace(ns, n, traffic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--with-10k", action="store_true", help="also 10k services (adds a few minutes)")
    ap.add_argument("--sizes", default="", help="comma-separated sizes instead of 1000,5000[,10000]")
    ap.add_argument("--modes", default="iptables,nftables,userspace", help="comma-separated: iptables,nftables,userspace")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [1000, 5000] + ([10000] if args.with_10k else [])
    print("# reproduce: sudo scripts/bench/proxy " + " ".join(sys.argv[1:]))
    print("# raw: one iptables-restore (no --noflush) / one nft -f of the same rules into an empty netns;"
          " refull: 2nd full sync, nothing changed;"
          " partial: a one-service partial sync (median of 3 services);"
          " floor: one restore adding a single nat rule, no other change (median of 3; iptables only);"
          " iptables raw and full: best of 3, in turns;"
          " lat: median µs from connect() to the pod's close, ClusterIP/pod and ratio (a new connection each);"
          " conn/s and Gbit/s ClusterIP/pod and ratio (first size only);"
          " each a median of 3 ClusterIP and pod runs in turns")
    print(f"{'mode':9} {'services':>8} {'raw(s)':>7} {'full(s)':>7} {'full/raw':>8} {'refull(s)':>9} "
          f"{'partial(ms)':>11} {'floor(ms)':>9} {'lat(us)':>13} {'ratio':>5} {'conn/s':>13} {'ratio':>5} {'Gbit/s':>11} {'ratio':>5}")
    for i, n in enumerate(sizes):
        for mode, fn in (("iptables", bench_iptables), ("nftables", bench_nftables)):
            if mode not in args.modes.split(","):
                continue
            raw, full, again, partial, floor, dpath = fn(n, i == 0)
            fl = f"{floor * 1000:9.0f}" if floor is not None else f"{'-':>9}"
            print(f"{mode:9} {n:>8} {raw:7.2f} {full:7.2f} {full / raw:8.2f} {again:9.2f} {partial * 1000:11.0f} {fl} {dpath}",
                  flush=True)
        if "userspace" in args.modes.split(","):
            print(f"{'userspace':9} {n:>8} {'-':>7} {'-':>7} {'-':>8} {'-':>9} {'-':>11} {'-':>9} {bench_userspace(n, i == 0)}",
                  flush=True)


if __name__ == "__main__":
    main()
