"""Shared fixed address plan and services for the nftables unit tests (upstream TestOverallNFTablesRules style)."""

from __future__ import annotations

from proxy_modes.model import ProxyState
from proxy_modes.nftables.render import RenderConfig
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracker import ChangeTracker

# Address plan: service IPs 172.30.0.x, endpoints 10.180.0.x, node 192.168.0.2 ("node1"),
# cluster CIDR 10.244.0.0/16 (pods at 10.244.0.x), outside client 203.0.113.1.
NODE, NODE_IP, CLUSTER_CIDR, OUTSIDE, POD = "node1", "192.168.0.2", "10.244.0.0/16", "203.0.113.1", "10.244.0.2"
CFG = RenderConfig(NODE, (NODE_IP,), CLUSTER_CIDR, "172.30.0.0/16")
P80 = [("p80", 80, "TCP")]


def overall_tracker() -> ChangeTracker:
    t = ChangeTracker(NODE)
    t.on_service("ADDED", service("ns1", "svc1", "172.30.0.41", P80))
    t.on_service("ADDED", service("ns2", "svc2", "172.30.0.42", P80, "LoadBalancer", [3001],
                                  externalTrafficPolicy="Local", externalIPs=["192.168.99.22"]))
    t.on_service("ADDED", service("ns3", "svc3", "172.30.0.43", P80, "NodePort", [3003]))
    t.on_service("ADDED", service("ns4", "svc4", "172.30.0.44", P80, "NodePort", [3004],
                                  externalIPs=["192.168.99.33"]))
    t.on_service("ADDED", service("ns5", "svc5", "172.30.0.45", P80, sessionAffinity="ClientIP"))
    t.on_service("ADDED", service("ns6", "svc6", "172.30.0.46", P80))
    t.on_endpoint_slice("ADDED", endpoint_slice("ns1", "svc1", ["10.180.0.1"], P80))
    t.on_endpoint_slice("ADDED", endpoint_slice("ns2", "svc2", ["10.180.0.2"], P80))  # not on node1
    t.on_endpoint_slice("ADDED", endpoint_slice("ns3", "svc3", ["10.180.0.3"], P80))
    t.on_endpoint_slice("ADDED", endpoint_slice("ns4", "svc4", ["10.180.0.4", "10.180.0.5"], P80,
                                                node={"10.180.0.5": NODE}))
    t.on_endpoint_slice("ADDED", endpoint_slice("ns5", "svc5", ["10.180.0.3"], P80))
    return t


def overall_state() -> ProxyState:
    return overall_tracker().snapshot()
