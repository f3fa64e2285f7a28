"""Cluster settings: defaults from the design card and clear errors for bad values."""

from __future__ import annotations

import pytest

from netkube.config import ClusterConfig, ConfigError


def test_defaults_match_the_design() -> None:
    c = ClusterConfig()
    c.validate()
    assert c.node_names == ["node1", "node2", "node3"]
    assert [c.node_ip(n) for n in c.node_names] == ["192.168.56.101", "192.168.56.102", "192.168.56.103"]
    assert c.kubernetes_service_ip == "10.96.0.1"
    assert c.dns_service_ip == "10.96.0.10"
    assert c.node_netns("node2") == "netkube-node2"
    assert c.pod_netns("0123abcd-4567-89ab-cdef-0123456789ab") == "netkube-pod-0123abcd4567"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pod_cidr": "10.244.0.0/33"}, "--pod-cidr"),
        ({"pod_cidr": "10.244.0.0/24", "nodes": 3}, "too small for 3 nodes"),
        ({"service_cidr": "10.244.0.0/16"}, "overlaps"),
        ({"node_cidr": "192.168.56.0/28"}, "no room for nodes"),
        ({"name": "bad name!"}, "cluster name"),
        ({"nodes": 0}, "between 1 and 50"),
        ({"proxy_mode": "ebpf"}, "--proxy-mode"),
    ],
)
def test_bad_settings_say_what_and_how(kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        ClusterConfig(**kwargs).validate()


def test_state_root_under_tmp_is_refused_because_containers_hide_it() -> None:
    with pytest.raises(ConfigError, match="private /tmp"):
        ClusterConfig(state_root="/tmp/x").validate()
