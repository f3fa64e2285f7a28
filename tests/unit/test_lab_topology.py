"""The lab plan: every object lands in a netns netkube made, never in the root namespace."""

from __future__ import annotations

from netkube.config import ClusterConfig
from netkube.lab import topology
from netkube.lab.records import Records


def test_plan_builds_underlay_and_nodes_only_inside_named_namespaces() -> None:
    cluster = ClusterConfig(name="t1", nodes=3)
    steps = topology.plan(cluster)
    created = [s.creates_netns for s in steps if s.creates_netns]
    assert created == ["t1-underlay", "t1-node1", "t1-node2", "t1-node3", "t1-client"]
    for s in steps:
        argv = s.argv
        # Either creating a namespace, or an `ip -n NS` / `ip netns exec NS` inside one we made.
        if argv[:3] == ("ip", "netns", "add"):
            continue
        ns = argv[2] if argv[1] == "-n" else argv[3]
        assert argv[1] in ("-n", "netns"), s
        assert ns in created, f"{s} runs outside netkube's namespaces"
    text = "\n".join(map(str, steps))
    assert "ip -n t1-node2 addr add 192.168.56.102/24 dev eth0" in text
    assert "ip -n t1-underlay link add node3 type veth peer name eth0 netns t1-node3" in text
    assert "ip -n t1-node1 route add default via 192.168.56.1" in text
    assert "ip netns exec t1-node3 sysctl -qw net.ipv4.ip_forward=1" in text
    # The external client sits on the underlay at .200 with the gateway as its default route.
    assert "ip -n t1-client addr add 192.168.56.200/24 dev eth0" in text
    assert "ip -n t1-client route add default via 192.168.56.1" in text


def test_realize_records_each_namespace_before_creating_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cluster = ClusterConfig(name="t2", nodes=2)
    records = Records(tmp_path / "records.jsonl")
    seen: list[tuple[str, ...]] = []

    def fake_run(argv):  # type: ignore[no-untyped-def]
        if argv[:3] == ("ip", "netns", "add"):
            assert {"netns"} and argv[3] in [r.data["name"] for r in records.live()], "recorded first"
        seen.append(tuple(argv))

    topology.realize(cluster, records, run=fake_run)
    assert [r.data["name"] for r in records.live()] == ["t2-underlay", "t2-node1", "t2-node2", "t2-client"]
    assert len(seen) == len(topology.plan(cluster))
