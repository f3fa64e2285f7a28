"""Helper of scripts/bench/proxy: runs the userspace proxier for the bench services in a node netns.

Usage (inside the node netns): proxy_userspace.py NODE_IP [SERVICES]; prints "ready" once the
portals are in place and serves until terminated.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_datapath as dp  # noqa: E402
from proxy_state import make_state  # noqa: E402

from proxy_modes.kernel.iptables import RealIptables  # noqa: E402
from proxy_modes.userspace.proxier import UserspaceProxier  # noqa: E402

if __name__ == "__main__":
    st = make_state(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    dp.add_bench_services(st)
    px = UserspaceProxier(RealIptables(), node_ip=sys.argv[1])
    px.sync(st, True)
    print("ready", flush=True)
    while True:
        time.sleep(3600)
