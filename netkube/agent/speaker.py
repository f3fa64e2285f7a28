"""MetalLB-style layer-2 speaker: the elected node holds each LoadBalancer IP on eth0 and announces it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import subprocess
from collections.abc import Iterable
from typing import Protocol

from netkube.client import ENDPOINTSLICES, NODES, SERVICES, ApiClient, Informer, Obj
from netkube.config import ClusterConfig

log = logging.getLogger(__name__)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def node_order(name: str) -> tuple[str, int]:
    """node2 before node10, as a person reading `kubectl get nodes` expects."""
    m = re.fullmatch(r"(.*?)(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else (name, -1)


def _ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions") or [])


def lb_ips(svc: Obj) -> list[str]:
    if svc.get("spec", {}).get("type") != "LoadBalancer":
        return []
    ingress = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in ingress if i.get("ip")]


def endpoint_nodes(svc: Obj, slices: Iterable[Obj]) -> set[str]:
    """Nodes with a ready endpoint of `svc`."""
    md = svc["metadata"]
    out: set[str] = set()
    for s in slices:
        smd = s.get("metadata", {})
        if smd.get("namespace") != md.get("namespace") or (smd.get("labels") or {}).get(SERVICE_NAME_LABEL) != md["name"]:
            continue
        for e in s.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready") is not False and e.get("nodeName"):
                out.add(e["nodeName"])
    return out


def elect(svc: Obj, slices: Iterable[Obj], nodes: Iterable[Obj]) -> str | None:
    """The node that announces `svc`'s LoadBalancer IPs (MetalLB L2 elects per service).

    The lowest-named Ready node that has a ready endpoint; with externalTrafficPolicy Local only
    such a node can answer at all. With no ready endpoint anywhere the lowest Ready node still
    answers, so a client is refused at once (kube-proxy's REJECT) instead of waiting on ARP."""
    if not lb_ips(svc):
        return None
    ready = sorted((n["metadata"]["name"] for n in nodes if _ready(n)), key=node_order)
    if not ready:
        return None
    with_eps = endpoint_nodes(svc, slices)
    return next((n for n in ready if n in with_eps), ready[0])


def wanted_ips(node: str, services: Iterable[Obj], slices: Iterable[Obj], nodes: Iterable[Obj],
               pool: set[str]) -> set[str]:
    slices, nodes = list(slices), list(nodes)
    out: set[str] = set()
    for svc in services:
        if elect(svc, slices, nodes) == node:
            out |= {ip for ip in lb_ips(svc) if ip in pool}  # never claim an address outside the pool
    return out


class Addresses(Protocol):
    """The node's eth0 addresses (a fake in unit tests, `ip` in the node netns for real)."""

    def list(self) -> set[str]: ...
    def add(self, ip: str) -> None: ...
    def remove(self, ip: str) -> None: ...
    def announce(self, ip: str) -> None: ...


class IpAddresses:
    def __init__(self, dev: str = "eth0") -> None:
        self.dev = dev

    def _ip(self, *args: str) -> str:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            raise OSError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def list(self) -> set[str]:
        data = json.loads(self._ip("-j", "-4", "addr", "show", "dev", self.dev) or "[]")
        return {a["local"] for link in data for a in link.get("addr_info", []) if a.get("prefixlen") == 32}

    def add(self, ip: str) -> None:
        self._ip("addr", "replace", f"{ip}/32", "dev", self.dev)

    def remove(self, ip: str) -> None:
        self._ip("addr", "del", f"{ip}/32", "dev", self.dev)

    def announce(self, ip: str) -> None:
        """Gratuitous ARP (a request for our own IP, broadcast) so neighbours update their cache now."""
        data = json.loads(self._ip("-j", "link", "show", "dev", self.dev))
        mac = bytes.fromhex(data[0]["address"].replace(":", ""))
        addr = ipaddress.IPv4Address(ip).packed
        arp = (b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + addr + b"\x00" * 6 + addr)
        frame = b"\xff" * 6 + mac + b"\x08\x06" + arp
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((self.dev, 0))
            s.send(frame)


class Speaker:
    def __init__(self, client: ApiClient, cluster: ClusterConfig, node: str,
                 addresses: Addresses | None = None) -> None:
        self.client, self.node = client, node
        self.pool = set(cluster.lb_pool_ips)
        self.addresses = addresses or IpAddresses()
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINTSLICES)
        self.nodes = Informer(client, NODES)
        self._wake = asyncio.Event()

    def reconcile(self) -> tuple[set[str], set[str]]:
        """Add the IPs we were elected for, drop the pool IPs we hold but no longer should."""
        want = wanted_ips(self.node, self.services.items(), self.slices.items(), self.nodes.items(), self.pool)
        have = self.addresses.list() & self.pool  # only pool addresses are ours to take away
        added, removed = want - have, have - want
        for ip in sorted(removed):
            self.addresses.remove(ip)
            log.info("speaker: %s no longer announced here", ip)
        for ip in sorted(added):
            self.addresses.add(ip)
            try:
                self.addresses.announce(ip)
            except OSError as e:
                log.warning("gratuitous ARP for %s: %s", ip, e)
            log.info("speaker: announcing %s from %s", ip, self.node)
        return added, removed

    async def run(self) -> None:
        informers = (self.services, self.slices, self.nodes)
        for inf in informers:
            inf.add_handler(lambda *_: self._wake.set())
        tasks = [asyncio.create_task(i.run()) for i in informers]
        try:
            for i in informers:
                await i.synced.wait()
            while True:
                self._wake.clear()
                try:
                    await asyncio.to_thread(self.reconcile)
                except OSError as e:
                    log.error("speaker: %s; retrying", e)
                    await asyncio.sleep(1.0)
                    self._wake.set()
                await self._wake.wait()
                await asyncio.sleep(0.05)  # coalesce a burst of events into one reconcile
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
