"""LoadBalancer IPAM (allocator) and the L2 speaker's election, on plain dicts and a fake eth0."""

from __future__ import annotations

from netkube.agent.speaker import Speaker, elect, node_order, wanted_ips
from netkube.config import ClusterConfig, ConfigError
from netkube.controllers.loadbalancer import allocate
from proxy_modes.testing import endpoint_slice, service

# Address plan: node network 192.168.56.0/24, pool .240-.242 for these tests, nodes node1..node3.
POOL = ["192.168.56.240", "192.168.56.241", "192.168.56.242"]


def lb(name: str, created: str = "2024-01-01T00:00:00Z", ip: str | None = None, **spec: object) -> dict:
    s = service("default", name, "10.96.0.50", svc_type="LoadBalancer", node_ports=[30080], **spec)
    s["metadata"]["creationTimestamp"] = created
    s["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]} if ip else {}}
    return s


def node(name: str, ready: bool = True) -> dict:
    return {"metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_default_pool_is_the_top_of_the_node_network() -> None:
    cfg = ClusterConfig(name="t")
    assert cfg.lb_pool_ips[0] == "192.168.56.240" and cfg.lb_pool_ips[-1] == "192.168.56.250"
    assert ClusterConfig(name="t", lb_pool="192.168.56.220-192.168.56.221").lb_pool_ips == [
        "192.168.56.220", "192.168.56.221"]


def test_pool_may_not_cover_nodes_or_the_client() -> None:
    import pytest

    with pytest.raises(ConfigError, match="bad: \\['192.168.56.101'\\]"):
        ClusterConfig(name="t", lb_pool="192.168.56.101-192.168.56.101").validate()
    with pytest.raises(ConfigError, match="client"):
        ClusterConfig(name="t", lb_pool="192.168.56.200-192.168.56.200").validate()


def test_lowest_free_address_oldest_service_first_and_existing_kept() -> None:
    svcs = [lb("b", "2024-01-02T00:00:00Z"), lb("a", "2024-01-03T00:00:00Z"),
            lb("old", "2024-01-01T00:00:00Z", ip="192.168.56.240")]
    changes, errors = allocate(svcs, POOL)
    assert changes == {"default/b": "192.168.56.241", "default/a": "192.168.56.242"}
    assert errors == {}


def test_requested_ip_exhaustion_and_release() -> None:
    svcs = [lb("want", loadBalancerIP="192.168.56.242"), lb("bad", loadBalancerIP="10.0.0.1"),
            lb("x", "2024-01-02T00:00:00Z"), lb("y", "2024-01-03T00:00:00Z"), lb("z", "2024-01-04T00:00:00Z")]
    was = service("default", "was-lb", "10.96.0.9")
    was["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.56.241"}]}}
    changes, errors = allocate([*svcs, was], POOL)
    assert changes["default/want"] == "192.168.56.242"
    assert changes["default/x"] == "192.168.56.240" and changes["default/y"] == "192.168.56.241"
    assert changes["default/was-lb"] is None  # type changed away from LoadBalancer: address released
    assert "not in the pool" in errors["default/bad"]
    assert "no available IPs" in errors["default/z"]


def test_other_load_balancer_class_is_left_alone() -> None:
    changes, _ = allocate([lb("c", loadBalancerClass="example.com/other")], POOL)
    assert changes == {}


NODES = [node("node1"), node("node2"), node("node3"), node("node10")]


def test_election_lowest_ready_node_with_a_ready_endpoint() -> None:
    svc = lb("web", ip="192.168.56.240")
    slices = [endpoint_slice("default", "web", ["10.244.2.5", "10.244.1.5"],
                             node={"10.244.2.5": "node3", "10.244.1.5": "node2"})]
    assert elect(svc, slices, NODES) == "node2"
    assert elect(svc, slices, [node("node1"), node("node2", ready=False), node("node3")]) == "node3"
    unready = [endpoint_slice("default", "web", ["10.244.1.5"], node="node2", ready={"10.244.1.5": False})]
    assert elect(svc, unready, NODES) == "node1"  # no ready endpoint anywhere: lowest Ready node refuses
    assert elect(lb("pending"), slices, NODES) is None  # no address yet: nothing to announce
    assert sorted(["node10", "node2", "node1"], key=node_order) == ["node1", "node2", "node10"]


def test_wanted_ips_only_from_the_pool() -> None:
    svcs = [lb("a", ip="192.168.56.240"), lb("b", ip="203.0.113.9")]
    slices = [endpoint_slice("default", "a", ["10.244.1.5"], node="node2"),
              endpoint_slice("default", "b", ["10.244.1.6"], node="node2")]
    assert wanted_ips("node2", svcs, slices, NODES, set(POOL)) == {"192.168.56.240"}
    assert wanted_ips("node1", svcs, slices, NODES, set(POOL)) == set()


class FakeAddresses:
    def __init__(self, have: set[str]) -> None:
        self.have, self.announced = set(have), []  # type: ignore[var-annotated]

    def list(self) -> set[str]:
        return set(self.have)

    def add(self, ip: str) -> None:
        self.have.add(ip)

    def remove(self, ip: str) -> None:
        self.have.discard(ip)

    def announce(self, ip: str) -> None:
        self.announced.append(ip)


def test_speaker_takes_over_announces_and_releases_only_pool_addresses() -> None:
    cfg = ClusterConfig(name="t", lb_pool="192.168.56.240-192.168.56.242")
    # node2 holds a stale pool address (.241) and an unrelated /32 that is not ours to touch.
    fake = FakeAddresses({"192.168.56.241", "10.9.9.9"})
    sp = Speaker(None, cfg, "node2", fake)  # type: ignore[arg-type]
    sp.services.cache = {"default/a": lb("a", ip="192.168.56.240")}
    sp.slices.cache = {"default/a-abc": endpoint_slice("default", "a", ["10.244.1.5"], node="node2")}
    sp.nodes.cache = {n["metadata"]["name"]: n for n in NODES}
    assert sp.reconcile() == ({"192.168.56.240"}, {"192.168.56.241"})
    assert fake.have == {"192.168.56.240", "10.9.9.9"} and fake.announced == ["192.168.56.240"]
    # The endpoint moves to node3: node2 lets the address go.
    sp.slices.cache = {"default/a-abc": endpoint_slice("default", "a", ["10.244.2.5"], node="node3")}
    assert sp.reconcile() == (set(), {"192.168.56.240"})
    assert fake.have == {"10.9.9.9"}
