"""Helper of `scripts/bench/proxy --ipvs`, run inside the VM scripts/vm-test boots (this host's kernel
has no IPVS): ipvs mode's datapath columns, through a ClusterIP versus straight to the pod IP.

The VM runs under TCG emulation, so its absolute numbers mean little; each ratio compares two runs
taken in turns on the same emulated kernel. Usage (in the guest): proxy_ipvs.py [SIZE ...]
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import proxy_datapath as dp  # noqa: E402
from proxy_state import make_state  # noqa: E402

from proxy_modes.ipvs.desired import IpvsConfig  # noqa: E402
from proxy_modes.ipvs.proxier import IpvsProxier  # noqa: E402
from proxy_modes.kernel.ipset import RealIpset  # noqa: E402
from proxy_modes.kernel.iptables import RealIptables  # noqa: E402
from proxy_modes.kernel.ipvs import RealIpvs  # noqa: E402
from proxy_modes.kernel.links import RealLinks  # noqa: E402
from proxy_modes.kernel.sysctl import RealSysctl  # noqa: E402

NODE_IP = "192.168.0.2"


def row(n: int, traffic: bool) -> str:
    ns = "nkt-pipvs-" + secrets.token_hex(3)
    dp.sh("ip", "netns", "add", ns)
    try:
        dp.sh("ip", "-n", ns, "link", "set", "lo", "up")
        st = make_state(n)
        dp.add_bench_services(st)
        cfg = IpvsConfig("node1", (NODE_IP,), "10.244.0.0/16", "172.30.0.0/16", "rr")
        px = IpvsProxier(RealIpvs(ns), RealIpset(netns=ns), RealIptables(netns=ns), RealLinks(ns), RealSysctl(ns), cfg)
        px.sync(st, True)
        try:
            with dp.pod(ns):
                return dp.measure(ns, traffic)
        finally:
            px.cleanup()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [1000]
    print("# ipvs (in the VM, TCG): lat = median µs from connect() to the pod's close, ClusterIP/pod and ratio;"
          " conn/s and Gbit/s ClusterIP/pod and ratio (first size only); each a median of 3 runs in turns")
    print(f"{'mode':9} {'services':>8} {'lat(us)':>13} {'ratio':>5} {'conn/s':>13} {'ratio':>5} {'Gbit/s':>11} {'ratio':>5}",
          flush=True)
    for i, n in enumerate(sizes):
        print(f"{'ipvs':9} {n:>8} {row(n, i == 0)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
