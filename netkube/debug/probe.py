"""`netkube trace --probe`: send a real packet and report where sniffers saw it and how it was rewritten."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from netkube.config import ClusterConfig, ConfigError
from netkube.debug.traceformat import Flow
from proxy_modes.tracer import TraceResult

if TYPE_CHECKING:
    from netkube.debug.trace import World


def sniff_points(cluster: ClusterConfig, world: World, src_netns: str, flow: Flow,
                 result: TraceResult) -> list[tuple[str, str, str]]:
    """(label, netns, interface) along the way: source, entry node, each target's node and pod."""
    src_iface = "any" if flow.in_iface is None else "eth0"
    points = [(f"source {flow.src_label}", src_netns, src_iface)]
    entry = cluster.node_netns(flow.node)
    if entry != src_netns:
        points.append((f"node {flow.node}", entry, "any"))
    by_ip = {p["status"]["podIP"]: p for p in world.pods if p.get("status", {}).get("podIP")
             and not p["spec"].get("hostNetwork")}
    for target in result.targets():
        pod = by_ip.get(target.rpartition(":")[0])
        if pod is None:
            continue
        node = pod["spec"]["nodeName"]
        if cluster.node_netns(node) not in {ns for _, ns, _ in points}:
            points.append((f"node {node}", cluster.node_netns(node), "any"))
        md = pod["metadata"]
        points.append((f"pod {md['namespace']}/{md['name']}", cluster.pod_netns(md["uid"]), "eth0"))
    return points


def probe_flow(cluster: ClusterConfig, world: World, source: str, flow: Flow, result: TraceResult,
               namespace: str) -> str:
    from netkube.debug.trace import resolve_source

    src_netns = resolve_source(cluster, world, source, namespace)[3]
    sport = random.randint(40000, 59999)
    ports = {flow.dport, sport} | {int(t.rpartition(":")[2]) for t in result.targets() if ":" in t}
    bpf = f"{flow.proto} and (" + " or ".join(f"port {p}" for p in sorted(ports)) + ")"
    sniffers = []
    for label, ns, iface in sniff_points(cluster, world, src_netns, flow, result):
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-n", "-l", "-i", iface, "-c", "8", bpf],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sniffers.append((label, iface, proc))
    try:
        time.sleep(0.8)  # tcpdump needs a moment to attach its socket filters
        send = subprocess.run([sys.executable, "-m", "netkube.debug.probe_send", "--netns", src_netns,
                               "--dst", flow.dst, "--dport", str(flow.dport), "--sport", str(sport),
                               "--proto", flow.proto], capture_output=True, text=True, timeout=30)
        if send.returncode != 0:
            raise ConfigError(f"sending the probe failed (is scapy installed? `sudo scripts/setup`): "
                              f"{send.stderr.strip()[-400:]}")
        time.sleep(1.0)
    finally:
        for _, _, proc in sniffers:
            proc.terminate()  # only the tcpdumps we started, by their Popen handles
    lines = [f"probe: {flow.proto} {'SYN' if flow.proto == 'tcp' else 'datagram'} "
             f"{flow.src}:{sport} -> {flow.dst}:{flow.dport}, sent from {src_netns}"]
    for label, iface, proc in sniffers:
        out, _ = proc.communicate(timeout=5)
        seen = [ln.split(" ", 1)[1] if " " in ln else ln for ln in out.splitlines() if ln.strip()]
        lines.append(f"  seen at {label} ({iface}):" + ("" if seen else " nothing"))
        lines += [f"    {s}" for s in seen]
    ct = subprocess.run(["ip", "netns", "exec", cluster.node_netns(flow.node), "conntrack", "-L", "-p", flow.proto,
                         "--orig-port-src", str(sport)], capture_output=True, text=True, timeout=10)
    entries = [ln for ln in ct.stdout.splitlines() if ln.strip()]
    lines.append(f"  conntrack on {flow.node}:" + ("" if entries else " no entry (not NATed there)"))
    for e in entries:
        lines.append(f"    {e}")
        lines.append(f"    => {rewrite_summary(e)}")
    return "\n".join(lines)


def rewrite_summary(entry: str) -> str:
    """From a `conntrack -L` line, how the packet was rewritten (original vs reply tuple)."""
    fields = [f.split("=", 1) for f in entry.split() if "=" in f]
    orig = {k: v for k, v in fields[:4]}
    reply = {k: v for k, v in fields[4:8]}
    if not orig or not reply:
        return "unparsed"
    dnat = f"{orig['dst']}:{orig['dport']} -> {reply['src']}:{reply['sport']}"
    snat = (f"source {orig['src']}:{orig['sport']} -> {reply['dst']}:{reply['dport']} (masqueraded)"
            if reply.get("dst") != orig.get("src") else "source kept")
    same = orig["dst"] == reply["src"] and orig["dport"] == reply["sport"]
    return ("destination not rewritten" if same else f"DNAT {dnat}") + f"; {snat}"
