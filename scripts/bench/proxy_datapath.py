"""Helper of scripts/bench/proxy: traffic through a ClusterIP versus straight to the pod IP.

A pod namespace hangs off the proxier's node namespace by a veth (node 10.244.255.1, pod
10.244.255.10); clients run in the node namespace, so packets take nat OUTPUT like a host process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from proxy_modes.model import Endpoint, ProxyState, ServicePort, ServicePortName

POD_IP, NODE_SIDE = "10.244.255.10", "10.244.255.1"
ECHO_PORT, IPERF_PORT = 8080, 5201
CIP_ECHO, CIP_IPERF = "172.30.250.1", "172.30.250.2"

SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", PORT)); s.listen(4096)
while True:
    c, _ = s.accept(); c.close()
""".replace("PORT", str(ECHO_PORT))

# Connect-rate client: serial connects for `secs`; prints connects/s and the median connect time (µs).
CLIENT = """
import socket, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lat = []; end = time.monotonic() + secs
while time.monotonic() < end:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
    t = time.perf_counter(); s.connect((host, port)); lat.append(time.perf_counter() - t); s.close()
lat.sort()
print(len(lat) / secs, lat[len(lat) // 2] * 1e6)
"""


def add_bench_services(state: ProxyState) -> None:
    """Two services backed by the bench pod: an accept-and-close server and iperf3."""
    for name, cip, port in (("bench-echo", CIP_ECHO, ECHO_PORT), ("bench-iperf", CIP_IPERF, IPERF_PORT)):
        spn = ServicePortName("bench", name, "p", "TCP")
        state.services[spn] = ServicePort(spn, cip, 80)
        state.endpoints[spn] = [Endpoint(POD_IP, port)]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise RuntimeError(f"{argv[:6]} failed: {r.stderr.strip()[-300:]}")
    return r


@contextmanager
def pod(node_ns: str) -> Iterator[str]:
    """A pod namespace wired to node_ns, serving the echo server and iperf3; torn down after."""
    pns = node_ns + "-pod"
    sh("ip", "netns", "add", pns)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sh("ip", "-n", node_ns, "link", "add", "vb0", "type", "veth", "peer", "name", "eth0", "netns", pns)
        sh("ip", "-n", node_ns, "addr", "add", f"{NODE_SIDE}/24", "dev", "vb0")
        sh("ip", "-n", pns, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
        for ns, dev in ((node_ns, "vb0"), (pns, "eth0"), (node_ns, "lo"), (pns, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", pns, "route", "add", "default", "via", NODE_SIDE)
        sh("ip", "-n", node_ns, "route", "add", "172.30.0.0/16", "dev", "vb0")  # ClusterIPs: routed, then DNATed
        procs.append(subprocess.Popen(["ip", "netns", "exec", pns, sys.executable, "-c", SERVER]))
        procs.append(subprocess.Popen(["ip", "netns", "exec", pns, "iperf3", "-s", "-p", str(IPERF_PORT)],
                                      stdout=subprocess.DEVNULL))
        time.sleep(0.5)
        yield pns
    finally:
        for p in procs:  # only the processes started here, by their own handle
            p.terminate()
            p.wait(timeout=10)
        sh("ip", "netns", "del", pns, check=False)


def connects(node_ns: str, host: str, port: int, secs: float = 2.0) -> tuple[float, float]:
    """(connections/s, median connect µs) of a serial client in node_ns."""
    r = sh("ip", "netns", "exec", node_ns, sys.executable, "-c", CLIENT, host, str(port), str(secs))
    rate, med = r.stdout.split()
    return float(rate), float(med)


def throughput(node_ns: str, host: str, port: int = IPERF_PORT, secs: int = 3) -> float:
    """iperf3 Gbit/s (receiver side) from node_ns to host:port."""
    r = sh("ip", "netns", "exec", node_ns, "iperf3", "-c", host, "-p", str(port), "-t", str(secs), "-J")
    return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
