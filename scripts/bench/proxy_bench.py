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


def bench_iptables(n: int) -> tuple[float, float, float]:
    st = make_state(n)
    cfg = IptConfig("node1", (NODE_IP,))
    text = render(st, cfg)
    with netns() as ns:
        raw = timed(lambda: RealIptables(netns=ns).restore(text, noflush=True))
    with netns() as ns:
        px = IptablesProxier(RealIptables(netns=ns), cfg)
        full = timed(lambda: px.sync(st, True))
        partial = timed(lambda: px.sync(change_one(st), False))
    return raw, full, partial


def bench_nftables(n: int) -> tuple[float, float, float]:
    st = make_state(n)
    cfg = NftConfig("node1", (NODE_IP,))
    text = full_script(st, cfg)
    with netns() as ns:
        raw = timed(lambda: RealNft(netns=ns).run(text))
    with netns() as ns:
        px = NftablesProxier(RealNft(netns=ns), cfg)
        full = timed(lambda: px.sync(st, True))
        partial = timed(lambda: px.sync(change_one(st), False))
    return raw, full, partial


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--with-10k", action="store_true", help="also 10k services (adds a few minutes)")
    ap.add_argument("--sizes", default="", help="comma-separated sizes instead of 1000,5000[,10000]")
    ap.add_argument("--modes", default="iptables,nftables", help="comma-separated: iptables,nftables")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [1000, 5000] + ([10000] if args.with_10k else [])
    print("# reproduce: sudo scripts/bench/proxy " + " ".join(sys.argv[1:]))
    print(f"{'mode':9} {'services':>8} {'raw(s)':>8} {'full(s)':>8} {'full/raw':>8} {'partial(ms)':>11} {'partial/raw':>11}")
    for n in sizes:
        for mode, fn in (("iptables", bench_iptables), ("nftables", bench_nftables)):
            if mode not in args.modes.split(","):
                continue
            raw, full, partial = fn(n)
            print(f"{mode:9} {n:>8} {raw:8.2f} {full:8.2f} {full / raw:8.2f} {partial * 1000:11.0f} {partial / raw:11.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
