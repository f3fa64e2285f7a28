"""Helper of scripts/bench/dns: build the names, start netkube.dns and NSD on loopback, run dnsperf."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        for _ in range(50):
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                t.bind(("127.0.0.1", port))
                return port
            except OSError:
                u.close()
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raise RuntimeError("no free port")


def build(tmp: str, n: int) -> tuple[str, str, str]:
    """(static index file, NSD zone file, dnsperf query file) describing the same cluster."""
    items: list[dict] = []
    zone = ["$ORIGIN cluster.local.", "$TTL 5",
            "@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5",
            "@ IN NS ns.dns.cluster.local.", "ns.dns IN A 127.0.0.1"]
    queries: list[str] = []
    namespaces = [f"ns{i}" for i in range(max(1, n // 20))]
    items += [{"kind": "Namespace", "metadata": {"name": ns}} for ns in namespaces]
    for i in range(n):
        ns, name, ip = namespaces[i % len(namespaces)], f"svc{i}", f"10.96.{i // 250 + 1}.{i % 250 + 1}"
        items.append({"kind": "Service", "metadata": {"name": name, "namespace": ns},
                      "spec": {"clusterIP": ip, "clusterIPs": [ip],
                               "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        fq = f"{name}.{ns}.svc.cluster.local"
        zone += [f"{name}.{ns}.svc IN A {ip}", f"_http._tcp.{name}.{ns}.svc IN SRV 0 100 80 {fq}."]
        queries.append(f"{fq} A")
        if i % 5 == 0:
            queries += [f"_http._tcp.{fq} SRV", f"{fq} AAAA", f"nope{i}.{ns}.svc.cluster.local A"]
    idx, zf, qf = (os.path.join(tmp, f) for f in ("index.json", "cluster.local.zone", "queries.txt"))
    with open(idx, "w") as f:
        json.dump({"kind": "List", "items": items}, f)
    with open(zf, "w") as f:
        f.write("\n".join(zone) + "\n")
    with open(qf, "w") as f:
        f.write("\n".join(queries) + "\n")
    return idx, zf, qf


def start_nsd(tmp: str, port: int) -> subprocess.Popen[bytes]:
    conf = os.path.join(tmp, "nsd.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
  ip-address: 127.0.0.1@{port}
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "{tmp}"
  pidfile: "{tmp}/nsd.pid"
  database: ""
  zonelistfile: "{tmp}/zone.list"
  xfrdfile: "{tmp}/xfrd.state"
  xfrdir: "{tmp}"
  logfile: "{tmp}/nsd.log"
  hide-version: yes
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: cluster.local
  zonefile: "cluster.local.zone"
""")
    return subprocess.Popen(["nsd", "-d", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_netkube(idx: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "netkube.dns", "--static-index", idx, "--bind", "127.0.0.1",
                             "--port", str(port), "--health-port", "-1", "--ready-port", "-1",
                             "--metrics-port", "-1", "--workers", str(workers)],
                            cwd=REPO, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": REPO})


def wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07cluster\x05local\x00\x00\x06\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        for _ in range(100):
            if proc.poll() is not None:
                raise SystemExit(f"server on port {port} exited with {proc.returncode}")
            s.sendto(q, ("127.0.0.1", port))
            try:
                s.recv(512)
                return
            except OSError:
                time.sleep(0.1)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port}")


def dnsperf(port: int, qf: str, seconds: float, extra: list[str]) -> str:
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qf, "-l", str(seconds), "-c", "4", "-q", "200",
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout


def summary(out: str) -> dict[str, float]:
    def num(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else float("nan")
    return {"qps": num(r"Queries per second:\s+([\d.]+)"), "avg": num(r"Average Latency \(s\):\s+([\d.]+)"),
            "sd": num(r"Latency StdDev \(s\):\s+([\d.]+)"), "lost": num(r"Queries lost:\s+(\d+)"),
            "max": num(r"Average Latency \(s\):.*max ([\d.]+)")}


def percentiles(out: str) -> tuple[float, float]:
    """p50/p99 from dnsperf -v lines (`> NOERROR name A 0.000123`)."""
    lat = sorted(float(ln.rsplit(None, 1)[1]) for ln in out.splitlines() if ln.startswith("> "))
    if not lat:
        return float("nan"), float("nan")
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--p99-rate", type=int, default=20000, help="fixed query rate for the percentile run")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="nk-dnsbench-")
    idx, _, qf = build(tmp, args.services)
    procs: list[subprocess.Popen[bytes]] = []
    results = []
    try:
        targets = [("NSD 4 (1 proc)", "nsd", 1), ("netkube.dns 1 proc", "nk", 1),
                   (f"netkube.dns {args.workers} procs", "nk", args.workers)]
        for label, kind, workers in targets:
            port = free_port()
            proc = start_nsd(tmp, port) if kind == "nsd" else start_netkube(idx, port, workers)
            procs.append(proc)
            wait_up(port, proc)
            time.sleep(0.5 if workers == 1 else 1.5)  # let every worker bind
            s = summary(dnsperf(port, qf, args.seconds, []))
            p50, p99 = percentiles(dnsperf(port, qf, 3, ["-v", "-Q", str(args.p99_rate)]))
            results.append((label, s, p50, p99))
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    base = results[0][1]["qps"]
    print(f"dnsperf -c 4 -q 200 -l {args.seconds:g}, {args.services} services, same query file; "
          f"p50/p99 from a 3 s run at {args.p99_rate} q/s (dnsperf -v)")
    print(f"{'server':<24}{'q/s':>10}{'avg ms':>9}{'sd ms':>8}{'max ms':>9}{'lost':>7}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'vs NSD':>8}")
    for label, s, p50, p99 in results:
        print(f"{label:<24}{s['qps']:>10.0f}{s['avg'] * 1e3:>9.3f}{s['sd'] * 1e3:>8.3f}{s['max'] * 1e3:>9.2f}"
              f"{s['lost']:>7.0f}{p50 * 1e3:>9.3f}{p99 * 1e3:>9.3f}{s['qps'] / base:>8.2f}")
    print(f"reproduce: sudo scripts/bench/dns --seconds {args.seconds:g} --services {args.services} "
          f"--workers {args.workers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
