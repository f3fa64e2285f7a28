"""Helper of scripts/bench/proxy: traffic through a ClusterIP versus straight to the pod IP.

A pod namespace hangs off the proxier's node namespace by a veth (node 10.244.255.1, pod
10.244.255.10); clients run in the node namespace, so packets take nat OUTPUT like a host process.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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

# Connection-rate client: serial connections for `secs`, each from connect() until the pod's close
# arrives (the server accepts and closes), so every one really reached the pod: with a userspace
# proxy, connect() alone ends at the proxy's own listener, measuring nothing but its accept queue.
# The client then resets (SO_LINGER 0): no TIME_WAIT is left in the pod, where a later run's SYN
# on the same ports, with other TCP timestamps, would wait for a 1 s retransmit.
# Prints connections/s and the median connection time (µs).
CLIENT = """
import socket, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lat = []; end = time.monotonic() + secs
while time.monotonic() < end:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
    t = time.perf_counter(); s.connect((host, port)); s.recv(1); lat.append(time.perf_counter() - t); s.close()
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
    """(connections/s, median µs from connect() to the pod's close) of a serial client in node_ns."""
    r = sh("ip", "netns", "exec", node_ns, sys.executable, "-c", CLIENT, host, str(port), str(secs))
    rate, med = r.stdout.split()
    return float(rate), float(med)


def throughput(node_ns: str, host: str, port: int = IPERF_PORT, secs: int = 3) -> float:
    """iperf3 Gbit/s (receiver side) from node_ns to host:port."""
    r = sh("ip", "netns", "exec", node_ns, "iperf3", "-c", host, "-p", str(port), "-t", str(secs), "-J")
    return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def _alternating(fn_c: Callable[[], float], fn_p: Callable[[], float], rounds: int) -> tuple[float, float]:
    """Medians of ClusterIP and pod-IP runs taken in turns, so a burst of load elsewhere on the
    machine hits both sides of a ratio alike."""
    c, p = [], []
    for _ in range(rounds):
        c.append(fn_c())
        p.append(fn_p())
    return statistics.median(c), statistics.median(p)


def measure(ns: str, full_traffic: bool, rounds: int = 3) -> str:
    """Columns of one bench row, ClusterIP/pod IP and their ratio: median connection µs and, if
    asked, connections/s and iperf3 Gbit/s. The pod (and its servers) must be up in ns already."""
    lat_c, lat_p = _alternating(lambda: connects(ns, CIP_ECHO, 80, 0.4)[1],
                                lambda: connects(ns, POD_IP, ECHO_PORT, 0.4)[1], rounds)
    out = f"{lat_c:7.0f}/{lat_p:<5.0f} {lat_c / lat_p:5.2f}"
    if full_traffic:
        rate_c, rate_p = _alternating(lambda: connects(ns, CIP_ECHO, 80, 1.0)[0],
                                      lambda: connects(ns, POD_IP, ECHO_PORT, 1.0)[0], rounds)
        gb_c, gb_p = _alternating(lambda: throughput(ns, CIP_IPERF, 80, 2), lambda: throughput(ns, POD_IP, secs=2),
                                  rounds)
        out += f" {rate_c:6.0f}/{rate_p:<6.0f} {rate_c / rate_p:5.2f} {gb_c:5.1f}/{gb_p:<5.1f} {gb_c / gb_p:5.2f}"
    return out


def userspace(ns: str, services: int, full_traffic: bool) -> str:
    """The userspace proxier (the bench services + `services` synthetic ones) in node namespace ns."""
    # `ip netns exec` execs the helper: the handle's pid is the helper's own.
    helper = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).with_name("proxy_userspace.py")),
                               NODE_SIDE, str(services)], stdout=subprocess.PIPE, text=True)
    try:
        with pod(ns):
            assert helper.stdout is not None
            if helper.stdout.readline().strip() != "ready":
                raise RuntimeError("the userspace proxier did not start")
            return measure(ns, full_traffic)
    finally:
        helper.terminate()  # our own child, by its handle
        helper.wait(timeout=10)
