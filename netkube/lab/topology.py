"""The emulator's underlay: node namespaces hung on a bridge that lives in its own namespace.

The topology is a pure plan (a list of `ip` invocations, each tagged with the object it creates)
so it is unit-tested without root; `realize` runs the plan and records every object first.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netkube.config import ClusterConfig
from netkube.lab.records import Records


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    creates_netns: str | None = None  # recorded before the step runs

    def __str__(self) -> str:
        return " ".join(self.argv)


def _ip(*args: str, netns: str | None = None) -> tuple[str, ...]:
    return ("ip", "-n", netns, *args) if netns else ("ip", *args)


def _sysctl(netns: str, key: str, value: str) -> tuple[str, ...]:
    # `ip netns exec` gives the command the namespace's own /proc/sys/net view.
    return ("ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}")


def plan(cluster: ClusterConfig) -> list[Step]:
    """Every command that builds the lab, in order. Nothing here touches the root namespace."""
    ul = cluster.underlay_netns
    steps = [
        Step(("ip", "netns", "add", ul), creates_netns=ul),
        Step(_ip("link", "set", "lo", "up", netns=ul)),
        Step(_ip("link", "add", "br0", "type", "bridge", netns=ul)),
        Step(_ip("addr", "add", f"{cluster.underlay_gateway}/{cluster.node_prefixlen}", "dev", "br0", netns=ul)),
        Step(_ip("link", "set", "br0", "up", netns=ul)),
    ]
    for node in cluster.node_names:
        ns = cluster.node_netns(node)
        steps += [
            Step(("ip", "netns", "add", ns), creates_netns=ns),
            Step(_ip("link", "set", "lo", "up", netns=ns)),
            # The veth is made inside the underlay namespace with its peer sent straight into
            # the node namespace, so it never exists in the host's root namespace.
            Step(_ip("link", "add", node, "type", "veth", "peer", "name", "eth0", "netns", ns, netns=ul)),
            Step(_ip("link", "set", node, "master", "br0", "up", netns=ul)),
            Step(_ip("addr", "add", f"{cluster.node_ip(node)}/{cluster.node_prefixlen}", "dev", "eth0", netns=ns)),
            Step(_ip("link", "set", "eth0", "up", netns=ns)),
            # A default route, as a VM on a host-only network has; ClusterIPs need some route
            # before the OUTPUT DNAT can rewrite them.
            Step(_ip("route", "add", "default", "via", cluster.underlay_gateway, netns=ns)),
            Step(_sysctl(ns, "net.ipv4.ip_forward", "1")),
            Step(_sysctl(ns, "net.bridge.bridge-nf-call-iptables", "1")),
        ]
    return steps + client_plan(cluster)


def client_plan(cluster: ClusterConfig) -> list[Step]:
    """An external client on the underlay (like a laptop on the host-only network): NodePort and
    LoadBalancer addresses are reached from here as from outside the cluster."""
    ul, ns = cluster.underlay_netns, cluster.client_netns
    return [
        Step(("ip", "netns", "add", ns), creates_netns=ns),
        Step(_ip("link", "set", "lo", "up", netns=ns)),
        Step(_ip("link", "add", "client", "type", "veth", "peer", "name", "eth0", "netns", ns, netns=ul)),
        Step(_ip("link", "set", "client", "master", "br0", "up", netns=ul)),
        Step(_ip("addr", "add", f"{cluster.client_ip}/{cluster.node_prefixlen}", "dev", "eth0", netns=ns)),
        Step(_ip("link", "set", "eth0", "up", netns=ns)),
        Step(_ip("route", "add", "default", "via", cluster.underlay_gateway, netns=ns)),
    ]


Runner = Callable[[Sequence[str]], None]


def run_checked(argv: Sequence[str]) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")


def realize(cluster: ClusterConfig, records: Records, run: Runner = run_checked) -> None:
    for step in plan(cluster):
        if step.creates_netns:
            records.add_netns(step.creates_netns)
        run(step.argv)
