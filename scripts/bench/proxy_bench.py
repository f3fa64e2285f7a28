"""Helper of scripts/bench/proxy: time proxier syncs against raw loads, each in a fresh namespace."""

from __future__ import annotations

import argparse
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


Row = tuple[float, float, float, float, str]


def datapath(ns: str, full_traffic: bool) -> str:
    """First-packet latency (median connect µs, ClusterIP/pod) and, if asked, conn/s and Gbit/s ratios."""
    with dp.pod(ns):
        _, lat_c = dp.connects(ns, dp.CIP_ECHO, 80, 1.0)
        _, lat_p = dp.connects(ns, dp.POD_IP, dp.ECHO_PORT, 1.0)
        out = f"{lat_c:7.0f}/{lat_p:<5.0f}"
        if full_traffic:
            rate_c, _ = dp.connects(ns, dp.CIP_ECHO, 80)
            rate_p, _ = dp.connects(ns, dp.POD_IP, dp.ECHO_PORT)
            gb_c = dp.throughput(ns, dp.CIP_IPERF, 80)
            gb_p = dp.throughput(ns, dp.POD_IP)
            out += f" {rate_c:6.0f}/{rate_p:<6.0f} {rate_c / rate_p:5.2f} {gb_c:5.1f}/{gb_p:<5.1f} {gb_c / gb_p:5.2f}"
    return out


def bench_iptables(n: int, traffic: bool) -> Row:
    st = make_state(n)
    dp.add_bench_services(st)
    cfg = IptConfig("node1", (NODE_IP,))
    text = render(st, cfg)
    with netns() as ns:
        # One plain iptables-restore into the empty namespace: the fastest load of these rules.
        # (--noflush in ONE run is quadratic in iptables-nft 1.8.9: 3k services 8.7 s, 5k > 60 s.)
        raw = timed(lambda: RealIptables(netns=ns, timeout=600).restore(text, noflush=False))
    with netns() as ns:
        px = IptablesProxier(RealIptables(netns=ns), cfg)
        full = timed(lambda: px.sync(st, True))
        st.changed = set()
        again = timed(lambda: px.sync(st, True))
        partial = timed(lambda: px.sync(change_one(st), False))
        return raw, full, again, partial, datapath(ns, traffic)


def bench_nftables(n: int, traffic: bool) -> Row:
    st = make_state(n)
    dp.add_bench_services(st)
    cfg = NftConfig("node1", (NODE_IP,))
    text = full_script(st, cfg)
    with netns() as ns:
        raw = timed(lambda: RealNft(netns=ns).run(text)) if n <= 5000 else float("nan")
    with netns() as ns:
        px = NftablesProxier(RealNft(netns=ns), cfg)
        full = timed(lambda: px.sync(st, True))
        again = timed(lambda: px.sync(st, True))
        partial = timed(lambda: px.sync(change_one(st), False))
        return raw, full, again, partial, datapath(ns, traffic)


def bench_userspace() -> str:
    """The userspace proxier (2 services) in a node namespace of its own, same datapath measures."""
    with netns() as ns:
        helper = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).with_name("proxy_userspace.py")),
                                   dp.NODE_SIDE], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            with dp.pod(ns):
                assert helper.stdout is not None
                helper.stdout.readline()  # "ready"
                _, lat_c = dp.connects(ns, dp.CIP_ECHO, 80, 1.0)
                _, lat_p = dp.connects(ns, dp.POD_IP, dp.ECHO_PORT, 1.0)
                rate_c, _ = dp.connects(ns, dp.CIP_ECHO, 80)
                rate_p, _ = dp.connects(ns, dp.POD_IP, dp.ECHO_PORT)
                gb_c = dp.throughput(ns, dp.CIP_IPERF, 80)
                gb_p = dp.throughput(ns, dp.POD_IP)
        finally:
            helper.terminate()
            helper.wait(timeout=10)
    return (f"{lat_c:7.0f}/{lat_p:<5.0f} {rate_c:6.0f}/{rate_p:<6.0f} {rate_c / rate_p:5.2f} "
            f"{gb_c:5.1f}/{gb_p:<5.1f} {gb_c / gb_p:5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--with-10k", action="store_true", help="also 10k services (adds a few minutes)")
    ap.add_argument("--sizes", default="", help="comma-separated sizes instead of 1000,5000[,10000]")
    ap.add_argument("--modes", default="iptables,nftables,userspace", help="comma-separated: iptables,nftables,userspace")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [1000, 5000] + ([10000] if args.with_10k else [])
    print("# reproduce: sudo scripts/bench/proxy " + " ".join(sys.argv[1:]))
    print("# raw: one iptables-restore (no --noflush) / one nft -f of the same rules into an empty netns"
          " (nft raw skipped above 5k: quadratic, ~50 s at 10k); refull: 2nd full sync, nothing changed;"
          " lat: median TCP connect µs ClusterIP/pod (new conntrack entry each);"
          " conn/s and Gbit/s ClusterIP/pod and ratio (first size only)")
    print(f"{'mode':9} {'services':>8} {'raw(s)':>7} {'full(s)':>7} {'full/raw':>8} {'refull(s)':>9} "
          f"{'partial(ms)':>11} {'lat(us)':>13} {'conn/s':>13} {'ratio':>5} {'Gbit/s':>11} {'ratio':>5}")
    for i, n in enumerate(sizes):
        for mode, fn in (("iptables", bench_iptables), ("nftables", bench_nftables)):
            if mode not in args.modes.split(","):
                continue
            raw, full, again, partial, dpath = fn(n, i == 0)
            print(f"{mode:9} {n:>8} {raw:7.2f} {full:7.2f} {full / raw:8.2f} {again:9.2f} {partial * 1000:11.0f} {dpath}",
                  flush=True)
    if "userspace" in args.modes.split(","):
        print(f"{'userspace':9} {2:>8} {'-':>7} {'-':>7} {'-':>8} {'-':>9} {'-':>11} {bench_userspace()}", flush=True)


if __name__ == "__main__":
    main()
