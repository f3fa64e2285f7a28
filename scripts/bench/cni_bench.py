"""CNI bench: ADD+DEL latency (netkube vs reference plugins) and pod-to-pod throughput vs a bare veth.

Everything runs in namespaces this script creates (prefix nkb-<random>) and removes at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from cni.install import install_plugins  # noqa: E402

TAG = "nkb-" + os.urandom(3).hex()
NETNS: list[str] = []


def sh(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    p = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=120)
    if check and p.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()} {p.stdout.strip()}")
    return p.stdout


def ns(suffix: str) -> str:
    name = f"{TAG}-{suffix}"
    NETNS.append(name)
    sh("ip", "netns", "add", name)
    sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
    return name


def nx(name: str, *argv: str, **kw: Any) -> str:
    return sh("ip", "netns", "exec", name, *argv, **kw)


def bridge_conf(data: Path, subnet: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "cbr0", "type": "bridge", "bridge": "cni0", "isGateway": True,
            "isDefaultGateway": True, "hairpinMode": True, "ipMasq": True, "mtu": 1500,
            "ipam": {"type": "host-local", "dataDir": str(data), "ranges": [[{"subnet": subnet}]]}}


def cni(node: str, bin_dir: str, cmd: str, conf: dict[str, Any], cid: str, netns: str) -> dict[str, Any]:
    env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": cid, "CNI_NETNS": f"/run/netns/{netns}", "CNI_IFNAME": "eth0",
           "CNI_PATH": bin_dir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    p = subprocess.run(["ip", "netns", "exec", node, f"{bin_dir}/{conf['type']}"], input=json.dumps(conf),
                       env=env, capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise RuntimeError(f"{cmd} failed: {p.stdout} {p.stderr}")
    return json.loads(p.stdout) if p.stdout.strip() else {}


def latency(work: Path, own_bin: str, pods: int) -> dict[str, float]:
    out = {}
    for impl, bin_dir in (("netkube", own_bin), ("reference", "/usr/lib/cni")):
        node = ns(f"lat-{impl[:3]}")
        conf = bridge_conf(work / f"ipam-{impl}", "10.98.0.0/22")
        netns = [ns(f"l{impl[:1]}{i}") for i in range(pods)]
        t0 = time.perf_counter()
        for i, p in enumerate(netns):
            cni(node, bin_dir, "ADD", conf, f"c{i}", p)
        for i, p in enumerate(netns):
            cni(node, bin_dir, "DEL", conf, f"c{i}", p)
        out[impl] = (time.perf_counter() - t0) * 1000 / pods
    return out


def iperf(client_ns: str, server_ns: str, server_ip: str, seconds: int) -> float:
    nx(server_ns, "iperf3", "-s", "-D", "-1", "-p", "5201", "--pidfile", f"/run/{server_ns}.iperf.pid")
    time.sleep(0.3)
    try:
        # Client and server on their own CPUs, the same for every path: where the scheduler puts them
        # otherwise moves one run by more than the paths differ.
        pin = ["-A", "0,1"] if (os.cpu_count() or 1) >= 2 else []
        res = json.loads(nx(client_ns, "iperf3", "-c", server_ip, "-p", "5201", "-t", str(seconds), "-J", *pin))
    finally:
        try:  # -1: the server exits after one test; make sure, by the pid it recorded
            pid = int(Path(f"/run/{server_ns}.iperf.pid").read_text())
            os.kill(pid, 15)
        except (OSError, ValueError):
            pass
        Path(f"/run/{server_ns}.iperf.pid").unlink(missing_ok=True)
    return float(res["end"]["sum_received"]["bits_per_second"]) / 1e9


BR_NF = "net.bridge.bridge-nf-call-iptables"


def node_sysctls(node: str) -> None:
    """What netkube sets in a node namespace: forwarding, and bridged traffic through iptables (kube-proxy
    needs it, kubeadm's preflight demands it). br_netfilter's sysctl exists only once it is loaded."""
    nx(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    if Path("/proc/sys/" + BR_NF.replace(".", "/")).exists():
        nx(node, "sysctl", "-qw", f"{BR_NF}=1")


def two_nodes(work: Path, own_bin: str, backend: str) -> tuple[str, str, str]:
    """Two node netns on one L2 segment (veth), a pod on each; returns (pod1, pod2, pod2 IP)."""
    n1, n2 = ns(f"{backend[:2]}n1"), ns(f"{backend[:2]}n2")
    sh("ip", "link", "add", f"{TAG[-6:]}a", "netns", n1, "type", "veth", "peer", "name", f"{TAG[-6:]}b",
       "netns", n2)
    for node, dev, ip in ((n1, f"{TAG[-6:]}a", "192.168.77.1"), (n2, f"{TAG[-6:]}b", "192.168.77.2")):
        nx(node, "ip", "link", "set", dev, "name", "eth0")
        nx(node, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        nx(node, "ip", "link", "set", "eth0", "up")
        node_sysctls(node)
    mtu = 1500
    if backend == "vxlan":
        mtu = 1450
        for node, me, peer, peer_ip in ((n1, 1, 2, "192.168.77.2"), (n2, 2, 1, "192.168.77.1")):
            local = f"192.168.77.{me}"
            nx(node, "ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", local, "dev", "eth0",
               "dstport", "8472", "nolearning")
            nx(node, "ip", "link", "set", "flannel.1", "address", f"02:00:00:00:00:0{me}", "mtu", "1450", "up")
            nx(node, "ip", "addr", "add", f"10.97.{me}.0/32", "dev", "flannel.1")
            nx(node, "ip", "neigh", "add", f"10.97.{peer}.0", "lladdr", f"02:00:00:00:00:0{peer}", "dev",
               "flannel.1", "nud", "permanent")
            nx(node, "bridge", "fdb", "append", f"02:00:00:00:00:0{peer}", "dev", "flannel.1", "dst", peer_ip)
            nx(node, "ip", "route", "add", f"10.97.{peer}.0/24", "via", f"10.97.{peer}.0", "dev", "flannel.1",
               "onlink")
    else:  # host-gw: the route flannel's host-gw backend installs
        nx(n1, "ip", "route", "add", "10.97.2.0/24", "via", "192.168.77.2", "dev", "eth0")
        nx(n2, "ip", "route", "add", "10.97.1.0/24", "via", "192.168.77.1", "dev", "eth0")
    pods = []
    for i, node in ((1, n1), (2, n2)):
        pod = ns(f"{backend[:2]}p{i}")
        conf = dict(bridge_conf(work / f"ipam-{backend}{i}", f"10.97.{i}.0/24"), mtu=mtu, ipMasq=False)
        res = cni(node, own_bin, "ADD", conf, f"x{i}", pod)
        pods.append((pod, res["ips"][0]["address"].split("/")[0]))
    return pods[0][0], pods[1][0], pods[1][1]


def throughput(work: Path, own_bin: str, seconds: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median Gbit/s and median ratio to the bare veth per path. Each ratio pairs one run of the path
    with one run of the bare veth right next to it (order alternating by round): on a shared host the
    load drifts by more than the paths differ, so a baseline taken once at the start is not fair."""
    a, b = ns("va"), ns("vb")
    sh("ip", "link", "add", f"{TAG[-6:]}x", "netns", a, "type", "veth", "peer", "name", f"{TAG[-6:]}y", "netns", b)
    nx(a, "ip", "addr", "add", "10.96.250.1/30", "dev", f"{TAG[-6:]}x")
    nx(b, "ip", "addr", "add", "10.96.250.2/30", "dev", f"{TAG[-6:]}y")
    nx(a, "ip", "link", "set", f"{TAG[-6:]}x", "up")
    nx(b, "ip", "link", "set", f"{TAG[-6:]}y", "up")
    bare = (a, b, "10.96.250.2")
    node = ns("sn")
    node_sysctls(node)
    conf = bridge_conf(work / "ipam-same", "10.95.0.0/24")
    p1, p2 = ns("sp1"), ns("sp2")
    cni(node, own_bin, "ADD", conf, "s1", p1)
    ip2 = cni(node, own_bin, "ADD", conf, "s2", p2)["ips"][0]["address"].split("/")[0]
    paths = {"same node (bridge)": (p1, p2, ip2)}
    for backend in ("vxlan", "host-gw"):
        paths[f"across nodes, {backend}"] = two_nodes(work, own_bin, backend)
    runs: dict[str, list[float]] = {"bare veth": []}
    ratios: dict[str, list[float]] = {"bare veth": []}
    for r in range(rounds):
        for what, path in paths.items():
            if r % 2 == 0:
                base, gbps = iperf(*bare, seconds), iperf(*path, seconds)
            else:
                gbps, base = iperf(*path, seconds), iperf(*bare, seconds)
            runs["bare veth"].append(base)
            ratios["bare veth"].append(1.0)
            runs.setdefault(what, []).append(gbps)
            ratios.setdefault(what, []).append(gbps / base)
    return {what: (statistics.median(runs[what]), statistics.median(ratios[what])) for what in runs}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5, help="paired runs per path; medians are printed")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix=TAG + "-", dir="/var/tmp"))
    own_bin = str(work / "bin")
    install_plugins(Path(own_bin), sys.executable)
    try:
        lat = latency(work, own_bin, args.pods)
        print(f"CNI ADD+DEL latency, {args.pods} pods sequential (bridge + host-local, ipMasq, hairpin):")
        for impl, ms in lat.items():
            print(f"  {impl:<10} {ms:7.1f} ms per pod")
        print(f"  ratio netkube/reference: {lat['netkube'] / lat['reference']:.2f}x  (target <= 1.5x)")
        tp = throughput(work, own_bin, args.seconds, args.rounds)
        print(f"pod-to-pod TCP throughput (iperf3 -t {args.seconds}, median of {args.rounds} runs, each next to "
              "a bare veth run), ratio to a bare veth pair:")
        targets = {"across nodes, vxlan": 0.7, "across nodes, host-gw": 0.9}
        for what, (gbps, ratio) in tp.items():
            t = f"  (target >= {targets[what]})" if what in targets else ""
            print(f"  {what:<24} {gbps:7.2f} Gbit/s  {ratio:5.2f}x{t}")
        print(f"reproduce: sudo scripts/bench/cni --pods {args.pods} --seconds {args.seconds} --rounds {args.rounds}")
    finally:
        for name in reversed(NETNS):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
