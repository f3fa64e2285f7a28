"""`netkube doctor`: the kernel features and tools netkube needs, and how to get what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

TOOLS = {
    "ip": "iproute2",
    "iptables-restore": "iptables",
    "iptables-save": "iptables",
    "busybox": "busybox-static",
    "tcpdump": "tcpdump",
    "conntrack": "conntrack",
    "nsenter": "util-linux",
}


def _kernel_checks() -> list[str]:
    """Try each needed link type inside a throwaway namespace, never in the root namespace."""
    problems: list[str] = []
    ns = f"nk-doctor-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
    if r.returncode != 0:
        return [f"cannot create network namespaces ({r.stderr.strip()}); netkube needs root and CONFIG_NET_NS"]
    try:
        for kind, extra in (
            ("bridge", []),
            ("veth", ["peer", "name", "nkdoc1"]),
            ("vxlan", ["id", "1", "dstport", "8472"]),
        ):
            r = subprocess.run(
                ["ip", "-n", ns, "link", "add", "nkdoc0", "type", kind, *extra], capture_output=True, text=True
            )
            if r.returncode != 0:
                problems.append(f"kernel lacks the {kind} link type ({r.stderr.strip()}); load its module (modprobe {kind})")
            subprocess.run(["ip", "-n", ns, "link", "del", "nkdoc0"], capture_output=True)
        if not os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
            problems.append("br_netfilter is not loaded; run `modprobe br_netfilter` (Services on one node need it)")
        r = subprocess.run(
            ["ip", "netns", "exec", ns, "iptables-restore", "--noflush"],
            input="*nat\n:NKDOC - [0:0]\n-A NKDOC -m statistic --mode random --probability 0.5 -j RETURN\n"
            "-A NKDOC -m comment --comment x -m addrtype --dst-type LOCAL -j RETURN\nCOMMIT\n",
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            problems.append(f"iptables cannot load kube-proxy's matches (statistic, comment, addrtype): {r.stderr.strip()}")
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    return problems


def problems() -> list[str]:
    found: list[str] = []
    if os.geteuid() != 0:
        return ["netkube needs root to create namespaces: run it with sudo"]
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        found.append(f"missing tools from Debian packages {', '.join(missing)}: run `sudo scripts/setup` "
                     f"or `apt-get install -y {' '.join(missing)}`")
    if shutil.which("ip"):
        found += _kernel_checks()
    return found


def doctor() -> int:
    found = problems()
    if not found:
        print("netkube doctor: everything netkube needs is here (namespaces, veth, bridge, vxlan, br_netfilter, "
              "iptables matches, tools).")
        return 0
    print("netkube doctor found problems:")
    for p in found:
        print(f"  - {p}")
    return 1
